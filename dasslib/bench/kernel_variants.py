"""Timing a hand-written kernel's tile variants against inductor's compiled torch form (used by
benchmarks/bench_merge.py and benchmarks/bench_stem.py): each variant is checked against a reference first,
then timed with the L2 flushed before each call; a row gives ms, GB/s over the bytes the operation must move,
and the share of a device copy's rate measured in the same run."""
from __future__ import annotations

import argparse
import csv
import functools
import io
import os

import torch

from dasslib.atomic import atomic_write_text
from dasslib.bench.timing import kernel_ms

__all__ = ["kernel_bench_parser", "bench_device", "copy_gbps", "unique_variants", "time_variants", "write_rows"]


def kernel_bench_parser(description: str) -> argparse.ArgumentParser:
    """The options every kernel benchmark takes: --csv, --batch, --tune, --smoke, --commit."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--csv", required=True)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--tune", action="store_true", help="also time tile / warp variants")
    ap.add_argument("--smoke", action="store_true", help="tiny shape on the CPU (TRITON_INTERPRET=1)")
    ap.add_argument("--commit", default=os.environ.get("DASSLIB_COMMIT", ""))
    return ap


def bench_device(args, script: str):
    """(device, its name, copy GB/s) for a kernel benchmark's parsed ``args``: CUDA, or the CPU under
    --smoke; exits with a message when CUDA is missing. Prints the line every log starts with."""
    device = torch.device("cpu" if args.smoke else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"{script} needs CUDA (or --smoke with TRITON_INTERPRET=1)")
    gbps = copy_gbps(device, args.smoke)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device={name} torch={torch.__version__} copy {gbps:.0f} GB/s", flush=True)
    return device, name, gbps


def copy_gbps(device, small: bool = False) -> float:
    """A device copy's rate in GB/s, counting read + write (256 MiB of fp32; 4 MiB when ``small``)."""
    n = (1 << 20) if small else (1 << 28)
    src = torch.randn(n // 4, device=device)
    dst = torch.empty_like(src)
    return 2 * src.numel() * 4 / (kernel_ms(lambda: dst.copy_(src), device) * 1e-3) / 1e9


def unique_variants(variants):
    """(label, tiles) pairs with repeated tiles dropped (the first label kept)."""
    seen, out = set(), []
    for label, tiles in variants:
        if tiles not in seen:
            seen.add(tiles)
            out.append((label, tiles))
    return out


def time_variants(variants, call, error, moved: int, device, gbps_copy: float, max_err: float, base: dict,
                  prefix: str = "") -> list[dict]:
    """Rows for ``variants`` ((label, tiles or None)): ``call(tiles)`` runs one (None: the torch form) and
    returns its output, ``error(output)`` its relative error against the reference, ``moved`` the bytes the
    operation must move. Exits with a message when a variant's error passes ``max_err``; ``base`` holds the
    columns shared by every row."""
    rows = []
    for label, tiles in variants:
        fn = functools.partial(call, tiles)
        err = error(fn())
        ms = kernel_ms(fn, device)
        gb = moved / (ms * 1e-3) / 1e9
        row = dict(base, variant=label, tiles="x".join(map(str, tiles)) if tiles else "", ms=round(ms, 4),
                   GBps=round(gb, 1), pct_copy=round(100 * gb / gbps_copy, 1), rel_err=f"{err:.1e}")
        rows.append(row)
        print(f"{prefix}{label:18s} {row['tiles']:14s} {ms:8.3f} ms {gb:7.0f} GB/s {row['pct_copy']:5.1f}% copy  "
              f"rel err {err:.1e}", flush=True)
        if err > max_err:
            raise SystemExit(f"{prefix}{label}: rel err {err:.1e} against the reference (limit {max_err:.0e})")
    return rows


def write_rows(path, fields, rows) -> None:
    """``rows`` (dicts) as a CSV with header ``fields``, written atomically."""
    buf = io.StringIO()
    wr = csv.DictWriter(buf, fieldnames=fields)
    wr.writeheader()
    wr.writerows(rows)
    atomic_write_text(buf.getvalue(), path)
