"""DASS's stem kernel (conv 3x3 s2 from the fbank's one channel + LayerNorm + GELU) against the stem's own
layers compiled by inductor, and its tile variants.

At DASS-Small's stem (10 s clips: a (B, 1024, 128) fbank -> (B, 48, 64, 512), B=32 by default), bf16 autocast
rounding, bf16 output. Reports ms (L2 flushed before each call), GB/s over the bytes the stage must move (the
fbank read once, the output written once) and the share of a device copy's rate measured in the same run;
checks each variant against the torch form first.

    python -m benchmarks.bench_stem --csv stem.csv                 # default tiles and inductor
    python -m benchmarks.bench_stem --csv stem.csv --tune          # + tile / warp variants
    python -m benchmarks.bench_stem --csv stem.csv --smoke         # CPU (TRITON_INTERPRET=1), tiny
"""
import argparse
import csv
import os
import sys

import torch

from benchmarks.bench_merge import copy_gbps
from dasslib.bench.timing import kernel_ms
from dasslib.models.stem_kernel import launch_stem, stem_conv_norm_gelu_reference, stem_tiles

FIELDS = ["device", "torch", "commit", "batch", "T", "F", "C", "variant", "tiles", "ms", "GBps", "pct_copy",
          "rel_err"]


def variants(c, wo, tune):
    """(label, tiles or None for inductor) to time."""
    out = [("kernel default", stem_tiles(c, wo)), ("inductor", None)]
    if tune:
        for bw in (16, 32, 64, 128):
            for warps in (1, 2, 4, 8):
                if bw * 64 // (32 * warps) <= 128:          # at most 128 outputs per thread
                    out.append((f"bw {bw} warps {warps}", (bw, warps)))
    seen, unique = set(), []
    for label, tiles in out:
        if tiles not in seen:
            seen.add(tiles)
            unique.append((label, tiles))
    return unique


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--csv", required=True)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--tune", action="store_true", help="also time tile / warp variants")
    ap.add_argument("--smoke", action="store_true", help="tiny shape on the CPU (TRITON_INTERPRET=1)")
    ap.add_argument("--commit", default=os.environ.get("DASSLIB_COMMIT", ""))
    args = ap.parse_args(argv)
    device = torch.device("cpu" if args.smoke else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_stem needs CUDA (or --smoke with TRITON_INTERPRET=1)")
    (b, t, f, c) = (2, 40, 16, 6) if args.smoke else (args.batch, 1024, 128, 48)
    gbps_copy = copy_gbps(device, args.smoke)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device={name} torch={torch.__version__} copy {gbps_copy:.0f} GB/s")
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(b, t, f, generator=g, device=device)
    w = torch.randn(c, 1, 3, 3, generator=g, device=device) / 3
    cb, nw, nb = (torch.randn(c, generator=g, device=device) for _ in range(3))
    # bf16 rounding as under autocast, bf16 out (the interpreter's bf16 store truncates: fp32 out there)
    out_dtype = torch.float32 if args.smoke else torch.bfloat16
    ho, wo = (f + 1) // 2, (t + 1) // 2
    out = torch.empty((b, c, ho, wo), dtype=out_dtype, device=device)
    want = stem_conv_norm_gelu_reference(x, w, cb, nw, nb, 1e-5, round_bf16=True).float()
    moved = x.numel() * x.element_size() + out.numel() * out.element_size()
    ref = (torch.compile(stem_conv_norm_gelu_reference, dynamic=False) if device.type == "cuda"
           else stem_conv_norm_gelu_reference)
    rows = []
    for label, tiles in variants(c, wo, args.tune):
        if tiles is None:
            fn = lambda: ref(x, w, cb, nw, nb, 1e-5, True, out_dtype)                    # noqa: E731
        else:
            fn = lambda tl=tiles: launch_stem(x, w, cb, nw, nb, 1e-5, True, out, tiles=tl)  # noqa: E731
        got = fn().float()
        err = ((got - want).norm() / want.norm()).item()
        ms = kernel_ms(fn, device)
        gb = moved / (ms * 1e-3) / 1e9
        row = dict(device=name, torch=torch.__version__, commit=args.commit, batch=b, T=t, F=f, C=c, variant=label,
                   tiles="x".join(map(str, tiles)) if tiles else "", ms=round(ms, 4), GBps=round(gb, 1),
                   pct_copy=round(100 * gb / gbps_copy, 1), rel_err=f"{err:.1e}")
        rows.append(row)
        print(f"{label:18s} {row['tiles']:8s} {ms:8.3f} ms {gb:7.0f} GB/s {row['pct_copy']:5.1f}% copy  "
              f"rel err {err:.1e}", flush=True)
        if err > 1e-2:
            sys.exit(f"{label}: rel err {err:.1e} against the torch form")
    tmp = args.csv + ".tmp"
    with open(tmp, "w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=FIELDS)
        wr.writeheader()
        wr.writerows(rows)
    os.replace(tmp, args.csv)
    print(f"wrote {args.csv} ({len(rows)} rows)")


if __name__ == "__main__":
    main()
