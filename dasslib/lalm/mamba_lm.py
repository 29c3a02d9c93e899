"""A Mamba causal LM on :mod:`dasslib.scans`, in transformers' ``MambaForCausalLM`` layout.

State-dict keys are those of the ``state-spaces/mamba-*-hf`` checkpoints
(``backbone.embeddings.weight``, ``backbone.layers.{i}.norm.weight``,
``backbone.layers.{i}.mixer.{in_proj,conv1d,x_proj,dt_proj,A_log,D,out_proj}.*``,
``backbone.norm_f.weight``, ``lm_head.weight`` tied to the embeddings), so such a folder
(``config.json`` + ``*.safetensors`` or ``pytorch_model*.bin``) loads with
:meth:`MambaLM.from_pretrained`. The mixer is :class:`dasslib.models.mamba_mixer.MambaMixer`
(the one AuM and SSAM use): its scan runs on the CPU (torch backend) and fast on CUDA (triton),
with no mamba-ssm. Generation is recurrent: one :meth:`MambaLM.step` per token carries each
layer's conv and SSM state, so the prefix is never re-scanned.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn as nn

from dasslib.models.mamba_encoder import MambaBlock
from dasslib.models.mamba_mixer import MambaMixer

__all__ = ["MambaLMConfig", "MambaLM", "load_state_dict_folder"]


@dataclass
class MambaLMConfig:
    """The fields of transformers' ``MambaConfig`` that shape the network (same names)."""
    vocab_size: int = 50280
    hidden_size: int = 768
    state_size: int = 16
    num_hidden_layers: int = 32
    layer_norm_epsilon: float = 1e-5
    expand: int = 2
    conv_kernel: int = 4
    use_bias: bool = False
    use_conv_bias: bool = True
    time_step_rank: object = "auto"
    residual_in_fp32: bool = True
    tie_word_embeddings: bool = True
    pad_token_id: int = 0
    eos_token_id: int = 0

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "state_size", "num_hidden_layers", "expand",
                     "conv_kernel"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"MambaLMConfig.{name} must be a positive int, got {v!r}")

    @classmethod
    def from_dict(cls, d: dict) -> "MambaLMConfig":
        """From a ``config.json`` dict (HF names; ``d_model`` / ``n_layer`` of mamba-ssm's
        config are accepted too). Unknown keys are ignored, as transformers does."""
        d = dict(d)
        aliases = {"d_model": "hidden_size", "n_layer": "num_hidden_layers", "d_state": "state_size"}
        for old, new in aliases.items():
            if old in d and new not in d:
                d[new] = d[old]
        for k in ("eos_token_id", "pad_token_id"):
            if isinstance(d.get(k), list):
                d[k] = d[k][0]
            if d.get(k) is None:
                d.pop(k, None)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_dict(self) -> dict:
        return dict(asdict(self), model_type="mamba", architectures=["MambaForCausalLM"])


class _Backbone(nn.Module):
    def __init__(self, cfg: MambaLMConfig, scan_backend: str):
        super().__init__()
        d = cfg.hidden_size
        self.embeddings = nn.Embedding(cfg.vocab_size, d)
        self.layers = nn.ModuleList(
            MambaBlock(d, MambaMixer(d, d_state=cfg.state_size, d_conv=cfg.conv_kernel,
                                     expand=cfg.expand, dt_rank=cfg.time_step_rank,
                                     conv_bias=cfg.use_conv_bias, bias=cfg.use_bias,
                                     scan_backend=scan_backend),
                       nn.RMSNorm(d, eps=cfg.layer_norm_epsilon),
                       residual_in_fp32=cfg.residual_in_fp32)
            for _ in range(cfg.num_hidden_layers))
        self.norm_f = nn.RMSNorm(d, eps=cfg.layer_norm_epsilon)


