"""Distillation experiment steps (notebook 01): run configs, teachers as checkpoints, tables."""
import math

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch

from dasslib.experiments import common, distill
from dasslib.experiments.common import chance_map, load_classifier

AUDIO = {"target_length": 64, "num_mel_bins": 32}
TRAIN = {"epochs": 1, "lr": 1e-3, "warmup_steps": 1, "warmup_every": 1, "wa": False, "progress": False}
LOADER = {"batch_size": 4, "num_workers": 0, "pin_memory": False}
AST = {"name": "ast_tiny", "embed_dim": 16, "depth": 1, "num_heads": 2, "fstride": 16, "tstride": 16}
DASS = {"name": "dass_small", "depths": [1, 1, 1, 1], "dims": [4, 8, 16, 32], "scan_backend": "torch"}


@pytest.fixture
def paths(toy):
    return dict(train_json=toy["json"], eval_json=toy["json"], label_csv=toy["csv"])


def test_labels_and_params():
    assert distill.slug("DASS-Small + KD (AST-Small)") == "dass_small_kd_ast_small"
    assert distill.pretty_name("dass_small") == "DASS-Small" and distill.pretty_name("ast_base") == "AST-Base"
    with pytest.raises(ValueError):
        distill.slug("+ -")
    assert distill.count_params_m(torch.nn.Linear(1000, 1000)) == pytest.approx(1.001)


def test_fit_input_sets_the_ast_grid_only():
    assert common.fit_input(AST, AUDIO)["input_tdim"] == 64 and common.fit_input(AST, AUDIO)["input_fdim"] == 32
    assert common.fit_input(dict(AST, input_tdim=1024), AUDIO)["input_tdim"] == 1024  # given: kept
    assert "input_tdim" not in common.fit_input(DASS, AUDIO)


def test_run_config_sections_and_errors(paths):
    cfg = common.classifier_config("o", DASS, paths, (0.0, 1.0), dict(TRAIN, loss="kd_kl"), LOADER, AUDIO,
                             {"freqm": 4, "mixup": 0.5}, dict(AST, checkpoint="t.pt"), balanced=True)
    data = cfg["data"]
    assert data["train_audio"] == dict(AUDIO, mean=0.0, std=1.0, freqm=4, mixup=0.5, seed=0)
    assert data["eval_audio"] == dict(AUDIO, mean=0.0, std=1.0)  # no augmentation at evaluation
    assert data["balanced"] is True and cfg["model"]["num_classes"] == 3
    assert cfg["teacher"]["checkpoint"] == "t.pt" and cfg["teacher"]["input_tdim"] == 64
    with pytest.raises(ValueError, match="trained model"):
        common.classifier_config("o", DASS, paths, (0.0, 1.0), dict(TRAIN, loss="kd_kl"), LOADER, teacher=AST)
    with pytest.raises(ValueError, match="distillation loss"):
        common.classifier_config("o", DASS, paths, (0.0, 1.0), TRAIN, LOADER, teacher=dict(AST, checkpoint="t.pt"))


def hand_map(model, paths, stats):
    """mAP of ``model`` on the eval clips, in float64 numpy: per class, the mean precision at the rank of
    each positive (average precision), averaged over the classes."""
    import numpy as np

    from dasslib.data import AudioConf, AudioDataset

    ev = AudioDataset(paths["eval_json"], paths["label_csv"], AudioConf(**AUDIO, mean=stats[0], std=stats[1]))
    with torch.no_grad():
        scores = model.eval()(torch.stack([ev[i][0] for i in range(len(ev))])).double().numpy()
    y = torch.stack([ev.target(i) for i in range(len(ev))]).numpy()
    aps = []
    for c in range(y.shape[1]):
        hits = y[np.argsort(-scores[:, c], kind="stable"), c]
        aps.append(np.mean([hits[:k + 1].mean() for k in np.flatnonzero(hits)]))
    return float(np.mean(aps))


