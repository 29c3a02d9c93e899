"""Training loops for ssLALM: LM pre-training on text, and LTU's four stages.

A stage (:data:`dasslib.lalm.model.STAGES`) trains what :meth:`SSLALM.set_stage` leaves
trainable with AdamW, a linear warm-up of ``warmup_steps`` optimizer steps then a constant lr,
``accum`` micro-batches per step (effective batch ``batch_size * accum``), bf16 autocast on
CUDA when ``amp``.
"""
from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from ..runtime import cuda_autocast
from .model import STAGES

__all__ = ["train_stage", "pretrain_lm", "run_stages"]


def _warmup(opt, lr, warmup_steps, step):
    for g in opt.param_groups:
        g["lr"] = lr * min(1.0, (step + 1) / max(1, warmup_steps))


def train_stage(model, items, fbank_of, stage: int, lr: float | None = None, epochs: int | None = None,
                batch_size: int = 8, accum: int = 1, warmup_steps: int = 100, weight_decay: float = 0.0,
                seed: int = 0, amp: bool = True, max_items: int | None = None) -> list:
    """Train ``model`` (an :class:`SSLALM`) on ``items`` (:class:`QAItem` list) for ``stage``.

    ``fbank_of(audio) -> (T, F)`` gives an item's fbank; ``lr`` / ``epochs`` default to the
    stage's; ``max_items``: a random subset of that many items per epoch (small runs).
    Returns one dict per optimizer step (stage, epoch, step, loss, seconds)."""
    if not items:
        raise ValueError(f"stage {stage}: no training items")
    spec = STAGES[stage]
    lr = spec["lr"] if lr is None else lr
    epochs = spec["epochs"] if epochs is None else epochs
    params = model.set_stage(stage)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    device = model.device
    gen = torch.Generator().manual_seed(seed * 100 + stage)
    model.train()
    log, step, t0 = [], 0, time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(len(items), generator=gen).tolist()
        if max_items:
            order = order[:max_items]
        batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        for k in range(0, len(batches), accum):
            group = batches[k:k + accum]
            _warmup(opt, lr, warmup_steps, step)
            opt.zero_grad(set_to_none=True)
            total = 0.0
            for b in group:
                batch = [items[i] for i in b]
                fb = torch.stack([fbank_of(it.audio) for it in batch]).to(device)
                with cuda_autocast(device, torch.bfloat16 if amp else None):
                    loss = model(fb, [it.question for it in batch], [it.answer for it in batch])["loss"]
                (loss / len(group)).backward()
                total += loss.item() / len(group)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            log.append(dict(stage=stage, epoch=epoch, step=step, loss=total,
                            seconds=time.perf_counter() - t0))
            step += 1
    model.eval()
    return log


def run_stages(model, items_by_stage: dict, fbank_of, stages: dict | None = None, **kw) -> list:
    """Stages 1-4 in order: ``items_by_stage`` {k: items}; ``stages`` {k: {lr, epochs}}
    overrides; ``kw`` go to :func:`train_stage`. Returns the concatenated step logs."""
    log = []
    for k in sorted(STAGES):
        over = dict((stages or {}).get(k, {}))
        log += train_stage(model, items_by_stage[k], fbank_of, k, **over, **kw)
    return log


def pretrain_lm(lm, tokenizer, texts, epochs: int = 1, lr: float = 1e-3, batch_size: int = 16,
                max_length: int = 128, warmup_steps: int = 20, seed: int = 0, amp: bool = True) -> list:
    """Next-token pre-training of every weight of ``lm`` on ``texts`` (each followed by eos;
    right-padded, no loss on pads). Returns one dict per step (epoch, step, loss)."""
    texts = list(texts)
    if not texts:
        raise ValueError("pretrain_lm needs texts")
    device = next(lm.parameters()).device
    params = [p for p in lm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    enc = [tokenizer(t, add_special_tokens=False).input_ids[:max_length - 1] + [tokenizer.eos_token_id]
           for t in texts]
    lm.train()
    log, step = [], 0
    for epoch in range(epochs):
        order = torch.randperm(len(enc), generator=gen).tolist()
        for i in range(0, len(order), batch_size):
            rows = [enc[j] for j in order[i:i + batch_size]]
            n = max(map(len, rows))
            ids = torch.full((len(rows), n), tokenizer.pad_token_id, dtype=torch.long)
            labels = torch.full((len(rows), n), -100, dtype=torch.long)
            for r, x in enumerate(rows):
                ids[r, :len(x)] = torch.tensor(x)
                labels[r, :len(x)] = torch.tensor(x)
            ids, labels = ids.to(device), labels.to(device)
            _warmup(opt, lr, warmup_steps, step)
            opt.zero_grad(set_to_none=True)
            with cuda_autocast(device, torch.bfloat16 if amp else None):
                logits = lm(input_ids=ids)
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(),
                                   ignore_index=-100)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            log.append(dict(epoch=epoch, step=step, loss=loss.item()))
            step += 1
    lm.eval()
    if not all(math.isfinite(r["loss"]) for r in log):
        raise FloatingPointError("LM pre-training diverged (non-finite loss)")
    return log
