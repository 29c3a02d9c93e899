"""Multi-GPU check: the same training run under torchrun on K GPUs and on one GPU.

    python -m scripts.ddp_check --gpus 2 --out results/gpu/ddp

Trains DASS-Small from scratch on the embedded "gpu" dataset (generated on first use) through
``dasslib.train.cli``: once with ``torchrun --nproc_per_node K`` (``batch`` clips per GPU) and once on
one GPU with the same global batch (K x ``batch``). Writes both runs under ``--out``, a summary CSV
(``ddp_check.csv``: world size, epoch, seconds, loss and eval metrics per epoch) and prints it. The
two runs see the same data in the same order; on the GPU they differ by floating-point reduction
order (bf16 autocast, atomics in the scan backward), so the metrics agree closely, not bit for bit.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from dasslib.experiments.common import classifier_config, norm_stats, prepare_data

REPO = Path(__file__).resolve().parents[1]


def run(world: int, config: dict, cfg_path: Path) -> float:
    cfg_path.write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "dasslib.train.cli", "--config", str(cfg_path)]
    if world > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(world),
               "-m", "dasslib.train.cli", "--config", str(cfg_path)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=REPO, text=True, capture_output=True)
    seconds = time.perf_counter() - start
    log = Path(config["out_dir"]) / "console.log"
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"world {world} failed (rc {proc.returncode}), see {log}:\n{proc.stderr[-3000:]}")
    return seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gpus", type=int, default=2)
    ap.add_argument("--out", default="results/gpu/ddp")
    ap.add_argument("--data-root", default="data")
    ap.add_argument("--data-size", default="gpu")
    ap.add_argument("--model", default="dass_small")
    ap.add_argument("--batch", type=int, default=24, help="clips per GPU in the torchrun run")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workers", type=int, default=6)
    ap.add_argument("--overrides", default="{}", help="model create overrides as JSON (e.g. a tiny model)")
    ap.add_argument("--cpu", action="store_true", help="run on the CPU (gloo processes): checks the script")
    args = ap.parse_args()
    if not args.cpu and torch.cuda.device_count() < args.gpus:
        raise SystemExit(f"needs {args.gpus} GPUs, found {torch.cuda.device_count()} (--cpu to try on the CPU)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # repo-relative where possible (the runs start in the repo): the written configs name no machine path
    paths = {k: os.path.relpath(v, REPO) if Path(v).resolve().is_relative_to(REPO) else v
             for k, v in prepare_data(args.data_root, args.data_size).items()}
    stats = norm_stats(paths)
    train = dict(epochs=args.epochs, lr=1e-4, warmup_steps=100, warmup_every=1, wa=False, progress=False, seed=0,
                 device="cpu" if args.cpu else "cuda")
    rows = []
    for world, batch in ((args.gpus, args.batch), (1, args.gpus * args.batch)):
        run_dir = out / f"world{world}"
        config = classifier_config(run_dir, {"name": args.model, **json.loads(args.overrides)}, paths, stats, train,
                                   dict(batch_size=batch, num_workers=args.workers))
        seconds = run(world, config, out / f"world{world}.yaml")
        hist = pd.read_csv(run_dir / "history.csv")
        for _, h in hist.iterrows():
            rows.append(dict(world_size=world, batch_per_gpu=batch, global_batch=world * batch, epoch=int(h["epoch"]),
                             epoch_s=h["time_s"], train_loss=h["train_loss"], eval_loss=h["eval_loss"], mAP=h["mAP"],
                             mAUC=h["mAUC"], wall_s=seconds))
    df = pd.DataFrame(rows)
    meta = dict(date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                device="cpu" if args.cpu else torch.cuda.get_device_name(0),
                gpus=0 if args.cpu else torch.cuda.device_count(), torch=torch.__version__,
                model=args.model, data_size=args.data_size, epochs=args.epochs)
    df.to_csv(out / "ddp_check.csv", index=False)
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    print(json.dumps(meta))
    print(df.round(4).to_string(index=False))


if __name__ == "__main__":
    main()
