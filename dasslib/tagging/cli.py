"""``python -m dasslib tag``: the command line of :func:`dasslib.tagging.tag`."""
import argparse
import sys

import torch
import yaml

from ..data.fbank import AUDIOSET_MEAN, AUDIOSET_STD

__all__ = ["build_parser", "main", "run"]

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def _override(text):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    value = yaml.safe_load(value)
    return key, tuple(value) if isinstance(value, list) else value


def build_parser(parser=None):
    """The ``tag`` arguments, added to ``parser`` (a new one when None)."""
    p = parser or argparse.ArgumentParser(prog="python -m dasslib tag")
    p.description = ("Tag audio files, folders or AudioSet-style json datafiles with a classifier: top-k "
                     "labels per file, and with --timeline label scores over time, events and a PNG.")
    p.add_argument("paths", nargs="+", help="audio files, folders (searched recursively) or .json datafiles")
    p.add_argument("--model", default="dass_small", help="registry name (default dass_small)")
    p.add_argument("--checkpoint", help="weights: a dasslib checkpoint or an official release")
    p.add_argument("--labels", help="label csv (index,mid,display_name); default: classes named by index")
    p.add_argument("--set", dest="overrides", action="append", type=_override, default=[], metavar="KEY=VALUE",
                   help="model config override, e.g. --set depths=[2,2,8,2] (repeatable)")
    p.add_argument("--top-k", type=int, default=5, help="labels listed per file (default 5)")
    p.add_argument("--timeline", action="store_true", help="label scores over time, events and a PNG per file")
    p.add_argument("--hop", type=float, default=1.0, help="timeline step in seconds (default 1)")
    p.add_argument("--threshold", type=float, default=0.5, help="event threshold on the score (default 0.5)")
    p.add_argument("--min-duration", type=float, default=1.0, help="shortest event in seconds (default 1)")
    p.add_argument("--plot-top", type=int, default=10, help="classes in the timeline PNG (default 10)")
    p.add_argument("--out", default="tags", help="output folder for the CSV and PNG files (default ./tags)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    p.add_argument("--dtype", choices=sorted(_DTYPES), default="bf16", help="CUDA autocast dtype (default bf16)")
    p.add_argument("--max-pass-seconds", type=float, default=None,
                   help="longest single pass (default: what fits in CUDA memory; 600 s on the CPU)")
    p.add_argument("--overlap-seconds", type=float, default=10.0,
                   help="context on each side of a chunk when a recording runs in chunks (default 10)")
    p.add_argument("--norm-mean", type=float, default=AUDIOSET_MEAN, help="fbank mean the model was trained with")
    p.add_argument("--norm-std", type=float, default=AUDIOSET_STD, help="fbank std the model was trained with")
    p.add_argument("--lean", choices=("auto", "on", "off"), default="auto",
                   help="the memory-lean DASS path: auto (long passes), on, off (default auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _report(result):
    out, err = sys.stdout, sys.stderr
    ok = result.files[result.files.status == "ok"]
    for row in ok.itertuples():
        print(f"{row.file}: {row.duration_s:.1f} s, {row.mode}, {row.seconds:.2f} s", file=out)
    if len(result.clips):
        print(result.clips[["file", "rank", "label", "score"]].to_string(index=False, float_format="%.3f"), file=out)
    for row in result.files[result.files.status == "error"].itertuples():
        print(f"error: {row.file}: {row.error}", file=err)


def main(argv=None):
    """``python -m dasslib tag`` with ``argv``; see :func:`run`."""
    return run(build_parser().parse_args(argv))


def run(args):
    """Tag what the parsed ``args`` name; exit status 0 when every file was tagged, 1 when any
    failed (the others are still tagged and written)."""
    from .api import tag

    result = tag(args.paths, args.model, args.checkpoint, args.labels, timeline=args.timeline, hop=args.hop,
                 top_k=args.top_k, threshold=args.threshold, min_duration=args.min_duration,
                 overrides=dict(args.overrides), device=args.device, dtype=_DTYPES[args.dtype],
                 max_pass_seconds=args.max_pass_seconds, overlap_seconds=args.overlap_seconds,
                 norm_mean=args.norm_mean, norm_std=args.norm_std, out_dir=args.out, plot_top=args.plot_top,
                 progress=False if args.quiet else None,
                 lean={"auto": "auto", "on": True, "off": False}[args.lean])
    _report(result)
    for path in result.written:
        print(f"wrote {path}")
    failed = int((result.files.status == "error").sum())
    if failed:
        print(f"{failed} of {len(result.files)} file(s) could not be tagged", file=sys.stderr)
    return 1 if failed else 0
