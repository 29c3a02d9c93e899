"""Where a scan call's GPU time goes, kernel by kernel: torch.profiler table of the Triton scan and, when
built, mamba-ssm's kernel, forward and forward+backward, on the same inputs.

    python -m benchmarks.scan_kernels --shapes dass --dtypes fp32,bf16 [--mamba-ext DIR] [--out t.txt]

Shapes and inputs are benchmarks/bench_scan.py's. Every kernel the call launches is listed (the
scan kernels, and the zero-fills, casts and reductions around them) with its mean device time
per call, so that a gap between two backends can be put on a kernel before it is worked on.
"""
import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks import bench_scan as bs


def kernel_table(fn, iters):
    """[(kernel name, us per call, launches per call)] of fn(), sorted by time."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            fn()
        torch.cuda.synchronize()
    rows = []
    for e in prof.key_averages():
        t = getattr(e, "device_time_total", None)
        if t is None:
            t = e.cuda_time_total
        if t > 0 and e.count > 0:
            rows.append((e.key, t / iters, e.count / iters))
    return sorted(rows, key=lambda r: -r[1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default="dass")
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--mamba-ext", default=None)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    device = torch.device("cuda")
    bs.MAMBA = bs.load_mamba(args.mamba_ext)
    backends = ["triton"] + (["mamba"] if bs.MAMBA is not None else [])
    lines = [f"device {torch.cuda.get_device_name(device)}, torch {torch.__version__}"]
    for name in args.shapes.split(","):
        sh = bs.SHAPES[name]
        for dname in args.dtypes.split(","):
            ins = bs.make_inputs(sh, bs.DTYPES[dname], device, requires_grad=True)
            for backend in backends:
                with torch.no_grad():
                    y = bs.scan_call(backend, ins)
                dy = torch.randn_like(y)

                def fwd():
                    with torch.no_grad():
                        bs.scan_call(backend, ins)

                def fwd_bwd():
                    bs.scan_call(backend, ins).backward(dy)

                for mode, fn in (("fwd", fwd), ("fwd+bwd", fwd_bwd)):
                    rows = kernel_table(fn, args.iters)
                    total = sum(r[1] for r in rows)
                    lines.append(f"\n{name} {dname} {backend} {mode}: {total:.1f} us of kernels per call")
                    lines += [f"  {us:9.1f} us  x{n:4.1f}  {k[:110]}" for k, us, n in rows[:12]]
                for t in ins:
                    if t is not None:
                        t.grad = None
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
