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


def test_scan_kernels_table_reads_back_as_csv_rows():
    """benchmarks.scan_kernels' written tables become one CSV row per kernel plus the call's total."""
    from benchmarks.scan_kernels import table_rows
    text = """device X

dass bf16 triton fwd+bwd: 0.927 ms of kernels per call (25 launches)
 share  ms/call  calls  kernel
 44.5%    0.412      1  _rows_bwd_kernel
 20.0%    0.186      1  _rows_fwd_kernel

dass bf16 mamba fwd: 0.280 ms of kernels per call (1 launches)
 share  ms/call  calls  kernel
100.0%    0.280      1  void selective_scan_fwd_kernel<Traits<128, 16> >(SSMParamsBase)
"""
    rows = table_rows(text)
    assert [(r["backend"], r["mode"], r["kernel"], r["ms_per_call"]) for r in rows] == [
        ("triton", "fwd+bwd", "(all)", "0.927"), ("triton", "fwd+bwd", "_rows_bwd_kernel", "0.412"),
        ("triton", "fwd+bwd", "_rows_fwd_kernel", "0.186"), ("mamba", "fwd", "(all)", "0.280"),
        ("mamba", "fwd", "void selective_scan_fwd_kernel<Traits<128, 16> >(SSMParamsBase)", "0.280")]
    assert rows[0]["calls"] == "25" and rows[1]["share_pct"] == "44.5"


def test_the_gpu_jobs_scan_shapes_and_variants_exist():
    """scripts/gpu_speed_check.sh's scan jobs name bench_scan / scan_kernels shapes and TritonConfig fields; a
    typo would cost a GPU job that times nothing, so each is checked here."""
    import dataclasses
    import json
    import re
    from pathlib import Path

    from benchmarks.bench_scan import SHAPES
    from dasslib.scans.triton_backend import TritonConfig

    text = (Path(__file__).parents[1] / "scripts" / "gpu_speed_check.sh").read_text()
    shapes = {s for m in re.findall(r"--shapes ([\w,]+)", text) for s in m.split(",")}
    assert shapes and shapes <= set(SHAPES), shapes - set(SHAPES)
    fields = {f.name for f in dataclasses.fields(TritonConfig)}
    variants = (re.findall(r"(?:scan_bwd|aum_fwd|aum_bwd)_variants='(.*?)'", text, re.S)
                + re.findall(r"--bwd-variants '(.*?)'", text))
    assert len(variants) >= 4
    for spec in variants:
        for shape, overrides in json.loads(spec).items():
            assert shape in SHAPES, shape
            for o in overrides:
                assert set(o) <= fields, set(o) - fields
                cfg = TritonConfig(**o)
                assert cfg.bwd_row_sum in (1, 2, 4, 8, 16, 32)
