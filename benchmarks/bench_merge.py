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

import torch

from dasslib.bench.kernel_variants import bench_device, kernel_bench_parser, time_variants, unique_variants, write_rows
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
    return unique_variants(out)


def main(argv=None):
    ap = kernel_bench_parser(__doc__.split("\n")[0])
    ap.add_argument("--ys-dtype", default="float32", choices=["float32", "bfloat16"],
                    help="the scan outputs' dtype (SS2D's fused inference writes the compute dtype)")
    args = ap.parse_args(argv)
    device, name, gbps_copy = bench_device(args, "bench_merge")
    shapes, batch = (SMOKE, 2) if args.smoke else (STAGES, args.batch)
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

        def call(tiles):
            if tiles is None:
                return ref(ys, wt, bs, 1e-5, h, w, dtype)
            return launch_merge_norm(ys, wt, bs, 1e-5, h, w, out, tiles=tiles)

        def error(got):
            got = got[:2].double()
            return ((got - want).norm() / want.norm()).item()

        base = dict(device=name, torch=torch.__version__, commit=args.commit, stage=stage, batch=batch, D=d, H=h, W=w)
        rows += time_variants(variants(d, h, w, args.tune, ys.element_size()), call, error, moved, device, gbps_copy,
                              5e-3 if dtype == torch.bfloat16 else 1e-5, base, prefix=f"{stage} D={d} {h}x{w} ")
    write_rows(args.csv, FIELDS, rows)
    print(f"wrote {args.csv} ({len(rows)} rows)")


if __name__ == "__main__":
    main()
