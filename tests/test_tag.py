"""Tagging recordings: the `python -m dasslib tag` command line, `dasslib.tag`, timelines of long
files (one pass and chunked), events, the hub entry points and the GPU demo's CPU-sized run."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import dasslib
from dasslib.__main__ import main as dasslib_main
from dasslib.data.events import render_event_recording
from dasslib.data.fbank import normalize_fbank, wav2fbank
from dasslib.data.synth import render_banks
from dasslib.models import create
from dasslib.tagging.features import recording_fbank
from dasslib.tagging.model import load_model
from dasslib.tagging.passes import plan_chunks
from dasslib.tagging.scoring import event_prf
from dasslib.tagging.timeline import bin_scores, find_events

REPO = Path(__file__).resolve().parents[1]
TINY = dict(depths=(1, 1), dims=(8, 16))
SET = ["--set", "depths=[1,1]", "--set", "dims=[8,16]"]
LABELS = "index,mid,display_name\n0,/m/a,Alpha\n1,/m/b,\"Beta, with comma\"\n2,/m/c,Gamma\n"


@pytest.fixture
def tiny(tmp_path):
    """A 3-class tiny DASS checkpoint and its label csv: dict(model, checkpoint, labels)."""
    torch.manual_seed(0)
    model = create("dass_small", num_classes=3, **TINY).eval()
    torch.save(model.state_dict(), tmp_path / "tiny.pt")
    (tmp_path / "labels.csv").write_text(LABELS)
    return dict(model=model, checkpoint=str(tmp_path / "tiny.pt"), labels=str(tmp_path / "labels.csv"))


def test_cli_on_a_folder_reports_the_corrupt_file_and_tags_the_others(tmp_path, tiny, wav_writer, tone, capsys):
    wav_writer("rec/a.wav", tone(440, 3.0))
    wav_writer("rec/sub/b.flac", np.stack([tone(880, 2.0, sr=44100)] * 2, axis=1), sr=44100)  # stereo, resampled
    (tmp_path / "rec" / "c.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio")
    (tmp_path / "rec" / "notes.txt").write_text("not listed: not an audio extension")
    out = tmp_path / "out"
    rc = dasslib_main(["tag", str(tmp_path / "rec"), "--checkpoint", tiny["checkpoint"], "--labels", tiny["labels"],
                       *SET, "--top-k", "2", "--out", str(out), "--quiet"])
    printed = capsys.readouterr()
    assert rc == 1
    assert "c.wav" in printed.err and "cannot read audio file" in printed.err and "1 of 3" in printed.err
    files = pd.read_csv(out / "files.csv")
    assert list(files.status) == ["ok", "error", "ok"] and files.file[1].endswith("c.wav")
    clips = pd.read_csv(out / "clips.csv")
    assert sorted({os.path.basename(f) for f in clips.file}) == ["a.wav", "b.flac"] and len(clips) == 4
    assert set(clips.label) <= {"Alpha", "Beta, with comma", "Gamma"} and clips.label.iloc[0] in printed.out
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]   # atomic writes leave no temporaries


def test_python_m_dasslib_prints_named_labels(tmp_path, tiny, wav_writer, tone):
    wav = wav_writer("one.wav", tone(300, 2.0))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    run = subprocess.run([sys.executable, "-m", "dasslib", "tag", wav, "--model", "dass_small", "--checkpoint",
                          tiny["checkpoint"], "--labels", tiny["labels"], *SET, "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "one pass" in run.stdout and "Gamma" in run.stdout and "Alpha" in run.stdout


def test_timeline_of_a_long_file_one_pass_and_chunked(tmp_path, tiny, wav_writer):
    seconds = 240
    rng = np.random.default_rng(0)
    wav = wav_writer("long.wav", 0.05 * rng.standard_normal(seconds * 16000))
    runs = {}
    for limit in (None, 60.0):
        runs[limit] = dasslib.tag(wav, tiny["model"], labels=tiny["labels"], timeline=True, max_pass_seconds=limit,
                                  overlap_seconds=8.0, threshold=0.0, min_duration=2.0, device="cpu",
                                  out_dir=None if limit else tmp_path, progress=False)
    one, chunked = runs[None], runs[60.0]
    assert one.files["mode"][0] == "one pass"
    assert chunked.files["mode"][0].startswith("chunked: 6 passes of <= 60 s")
    assert list(one.timeline.columns[:4]) == ["file", "start_s", "end_s", "Alpha"] and len(one.timeline) == seconds
    np.testing.assert_allclose(chunked.timeline.iloc[:, 3:], one.timeline.iloc[:, 3:], atol=1e-3)
    assert isinstance(one.events, pd.DataFrame) and (one.events.duration_s >= 2.0).all()
    assert (tmp_path / "long.timeline.png").stat().st_size > 10_000


def test_plan_chunks_cover_every_frame_on_the_hop_grid():
    chunks = plan_chunks(10_000, 3_000, 500, 32)
    cores = [(s, e) for _, _, s, e in chunks]
    assert cores[0][0] == 0 and cores[-1][1] == 10_000
    assert all(a[1] == b[0] and a[0] % 32 == 0 for a, b in zip(cores, cores[1:]))
    assert all(hi - lo <= 3_000 and lo % 32 == 0 for lo, hi, _, _ in chunks)
    assert plan_chunks(100, 3_000, 500, 32) == [(0, 100, 0, 100)]
    with pytest.raises(ValueError, match="no room"):
        plan_chunks(10_000, 900, 500, 32)


def test_long_fbank_in_pieces_equals_one_shot(tone):
    wave = torch.tensor(tone(500, 7.0) + 0.01, dtype=torch.float32)[None]
    whole = normalize_fbank(wav2fbank(wave - wave.mean(), target_length=None), -4.0, 4.0)
    pieces = recording_fbank(wave, -4.0, 4.0, piece_seconds=2.0)
    assert pieces.shape == whole.shape
    torch.testing.assert_close(pieces, whole, rtol=0, atol=1e-3)


def test_bin_scores_averages_and_interpolates():
    frames = np.array([[0.0], [1.0], [0.5], [0.5]])          # 2 frames / s: centres 0.25, 0.75, 1.25, 1.75 s
    times, scores = bin_scores(frames, 2.0, 1.0, 2.0)
    np.testing.assert_allclose(times, [0.0, 1.0])
    np.testing.assert_allclose(scores[:, 0], [0.5, 0.5])
    _, fine = bin_scores(frames, 2.0, 0.25, 2.0)               # bins shorter than a frame: interpolated
    assert fine.shape == (8, 1) and fine[1, 0] == 0.0 and fine[3, 0] == 1.0   # bins 1, 3 hold frames 0, 1
    assert fine[2, 0] == pytest.approx(0.75)                  # bin 2 (centre 0.625 s) holds none


def test_find_events_threshold_and_min_duration():
    scores = np.array([[0.9, 0.1], [0.8, 0.9], [0.1, 0.1], [0.7, 0.1]])
    events = find_events(np.arange(4.0), scores, 1.0, threshold=0.5, min_duration=2.0)
    assert events[["class_index", "start_s", "end_s"]].values.tolist() == [[0, 0.0, 2.0]]
    assert events.peak_score[0] == pytest.approx(0.9)
    short = find_events(np.arange(4.0), scores, 1.0, 0.5, 0.5, duration=3.5)   # the last bin ends at 3.5 s
    assert len(short) == 3 and short.end_s.max() == 3.5


def test_event_precision_recall():
    truth = pd.DataFrame(dict(mid=["a", "a", "b"], start_s=[0.0, 10.0, 5.0], end_s=[4.0, 12.0, 8.0]))
    found = pd.DataFrame(dict(mid=["a", "b", "b"], start_s=[1.0, 0.0, 5.5], end_s=[3.0, 1.0, 7.0]))
    scores = event_prf(found, truth).set_index("mid")
    assert scores.loc["all", ["matched", "precision", "recall"]].tolist() == pytest.approx([2, 2 / 3, 2 / 3])
    assert scores.loc["a", "recall"] == 0.5 and scores.loc["b", "precision"] == 0.5


def test_event_recording_is_deterministic_with_events_inside():
    banks = render_banks(3)
    audio, events = render_event_recording(40.0, seed=3, banks=banks)
    again, events2 = render_event_recording(40.0, seed=3, banks=banks)
    assert audio.shape == (640_000,) and np.array_equal(audio, again) and events.equals(events2)
    assert len(events) >= 8 and (events.start_s < events.end_s).all() and (events.end_s <= 40.0).all()
    assert np.abs(audio).max() <= 0.9 + 1e-6


def test_hubconf_and_run_json_beside_the_checkpoint(tiny, tmp_path):
    x = torch.randn(1, 100, 64)
    model = torch.hub.load(str(REPO), "dass_small", source="local", checkpoint=tiny["checkpoint"], num_classes=3,
                           **TINY)
    assert not model.training
    with torch.no_grad():
        assert torch.equal(model(x), tiny["model"](x))
    assert torch.hub.load(str(REPO), "aum_tiny", source="local", num_classes=2, depth=1).num_classes == 2
    (tmp_path / "run.json").write_text(json.dumps({"model_config": dict(TINY, num_classes=3, unknown_field=1)}))
    with pytest.warns(UserWarning, match="unknown_field"):
        loaded, labels = load_model("dass_small", tiny["checkpoint"])
    assert loaded.num_classes == 3 and labels.names == ("class 0", "class 1", "class 2")


def test_tagging_demo_smoke(tmp_path, embedded):
    spec = importlib.util.spec_from_file_location("tagging_demo", REPO / "scripts" / "tagging_demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    data = shutil.copytree(embedded["root"], tmp_path / "data")   # the demo caches fbank stats beside train.json
    out, work = tmp_path / "out", tmp_path / "work"
    assert demo.main(["--render-only", "--minutes", "0.5", "--work", str(work)]) is None   # rendered ahead
    wav = work / "recording_0.5min_seed0.wav"
    rendered = wav.stat().st_mtime_ns
    summary = demo.main(["--smoke", "--minutes", "0.5", "--out", str(out), "--work", str(work),
                         "--train-json", str(data / "train.json"), "--eval-json", str(data / "eval.json"),
                         "--label-csv", str(data / "class_labels_indices.csv"), "--device", "cpu"])
    assert summary["mode"] == "one pass" and summary["reference_events"] > 0
    assert 0.0 <= summary["precision"] <= 1.0 and 0.0 <= summary["recall"] <= 1.0
    assert {"truth_events.csv", "events.csv", "timeline.csv", "event_scores.csv", "threshold_sweep.csv",
            "summary.json"} <= set(os.listdir(out))
    assert any(p.endswith(".png") for p in os.listdir(out)) and not any(p.endswith(".wav") for p in os.listdir(out))
    assert json.loads((out / "summary.json").read_text())["git_commit"]
    assert wav.stat().st_mtime_ns == rendered                            # the render was reused
    truth = pd.read_csv(out / "truth_events.csv")
    assert len(truth) == summary["reference_events"] and list(truth.columns) == ["mid", "label", "start_s", "end_s"]


def test_api_on_a_datafile_returns_dataframes(toy, tiny):
    result = dasslib.tag(toy["json"], tiny["model"], labels=toy["csv"], top_k=1, device="cpu")
    assert [os.path.basename(f) for f in result.files.file] == ["0.wav", "1.wav", "2.wav", "3.wav"]
    assert (result.files.status == "ok").all() and len(result.clips) == 4
    assert set(result.clips.label) <= {"Alpha", "Beta, with comma", "Gamma"}
    assert result.timeline.empty and result.events.empty and result.written == []
    with pytest.raises(ValueError, match="labels have 3 classes but the model has 2"):
        dasslib.tag(toy["json"], create("dass_small", num_classes=2, **TINY), labels=toy["csv"])
