"""Where a scan call's GPU time goes, kernel by kernel: torch.profiler table of the Triton scan and, when
built, mamba-ssm's kernel, forward and forward+backward, on the same inputs.

    python -m benchmarks.scan_kernels --shapes dass --dtypes fp32,bf16 [--mamba-ext DIR] [--out t.txt]

Shapes and inputs are benchmarks/bench_scan.py's. Every kernel the call launches is listed (the
scan kernels, and the zero-fills, casts and reductions around them) with its mean device time
per call, so that a gap between two backends can be put on a kernel before it is worked on.
"""
import argparse

import torch

from benchmarks import bench_scan as bs
from benchmarks.profile_model import kernel_table, report


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
                    for _ in range(3):          # compiles and warm-up
                        fn()
                    lines.append("\n" + kernel_table(fn, args.iters, 12, f"{name} {dname} {backend} {mode}"))
                for t in ins:
                    if t is not None:
                        t.grad = None
    report("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
