"""SS2D's cross-merge + out-norm kernel against inductor's fused torch form, and its tile variants.

At DASS-Small's four stage shapes (10 s clips, B=32 by default: D x H x W = 96 x 256 x 32 ...
768 x 32 x 4), fp32 scan outputs in, the compute dtype (bf16) out. Reports ms (L2 flushed before
each call), GB/s over the bytes the merge must move (four fp32 directions read, one output written)
and the share of a device copy's rate measured in the same run; checks each variant against the
float64 formulation first.

    python -m benchmarks.bench_merge --csv merge.csv                 # default tiles and inductor
    python -m benchmarks.bench_merge --csv merge.csv --tune          # + tile / warp variants
    python -m benchmarks.bench_merge --csv merge.csv --smoke         # CPU (TRITON_INTERPRET=1), tiny
"""
import argparse
import csv
import os
import sys

import torch

from dasslib.bench.timing import kernel_ms
from dasslib.scans.ss2d_merge import launch_merge_norm, merge_tiles, ss2d_merge_norm_reference

STAGES = {"stage1": (96, 256, 32), "stage2": (192, 128, 16), "stage3": (384, 64, 8), "stage4": (768, 32, 4)}
SMOKE = {"tiny": (12, 8, 6)}
FIELDS = ["device", "torch", "commit", "stage", "batch", "D", "H", "W", "variant", "tiles", "ms", "GBps",
          "pct_copy", "rel_err"]


def variants(d, h, w, tune, ys_bytes=4):
    """(label, tiles or None for inductor) to time at one shape."""
    out = [("kernel default", merge_tiles(d, h, w, ys_bytes=ys_bytes)), ("inductor", None)]
    if tune:
        for elements in (4096, 8192, 16384):
            out.append((f"elements {elements}", merge_tiles(d, h, w, elements=elements)))
        for max_bw in (4, 16):
            out.append((f"max_bw {max_bw}", merge_tiles(d, h, w, max_bw=max_bw, ys_bytes=ys_bytes)))
        bd, bh, bw, warps = merge_tiles(d, h, w, ys_bytes=ys_bytes)
        for wp in (4, 8, 16):
            if wp != warps:
                out.append((f"warps {wp}", (bd, bh, bw, wp)))
    seen, unique = set(), []
    for label, tiles in out:
        if tiles not in seen:
            seen.add(tiles)
            unique.append((label, tiles))
    return unique


def copy_gbps(device, small):
    n = (1 << 20) if small else (1 << 28)
    src = torch.randn(n // 4, device=device)
    dst = torch.empty_like(src)
    return 2 * src.numel() * 4 / (kernel_ms(lambda: dst.copy_(src), device) * 1e-3) / 1e9


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--csv", required=True)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--tune", action="store_true", help="also time tile / warp variants")
    ap.add_argument("--smoke", action="store_true", help="tiny shape on the CPU (TRITON_INTERPRET=1)")
    ap.add_argument("--ys-dtype", default="float32", choices=["float32", "bfloat16"],
                    help="the scan outputs' dtype (SS2D's fused inference writes the compute dtype)")
    ap.add_argument("--commit", default=os.environ.get("DASSLIB_COMMIT", ""))
    args = ap.parse_args(argv)
    device = torch.device("cpu" if args.smoke else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_merge needs CUDA (or --smoke with TRITON_INTERPRET=1)")
    shapes, batch = (SMOKE, 2) if args.smoke else (STAGES, args.batch)
    gbps_copy = copy_gbps(device, args.smoke)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device={name} torch={torch.__version__} copy {gbps_copy:.0f} GB/s")
    rows = []
    for stage, (d, h, w) in shapes.items():
        g = torch.Generator(device=device).manual_seed(0)
        ys = torch.randn(batch, 4, d, h * w, generator=g, device=device).to(getattr(torch, args.ys_dtype))
        wt = torch.randn(d, generator=g, device=device)
        bs = torch.randn(d, generator=g, device=device)
        want = ss2d_merge_norm_reference(ys[:2].double(), wt.double(), bs.double(), 1e-5, h, w)
        dtype = torch.float32 if args.smoke else torch.bfloat16
        out = torch.empty((batch, d, h, w), dtype=dtype, device=device)
        moved = ys.numel() * ys.element_size() + out.numel() * out.element_size()
        ref = torch.compile(ss2d_merge_norm_reference, dynamic=False) if device.type == "cuda" else \
            ss2d_merge_norm_reference
        for label, tiles in variants(d, h, w, args.tune, ys.element_size()):
            if tiles is None:
                fn = lambda: ref(ys, wt, bs, 1e-5, h, w, dtype)                                # noqa: E731
            else:
                fn = lambda t=tiles: launch_merge_norm(ys, wt, bs, 1e-5, h, w, out, tiles=t)  # noqa: E731
            got = fn()[:2].double()
            err = ((got - want).norm() / want.norm()).item()
            ms = kernel_ms(fn, device)
            gb = moved / (ms * 1e-3) / 1e9
            row = dict(device=name, torch=torch.__version__, commit=args.commit, stage=stage, batch=batch, D=d,
                       H=h, W=w, variant=label, tiles="x".join(map(str, tiles)) if tiles else "",
                       ms=round(ms, 4), GBps=round(gb, 1), pct_copy=round(100 * gb / gbps_copy, 1),
                       rel_err=f"{err:.1e}")
            rows.append(row)
            print(f"{stage} D={d} {h}x{w} {label:16s} {row['tiles']:14s} {ms:8.3f} ms {gb:7.0f} GB/s "
                  f"{row['pct_copy']:5.1f}% copy  rel err {err:.1e}")
            if err > (5e-3 if dtype == torch.bfloat16 else 1e-5):
                sys.exit(f"{stage} {label}: rel err {err:.1e} against float64")
    tmp = args.csv + ".tmp"
    with open(tmp, "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=FIELDS)
        wr.writeheader()
        wr.writerows(rows)
    os.replace(tmp, args.csv)
    print(f"wrote {args.csv} ({len(rows)} rows)")


if __name__ == "__main__":
    main()
