"""benchmarks/bench_merge.py on the CPU (--smoke: a tiny shape through the kernel under the Triton
interpreter and the torch form): every variant is checked against float64 and lands in the CSV."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")
ROOT = Path(__file__).resolve().parents[1]


def test_bench_merge_smoke_writes_checked_rows(tmp_path):
    out_csv = tmp_path / "m.csv"
    res = subprocess.run([sys.executable, "-m", "benchmarks.bench_merge", "--smoke", "--tune", "--csv", str(out_csv)],
                         cwd=ROOT, env=dict(os.environ, TRITON_INTERPRET="1"), capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rows = list(csv.DictReader(out_csv.read_text().splitlines()))
    variants = {r["variant"] for r in rows}
    assert {"kernel default", "inductor"} <= variants and len(rows) >= 4
    assert all(float(r["rel_err"]) < 1e-5 and float(r["ms"]) > 0 for r in rows)
    assert len({r["tiles"] for r in rows if r["tiles"]}) == len([r for r in rows if r["tiles"]])   # no repeats
