"""What a training run writes and reports (the `RunRecords` part of the loop): ``history.csv``,
``metrics.json`` and the weight files, the progress bar's line, the refusal to replace another run's
results, and the repair of a finished run's missing files; plus the run-identity helpers."""
from __future__ import annotations

import dataclasses
import json
import math
import warnings
from pathlib import Path

import pandas as pd
import torch

from ..atomic import atomic_write_csv, atomic_write_json
from .checkpoint import atomic_save, load_checkpoint
from .config import RESUMABLE_CHANGES

RUN_FILE = "run.json"  # the run's identity (config and run-level settings), written when a run starts
RESULT_FILES = ("history.csv", "metrics.json", "model_final.pt", "model_wa.pt", "best_model.pt")


class RunRecords:
    """Mixin of the loop's `_Trainer`: the files of ``out_dir`` and the progress line."""

    def _write_metrics(self):
        payload = {"final": self.final, "wa": self.wa, "best": self.best, "stopped": self.stopped,
                   "config": self.cfg.to_dict()}
        atomic_write_json(payload, self.out_dir / "metrics.json", indent=2, default=str)

    def _repair_outputs(self):
        """A finished run: rewrite result files that are missing or unreadable (an interrupted or failed
        write) from the checkpoint, with a warning; report those that cannot be rebuilt."""
        repaired = []
        if not _json_with(self.out_dir / "metrics.json", ("final", "wa", "best", "config")):
            self._write_metrics()
            repaired.append("metrics.json")
        if not _csv_rows(self.out_dir / "history.csv", len(self.history)):
            self._write_history()
            repaired.append("history.csv")
        if not _loadable(self.out_dir / "model_final.pt"):
            self._save_weights("model_final.pt", self.model.state_dict())  # the last epoch's (restored) weights
            repaired.append("model_final.pt")
        if repaired:
            warnings.warn(f"finished run in {self.out_dir}: {', '.join(repaired)} missing or unreadable, "
                          "rewritten from checkpoints/last.pt")
        if self.best and not _loadable(self.out_dir / "best_model.pt"):
            warnings.warn(f"finished run in {self.out_dir}: best_model.pt is missing or unreadable and cannot be "
                          f"rebuilt (the checkpoint keeps the last epoch's weights only; best: {self.best})")

    def _refuse_to_clobber(self, restart: bool = False):
        """Stop before a fresh run replaces results of a different (or unknown) run in out_dir; on a
        ``restart`` (resume=False) also its checkpoint, and a finished run of the same settings."""
        found = [name for name in RESULT_FILES if (self.out_dir / name).exists()]
        if restart and self.ckpt_path.is_file():
            found.append("checkpoints/last.pt")
        if not found:
            return
        stored = _read_json(self.out_dir / RUN_FILE)
        if stored is None:
            why = f"of an unknown run (no readable {RUN_FILE})"
        else:
            diffs = _identity_differences(self.identity, stored)
            if not diffs and not (restart and self._finished_run_here()):
                return  # the same run again (it reproduces what is there), or restarting an unfinished one
            listed = ", ".join(f"{k}: now {a!r}, stored {b!r}" for k, (a, b) in diffs.items())
            why = f"of a different run ({listed})" if diffs else "of a finished run with these settings"
        how = "resume=False would replace them" if restart else "no checkpoints/last.pt to resume from"
        raise FileExistsError(f"{self.out_dir} holds results ({', '.join(found)}) {why} and {how}; "
                              "pass overwrite=True to replace them, or use another out_dir")

    def _finished_run_here(self) -> bool:
        """out_dir holds a finished run: metrics.json, or a readable last.pt marked finished."""
        if (self.out_dir / "metrics.json").exists():
            return True
        try:
            return bool(load_checkpoint(self.ckpt_path, map_location="cpu").get("finished"))
        except Exception:  # missing or corrupt: nothing finished to keep
            return False

    def _save_weights(self, name: str, state: dict):
        if self.dist.is_main:
            atomic_save(state, self.out_dir / name)

    def _write_history(self):
        if self.dist.is_main:
            atomic_write_csv(pd.DataFrame(self.history), self.out_dir / "history.csv", index=False)

    def _report_skipped(self):
        counts = [row["skipped_clips"] for row in self.history if "skipped_clips" in row]
        if any(counts) and self.dist.is_main:
            warnings.warn(f"{self.out_dir}: training clips that could not be loaded were skipped; per epoch "
                          f"{', '.join(map(str, counts))} (history.csv column skipped_clips)")

    def _log_progress(self, lr: float):
        mean = float(self.loss_sums["loss"]) / self.batch
        if not math.isfinite(mean):
            raise FloatingPointError(f"training diverged: mean loss {mean} in epoch {self.epoch + 1} "
                                     f"at step {self.global_step}")
        self._bar.set_postfix(loss=f"{mean:.4f}", lr=f"{lr:.2e}")

    def _close_bar(self):
        bar = getattr(self, "_bar", None)
        if bar is not None:
            bar.close()
            self._bar = None


def _class_name(obj) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _config_of(model):
    """The model's config dataclass (``model.cfg``) as a dict, None when it has none."""
    cfg = getattr(model, "cfg", None)
    return dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type) else None


def _jsonable(value):
    """``value`` as it reads back from JSON (tuples become lists, unknown objects strings)."""
    return json.loads(json.dumps(value, default=str))


def _read_json(path: Path):
    """The parsed JSON object in ``path``, None when it is missing or unreadable."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _json_with(path: Path, keys) -> bool:
    value = _read_json(path)
    return value is not None and all(k in value for k in keys)


def _csv_rows(path: Path, n: int) -> bool:
    try:
        return len(pd.read_csv(path)) == n
    except (OSError, ValueError):  # missing, empty (EmptyDataError is a ValueError) or garbled
        return False


def _loadable(path: Path) -> bool:
    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return False
    return True


def _identity_differences(now: dict, stored: dict, skip=()) -> dict:
    """``{field: (now, stored)}`` between two run identities; train-config fields by name, ignoring
    `RESUMABLE_CHANGES` and the keys in ``skip``."""
    diffs = {}
    a, b = now.get("config") or {}, stored.get("config") or {}
    for k in sorted(set(a) | set(b)):
        if k not in RESUMABLE_CHANGES and a.get(k) != b.get(k):
            diffs[k] = (a.get(k), b.get(k))
    for k in now:
        if k != "config" and k not in skip and now.get(k) != stored.get(k):
            diffs[k] = (now.get(k), stored.get(k))
    return diffs


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
