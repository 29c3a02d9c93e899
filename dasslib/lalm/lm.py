"""Language models for ssLALM: the Mamba LM (:mod:`.mamba_lm`), a transformers LLaMA-family LM
for the hybrid baseline, LoRA through ``peft`` and a local tokenizer.

Every LM here offers the interface :class:`dasslib.lalm.model.SSLALM` uses:
``hidden_size``, ``get_input_embeddings()``, ``forward(inputs_embeds=..., attention_mask=...,
return_state=...)`` -> logits (B, L, V) [, state] and ``step(input_ids (B,), state)`` ->
(logits (B, V), state).
"""
from __future__ import annotations

import inspect
from pathlib import Path

import torch
import torch.nn as nn

from dasslib.models.mamba_encoder import init_mamba_weights

from .mamba_lm import MambaLM, MambaLMConfig

__all__ = ["HFCausalLM", "tiny_mamba", "tiny_llama", "load_lm", "apply_lora", "LORA_TARGETS",
           "count_lora_parameters", "load_tokenizer", "train_bpe_tokenizer", "SPECIAL_TOKENS"]

# LoRA targets (the paper): Mamba's input projection only, LLaMA's query and value projections
LORA_TARGETS = {"mamba": ["in_proj"], "llama": ["q_proj", "v_proj"]}
SPECIAL_TOKENS = {"pad_token": "<pad>", "eos_token": "<eos>", "unk_token": "<unk>"}


class HFCausalLM(nn.Module):
    """A transformers causal LM (e.g. ``LlamaForCausalLM``) behind the ssLALM LM interface.

    Left padding: position ids are counted from each row's first real token, so a left-padded
    row gives the logits of the row alone. The decoding state is transformers' KV cache: named
    ``cache`` from transformers 5.x on and ``past_key_values`` before, both are accepted."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        params = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"

    @staticmethod
    def _cache_of(out):
        return out.cache if hasattr(out, "cache") else out.past_key_values

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    def get_input_embeddings(self):
        return self.model.get_input_embeddings()

    @staticmethod
    def _positions(mask):
        return (mask.long().cumsum(-1) - 1).clamp(min=0)

    def forward(self, input_ids=None, inputs_embeds=None, attention_mask=None, return_state=False):
        """(B, L) ids or (B, L, D) embeddings [+ (B, L) mask] -> logits (B, L, V) [, state]."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids and inputs_embeds")
        x = self.get_input_embeddings()(input_ids) if inputs_embeds is None else inputs_embeds
        mask = torch.ones(x.shape[:2], dtype=torch.long, device=x.device) if attention_mask is None \
            else attention_mask.long()
        out = self.model(inputs_embeds=x, attention_mask=mask, position_ids=self._positions(mask),
                         use_cache=return_state)
        if return_state:
            return out.logits, (self._cache_of(out), mask)
        return out.logits

    def step(self, input_ids=None, state=None, inputs_embeds=None):
        """One token per row (B,) and the state of the prefix -> (logits (B, V), new state)."""
        if state is None:
            raise ValueError("step needs the state from forward(return_state=True)")
        cache, mask = state
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        x = self.get_input_embeddings()(input_ids) if inputs_embeds is None else inputs_embeds
        out = self.model(inputs_embeds=x[:, None], attention_mask=mask,
                         position_ids=self._positions(mask)[:, -1:], use_cache=True,
                         **{self._cache_arg: cache})
        return out.logits[:, -1], (self._cache_of(out), mask)


def tiny_mamba(vocab_size: int, hidden_size: int = 64, num_layers: int = 2, state_size: int = 16,
               scan_backend: str = "auto", **kw) -> MambaLM:
    """A small randomly initialised Mamba LM (the 130M shape is hidden 768, 24 layers), with the
    official init pass (:func:`dasslib.models.mamba_encoder.init_mamba_weights`) and N(0, 0.02)
    embeddings."""
    lm = MambaLM(MambaLMConfig(vocab_size=vocab_size, hidden_size=hidden_size,
                               num_hidden_layers=num_layers, state_size=state_size, **kw),
                 scan_backend=scan_backend)
    init_mamba_weights(lm, num_layers)
    nn.init.normal_(lm.backbone.embeddings.weight, std=0.02)
    return lm


def tiny_llama(vocab_size: int, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4,
               intermediate_size: int | None = None, **kw) -> HFCausalLM:
    """A small randomly initialised transformers ``LlamaForCausalLM`` (hybrid baseline)."""
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
                      num_attention_heads=num_heads, num_key_value_heads=num_heads,
                      intermediate_size=intermediate_size or 4 * hidden_size,
                      max_position_embeddings=2048, **kw)
    return HFCausalLM(LlamaForCausalLM(cfg))


def load_lm(folder, scan_backend: str = "auto", dtype=torch.float32):
    """A local LM folder: Mamba (``model_type`` mamba) as :class:`MambaLM`, anything else
    through transformers' ``AutoModelForCausalLM`` (no download: ``local_files_only``)."""
    import json
    folder = Path(folder)
    cfg = json.loads((folder / "config.json").read_text())
    if cfg.get("model_type") == "mamba":
        return MambaLM.from_pretrained(folder, scan_backend=scan_backend, dtype=dtype)
    from transformers import AutoModelForCausalLM
    return HFCausalLM(AutoModelForCausalLM.from_pretrained(folder, local_files_only=True,
                                                           dtype=dtype))


def lm_family(lm) -> str:
    """"mamba" or "llama" (the LoRA target set of ``lm``)."""
    if isinstance(lm, MambaLM):
        return "mamba"
    if isinstance(lm, HFCausalLM) and lm.model.config.model_type in ("llama", "mistral", "qwen2"):
        return "llama"
    raise ValueError(f"no LoRA targets known for {type(lm).__name__}")


def apply_lora(lm: nn.Module, r: int = 8, alpha: int = 16, dropout: float = 0.05,
               target_modules=None) -> nn.Module:
    """Insert LoRA adapters with ``peft`` (in place) on ``target_modules`` (default: the
    paper's, :data:`LORA_TARGETS`); every non-adapter weight of ``lm`` is frozen. Returns ``lm``."""
    from peft import LoraConfig, inject_adapter_in_model
    targets = list(target_modules or LORA_TARGETS[lm_family(lm)])
    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets,
                     bias="none")
    inject_adapter_in_model(cfg, lm)
    for name, p in lm.named_parameters():
        p.requires_grad_("lora_" in name)
    return lm


def count_lora_parameters(module: nn.Module) -> int:
    """Number of LoRA adapter parameters (names containing ``lora_``) in ``module``."""
    return sum(p.numel() for n, p in module.named_parameters() if "lora_" in n)


def load_tokenizer(folder):
    """A local HF tokenizer folder (``tokenizer.json`` etc.) via ``AutoTokenizer``, no download.
    A missing pad token is set to the eos token."""
    from transformers import AutoTokenizer
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"tokenizer folder {folder} does not exist")
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def train_bpe_tokenizer(texts, vocab_size: int = 1000, min_frequency: int = 1):
    """A byte-level BPE trained on ``texts`` with ``tokenizers``, as a transformers
    ``PreTrainedTokenizerFast`` with ``<pad>`` (id 0), ``<eos>``, ``<unk>``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    texts = list(texts)
    if not texts:
        raise ValueError("train_bpe_tokenizer needs at least one text")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=list(SPECIAL_TOKENS.values()),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)
