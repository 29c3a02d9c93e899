"""Tagging demo: a long synthetic recording with known events, tagged with --timeline, scored.

    python -m scripts.tagging_demo --out results/gpu/tagging --minutes 30          # GPU
    python -m scripts.tagging_demo --smoke --out /tmp/tagging_smoke                # CPU, tiny, ~1 min
    python -m scripts.tagging_demo --render-only --minutes 120 &                     # render while training

1. The model: ``--checkpoint`` (with ``--labels`` and the fbank ``--norm-mean/--norm-std`` it was
   trained with), or else DASS-Small trained here from scratch on the embedded "gpu" dataset with
   the 04_niah gpu profile's recipe (``params/gpu/04_niah.yaml``; ``--epochs`` to change).
2. The recording: ``--minutes`` of phrases rendered from the embedded dataset's eval-split note
   banks (:func:`dasslib.data.events.render_event_recording`); ground truth -> ``truth_events.csv``.
3. ``dasslib.tag(..., timeline=True)`` on it: clips.csv, timeline.csv, events.csv and the PNG.
4. Event-level precision / recall against the ground truth at ``--threshold`` (``event_scores.csv``)
   and at other thresholds (``threshold_sweep.csv``).
5. ``summary.json``: device, date, commit, wall times, peak CUDA memory, scores.

Audio and training runs go to ``--work`` (default data/tagging_demo, git-ignored), never to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd
import soundfile as sf
import torch
import yaml

import dasslib
from dasslib.atomic import atomic_write, atomic_write_csv, atomic_write_json
from dasslib.data import read_label_csv
from dasslib.data.events import render_event_recording
from dasslib.data.synth import SAMPLE_RATE
from dasslib.experiments.common import norm_stats, prepare_data, train_classifier
from dasslib.notebook import run_metadata
from dasslib.tagging.scoring import event_prf
from dasslib.tagging.timeline import find_events

REPO = Path(__file__).resolve().parents[1]

SMOKE_MODEL = dict(depths=(1, 1), dims=(8, 16))
SWEEP = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="results/gpu/tagging", help="CSV, PNG and JSON results")
    p.add_argument("--work", default="data/tagging_demo", help="audio and training runs (not committed)")
    p.add_argument("--minutes", type=float, default=30.0, help="length of the synthetic recording")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", help="trained weights (skip training); needs --labels")
    p.add_argument("--labels", help="label csv of the checkpoint's classes")
    p.add_argument("--norm-mean", type=float, help="fbank mean the checkpoint was trained with")
    p.add_argument("--norm-std", type=float, help="fbank std the checkpoint was trained with")
    p.add_argument("--data-root", default="data", help="where the embedded dataset is generated")
    p.add_argument("--data-size", default="gpu", help="embedded dataset size (ci, gpu)")
    p.add_argument("--train-json"), p.add_argument("--eval-json"), p.add_argument("--label-csv")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the 04 gpu profile's)")
    p.add_argument("--hop", type=float, default=1.0, help="timeline step in seconds")
    p.add_argument("--threshold", type=float, default=0.5, help="event threshold")
    p.add_argument("--min-duration", type=float, default=1.0, help="shortest event in seconds")
    p.add_argument("--min-overlap", type=float, default=0.5, help="matching: overlap / shorter event")
    p.add_argument("--device", default="auto")
    p.add_argument("--render-only", action="store_true",
                   help="only render the recording and its ground truth into --work (a later run reuses them)")
    p.add_argument("--smoke", action="store_true",
                   help="CPU-sized run: tiny DASS, 1 epoch, embedded ci data, --minutes 0.5 unless given")
    args = p.parse_args(argv)
    if args.smoke:
        args.data_size = "ci"
        args.minutes = args.minutes if "--minutes" in (argv or sys.argv) else 0.5
    if args.checkpoint and not args.labels:
        p.error("--checkpoint needs --labels")
    return args


def train_model(args, device):
    """Train DASS-Small (tiny with --smoke) on the embedded data -> (checkpoint, labels, (mean, std), metrics)."""
    paths = prepare_data(args.data_root, args.data_size, args.train_json, args.eval_json, args.label_csv,
                         seed=args.seed)
    stats = norm_stats(paths)
    profile = yaml.safe_load((REPO / "params/gpu/04_niah.yaml").read_text())
    train = dict(profile["train"], device=device.type)
    loader = dict(batch_size=profile["batch_size"], num_workers=profile["num_workers"])
    model = dict(name="dass_small")
    if args.smoke:
        train.update(epochs=1, warmup_steps=1, fast="off")
        loader = dict(batch_size=4, num_workers=0)
        model.update(SMOKE_MODEL)
    if args.epochs is not None:
        train["epochs"] = args.epochs
    run_dir = Path(args.work) / "train_dass_small"
    _, metrics = train_classifier(run_dir, model, paths, stats, train, loader)
    best = run_dir / "best_model.pt"
    return (best if best.is_file() else run_dir / "model_final.pt"), paths["label_csv"], stats, metrics


def recording(args, work):
    """(wav path, ground-truth events) of the --minutes recording: rendered into ``work`` once (the wav and
    its truth csv, each written atomically, the truth last); an earlier render of the same length and seed
    is reused."""
    stem = f"recording_{args.minutes:g}min_seed{args.seed}"      # "0.5min": no with_suffix
    wav, truth_csv = work / f"{stem}.wav", work / f"{stem}.truth.csv"
    if wav.is_file() and truth_csv.is_file():
        return wav, pd.read_csv(truth_csv)
    audio, truth = render_event_recording(args.minutes * 60, seed=args.seed)
    work.mkdir(parents=True, exist_ok=True)
    atomic_write(wav, lambda f: sf.write(f, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV"))
    atomic_write_csv(truth, truth_csv, index=False)
    return wav, truth


def main(argv=None):
    args = parse_args(argv)
    if args.render_only:
        wav, truth = recording(args, Path(args.work))
        print(f"{wav}: {len(truth)} events")
        return None
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    out, work = Path(args.out), Path(args.work)
    times = {}

    begin = time.perf_counter()
    if args.checkpoint:
        checkpoint, labels, metrics = args.checkpoint, args.labels, None
        stats = (args.norm_mean, args.norm_std)
        if None in stats:
            raise SystemExit("--checkpoint needs --norm-mean and --norm-std (the training fbank statistics)")
    else:
        checkpoint, labels, stats, metrics = train_model(args, device)
    times["model_s"] = time.perf_counter() - begin

    begin = time.perf_counter()
    wav, truth = recording(args, work)
    atomic_write_csv(truth, out / "truth_events.csv", index=False)
    times["render_s"] = time.perf_counter() - begin

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    begin = time.perf_counter()
    result = dasslib.tag(wav, "dass_small", checkpoint, labels, timeline=True, hop=args.hop,
                         threshold=args.threshold, min_duration=args.min_duration,
                         overrides=SMOKE_MODEL if args.smoke else None, device=device,
                         norm_mean=stats[0], norm_std=stats[1], out_dir=out, progress=False)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    times["tag_s"] = time.perf_counter() - begin
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    if (result.files.status != "ok").any():
        raise SystemExit(f"tagging failed: {result.files.error.iloc[0]}")

    scores = event_prf(result.events, truth, args.min_overlap)
    atomic_write_csv(scores, out / "event_scores.csv", index=False)
    mids = read_label_csv(labels).mids
    timeline = result.timeline.iloc[:, 3:].to_numpy()             # columns: file, start_s, end_s, classes
    duration = float(result.files.duration_s.iloc[0])
    sweep = []
    for threshold in SWEEP:
        found = find_events(result.timeline.start_s.to_numpy(), timeline, args.hop, threshold,
                            args.min_duration, duration)
        found["mid"] = [mids[c] for c in found.class_index]
        row = event_prf(found, truth, args.min_overlap).iloc[-1]
        sweep.append(dict(threshold=threshold, detected=row.detected, matched=row.matched,
                          precision=row.precision, recall=row.recall, f1=row.f1))
    sweep = pd.DataFrame(sweep)
    atomic_write_csv(sweep, out / "threshold_sweep.csv", index=False)

    overall = scores.iloc[-1]
    summary = dict(
        run_metadata(dtype=torch.bfloat16 if device.type == "cuda" else torch.float32, device=device),
        command="python -m scripts.tagging_demo " + " ".join(sys.argv[1:] if argv is None else argv),
        checkpoint=str(checkpoint), train_metrics=metrics, norm_stats=list(stats), recording_minutes=args.minutes,
        reference_events=int(len(truth)), detected_events=int(overall.detected), threshold=args.threshold,
        min_duration_s=args.min_duration, min_overlap=args.min_overlap, hop_s=args.hop,
        precision=float(overall.precision), recall=float(overall.recall), f1=float(overall.f1),
        mode=result.files["mode"].iloc[0], tag_file_seconds=float(result.files.seconds.iloc[0]),
        peak_cuda_memory_gib=None if peak is None else peak / 2**30, wall_seconds=times,
        outputs=sorted(p.name for p in out.iterdir()))
    atomic_write_json(summary, out / "summary.json", indent=1, default=str)
    print(sweep.to_string(index=False, float_format="%.3f"))
    print(json.dumps({k: summary[k] for k in ("device", "mode", "precision", "recall", "f1",
                                              "peak_cuda_memory_gib", "wall_seconds")}, indent=1, default=str))
    return summary


if __name__ == "__main__":
    main()
