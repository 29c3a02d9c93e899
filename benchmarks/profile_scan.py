"""Run one Triton scan call of a benchmark shape, for a profiler to look at.

    ncu --clock-control none --kernel-name regex:seq_fwd --launch-skip 2 --launch-count 2 \
        --section SpeedOfLight --section Occupancy --section WarpStateStats \
        --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section LaunchStats \
        python -m benchmarks.profile_scan --shape long --dtype fp32

The first ``--warmup`` calls compile the kernels and warm the caches (skip their launches with
``--launch-skip``: a "seq" forward with chunks is two launches, the chunk pre-pass and the output
pass); then ``--calls`` calls follow. Without a profiler it prints the median time of those calls
(CUDA events), so the same command shows what the profiled call costs. ``--set k=v`` overrides a
:class:`~dasslib.scans.triton_backend.TritonConfig` field (e.g. ``--set prefetch=1``).
"""
from __future__ import annotations

import argparse
import statistics

import torch

from benchmarks.bench_scan import DTYPES, SHAPES, make_inputs
from dasslib.bench.timing import time_step
from dasslib.scans.triton_backend import TritonConfig, pick_config, selective_scan_triton


def parse_overrides(items):
    """["prefetch=1", "fwd=seq"] -> {"prefetch": 1, "fwd": "seq"}, typed as TritonConfig's fields."""
    types = {f: type(v) for f, v in TritonConfig().__dict__.items()}
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in types:
            raise SystemExit(f"--set {item!r}: expected field=value with field one of {sorted(types)}")
        t = types[key]
        out[key] = (value.lower() in ("1", "true", "yes")) if t is bool else t(value)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="long")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    ap.add_argument("--backward", action="store_true", help="forward + backward instead of the forward")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--calls", type=int, default=1)
    ap.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE")
    ap.add_argument("--check", action="store_true",
                    help="first compare the forward output with the default config's (relative error)")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("profile_scan.py needs a CUDA device")
    dev = torch.device("cuda")
    shape = SHAPES[args.shape]
    u, delta, A, B, C, D, z, dtb = make_inputs(shape, DTYPES[args.dtype], dev, requires_grad=args.backward)
    cfg = pick_config(shape["batch"] * shape["dim"], shape["L"], shape["N"], dev)
    cfg = TritonConfig(**{**cfg.__dict__, **parse_overrides(args.set)})
    gy = torch.randn_like(u) if args.backward else None

    def call():
        if args.backward:
            y = selective_scan_triton(u, delta, A, B, C, D, z, dtb, True, config=cfg)
            torch.autograd.grad(y, [t for t in (u, delta, A, B, C, D, z, dtb) if t is not None], gy)
        else:
            with torch.no_grad():
                selective_scan_triton(u, delta, A, B, C, D, z, dtb, True, config=cfg)

    if args.check:
        with torch.no_grad():
            y = selective_scan_triton(u, delta, A, B, C, D, z, dtb, True, config=cfg).double()
            ref = selective_scan_triton(u, delta, A, B, C, D, z, dtb, True).double()
        print(f"check vs default config: rel err {((y - ref).norm() / ref.norm()).item():.2e}")
        del y, ref
    times = time_step(call, dev, warmup=args.warmup, repeats=args.calls).times_ms
    print(f"{args.shape} {args.dtype} {'fwd+bwd' if args.backward else 'fwd'} {cfg}: "
          f"median {statistics.median(times):.3f} ms over {len(times)} call(s) "
          f"({torch.cuda.get_device_name(dev)})")


if __name__ == "__main__":
    main()
