"""benchmarks/bench_merge.py and bench_stem.py on the CPU (--smoke: a tiny shape through the kernel under the
Triton interpreter and the torch form): every variant is checked against the reference and lands in the CSV,
no tiles twice."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script,must,max_err", [
    ("bench_merge", {"kernel default", "inductor"}, 1e-5),
    ("bench_stem", {"kernel default", "inductor", "bw 16 warps 1", "bw 128 warps 8", "bw 32 warps 4 fT",
                    "bw 16 warps 1 dot", "bw 32 warps 2 dot fT"}, 1e-2),
])
def test_kernel_bench_smoke_writes_checked_rows(tmp_path, script, must, max_err):
    out_csv = tmp_path / "k.csv"
    res = subprocess.run([sys.executable, "-m", f"benchmarks.{script}", "--smoke", "--tune", "--csv", str(out_csv)],
                         cwd=ROOT, env=dict(os.environ, TRITON_INTERPRET="1"), capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rows = list(csv.DictReader(out_csv.read_text().splitlines()))
    assert must <= {r["variant"] for r in rows} and len(rows) >= 4
    assert all(float(r["rel_err"]) < max_err and float(r["ms"]) > 0 for r in rows)
    assert len({r["tiles"] for r in rows if r["tiles"]}) == len([r for r in rows if r["tiles"]])   # no repeats
