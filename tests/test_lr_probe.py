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


def test_collect_reads_the_histories_of_the_grid(tmp_path):
    """collect: the runs of the (lr, warm-up) grid that have a history.csv (read_histories), their peak lr and
    warm-up in front, the history's own lr renamed, collapsed from each run's last eval mAUC."""
    spec = importlib.util.spec_from_file_location("lr_probe", ROOT / "benchmarks" / "lr_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    for lr, warmup, mauc in [(1e-4, 2, [0.7, 0.504]), (1e-3, 2, [0.6, 0.8])]:   # (1e-4, 100): no run
        folder = probe.run_dir(tmp_path, "m", lr, warmup)
        folder.mkdir(parents=True)
        pd.DataFrame(dict(epoch=[1, 2], train_loss=[1.0, 0.5], mAUC=mauc, lr=[lr / 2, lr / 4])).to_csv(
            folder / "history.csv", index=False)
    table = probe.collect(tmp_path, "m", [1e-4, 1e-3], [2, 100])
    assert list(table.columns) == ["model", "lr", "warmup_steps", "epoch", "train_loss", "mAUC", "lr_at_epoch_end",
                                   "collapsed"]
    assert table["lr"].tolist() == [1e-4, 1e-4, 1e-3, 1e-3] and table["warmup_steps"].tolist() == [2] * 4
    assert table["lr_at_epoch_end"].tolist() == [5e-5, 2.5e-5, 5e-4, 2.5e-4]
    assert table["collapsed"].tolist() == [True, True, False, False]
    assert probe.collect(tmp_path, "other", [1e-4], [2]).empty
