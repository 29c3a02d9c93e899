"""benchmarks/lr_probe.py --smoke: one tiny (lr, warm-up) point on the ci set, its CSV and PNG."""
import importlib.util
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def test_smoke_sweep_writes_histories_and_curves(tmp_path, embedded_copy, monkeypatch):
    spec = importlib.util.spec_from_file_location("lr_probe", ROOT / "benchmarks" / "lr_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    monkeypatch.setattr("dasslib.experiments.common.prepare_data", lambda *a, **k: embedded_copy)
    csv, png = tmp_path / "sweep.csv", tmp_path / "sweep.png"
    probe.main(["--smoke", "--out", str(tmp_path / "runs"), "--csv", str(csv), "--png", str(png)])
    table = pd.read_csv(csv)
    assert list(table.columns[:4]) == ["model", "lr", "warmup_steps", "epoch"]
    assert len(table) == 1 and table["lr"].iloc[0] == 1e-3 and table["warmup_steps"].iloc[0] == 2
    assert {"train_loss", "mAP", "collapsed"} <= set(table.columns)
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "runs" / "dass_small_lr0.001_wu2" / "metrics.json").is_file()
