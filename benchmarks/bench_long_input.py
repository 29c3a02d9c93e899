"""Long inputs in one pass: time and peak memory of DASS-Small / DASS-Medium, lean vs plain path.

    python -m benchmarks.bench_long_input --csv results/gpu/long_input_<date>.csv --commit <hash>
        [--models dass_small dass_medium] [--lengths 3600 14400 28800 86400] [--paths lean plain]
    python -m benchmarks.bench_long_input --smoke --csv long_smoke.csv   # CPU, tiny models

``--append`` adds the rows to an existing CSV (e.g. one call per model, to keep each call short).

One row per (model, path, length): fits, seconds (median of --repeats forwards of a batch-1 random
fbank, after a warm-up at the first length), peak memory (CUDA ``max_memory_allocated`` during the
timed calls: weights + input + the forward; on the CPU the peak resident growth of a forked copy,
:func:`dasslib.host_memory.peak_growth`), GiB per hour of audio, the longest input predicted to fit
on this device for that path (:func:`dasslib.inference.max_length_that_fits`, from the per-frame
slope of its probes), and, at the first length both paths fit, the largest difference of the lean
path's logits and frame logits from the plain path's. A path stops at its first length that does
not fit (a row with fits=False and the predicted longest length). Random weights, 527 classes:
time and memory do not depend on the weights. bf16 autocast on CUDA, fp32 on the CPU.
"""
import argparse
import datetime
import os

import torch

from dasslib.data.frames import FRAMES_PER_SECOND
from dasslib.inference import InputTooLongError, max_length_that_fits, measure
from dasslib.models import create
from dasslib.runtime import cuda_autocast

DEFAULT_LENGTHS = (3600, 14400, 28800, 86400)   # 1 h, 4 h, 8 h, 24 h
SMOKE_LENGTHS = (20, 40)
SMOKE_CONFIG = dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64))
MEL = 128
FRAMES_PER_HOUR = 3600 * FRAMES_PER_SECOND


def _device_name(device):
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def _cpu_peak(model, frames, lean):
    """Peak resident growth (bytes) of one CPU forward (input included), measured in a fork."""
    from dasslib.host_memory import peak_growth

    def call():
        with torch.inference_mode():
            x = torch.randn(1, frames, MEL)
            model.forward_lean(x) if lean else model(x)
    got = peak_growth(call)
    return None if got is None else got["rss"]


def _check(model, frames, device, dtype):
    """Largest |lean - plain| of the logits and of the frame logits on one random input."""
    x = torch.randn(1, frames, MEL, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode(), cuda_autocast(device, dtype):
        xd = x.to(device)
        plain = model.forward_features(xd)
        out_plain = (model.forward_head(plain).float().cpu(), model.frame_head(plain, x.shape).float().cpu())
        del plain, xd
        lean = model.forward_features_lean(x)
        out_lean = (model.forward_head(lean).float().cpu(), model.frame_head(lean, x.shape).float().cpu())
        del lean
    return tuple((a - b).abs().max().item() for a, b in zip(out_lean, out_plain))


def _release(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def run(args):
    device = torch.device("cpu" if args.smoke else args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else None
    lengths = args.lengths or (SMOKE_LENGTHS if args.smoke else DEFAULT_LENGTHS)
    common = dict(device=_device_name(device), torch=torch.__version__, commit=args.commit,
                  date=datetime.date.today().isoformat(), dtype="bf16 autocast" if dtype else "fp32", batch=1)
    rows = []
    for name in args.models:
        torch.manual_seed(0)
        model = create(name, num_classes=527, **(SMOKE_CONFIG if args.smoke else {})).to(device).eval()
        fits_both = {}
        for path in args.paths:
            lean = path == "lean"
            try:
                fit = max_length_that_fits(model, MEL, device, dtype=dtype or torch.bfloat16, lean=lean,
                                           start_frames=args.probe_frames, min_frames=64)
                max_fit_s = fit.max_seconds
            except ValueError as err:   # a CPU where memory cannot be measured
                print(f"{name} {path}: no fit ({err})", flush=True)
                max_fit_s = None
            _release(device)
            for i, length in enumerate(lengths):
                frames = int(round(float(length) * FRAMES_PER_SECOND))
                row = dict(model=name, path=path, length_s=float(length), frames=frames, max_fit_s=max_fit_s)
                try:
                    r = measure(model, frames, device, num_mel_bins=MEL, dtype=dtype or torch.bfloat16,
                                warmup=1 if i == 0 else 0, repeats=args.repeats, lean=lean)
                    peak = r["peak_mem_bytes"]
                    if peak is None and device.type == "cpu":
                        peak = _cpu_peak(model, frames, lean)
                    row.update(fits=True, seconds=r["seconds"], peak_mem_gib=None if peak is None else peak / 2**30,
                               gib_per_hour=None if peak is None else peak / 2**30 / (frames / FRAMES_PER_HOUR),
                               note="")
                    fits_both.setdefault(frames, set()).add(path)
                except InputTooLongError as err:
                    row.update(fits=False, seconds=None, peak_mem_gib=None, gib_per_hour=None, note=str(err))
                rows.append(dict(row, **common))
                print({k: v for k, v in rows[-1].items() if k != "note"}, flush=True)
                _release(device)
                if not row["fits"]:
                    break
        both = [f for f, paths in sorted(fits_both.items()) if {"lean", "plain"} <= paths]
        if both:
            diff = _check(model, both[0], device, dtype)
            for row in rows:
                if row["model"] == name and row["path"] == "lean" and row["frames"] == both[0]:
                    row.update(max_abs_diff_logits=diff[0], max_abs_diff_frames=diff[1])
            print(f"{name}: lean vs plain at {both[0]} frames: logits {diff[0]:.3g}, frames {diff[1]:.3g}", flush=True)
        del model
        _release(device)
    import pandas as pd

    out = pd.DataFrame(rows)
    for col in ("max_abs_diff_logits", "max_abs_diff_frames"):
        if col not in out:
            out[col] = None
    os.makedirs(os.path.dirname(os.path.abspath(args.csv)), exist_ok=True)
    if args.append and os.path.exists(args.csv):
        out = pd.concat([pd.read_csv(args.csv), out], ignore_index=True)
    out.to_csv(args.csv, index=False)
    print(f"wrote {args.csv}")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--csv", required=True)
    ap.add_argument("--models", nargs="+", default=["dass_small", "dass_medium"])
    ap.add_argument("--lengths", nargs="+", type=float, default=None,
                    help="input lengths in seconds (default 3600 14400 28800 86400; --smoke: 20 40)")
    ap.add_argument("--paths", nargs="+", choices=("lean", "plain"), default=["lean", "plain"])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--probe-frames", type=int, default=8192,
                    help="longest probe of the longest-length prediction (default 8192 frames; on CUDA "
                         "the lean path is probed from dasslib.inference.LEAN_PROBE_FRAMES at least)")
    ap.add_argument("--commit", default="", help="the commit measured, written in every row")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny DASS models, lengths of seconds")
    ap.add_argument("--append", action="store_true", help="add the rows to an existing --csv (one model per call)")
    args = ap.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    main()
