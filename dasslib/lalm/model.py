"""ssLALM: audio encoder (DASS, or AST for an LTU-like baseline) -> projector -> causal LM.

A (B, 1024, 128) fbank gives DASS's (B, 768, 4, 32) grid; :class:`AudioProjector`
(Conv2d(768, 768, 3, stride 2, padding 1) then Linear(768, LM width)) turns it into 32 audio
tokens (B, 32, D) that come first in the LM's input, before the prompt
``### Instruction:\\n{q}\\n\\n### Response:\\n`` and the answer. Cross-entropy is taken on the
text tokens only (the first text token is not predicted from audio; audio positions carry no
loss). Training follows LTU's four stages (:data:`STAGES`, :meth:`SSLALM.set_stage`).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from dasslib.atomic import atomic_write

from .graphs import GraphedStep
from .mamba_lm import MambaLM

__all__ = ["AudioProjector", "AudioEncoder", "SSLALM", "STAGES", "PROMPT", "format_prompt",
           "IGNORE_INDEX"]

PROMPT = "### Instruction:\n{q}\n\n### Response:\n"
IGNORE_INDEX = -100
# stage -> (tasks, what is trained, lr, epochs): LTU's schedule as the paper uses it
STAGES = {
    1: dict(tasks="classification", trained=("projector",), lr=1e-3, epochs=2),
    2: dict(tasks="classification", trained=("encoder", "projector", "lora"), lr=1e-4, epochs=2),
    3: dict(tasks="closed", trained=("encoder", "projector", "lora"), lr=1e-4, epochs=1),
    4: dict(tasks="all", trained=("encoder", "projector", "lora"), lr=1e-4, epochs=1),
}


def format_prompt(question: str) -> str:
    """The LTU / Alpaca prompt for ``question``."""
    return PROMPT.format(q=question)


class AudioProjector(nn.Module):
    """grid (B, C, F', T') -> audio tokens (B, F'' * T'', lm_dim), time-major.

    Conv2d(C, C, 3, stride 2, padding 1) then Linear(C, lm_dim): DASS's (768, 4, 32) grid gives
    (2, 16) = 32 tokens. ``grid`` (optional (F'', T'')): the conv output is average-pooled to
    it (an AST grid of another shape then gives the same number of tokens)."""

    def __init__(self, in_dim: int, lm_dim: int, grid: tuple | None = None):
        super().__init__()
        self.conv = nn.Conv2d(in_dim, in_dim, kernel_size=3, stride=2, padding=1)
        self.proj = nn.Linear(in_dim, lm_dim)
        self.grid = None if grid is None else tuple(int(g) for g in grid)

    def forward(self, grid):
        if grid.dim() != 4 or grid.shape[1] != self.conv.in_channels:
            raise ValueError(f"grid must be (B, {self.conv.in_channels}, F, T), got {tuple(grid.shape)}")
        x = self.conv(grid)
        if self.grid is not None and tuple(x.shape[-2:]) != self.grid:
            x = F.adaptive_avg_pool2d(x, self.grid)
        x = x.permute(0, 3, 2, 1).flatten(1, 2)                  # (B, T'' * F'', C), time-major
        return self.proj(x)


class AudioEncoder(nn.Module):
    """A dasslib classifier (DASS, AST, ...) used without its head: fbank (B, T, F) -> its
    feature grid (B, C, F', T') (``forward_grid``)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        if not hasattr(model, "forward_grid"):
            raise TypeError(f"{type(model).__name__} has no forward_grid (a dasslib classifier is needed)")
        self.model = model

    @property
    def out_dim(self) -> int:
        return int(self.model.num_features)

    def forward(self, fbank):
        if fbank.dim() != 3:
            raise ValueError(f"fbank must be (B, T, F), got {tuple(fbank.shape)}")
        return self.model.forward_grid(fbank)


