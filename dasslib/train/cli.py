"""Command line for `dasslib.train.fit`, on one process or under ``torchrun``::

    python -m dasslib.train.cli --config run.yaml [--set train.lr=2e-4 ...] [--no-resume] [--overwrite]
    torchrun --nproc_per_node 4 -m dasslib.train.cli --config run.yaml

The YAML file holds ``out_dir``, ``task`` (multilabel | multiclass), ``train`` (`TrainConfig` fields),
``builder`` (``"module:function"``, default `dasslib.train.builders.build_audioset`) and the sections its
builder reads.
A builder takes the whole config dict and returns ``dict(model=..., train_loader=..., eval_loader=...,
teacher=None)``.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

import yaml

from .builders import build_audioset, build_model  # noqa: F401 (run configs name cli:build_audioset)
from .config import TrainConfig

DEFAULT_BUILDER = "dasslib.train.builders:build_audioset"
_TOP_LEVEL = {"out_dir", "task", "train", "builder"}


def load_run_config(path: str | Path, overrides: list[str] = ()) -> dict:
    """Read a run YAML and apply ``section.key=value`` overrides (values parsed as YAML)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no run config at {path}")
    config = yaml.safe_load(path.read_text()) or {}
    if not isinstance(config, dict):
        raise ValueError(f"{path}: the run config must be a mapping, got {type(config).__name__}")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} must look like section.key=value")
        node, *rest = key.split(".")
        target = config
        for part in [node, *rest][:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ValueError(f"override {item!r}: {part!r} is not a section")
        target[key.split(".")[-1]] = yaml.safe_load(value)
    if "out_dir" not in config:
        raise ValueError(f"{path}: the run config needs an out_dir")
    return config


def resolve_builder(spec: str):
    """``"package.module:function"`` -> the function."""
    module, sep, name = spec.partition(":")
    if not sep:
        raise ValueError(f"builder {spec!r} must look like 'package.module:function'")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot load builder {spec!r}: {exc}") from exc


def run(config: dict, resume: bool = True, overwrite: bool = False):
    """Build everything a run config names and train; returns the `FitResult`. The run config (except
    ``train`` and ``out_dir``) goes into the run identity (``run_info`` of `fit`); ``overwrite`` as in `fit`."""
    import torch.distributed as dist

    from . import distributed
    from .loop import fit
    from .seeding import seed_everything

    cfg = TrainConfig.from_dict(config.get("train") or {})
    builder_spec = config.get("builder", DEFAULT_BUILDER)
    if builder_spec == DEFAULT_BUILDER:
        unknown = set(config) - _TOP_LEVEL - {"model", "teacher", "data", "loader"}
        if unknown:
            raise ValueError(f"unknown run config section(s): {sorted(unknown)}")
    seed_everything(cfg.seed)  # the same initial weights on every rank
    parts = resolve_builder(builder_spec)(config)
    try:
        result = fit(parts["model"], parts["train_loader"], parts.get("eval_loader"), cfg, config["out_dir"],
                     teacher=parts.get("teacher"), task=config.get("task", "multilabel"), resume=resume,
                     overwrite=overwrite, run_info={k: v for k, v in config.items() if k not in ("train", "out_dir")})
        if distributed.current().enabled:
            dist.barrier()  # no rank tears the group down while another is still in a collective
        return result
    finally:
        if distributed.current().enabled:
            dist.destroy_process_group()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dasslib.train.cli", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="run YAML")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config entry (repeatable), e.g. --set train.lr=2e-4")
    parser.add_argument("--no-resume", action="store_true",
                        help="start an unfinished run over (a finished or different one needs --overwrite)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace results of a different run in out_dir (or, with --no-resume, a finished one)")
    args = parser.parse_args(argv)
    config = load_run_config(args.config, args.set)
    result = run(config, resume=not args.no_resume, overwrite=args.overwrite)
    from .distributed import env_info

    if env_info().is_main:
        print(json.dumps({"out_dir": str(result.out_dir), "metrics": result.metrics, "best": result.best},
                         default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
