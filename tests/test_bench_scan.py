"""benchmarks/bench_scan.py on the CPU (--smoke: tiny shapes through the GPU code paths under the
Triton interpreter): the correctness check passes, default and --variants rows land in the CSV."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")
ROOT = Path(__file__).resolve().parents[1]


def test_bench_scan_smoke_writes_checked_rows(tmp_path):
    variants = {"dass_long": [{"rows": 1, "rows_warps": 1}], "long": []}
    out_csv, out_log = tmp_path / "b.csv", tmp_path / "b.log"
    env = dict(os.environ, TRITON_INTERPRET="1")
    res = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_scan", "--smoke",
         "--shapes", "dass_long,long", "--dtypes", "fp32", "--no-torch", "--no-bwd",
         "--variants", json.dumps(variants), "--csv", str(out_csv), "--log", str(out_log)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    log = out_log.read_text()
    worst = [line for line in log.splitlines() if line.startswith("check: worst fp32 rel err")]
    assert worst and float(worst[0].split()[-1]) < 1e-5, log
    lines = out_csv.read_text().splitlines()
    assert lines[0].startswith("# device=cpu")
    rows = list(csv.DictReader(lines[1:]))
    got = {(r["shape"], r["variant"]) for r in rows}
    # few rows with N = 1 take the rows forward with 4 vectors per lane; N = 3 the sequential one
    assert ("dass_long", "default rows r2 w2 p1 c1 v4") in got, got
    assert ("dass_long", "rows r1 w1 p1 c1 v4") in got, got
    assert any(s == "long" and v.startswith("default seq") for s, v in got), got
    assert all(r["mode"] == "fwd" and float(r["ms"]) > 0 for r in rows)
