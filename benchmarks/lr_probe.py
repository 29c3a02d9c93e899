"""Short learning-rate probe: train one registry classifier for a few epochs on the embedded dataset
at each given lr (one process each, in parallel) and print the eval mAP per epoch.

    python benchmarks/lr_probe.py --model dass_small --lrs 1e-4 3e-4 1e-3 --out runs/lr_probe
"""
import argparse
import json
import multiprocessing as mp
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def _run(args):
    model, lr, train, batch, workers, size, out, overrides = args
    from dasslib.experiments.common import norm_stats, prepare_data, train_classifier

    paths = prepare_data("data", size, seed=0)
    stats = norm_stats(paths)
    _, metrics = train_classifier(f"{out}/{model}_lr{lr:g}", dict(name=model, **overrides), paths, stats,
                                  dict(train, lr=lr), dict(batch_size=batch, num_workers=workers))
    return model, lr, metrics


def _worker(job, queue):
    queue.put(_run(job))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="dass_small")
    ap.add_argument("--overrides", default="{}", help="JSON create() overrides")
    ap.add_argument("--lrs", nargs="+", type=float, default=[1e-4, 3e-4, 1e-3])
    ap.add_argument("--train", default='{"epochs": 2, "warmup_steps": 50, "warmup_every": 1, "wa": false, '
                    '"progress": false, "lrscheduler_start": 3}', help="JSON TrainConfig fields (lr is set per run)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--size", default="gpu")
    ap.add_argument("--out", default="runs/lr_probe")
    a = ap.parse_args()
    from dasslib.experiments.common import norm_stats, prepare_data

    norm_stats(prepare_data("data", a.size, seed=0))  # data and stats once, before the workers start
    jobs = [(a.model, lr, json.loads(a.train), a.batch, a.workers, a.size, a.out, json.loads(a.overrides)) for lr in a.lrs]
    results = {}
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(job, queue)) for job in jobs]  # not daemonic: data loader workers
    for p in procs:
        p.start()
    for _ in procs:
        model, lr, metrics = queue.get()
        results[lr] = metrics["mAP"]
        print(json.dumps(dict(model=model, lr=lr, **{k: round(v, 4) for k, v in metrics.items()})), flush=True)
    for p in procs:
        p.join()
    for lr in a.lrs:
        path = f"{a.out}/{a.model}_lr{lr:g}/history.csv"
        if os.path.exists(path):
            print(path); print(open(path).read())
    print("BEST_LR", max(results, key=results.get))


if __name__ == "__main__":
    main()
