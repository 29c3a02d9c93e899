"""benchmarks/bench_long_input.py on the CPU (--smoke: a tiny DASS, lengths of seconds): the script
runs end to end and writes one row per (model, path, length) with times, peak memory, the
longest length predicted to fit and the lean path's difference from the plain one."""
import csv
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def smoke(out, *args):
    """Run the script's --smoke mode on dass_small, writing ``out``; fails with its output."""
    res = subprocess.run([sys.executable, "-m", "benchmarks.bench_long_input", "--smoke", "--models", "dass_small",
                          *args, "--csv", str(out)], env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]


def test_bench_long_input_smoke(tmp_path):
    out = tmp_path / "long.csv"
    smoke(out, "--lengths", "10", "30", "--probe-frames", "32768", "--commit", "abc1234")
    rows = list(csv.DictReader(open(out)))
    assert {(r["path"], r["length_s"]) for r in rows} == {(p, n) for p in ("lean", "plain") for n in ("10.0", "30.0")}
    for r in rows:
        assert r["fits"] == "True" and float(r["seconds"]) > 0
        assert r["device"] == "cpu" and r["dtype"] == "fp32" and r["batch"] == "1" and r["commit"] == "abc1234"
        assert r["torch"] and r["date"]
    checked = [r for r in rows if r["max_abs_diff_logits"]]
    assert len(checked) == 1 and checked[0]["path"] == "lean" and checked[0]["length_s"] == "10.0"
    assert float(checked[0]["max_abs_diff_logits"]) < 1e-4 and float(checked[0]["max_abs_diff_frames"]) < 1e-4


def test_bench_long_input_appends(tmp_path):
    out = tmp_path / "long.csv"
    for _ in range(2):
        smoke(out, "--lengths", "5", "--paths", "lean", "--append", "--probe-frames", "4096")
    rows = list(csv.DictReader(open(out)))
    assert [(r["path"], r["length_s"]) for r in rows] == [("lean", "5.0")] * 2
