"""Where a scan call's GPU time goes, kernel by kernel: torch.profiler table of the Triton scan and, when
built, mamba-ssm's kernel, forward and forward+backward, on the same inputs.

    python -m benchmarks.scan_kernels --shapes dass --dtypes fp32,bf16 [--mamba-ext DIR] [--out t.txt]
                                      [--csv t.csv]
    python -m benchmarks.scan_kernels --table-csv t.txt t.csv    # a written table as CSV

Shapes and inputs are benchmarks/bench_scan.py's. Every kernel the call launches is listed (the
scan kernels, and the zero-fills, casts and reductions around them) with its mean device time
per call, so that a gap between two backends can be put on a kernel before it is worked on.
"""
import argparse
import csv
import re
import sys

import torch

from benchmarks import bench_scan as bs
from benchmarks.profile_model import kernel_table, report

CSV_FIELDS = ["shape", "dtype", "backend", "mode", "kernel", "ms_per_call", "calls", "share_pct"]
_TITLE = re.compile(r"^(\S+) (\S+) (\S+) (fwd\+bwd|fwd): ([\d.]+) ms of kernels per call \((\d+) launches\)")
_ROW = re.compile(r"^\s*([\d.]+)%\s+([\d.]+)\s+(\d+)\s+(.+)$")


def table_rows(text):
    """The tables of a written report as CSV rows: one per kernel (its name as the profiler gives it, cut at
    150 characters) and one ``(all)`` row per call with the total device time per call."""
    rows, head = [], None
    for line in text.splitlines():
        m = _TITLE.match(line)
        if m:
            shape, dtype, backend, mode, total, launches = m.groups()
            head = dict(shape=shape, dtype=dtype, backend=backend, mode=mode)
            rows.append(dict(head, kernel="(all)", ms_per_call=total, calls=launches, share_pct="100.0"))
            continue
        m = _ROW.match(line)
        if head and m:
            share, ms, calls, name = m.groups()
            rows.append(dict(head, kernel=name.strip(), ms_per_call=ms, calls=calls, share_pct=share))
    return rows


def write_csv(text, path):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        w.writerows(table_rows(text))


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--table-csv":
        with open(sys.argv[2]) as f:
            write_csv(f.read(), sys.argv[3])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default="dass")
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--mamba-ext", default=None)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--out", default=None)
    ap.add_argument("--csv", default=None, help="also write the tables as CSV (one row per kernel)")
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
    if args.csv:
        write_csv("\n".join(lines), args.csv)


if __name__ == "__main__":
    main()