def test_teachers_and_students_end_to_end(paths, tmp_path):
    common = dict(paths=paths, stats=(-5.0, 4.0), loader=LOADER, audio=AUDIO)
    teachers = distill.get_teachers(tmp_path, {"AST-T": AST}, train=TRAIN, **common)
    (t,) = teachers
    ckpt = t["section"]["checkpoint"]
    assert t["role"] == "teacher" and t["params_M"] > 0
    assert t["mAP"] == pytest.approx(hand_map(load_classifier(dict(AST, checkpoint=ckpt), paths["label_csv"],
                                               AUDIO), paths, (-5.0, 4.0)), abs=1e-6)
    # the saved teacher is a plain state dict that loads (and scores) as a checkpoint teacher
    loaded = distill.get_teachers(tmp_path, {"AST-T again": dict(AST, checkpoint=ckpt)}, train=TRAIN, **common)
    assert loaded[0]["mAP"] == pytest.approx(t["mAP"], abs=1e-6)

    with pytest.raises(ValueError, match="kd_loss"):
        distill.train_students(tmp_path, DASS, teachers, "AST-T", train=TRAIN, kd_loss="bce", **common)
    with pytest.raises(ValueError, match="not one of the teachers"):
        distill.train_students(tmp_path, DASS, teachers, "nope", train=TRAIN, **common)
    with pytest.raises(ValueError, match="drop 'loss'"):
        distill.train_students(tmp_path, DASS, teachers, "AST-T", train=dict(TRAIN, loss="bce"), **common)

    records = teachers + distill.train_students(tmp_path, DASS, teachers, "AST-T", train=TRAIN, **common)
    labels = [(r["label"], r["role"], r["teacher"]) for r in records]
    assert labels == [("AST-T", "teacher", "none"), ("DASS-Small", "student", "none"),
                      ("DASS-Small + KD (AST-T)", "student", "AST-T"), ("DASS-Small + KD", "teacher", "AST-T"),
                      ("DASS-Small + KD (DASS-Small + KD)", "student", "DASS-Small + KD")]
    hist = pd.read_csv(tmp_path / "student_dass_small_kd_ast_t" / "history.csv")
    assert {"train_distill", "train_hard"} <= set(hist.columns)  # the KD loss ran
    assert "train_distill" not in pd.read_csv(tmp_path / "student_dass_small" / "history.csv").columns

    t1 = distill.table1(records, "AST-T", "DASS-Small")
    assert list(t1.index) == ["AST-T (teacher)", "DASS-Small", "DASS-Small + KD (AST-T)"]
    assert list(t1.columns) == ["params_M", "KD", "mAP", "mAUC"] and list(t1["KD"]) == ["none", "none", "AST-T"]
    assert t1["mAP"].between(0, 1).all() and t1["params_M"].iloc[1] == t1["params_M"].iloc[2]
    t2 = distill.table2(records, "DASS-Small")
    assert list(t2["teacher"]) == ["none", "AST-T", "DASS-Small + KD"]
    assert math.isnan(t2["teacher_mAP"].iloc[0]) and t2["teacher_mAP"].iloc[2] == t1["mAP"].iloc[2]
    both = distill.combined_table(t1, t2)
    assert len(both) == 6 and list(both["table"]) == ["1"] * 3 + ["2"] * 3
    runs = distill.runs_frame(records)
    assert len(runs) == 5 and runs["checkpoint"].notna().sum() == 2
    fig = distill.plot_tables(t1, t2)
    assert len(fig.axes[0].patches) == 3                                   # Table 1: one bar per row
    n_lines = len(fig.axes[0].lines)                                       # seaborn's error bars
    chance = chance_map(paths)
    assert 0 < chance < 1
    with_chance = distill.combined_table(t1, t2, chance)
    assert len(with_chance) == 7 and with_chance.iloc[-1]["model"] == "constant predictor"
    assert with_chance.iloc[-1]["mAP"] == chance
    fig = distill.plot_tables(t1, t2, chance)
    lines = fig.axes[0].lines
    assert len(lines) == n_lines + 1 and list(lines[-1].get_ydata()) == [chance, chance]   # the constant predictor
    plt.close("all")
