"""`fit`: the one training loop of every notebook (supervised, distillation, masked pretraining),
single-process or under ``torchrun`` (DistributedDataParallel), resumable mid-epoch.

Position bookkeeping: the state after ``batch`` optimizer steps of epoch ``epoch`` (0-based). When
``batch`` equals the number of batches, the epoch's training is done and its end (evaluation, weight
averaging, history row) is pending; afterwards the position moves to ``(epoch + 1, 0)``. A checkpoint
stores the position together with everything that the remaining computation depends on (weights,
optimizer, scheduler, scaler, RNG states of every rank, running sums), so resuming from it replays
the rest of the run exactly as if it had never stopped.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from ..atomic import atomic_write_json
from ..fast import compile_for_training, resolve_train_fast
from ..runtime import autocast, resolve_device, training_device
from . import distributed
from .averaging import WeightAverager
from .checkpoint import load_checkpoint
from .config import TrainConfig
from .diagnostics import EpochDiagnostics, activation_stats, grad_norms
from .evaluation import Evaluation
from .interrupt import StopRequest
from .objectives import build_objective, split_batch
from .optim import build_lr_scheduler, build_optimizer
from .records import RESULT_FILES, RUN_FILE, RunRecords, _class_name, _config_of, _fmt, _jsonable, _loadable
from .resume import CHECKPOINT_VERSION, ResumableState, _Interrupted
from .sampler import ResumableSampler, rebuild_loader, sampler_from_loader
from .seeding import make_generator, seed_everything, use_deterministic_algorithms

__all__ = ["fit", "FitResult", "StepInfo", "CHECKPOINT_VERSION", "RUN_FILE", "RESULT_FILES"]


@dataclass
class StepInfo:
    """Passed to ``on_step`` after every optimizer step: 0-based ``epoch``, ``batch`` (steps done in the
    epoch), ``global_step`` (steps done in all), ``lr`` of the step just taken."""

    epoch: int
    batch: int
    global_step: int
    lr: float


@dataclass
class FitResult:
    """``history``: one row per epoch; ``final``: eval metrics of the last epoch's weights; ``wa``: eval
    metrics of the averaged weights (None without averaging or evaluation); ``best``: ``{"epoch", metric}``."""

    history: pd.DataFrame
    final: dict
    wa: dict | None
    best: dict
    out_dir: Path
    stopped: dict | None = None  # what ended the run: `dasslib.train.plateau.describe_stop`

    @property
    def metrics(self) -> dict:
        """The reported metrics: the averaged model's when weight averaging ran, else the final model's."""
        return self.wa if self.wa is not None else self.final


def fit(model: nn.Module, train_loader, eval_loader=None, cfg: TrainConfig | None = None,
        out_dir: str | Path = "runs/train", teacher: nn.Module | None = None, task: str = "multilabel",
        resume: bool = True, objective=None, on_step: Callable[[StepInfo], None] | None = None,
        overwrite: bool = False, run_info: dict | None = None) -> FitResult:
    """Train ``model`` and return a `FitResult`; files go to ``out_dir``.

    ``train_loader`` / ``eval_loader``: DataLoaders over map-style datasets yielding ``(x (B, T, F), y)``
    (``y``: ``(B, C)`` multi-hot, or class indices / one-hot for ``task="multiclass"``; pretraining may yield
    ``x`` alone). The loop rebuilds the training loader around a `ResumableSampler` that reproduces its
    sampling mode (sequential, shuffled or weighted) so that the data order is a function of the seed and
    the epoch. ``teacher``: runs in eval mode under ``no_grad`` on the same inputs (distillation losses).
    ``objective``: ``None`` (from ``cfg``), ``"classify"``, ``"pretrain"`` or an objective object.
    ``resume``: continue from ``out_dir/checkpoints/last.pt`` when it exists (a finished run is returned
    as stored, without training; result files found missing or unreadable are rewritten from the
    checkpoint, with a warning). ``resume=False`` starts over, replacing an unfinished run of the same
    settings. A fresh start refuses to replace results (``RESULT_FILES``; with ``resume=False`` also
    ``last.pt``) of a different or unknown run (see ``run.json``), and with ``resume=False`` those of a
    finished run, unless ``overwrite=True``. ``run_info``: JSON-able settings outside ``cfg``
    that define the run (the CLI passes its whole run config), recorded and compared with the rest.
    ``on_step(StepInfo)`` runs after every optimizer step.

    Files (all written atomically): ``run.json`` (the run's identity: ``cfg``, task, objective, model
    and teacher classes, the model's config, dataset sizes), ``checkpoints/last.pt`` (full state,
    checksummed, written each epoch, every
    ``cfg.checkpoint_every_steps`` steps / ``cfg.checkpoint_every_minutes`` and on SIGINT/SIGTERM),
    ``history.csv``, ``metrics.json``, ``model_final.pt``, ``model_wa.pt`` and ``best_model.pt`` (weights).
    On return the model holds the averaged weights when ``cfg.wa`` is on, else the last epoch's.
    """
    return _Trainer(model, train_loader, eval_loader, cfg or TrainConfig(), out_dir, teacher, task,
                    objective, on_step, run_info).run(resume, overwrite)


class _Trainer(ResumableState, RunRecords, Evaluation):
    """The loop: set-up, the driver, the training steps and the epoch ends; saving and resuming
    (`ResumableState`), files and progress (`RunRecords`) and evaluation (`Evaluation`) are its mixins."""

    def __init__(self, model, train_loader, eval_loader, cfg, out_dir, teacher, task, objective, on_step,
                 run_info=None):
        if not isinstance(cfg, TrainConfig):
            raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
        self.cfg, self.task, self.on_step = cfg, task, on_step
        self.out_dir = Path(out_dir)
        self.ckpt_path = self.out_dir / "checkpoints" / "last.pt"
        if objective is None or isinstance(objective, str):
            cfg_obj = cfg if objective is None else TrainConfig.from_dict({**cfg.to_dict(), "objective": objective})
            objective = build_objective(cfg_obj, task)
        self.objective = objective
        if self.objective.needs_teacher and teacher is None:
            raise ValueError(f"loss {cfg.loss!r} distills from a teacher: pass teacher=")
        self.dist = distributed.init_distributed(resolve_device(cfg.device).type)
        self.device = training_device(cfg.device, self.dist.local_rank if self.dist.enabled else None)
        self.amp_dtype = _amp_dtype(cfg.amp, self.device)
        self.model = model.to(self.device)
        self.teacher = None
        if teacher is not None:
            self.teacher = teacher.to(self.device).eval().requires_grad_(False)

        # data: the loop owns the sampling order
        self.sampler = sampler_from_loader(train_loader, self.dist.world_size, self.dist.rank, cfg.seed)
        self.loader_gen = torch.Generator()
        self.train_loader = rebuild_loader(train_loader, self.sampler, self.loader_gen)
        self.items_per_batch = train_loader.batch_size or 1
        self.n_batches = len(self.train_loader)
        if self.n_batches == 0:
            raise ValueError("the training loader yields no batch (dataset smaller than a batch with drop_last?)")
        names = getattr(self.objective, "metric_names", None)
        if cfg.patience is not None and eval_loader is None:
            raise ValueError(f"patience={cfg.patience} stops on the eval metric {cfg.main_metric!r}: pass an "
                             "eval_loader, or patience=None")
        if eval_loader is not None and names is not None and cfg.main_metric not in names:
            raise ValueError(f"main_metric {cfg.main_metric!r} is not an evaluation metric of this objective "
                             f"(it reports {', '.join(names)})")
        self.eval_loader, self.eval_total = eval_loader, None
        if eval_loader is not None and self.dist.enabled:
            n = len(eval_loader.dataset)
            es = ResumableSampler(n, shuffle=False, num_replicas=self.dist.world_size, rank=self.dist.rank)
            self.eval_loader, self.eval_total = rebuild_loader(eval_loader, es, make_generator(cfg.seed)), n

        # optimization
        self.optimizer = build_optimizer(self.model, cfg)
        self.scheduler = build_lr_scheduler(self.optimizer, cfg, self.n_batches)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.diagnostics = EpochDiagnostics(cfg.diagnostics_every)
        self._diag_x = None     # the evaluation batch the activation statistics are taken on
        self.net = self.objective.module(self.model)
        self.eval_net = self.net
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.net, device_ids=ids,
                                               find_unused_parameters=cfg.find_unused_parameters)
        # the training step's forward (and so its backward) compiled and, on one CUDA device, replayed as
        # CUDA graphs (under DDP "auto" only compiles: its gradient hooks run between the graph's pieces);
        # evaluation stays eager
        fast = resolve_train_fast(cfg.fast, self.device)
        if fast == "graphs" and self.dist.enabled and cfg.fast == "auto":
            fast = "compile"
        self.net = compile_for_training(self.net, fast, self.device)
        self.graphs = fast == "graphs"

        # state
        self.epoch = self.batch = self.global_step = 0
        self.loss_sums: dict[str, torch.Tensor] = {}
        self.epoch_time = 0.0
        self.history: list[dict] = []
        self.best: dict = {}
        self.averager = WeightAverager()
        self.finished, self.final, self.wa = False, {}, None
        self.rng = None  # per-rank RNG states at the last consistent point
        self._final_weights = None  # set once training is over (the model may then hold averaged weights)
        self._dirty = False  # True while a step is under way (the model and the counters disagree)
        self._last_save = time.monotonic()
        self.identity = _jsonable({
            "config": cfg.to_dict(), "task": task, "objective": type(self.objective).__name__,
            "model": _class_name(model), "model_config": _config_of(model),
            "teacher": None if teacher is None else _class_name(teacher),
            "train_items": len(train_loader.dataset), "batch_size": self.items_per_batch,
            "batches_per_epoch": self.n_batches,
            "eval_items": None if eval_loader is None else len(eval_loader.dataset),
            "run_info": run_info,
        })

    # ------------------------------------------------------------------ driver
    def run(self, resume: bool, overwrite: bool = False) -> FitResult:
        if resume and self.ckpt_path.is_file():
            self._restore(load_checkpoint(self.ckpt_path, map_location="cpu"))
        else:
            if not overwrite:
                self._refuse_to_clobber(restart=not resume)
            seed_everything(self.cfg.seed + self.dist.rank)
            self._snapshot_rng()
        if self.dist.is_main:
            atomic_write_json(self.identity, self.out_dir / RUN_FILE, indent=2)
        if self.cfg.deterministic:
            use_deterministic_algorithms()
        if self.finished:
            if self.dist.is_main:
                self._repair_outputs()
            self._load_wa_weights()
            if (self.dist.is_main and self.cfg.wa and self.averager.count
                    and not _loadable(self.out_dir / "model_wa.pt")):
                self._save_weights("model_wa.pt", self.model.state_dict())
                warnings.warn(f"{self.out_dir / 'model_wa.pt'} was missing or unreadable: "
                              "rewritten from the checkpoint")
            distributed.barrier()
            return self._result()
        with StopRequest() as stop:
            self.stop = stop
            try:
                while self.epoch < self.cfg.epochs and not self._plateau().stop:
                    if self.batch < self.n_batches:
                        self._train_epoch()
                    self._end_epoch()
                    self._check_stop()
                self._finish()
                self._check_stop()
            except _Interrupted:
                self._save()
                distributed.barrier()
                if stop.requested:
                    stop.reraise()
                raise KeyboardInterrupt from None  # another rank was asked to stop
            except KeyboardInterrupt:
                if self._dirty or self.dist.enabled:
                    warnings.warn("interrupted where the state cannot be saved consistently (inside a step, or "
                                  "on one rank only): the last checkpoint is kept as it was")
                else:
                    self._save()
                raise
            except FloatingPointError:
                raise  # diverged: the last checkpoint (finite weights) is kept
            except Exception:
                self._save_after_error()
                raise
            finally:
                self._close_bar()
        return self._result()

    # ------------------------------------------------------------------ training
    def _train_epoch(self):
        cfg = self.cfg
        self.sampler.set_epoch(self.epoch)
        self.sampler.set_start(self.batch * self.items_per_batch)
        self.loader_gen.manual_seed(cfg.seed * 100_003 + self.epoch * 1_009 + self.dist.rank)
        dataset = self.train_loader.dataset
        if callable(getattr(dataset, "set_epoch", None)):
            dataset.set_epoch(self.epoch)
        flags = self._skip_flags()
        if flags is not None and self.batch == 0:
            flags.zero_()  # a new epoch: count its skipped clips afresh
        self.net.train()
        self._bar = tqdm(total=self.n_batches, initial=self.batch, leave=False, dynamic_ncols=True,
                         desc=f"epoch {self.epoch + 1}/{cfg.epochs}", disable=not (cfg.progress and self.dist.is_main))
        started = time.monotonic()
        it = iter(self.train_loader)
        while self.batch < self.n_batches:
            batch = next(it)
            self._dirty = True
            lr = self._step(batch)
            self.epoch_time += time.monotonic() - started
            started = time.monotonic()
            self._dirty = False
            self._snapshot_rng()
            self._bar.update(1)
            if self.batch % cfg.log_every == 0 or self.batch == self.n_batches:
                self._log_progress(lr)
            if self.on_step is not None:
                self.on_step(StepInfo(self.epoch, self.batch, self.global_step, lr))
            self._maybe_checkpoint()
        del it
        self._close_bar()

    def _step(self, batch) -> float:
        x, y = split_batch(batch)
        x = x.to(self.device, non_blocking=True)
        y = None if y is None else y.to(self.device, non_blocking=True)
        if self.graphs:   # the previous step's graph outputs may be overwritten from here on
            torch.compiler.cudagraph_mark_step_begin()
        with autocast(self.device, self.amp_dtype):
            out = self.net(x)
            t_out = None
            if self.teacher is not None:
                with torch.no_grad():
                    t_out = self.teacher(x)
            loss, parts = self.objective.loss(out, y, t_out)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
        if self.diagnostics.due(self.global_step + 1):
            unscaled = self.cfg.grad_clip is not None or not self.scaler.is_enabled()
            self.diagnostics.add(grad_norms(self.model, 1.0 if unscaled else self.scaler.get_scale()))
        if self.cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        lr = self.optimizer.param_groups[0]["lr"]
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        for name, value in {"loss": loss.detach(), **parts}.items():
            total = self.loss_sums.get(name, torch.zeros((), dtype=torch.float64, device=self.device))
            self.loss_sums[name] = total + value.double()
        self.batch += 1
        self.global_step += 1
        return lr

    def _diagnostics_row(self) -> dict:
        """The epoch's gradient norms and the activation statistics of a fixed evaluation batch
        (``TrainConfig.diagnostics_every``; empty when off); resets the gradient-norm averages."""
        if not self.cfg.diagnostics_every:
            return {}
        row = self.diagnostics.row()
        self.diagnostics.reset()
        if self.eval_loader is not None and self.cfg.objective == "classify":
            if self._diag_x is None:
                with torch.random.fork_rng(devices=[]):    # a new loader iterator draws a seed: keep
                    x, _ = split_batch(next(iter(self.eval_loader)))   # training's random stream as it was
                self._diag_x = x[:16].to(self.device)
            row.update(activation_stats(self.model, self._diag_x,
                                        lambda: autocast(self.device, self.amp_dtype)))
        return row

    def _train_means(self) -> dict:
        """Mean training loss (and its parts) over the epoch's steps and over ranks."""
        out = {}
        for k, total in sorted(self.loss_sums.items()):
            if self.dist.enabled:
                total = total.clone()
                torch.distributed.all_reduce(total)
                total = total / self.dist.world_size
            out[f"train_{k}"] = float(total) / self.batch
        return out

    # ------------------------------------------------------------------ epoch end
    def _end_epoch(self):
        cfg = self.cfg
        started = time.monotonic()
        metrics = self._evaluate() if self.eval_loader is not None else {}
        last_lr = self.cfg.lr * self.scheduler.lr_lambdas[0](self.global_step - 1)
        skipped = self._skipped_items()
        row = {"epoch": self.epoch + 1, "step": self.global_step, "lr": last_lr, **self._train_means(),
               **metrics, **({} if skipped is None else {"skipped_clips": len(skipped)}),
               **self._diagnostics_row(), "time_s": self.epoch_time + time.monotonic() - started}
        if metrics and cfg.main_metric not in metrics:
            raise ValueError(f"main_metric {cfg.main_metric!r} is not among the evaluation metrics "
                             f"({', '.join(sorted(metrics))})")
        best = self.best
        if cfg.main_metric in metrics and self._improves(metrics[cfg.main_metric]):
            best = {"epoch": self.epoch + 1, cfg.main_metric: metrics[cfg.main_metric]}
            self._save_weights("best_model.pt", self.model.state_dict())
        # commit
        self._dirty = True
        wa_lo, wa_hi = cfg.wa_epoch_range
        if cfg.wa and wa_lo <= self.epoch + 1 <= wa_hi:
            self.averager.add(self.model.state_dict())
        self.best = best
        self.history.append(row)
        self.epoch, self.batch, self.loss_sums, self.epoch_time = self.epoch + 1, 0, {}, 0.0
        self._snapshot_rng()
        self._dirty = False
        self._save()
        self._write_history()
        if self.dist.is_main and cfg.progress:
            tqdm.write("  ".join(f"{k}={_fmt(v)}" for k, v in row.items()))

    def _skip_flags(self):
        """The training dataset's ``skipped_flags`` (items it replaced, e.g. `AudioDataset(bad_clips="skip")`),
        None when it keeps none."""
        flags = getattr(self.train_loader.dataset, "skipped_flags", None)
        return flags if isinstance(flags, torch.Tensor) else None

    def _skipped_items(self):
        """Indices of the training items skipped this epoch on any rank (collective under DDP); None when
        the dataset does not skip."""
        flags = self._skip_flags()
        if flags is None:
            return None
        if self.dist.enabled:
            t = flags.to(self.device, torch.uint8)
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
            flags = t.bool().cpu()
        return flags.nonzero().flatten().tolist()

    # ------------------------------------------------------------------ end of training
    def _finish(self):
        self.final = {k: v for k, v in self.history[-1].items()
                      if k not in ("epoch", "step", "lr", "time_s") and not k.startswith("train_")}
        # checkpoints keep the last epoch's weights, whatever the model holds from here on
        self._final_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self._save_weights("model_final.pt", self._final_weights)
        if self.cfg.wa and self.averager.count:
            self._load_wa_weights()
            self._save_weights("model_wa.pt", self.model.state_dict())
            self.wa = self._evaluate() if self.eval_loader is not None else None
        elif self.cfg.wa and self.dist.is_main:
            warnings.warn(f"the run stopped at epoch {len(self.history)}, before weight averaging starts "
                          f"(wa_start={self.cfg.wa_start}): no model_wa.pt, the metrics are the last epoch's")
        self.finished = True
        self._save()
        if self.dist.is_main:
            self._write_metrics()
        self._report_skipped()
        distributed.barrier()

    def _load_wa_weights(self):
        if self.cfg.wa and self.averager.count:
            self.model.load_state_dict(self.averager.average())

    def _result(self) -> FitResult:
        return FitResult(pd.DataFrame(self.history), dict(self.final),
                         None if self.wa is None else dict(self.wa), dict(self.best), self.out_dir,
                         self.stopped if self.finished else None)


def _amp_dtype(amp: str, device: torch.device):
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}[amp]


