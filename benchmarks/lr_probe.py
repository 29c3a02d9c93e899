"""Learning-rate and warm-up sweep: train one registry classifier for a few epochs on the embedded dataset at
each (lr, warm-up) pair, one process each (``--parallel`` at a time), and write every run's per-epoch history to
one CSV and its learning curves to one PNG.

    python -m benchmarks.lr_probe --model dass_small --lrs 3e-5 1e-4 3e-4 --warmups 100 1000 \\
        --csv results/gpu/lr_sweep/dass_small.csv --png results/gpu/lr_sweep/dass_small.png

Columns: model, lr (the peak lr), warmup_steps, epoch, train_loss, eval_loss, mAP, mAUC, ... (`history.csv` of
each run, its own lr column renamed lr_at_epoch_end; with the per-stage gradient norms and activation
statistics of `dasslib.train.diagnostics`),
plus collapsed (eval mAUC within 0.01 of 0.5 at the last epoch: constant outputs). ``--smoke`` runs a tiny
model on the small ``ci`` set on the CPU (what the test suite runs).
"""
import argparse
import itertools
import json
import multiprocessing as mp
from pathlib import Path

# diagnostics_every: per-stage gradient norms every 25 steps and activation statistics (logit_std: collapse)
# at each epoch end, as history columns (dasslib.train.diagnostics), to see why a setting collapses
TRAIN = dict(epochs=4, warmup_every=1, wa=False, progress=False, lrscheduler_start=10, lrscheduler_step=5,
             diagnostics_every=25)
SMOKE = dict(model="dass_small", overrides=dict(depths=[1, 1, 1, 1], dims=[8, 16, 32, 64]), size="ci",
             train=dict(epochs=1, device="cpu"), batch=8, workers=0, lrs=[1e-3], warmups=[2])


def run_dir(out, model, lr, warmup) -> Path:
    return Path(out) / f"{model}_lr{lr:g}_wu{warmup}"


def _run(job):
    """Train one (lr, warm-up) point; returns its folder."""
    from dasslib.experiments.common import norm_stats, prepare_data, train_classifier

    paths = prepare_data(job["data_root"], job["size"], seed=0)
    folder = run_dir(job["out"], job["model"], job["lr"], job["warmup"])
    train = dict(TRAIN, **job["train"], lr=job["lr"], warmup_steps=job["warmup"])
    train_classifier(folder, dict(name=job["model"], **job["overrides"]), paths, norm_stats(paths), train,
                     dict(batch_size=job["batch"], num_workers=job["workers"]), audio=job["audio"] or None)
    return folder


def collect(out, model, lrs, warmups):
    """Every run's history in one table (`dasslib.experiments.common.read_histories`; runs without a history
    are left out): model, lr, warmup_steps, the history's columns (its lr: lr_at_epoch_end), collapsed."""
    import pandas as pd

    from dasslib.experiments.common import read_histories

    points = list(itertools.product(lrs, warmups))
    hist = read_histories({i: run_dir(out, model, lr, warmup) for i, (lr, warmup) in enumerate(points)})
    if hist.empty:
        return pd.DataFrame()
    last = hist.groupby("run").tail(1).set_index("run")   # each run's last epoch; mAUC ~ 0.5: constant outputs
    collapsed = (last["mAUC"] - 0.5).abs() < 0.01 if "mAUC" in last else pd.Series(False, index=last.index)
    run = hist.pop("run")
    hist = hist.rename(columns={"lr": "lr_at_epoch_end"})  # lr: the run's peak lr
    hist.insert(0, "warmup_steps", [points[i][1] for i in run])
    hist.insert(0, "lr", [points[i][0] for i in run])
    hist.insert(0, "model", model)
    hist["collapsed"] = run.map(collapsed).astype(bool)
    return hist


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="dass_small")
    ap.add_argument("--overrides", default="{}", help="JSON create() overrides")
    ap.add_argument("--lrs", nargs="+", type=float, default=[1e-4, 3e-4, 1e-3])
    ap.add_argument("--warmups", nargs="+", type=int, default=[100], help="warm-up steps")
    ap.add_argument("--train", default="{}", help="JSON TrainConfig fields over the sweep's defaults")
    ap.add_argument("--audio", default="{}",
                    help='JSON AudioConf fields for both splits, e.g. \'{"target_length": 256}\' (shorter inputs)')
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--parallel", type=int, default=3, help="runs at a time (one process each)")
    ap.add_argument("--size", default="gpu")
    ap.add_argument("--data-root", default="data")
    ap.add_argument("--out", default="runs/lr_probe")
    ap.add_argument("--csv", default=None)
    ap.add_argument("--png", default=None)
    ap.add_argument("--smoke", action="store_true", help="tiny model, ci data, CPU, one point")
    a = ap.parse_args(argv)
    if a.smoke:
        a.model, a.size, a.batch, a.workers = SMOKE["model"], SMOKE["size"], SMOKE["batch"], SMOKE["workers"]
        a.lrs, a.warmups, a.parallel = SMOKE["lrs"], SMOKE["warmups"], 1
        overrides, train = SMOKE["overrides"], SMOKE["train"]
    else:
        overrides, train = json.loads(a.overrides), json.loads(a.train)
    from dasslib.atomic import atomic_write_csv
    from dasslib.experiments.common import norm_stats, prepare_data

    norm_stats(prepare_data(a.data_root, a.size, seed=0))  # data and stats once, before the runs start
    audio = {} if a.smoke else json.loads(a.audio)
    jobs = [dict(model=a.model, lr=lr, warmup=wu, train=train, batch=a.batch, workers=a.workers, size=a.size,
                 audio=audio, data_root=a.data_root, out=a.out, overrides=overrides)
            for lr, wu in itertools.product(a.lrs, a.warmups)]
    if a.parallel <= 1:
        for job in jobs:
            _run(job)
    else:  # plain processes, not a Pool: its daemonic workers could not start DataLoader workers
        ctx = mp.get_context("spawn")
        for i in range(0, len(jobs), a.parallel):
            procs = [ctx.Process(target=_run, args=(job,)) for job in jobs[i:i + a.parallel]]
            for p in procs:
                p.start()
            for p in procs:
                p.join()
            failed = [job["lr"] for p, job in zip(procs, jobs[i:i + a.parallel]) if p.exitcode != 0]
            if failed:
                raise SystemExit(f"runs at lr {failed} failed (their folders under {a.out} keep their state)")
    table = collect(a.out, a.model, a.lrs, a.warmups)
    if a.csv:
        atomic_write_csv(table, a.csv, index=False)
    if a.png and len(table):
        import matplotlib.pyplot as plt

        from dasslib.atomic import atomic_write_bytes
        from dasslib.display import figure_png
        from dasslib.experiments.common import plot_learning_curves

        hist = table.assign(run=[f"lr {lr:g}, warm-up {wu}" for lr, wu in zip(table["lr"], table["warmup_steps"])])
        fig = plot_learning_curves(hist)
        atomic_write_bytes(figure_png(fig), a.png)
        plt.close(fig)
    last = table.groupby(["lr", "warmup_steps"]).tail(1)
    print(last[[c for c in ("lr", "warmup_steps", "epoch", "train_loss", "mAP", "mAUC", "collapsed")
                if c in last]].to_string(index=False))
    return table


if __name__ == "__main__":
    main()