class SSLALM(nn.Module):
    """Audio encoder + projector + LM (a :class:`dasslib.lalm.mamba_lm.MambaLM` or
    :class:`dasslib.lalm.lm.HFCausalLM`, LoRA already applied) + its tokenizer."""

    def __init__(self, encoder: AudioEncoder, lm: nn.Module, tokenizer, projector=None,
                 grid: tuple | None = (2, 16), train_on_prompt: bool = True):
        super().__init__()
        self.encoder = encoder
        self.projector = projector or AudioProjector(encoder.out_dim, lm.hidden_size, grid)
        self.lm = lm
        self.tokenizer = tokenizer
        self.train_on_prompt = train_on_prompt
        if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer needs a pad and an eos token")
        self.stage = None

    # -- parts and stages ---------------------------------------------------------------------
    def _groups(self):
        lora = [p for n, p in self.lm.named_parameters() if "lora_" in n]
        return {"encoder": list(self.encoder.parameters()), "projector": list(self.projector.parameters()),
                "lora": lora}

    def set_stage(self, k: int) -> list:
        """Freeze everything but what stage ``k`` trains (:data:`STAGES`); the LM's base weights
        stay frozen in every stage. Returns the trainable parameters."""
        if k not in STAGES:
            raise ValueError(f"stage must be one of {sorted(STAGES)}, got {k!r}")
        groups = self._groups()
        if "lora" in STAGES[k]["trained"] and not groups["lora"]:
            raise ValueError(f"stage {k} trains LoRA, but the LM has no adapters (apply_lora first)")
        for p in self.parameters():
            p.requires_grad_(False)
        for g in STAGES[k]["trained"]:
            for p in groups[g]:
                p.requires_grad_(True)
        self.stage = k
        return [p for p in self.parameters() if p.requires_grad]

    def _trainable_names(self) -> list:
        """Keys a checkpoint holds: the encoder, the projector and the LoRA adapters."""
        return [k for k in self.state_dict() if k.startswith(("encoder.", "projector."))
                or (k.startswith("lm.") and "lora_" in k)]

    def save_trainable(self, path) -> Path:
        """Save the trainable parts only (encoder, projector, LoRA), atomically."""
        sd = self.state_dict()
        keep = {k: sd[k].detach().cpu() for k in self._trainable_names()}
        return atomic_write(path, lambda f: torch.save({"state_dict": keep, "stage": self.stage}, f))

    def load_trainable(self, path) -> None:
        """Load a :meth:`save_trainable` checkpoint (its keys must be exactly this model's)."""
        ck = torch.load(path, map_location="cpu", weights_only=True)
        want = set(self._trainable_names())
        got = set(ck["state_dict"])
        if want != got:
            raise ValueError(f"{path}: checkpoint keys differ: missing {sorted(want - got)[:5]}, "
                             f"unexpected {sorted(got - want)[:5]}")
        self.load_state_dict(ck["state_dict"], strict=False)
        self.stage = ck.get("stage")

    # -- batches ------------------------------------------------------------------------------
    @property
    def device(self):
        return next(self.projector.parameters()).device

    def audio_tokens(self, fbank):
        """fbank (B, T, F) -> audio tokens (B, n_audio, D) in the LM's dtype."""
        tok = self.projector(self.encoder(fbank))
        return tok.to(self.lm.get_input_embeddings().weight.dtype)

    def encode_text(self, questions, answers=None):
        """Token ids per item: prompt (+ answer + eos). Returns (ids list, prompt lengths)."""
        tok = self.tokenizer
        ids, n_prompt = [], []
        for i, q in enumerate(questions):
            p = tok(format_prompt(q), add_special_tokens=False).input_ids
            a = [] if answers is None else tok(answers[i], add_special_tokens=False).input_ids + [tok.eos_token_id]
            ids.append(p + a)
            n_prompt.append(len(p))
        return ids, n_prompt

    def _embed_batch(self, fbank, ids, left_pad: bool):
        """Audio tokens then text ids, padded (left or right) -> embeds (B, L, D), mask (B, L),
        text ids (B, L) (pad id at audio and pad positions), start of text per row."""
        audio = self.audio_tokens(fbank)
        B, n_audio, D = audio.shape
        n = max(len(x) for x in ids)
        L = n_audio + n
        dev = audio.device
        text = torch.full((B, L), self.tokenizer.pad_token_id, dtype=torch.long, device=dev)
        mask = torch.zeros(B, L, dtype=torch.long, device=dev)
        audio_pos = torch.zeros(B, L, dtype=torch.bool, device=dev)
        starts = []
        for b, x in enumerate(ids):
            s = L - n_audio - len(x) if left_pad else 0
            text[b, s + n_audio:s + n_audio + len(x)] = torch.tensor(x, device=dev)
            mask[b, s:s + n_audio + len(x)] = 1
            audio_pos[b, s:s + n_audio] = True
            starts.append(s + n_audio)
        emb = self.lm.get_input_embeddings()(text)
        emb = emb.masked_scatter(audio_pos[..., None], audio.reshape(-1, D))
        emb = emb * mask[..., None].to(emb.dtype)
        return emb, mask, text, starts

    def forward(self, fbank, questions, answers):
        """Training step: fbank (B, T, F), questions and answers (B strings each) ->
        dict(loss: mean CE over the text tokens, logits (B, L, V), labels (B, L))."""
        if not (len(questions) == len(answers) == fbank.shape[0]):
            raise ValueError(f"batch of {fbank.shape[0]} fbanks, {len(questions)} questions, "
                             f"{len(answers)} answers")
        ids, n_prompt = self.encode_text(questions, answers)
        emb, mask, text, starts = self._embed_batch(fbank, ids, left_pad=False)
        labels = torch.full_like(text, IGNORE_INDEX)
        for b, (x, s) in enumerate(zip(ids, starts)):
            first = 1 if self.train_on_prompt else n_prompt[b]       # the first text token has no loss
            labels[b, s + first:s + len(x)] = text[b, s + first:s + len(x)]
        logits = self.lm(inputs_embeds=emb, attention_mask=mask)
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(),
                               ignore_index=IGNORE_INDEX)
        return dict(loss=loss, logits=logits, labels=labels)

    @torch.no_grad()
    def prompt_logits(self, fbank, questions):
        """Next-token logits after each prompt (B, V), from a left-padded batch."""
        ids, _ = self.encode_text(questions)
        emb, mask, _, _ = self._embed_batch(fbank, ids, left_pad=True)
        return self.lm(inputs_embeds=emb, attention_mask=mask)[:, -1]

    @torch.no_grad()
    def generate(self, fbank, questions, max_new_tokens: int = 32, do_sample: bool = False,
                 temperature: float = 0.1, top_k: int = 500, top_p: float = 0.95,
                 repetition_penalty: float = 1.1, generator: torch.Generator | None = None,
                 graph: bool | None = None) -> list:
        """Answers (strings) to ``questions`` about each clip of fbank (B, T, F).

        The batch is left-padded; the LM reads the prefix once and then steps its recurrent
        state (Mamba) or KV cache (transformers) one token at a time. ``graph`` (default: on CUDA
        with a Mamba LM) replays the Mamba step as one CUDA graph (:class:`.graphs.GraphedStep`);
        False steps eagerly. The paper's sampling:
        ``do_sample`` with temperature 0.1, top-k 500, top-p 0.95; repetition penalty 1.1 (also
        applied to greedy decoding), through transformers' logits processors."""
        from transformers import (
            LogitsProcessorList,
            RepetitionPenaltyLogitsProcessor,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )
        procs = LogitsProcessorList()
        if repetition_penalty != 1.0:
            procs.append(RepetitionPenaltyLogitsProcessor(repetition_penalty))
        if do_sample:
            procs.extend([TemperatureLogitsWarper(temperature), TopKLogitsWarper(top_k),
                          TopPLogitsWarper(top_p)])
        ids, _ = self.encode_text(questions)
        emb, mask, text, starts = self._embed_batch(fbank, ids, left_pad=True)
        logits, state = self.lm(inputs_embeds=emb, attention_mask=mask, return_state=True)
        logits = logits[:, -1]
        seen = text.clone()                           # prompt ids (pads at audio positions) + generated
        eos, B = self.tokenizer.eos_token_id, fbank.shape[0]
        done = torch.zeros(B, dtype=torch.bool, device=emb.device)
        out = []
        stepper = None
        if graph is None:
            graph = emb.is_cuda and isinstance(self.lm, MambaLM)
        elif graph and not isinstance(self.lm, MambaLM):
            raise ValueError("graph=True needs a Mamba LM: a transformers KV cache grows and cannot be "
                             "replayed as one CUDA graph")
        for t in range(max_new_tokens):
            scores = procs(seen, logits.float())
            if do_sample:
                nxt = torch.multinomial(scores.softmax(-1), 1, generator=generator)[:, 0]
            else:
                nxt = scores.argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, eos), nxt)
            out.append(nxt)
            done |= nxt == eos
            if bool(done.all()) or t == max_new_tokens - 1:
                break
            seen = torch.cat([seen, nxt[:, None]], dim=1)
            if graph:
                if stepper is None:
                    stepper = GraphedStep(self.lm, state, nxt)
                logits = stepper(nxt)
            else:
                logits, state = self.lm.step(nxt, state)
        gen = torch.stack(out, 1).tolist()
        texts = []
        for row in gen:
            row = row[:row.index(eos)] if eos in row else row
            texts.append(self.tokenizer.decode(row, skip_special_tokens=True).strip())
        return texts
