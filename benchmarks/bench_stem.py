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
import torch

from dasslib.bench.kernel_variants import bench_device, kernel_bench_parser, time_variants, unique_variants, write_rows
from dasslib.models.stem_kernel import launch_stem, stem_conv_norm_gelu_reference, stem_tiles

FIELDS = ["device", "torch", "commit", "batch", "T", "F", "C", "variant", "tiles", "ms", "GBps", "pct_copy",
          "rel_err"]


def variants(c, wo, tune, smoke=False):
    """(label, tiles or None for inductor) to time (under --smoke the corners of the grid only: the
    interpreter runs each)."""
    out = [("kernel default", stem_tiles(c, wo)), ("inductor", None)]
    if tune:
        for bw in (16, 128) if smoke else (16, 32, 64, 128):
            for warps in (1, 8) if smoke else (1, 2, 4, 8):
                if bw * 64 // (32 * warps) <= 128:          # at most 128 outputs per thread
                    out.append((f"bw {bw} warps {warps}", (bw, warps)))
        for bw, warps in ((32, 4),) if smoke else ((128, 8), (64, 4), (32, 4), (32, 2)):   # a (B, F, T) copy
            out.append((f"bw {bw} warps {warps} fT", (bw, warps, True)))
        # the convolution on the tensor cores, from the fbank as given or from a (B, F, T) copy
        for bw, warps in ((16, 1),) if smoke else ((128, 8), (128, 4), (64, 4), (256, 8), (64, 2)):
            out.append((f"bw {bw} warps {warps} dot", (bw, warps, False, True)))
        for bw, warps in ((32, 2),) if smoke else ((128, 8), (64, 4)):
            out.append((f"bw {bw} warps {warps} dot fT", (bw, warps, True, True)))
    return unique_variants(out)


def main(argv=None):
    args = kernel_bench_parser(__doc__.split("\n")[0]).parse_args(argv)
    device, name, gbps_copy = bench_device(args, "bench_stem")
    (b, t, f, c) = (2, 40, 16, 6) if args.smoke else (args.batch, 1024, 128, 48)
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

    def call(tiles):
        if tiles is None:
            return ref(x, w, cb, nw, nb, 1e-5, True, out_dtype)
        return launch_stem(x, w, cb, nw, nb, 1e-5, True, out, tiles=tiles)

    def error(got):
        return ((got.float() - want).norm() / want.norm()).item()

    base = dict(device=name, torch=torch.__version__, commit=args.commit, batch=b, T=t, F=f, C=c)
    rows = time_variants(variants(c, wo, args.tune, args.smoke), call, error, moved, device, gbps_copy, 1e-2, base)
    write_rows(args.csv, FIELDS, rows)
    print(f"wrote {args.csv} ({len(rows)} rows)")


if __name__ == "__main__":
    main()
