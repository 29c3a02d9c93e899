"""Evaluation at epoch ends (the `Evaluation` part of the loop): the eval loader through the model
under autocast, gathered over ranks and summarized by the objective; the best epoch and the plateau rule
on the main metric."""
from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from ..runtime import autocast
from . import distributed
from .objectives import split_batch
from .plateau import PlateauState, describe_stop, lower_is_better, plateau_state
from .resume import _Interrupted


class Evaluation:
    """Mixin of the loop's `_Trainer`: evaluate, track the best epoch, apply the plateau rule."""

    @torch.no_grad()
    def _evaluate(self) -> dict:
        self.eval_net.eval()
        chunks: dict[str, list] = {}
        bar = tqdm(self.eval_loader, leave=False, desc="eval", dynamic_ncols=True,
                   disable=not (self.cfg.progress and self.dist.is_main))
        for batch in bar:
            if self.stop.requested and not self.dist.enabled:
                raise _Interrupted
            x, y = split_batch(batch)
            with autocast(self.device, self.amp_dtype):
                out = self.eval_net(x.to(self.device, non_blocking=True))
            for k, v in self.objective.eval_batch(out, y).items():
                chunks.setdefault(k, []).append(v.detach().to(self.device if self.dist.enabled else "cpu"))
        bar.close()
        if not chunks:
            raise ValueError("the eval loader yields no batch")
        gathered = {}
        for k, parts in chunks.items():
            local = torch.cat(parts)
            gathered[k] = distributed.gather_interleaved(local, self.eval_total or len(local))
        metrics = self.objective.summarize(gathered) if self.dist.is_main else None
        return distributed.broadcast_object(metrics)

    def _improves(self, value: float) -> bool:
        key = self.cfg.main_metric
        if key not in self.best:
            return True
        return value < self.best[key] if lower_is_better(key) else value > self.best[key]

    def _plateau(self) -> PlateauState:
        """The plateau rule on the main metric's history so far (a pure function of it, so a resumed run
        decides as the uninterrupted one would)."""
        key = self.cfg.main_metric
        values = [row.get(key, math.nan) for row in self.history]
        return plateau_state(values, self.cfg.patience, self.cfg.min_delta, lower_is_better(key))

    @property
    def stopped(self) -> dict:
        return describe_stop(len(self.history), self.cfg.epochs,
                             self._plateau() if self.eval_loader is not None else None, self.cfg.main_metric,
                             self.cfg.patience)