class MambaLM(nn.Module):
    """Mamba causal LM: token ids or embeddings (B, L[, D]) -> logits (B, L, vocab).

    Each layer: ``residual = residual + mixer(norm(residual))`` (residual in float32 when
    ``residual_in_fp32``), then ``norm_f`` and ``lm_head``: transformers' ``MambaForCausalLM``.
    """

    def __init__(self, cfg: MambaLMConfig, scan_backend: str = "auto"):
        super().__init__()
        self.config = cfg
        self.backbone = _Backbone(cfg, scan_backend)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.backbone.embeddings.weight

    # -- the LM interface SSLALM uses -----------------------------------------------------
    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    def get_input_embeddings(self) -> nn.Embedding:
        return self.backbone.embeddings

    def _head(self, residual):
        h = self.backbone.norm_f(residual.to(self.backbone.norm_f.weight.dtype))
        return self.lm_head(h.to(self.lm_head.weight.dtype))

    def forward(self, input_ids=None, inputs_embeds=None, attention_mask=None, return_state=False):
        """input_ids (B, L) or inputs_embeds (B, L, D); attention_mask (B, L) 0/1 (left padding).
        Returns logits (B, L, vocab) float-typed like the weights, or (logits, state) with
        ``return_state`` (a list of per-layer ``(conv_state, ssm_state)`` for :meth:`step`)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids and inputs_embeds")
        x = self.backbone.embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        if x.dim() != 3 or x.shape[-1] != self.hidden_size:
            raise ValueError(f"inputs_embeds must be (B, L, {self.hidden_size}), got {tuple(x.shape)}")
        residual, states = x, []
        for layer in self.backbone.layers:
            h = layer.mixer(layer.norm(residual.to(layer.norm.weight.dtype)), attention_mask,
                            return_state=return_state)
            if return_state:
                h, st = h
                states.append(st)
            residual = (residual.float() if layer.residual_in_fp32 else residual) + h
        logits = self._head(residual)
        return (logits, states) if return_state else logits

    def step(self, input_ids=None, state=None, inputs_embeds=None):
        """One token per row: input_ids (B,) or inputs_embeds (B, D), and the state of the
        prefix -> (logits (B, vocab), new state)."""
        if state is None or len(state) != len(self.backbone.layers):
            raise ValueError("step needs the per-layer state from forward(return_state=True)")
        x = self.backbone.embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        residual, new = x, []
        for layer, st in zip(self.backbone.layers, state):
            h, st = layer.mixer.step(layer.norm(residual.to(layer.norm.weight.dtype)), st)
            new.append(st)
            residual = (residual.float() if layer.residual_in_fp32 else residual) + h
        return self._head(residual), new

    # -- loading / saving -------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, folder, scan_backend: str = "auto", dtype=torch.float32) -> "MambaLM":
        """Load a local HF Mamba folder (``config.json`` + safetensors or ``.bin`` shards)."""
        folder = Path(folder)
        cfg_path = folder / "config.json"
        if not cfg_path.is_file():
            raise FileNotFoundError(f"{folder}: no config.json (a local *-hf Mamba folder is needed)")
        cfg = MambaLMConfig.from_dict(json.loads(cfg_path.read_text()))
        with torch.device("meta"):
            model = cls(cfg, scan_backend)
        sd = load_state_dict_folder(folder)
        if cfg.tie_word_embeddings:
            sd.pop("lm_head.weight", None)
        missing, unexpected = model.load_state_dict(sd, strict=False, assign=True)
        missing = [k for k in missing if not (cfg.tie_word_embeddings and k == "lm_head.weight")]
        if missing or unexpected:
            raise ValueError(f"{folder}: not a MambaForCausalLM state dict; missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}")
        if cfg.tie_word_embeddings:
            model.lm_head.weight = model.backbone.embeddings.weight
        return model.to(dtype)

    def save_pretrained(self, folder) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (atomically) in the HF layout."""
        from safetensors.torch import save as st_save

        from dasslib.atomic import atomic_write_bytes, atomic_write_json
        folder = Path(folder)
        sd = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        if self.config.tie_word_embeddings:
            sd.pop("lm_head.weight", None)
        atomic_write_bytes(st_save(sd, metadata={"format": "pt"}), folder / "model.safetensors")
        atomic_write_json(self.config.to_dict(), folder / "config.json")
        return folder


def load_state_dict_folder(folder) -> dict:
    """All tensors of a HF checkpoint folder: ``*.safetensors`` (preferred) or ``*.bin``."""
    folder = Path(folder)
    files = sorted(folder.glob("*.safetensors"))
    if files:
        from safetensors.torch import load_file
        sd = {}
        for f in files:
            sd.update(load_file(str(f)))
        return sd
    files = sorted(folder.glob("pytorch_model*.bin"))
    if not files:
        raise FileNotFoundError(f"{folder}: no *.safetensors or pytorch_model*.bin")
    sd = {}
    for f in files:
        sd.update(torch.load(f, map_location="cpu", weights_only=True))
    return sd
