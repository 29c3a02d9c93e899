"""Checkpoint and resume (the `ResumableState` part of the loop): the full training state in
``checkpoints/last.pt``, written at epoch ends, on schedule, on interruption and after a failure at a
consistent point, and restored exactly; the decisions every rank must take together."""
from __future__ import annotations

import time
import warnings

import torch

from . import distributed
from .checkpoint import atomic_save
from .config import TrainConfig
from .records import RUN_FILE, _identity_differences, _read_json
from .seeding import get_rng_state, seed_everything, set_rng_state

CHECKPOINT_VERSION = 1


class _Interrupted(Exception):
    """A stop request seen at a step boundary (the state is consistent and gets saved)."""


class ResumableState:
    """Mixin of the loop's `_Trainer`: save, restore and agree across ranks."""

    def _snapshot_rng(self):
        self.rng = get_rng_state()

    def _state(self, all_rng: list, skipped=None) -> dict:
        return {
            "version": CHECKPOINT_VERSION, "config": self.cfg.to_dict(), "task": self.task,
            "epoch": self.epoch, "batch": self.batch, "global_step": self.global_step,
            "n_batches": self.n_batches, "world_size": self.dist.world_size,
            "model": self._final_weights or self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "rng": all_rng, "loss_sums": {k: v.cpu() for k, v in self.loss_sums.items()},
            "epoch_time": self.epoch_time, "history": self.history, "best": self.best,
            "averager": self.averager.state_dict(), "finished": self.finished,
            "final": self.final, "wa": self.wa, "skipped_items": skipped,
        }

    def _save(self):
        all_rng = distributed.all_gather_objects(self.rng)
        skipped = self._skipped_items()
        if self.dist.is_main:
            atomic_save(self._state(all_rng, skipped), self.ckpt_path, checksum=True)
        self._last_save = time.monotonic()

    def _restore(self, ck: dict):
        if ck.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"{self.ckpt_path}: unsupported checkpoint version {ck.get('version')!r}")
        diffs = self.cfg.differences(TrainConfig.from_dict(ck["config"]))
        if ck["task"] != self.task:
            diffs["task"] = (self.task, ck["task"])
        if ck["n_batches"] != self.n_batches:
            diffs["batches per epoch"] = (self.n_batches, ck["n_batches"])
        stored = _read_json(self.out_dir / RUN_FILE)
        if stored is not None:
            # the model's config is left to load_state_dict: speed options (scan backend, chunking) may change
            skip = ("model_config", "batches_per_epoch")  # the latter compared above
            for k, v in _identity_differences(self.identity, stored, skip=skip).items():
                diffs.setdefault(k, v)
        if diffs:
            listed = ", ".join(f"{k}: now {a!r}, checkpoint {b!r}" for k, (a, b) in diffs.items())
            raise ValueError(f"cannot resume {self.ckpt_path}: the run's settings changed ({listed}); "
                             "pass resume=False or use another out_dir")
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        self.scaler.load_state_dict(ck["scaler"])
        self.averager.load_state_dict(ck["averager"])
        self.epoch, self.batch, self.global_step = ck["epoch"], ck["batch"], ck["global_step"]
        self.loss_sums = {k: v.to(self.device) for k, v in ck["loss_sums"].items()}
        self.epoch_time, self.history, self.best = ck["epoch_time"], list(ck["history"]), dict(ck["best"])
        self.finished, self.final, self.wa = ck["finished"], dict(ck["final"]), ck["wa"]
        flags = self._skip_flags()
        if flags is not None:
            flags.zero_()
            flags[torch.tensor(ck.get("skipped_items") or [], dtype=torch.long)] = True  # this epoch's so far
        if len(ck["rng"]) == self.dist.world_size:
            set_rng_state(ck["rng"][self.dist.rank])
        else:
            warnings.warn(f"checkpoint written by {len(ck['rng'])} processes, resumed by {self.dist.world_size}: "
                          "random streams are reseeded, the run will not replay exactly")
            seed_everything(self.cfg.seed + self.dist.rank + 7919 * (self.global_step + 1))
        self._snapshot_rng()

    def _save_after_error(self):
        """An exception (a bad clip, a failed write...) at a consistent point: save it, so that a rerun
        resumes there instead of at the last scheduled checkpoint."""
        if self._dirty or self.dist.enabled:
            warnings.warn("training failed inside a step (or under DDP): the last checkpoint is kept as it was")
            return
        try:
            self._save()
        except Exception as err:  # e.g. the disk is full: keep the original error
            warnings.warn(f"training failed and its state could not be saved either: {err}")
        else:
            warnings.warn(f"training failed after {self.global_step} steps: state saved to "
                          f"{self.ckpt_path}; fix the cause and rerun to resume")

    def _maybe_checkpoint(self):
        cfg = self.cfg
        due = bool(cfg.checkpoint_every_steps and self.global_step % cfg.checkpoint_every_steps == 0)
        due = due or bool(cfg.checkpoint_every_minutes
                          and time.monotonic() - self._last_save >= 60 * cfg.checkpoint_every_minutes)
        due, stop = self._agree(due, self.stop.requested)
        if stop:
            raise _Interrupted
        if due and self.batch < self.n_batches:
            self._save()

    def _check_stop(self):
        if self._agree(False, self.stop.requested)[1]:
            raise _Interrupted

    def _agree(self, *flags: bool) -> tuple:
        """Logical OR of each flag over ranks: every rank must take the same decision (saving gathers)."""
        if not self.dist.enabled:
            return flags
        t = torch.tensor([int(f) for f in flags], device=self.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return tuple(bool(v) for v in t.tolist())
