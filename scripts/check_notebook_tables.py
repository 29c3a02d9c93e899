"""Compare the tables that the CPU notebook runs wrote with their golden copies, numbers within a tolerance.

Usage (``make test-notebooks`` runs it after nbval):
    python scripts/check_notebook_tables.py .nbval-run/outputs [--atol 0.03]

nbval compares stored outputs character for character. A few printed tables hold metrics of small models
trained on the CPU, and the x86 vendor of the machine moves their rounding: on an AMD EPYC and an Intel Xeon
machine 02's SSAM-Tiny mAUC printed 0.515 and 0.516, and 06's tiny systems' classification mAP (through greedy
decoding) 0.112-0.119 and 0.103. Those cells are tagged ``nbval-ignore-output``; their tables are compared here
instead. Every file under ``tests/golden/notebooks/<notebook>/`` must exist in the run's
``<outputs>/<notebook>/``, with the same columns and rows: text and integer columns exactly, float columns
within ``atol`` (NaN where the golden copy has NaN).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "golden" / "notebooks"


def compare(run: Path, golden: Path, atol: float) -> list[str]:
    """Problems of one table (empty: it matches)."""
    if not run.is_file():
        return [f"{run}: missing (the notebook did not write it)"]
    got, want = pd.read_csv(run), pd.read_csv(golden)
    if list(got.columns) != list(want.columns) or got.shape != want.shape:
        return [f"{run}: columns / shape {list(got.columns)} {got.shape}, golden {list(want.columns)} {want.shape}"]
    problems = []
    for col in want.columns:
        g, w = got[col], want[col]
        if pd.api.types.is_float_dtype(w) or pd.api.types.is_float_dtype(g):
            gv, wv = g.to_numpy(float), w.to_numpy(float)
            bad = ~(np.isclose(gv, wv, rtol=0.0, atol=atol) | (np.isnan(gv) & np.isnan(wv)))
        else:
            bad = (g.astype(str) != w.astype(str)).to_numpy()
        for i in np.flatnonzero(bad):
            problems.append(f"{run.name} row {i} {col}: {g.iloc[i]!r}, golden {w.iloc[i]!r}")
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outputs", type=Path, help="the folder of the notebooks' out_dir folders (.nbval-run/outputs)")
    ap.add_argument("--atol", type=float, default=0.03, help="absolute tolerance of float columns")
    ap.add_argument("--golden", type=Path, default=GOLDEN)
    args = ap.parse_args(argv)
    tables = sorted(args.golden.glob("*/*.csv"))
    if not tables:
        print(f"no golden tables under {args.golden}")
        return 1
    problems = []
    for golden in tables:
        found = compare(args.outputs / golden.parent.name / golden.name, golden, args.atol)
        problems += found
        print(f"{golden.parent.name}/{golden.name}: {'ok' if not found else f'{len(found)} mismatch(es)'}")
    for p in problems:
        print("  " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
