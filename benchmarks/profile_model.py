"""Where a model's GPU time goes: torch.profiler kernel table of a few calls (eager or fast path).

    python -m benchmarks.profile_model --model dass_small --batch 32 --mode inference --fast compile
        [--top 40] [--out table.txt]

Warms up (compiles), then profiles ``--iters`` calls and prints the CUDA kernels sorted by total
device time, with the share of the profiled device time each takes (``--out`` also writes it).
Uses bf16 autocast, random weights and 10 s inputs like benchmarks/bench_models.py.
"""
import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.bench_models import MODELS, build
from dasslib.bench import make_step


def kernel_table(step, iters=5, top=40, title=""):
    """torch.profiler table of ``iters`` calls of ``step`` (warmed up by the caller): CUDA kernels by
    total device time, with their share, ms per call and launches per call."""
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            step()
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if e.device_time_total > 0]
    total = sum(e.device_time_total for e in events)
    events.sort(key=lambda e: -e.device_time_total)
    lines = [f"{title}: {total / iters / 1e3:.3f} ms of kernels per call "
             f"({sum(e.count for e in events) / iters:.0f} launches)",
             f"{'share':>6} {'ms/call':>8} {'calls':>6}  kernel"]
    for e in events[:top]:
        lines.append(f"{100 * e.device_time_total / total:5.1f}% {e.device_time_total / iters / 1e3:8.3f} "
                     f"{e.count // iters:6d}  {e.key[:150]}")
    return "\n".join(lines)


def report(text, out=None):
    """Print a table and, with ``out``, write it there too."""
    print(text)
    if out:
        with open(out, "w") as f:
            f.write(text + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="dass_small", choices=sorted(MODELS))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--mode", default="inference", choices=("inference", "train"))
    ap.add_argument("--fast", default="compile", choices=("off", "compile", "graphs", "auto"))
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    device = torch.device("cuda")
    m, frames, mel = build(args.model, device)
    x = torch.randn(args.batch, frames, mel, device=device)
    fast = "compile" if args.mode == "train" and args.fast == "auto" else args.fast
    step = make_step(m, args.mode, x, dtype=torch.bfloat16, fast=fast)
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    report(kernel_table(step, args.iters, args.top, f"{args.model} {args.mode} B={args.batch} fast={fast}"),
           args.out)


if __name__ == "__main__":
    main()
