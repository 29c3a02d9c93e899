"""Checkpoint weight averaging (AST/DASS "wa"): the mean of the model weights saved at the end
of epochs ``wa_start..wa_end``.

AST saves one weight file per epoch and sums them at the end; `WeightAverager` keeps the running
sum instead (one float32 copy of the weights, on the CPU), which gives the same mean without the
per-epoch files and travels inside the training checkpoint.
"""
from __future__ import annotations

import os

import torch


class WeightAverager:
    """Running mean of model state dicts. Floating-point entries are summed in float32 and averaged;
    other entries (integer buffers such as BatchNorm's ``num_batches_tracked``) keep the last value."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.last: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, state_dict: dict) -> None:
        if self.count and set(state_dict) != set(self.last):
            raise ValueError("state dict keys differ from the ones averaged so far")
        for key, value in state_dict.items():
            value = value.detach().to("cpu")
            if value.is_floating_point():
                self.sums[key] = value.float().clone() if key not in self.sums else self.sums[key] + value.float()
            self.last[key] = value.clone()
        self.count += 1

    def average(self) -> dict:
        """The averaged state dict (each entry in the dtype it was added with)."""
        if not self.count:
            raise ValueError("no weights were added to the average")
        out = {}
        for key, value in self.last.items():
            out[key] = (self.sums[key] / self.count).to(value.dtype) if key in self.sums else value.clone()
        return out

    def state_dict(self) -> dict:
        return {"sums": self.sums, "last": self.last, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.sums, self.last, self.count = dict(state["sums"]), dict(state["last"]), int(state["count"])


def average_state_dicts(state_dicts) -> dict:
    """Mean of an iterable of state dicts with identical keys."""
    avg = WeightAverager()
    for sd in state_dicts:
        avg.add(sd)
    return avg.average()


def average_weight_files(paths: list[str | os.PathLike]) -> dict:
    """Mean of weight files (plain state dicts saved with ``torch.save``), loaded one at a time."""
    if not paths:
        raise ValueError("no weight files to average")
    return average_state_dicts(torch.load(p, map_location="cpu", weights_only=True) for p in paths)
