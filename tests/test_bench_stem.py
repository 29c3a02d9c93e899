"""benchmarks/bench_stem.py on the CPU (--smoke: a tiny fbank through the stem kernel under the Triton
interpreter and the torch form): every variant is checked against the torch form and lands in the CSV."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")
ROOT = Path(__file__).resolve().parents[1]


def test_bench_stem_smoke_writes_checked_rows(tmp_path):
    out_csv = tmp_path / "s.csv"
    res = subprocess.run([sys.executable, "-m", "benchmarks.bench_stem", "--smoke", "--tune", "--csv", str(out_csv)],
                         cwd=ROOT, env=dict(os.environ, TRITON_INTERPRET="1"), capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rows = list(csv.DictReader(out_csv.read_text().splitlines()))
    variants = {r["variant"] for r in rows}
    assert {"kernel default", "inductor", "bw 16 warps 1", "bw 128 warps 8"} <= variants
    assert all(float(r["rel_err"]) < 1e-2 and float(r["ms"]) > 0 for r in rows)
    assert len({r["tiles"] for r in rows if r["tiles"]}) == len([r for r in rows if r["tiles"]])   # no repeats
