"""dasslib.experiments.data_check: clip-level feature baselines that say whether a dataset separates models."""
import numpy as np
import pandas as pd
import pytest

from dasslib.experiments import data_check


def test_baselines_rank_an_easy_problem_above_chance_and_a_random_one_near_it():
    rng = np.random.default_rng(0)
    n, d, c = 300, 20, 4
    y = np.zeros((n, c))
    y[np.arange(n), rng.integers(0, c, n)] = 1
    informative = y @ rng.normal(size=(c, d)) * 3 + rng.normal(size=(n, d))
    table = data_check.feature_baselines((informative[:200], y[:200]), (informative[200:], y[200:]), k=5)
    by = table.set_index("method")["mAP"]
    assert by["constant predictor"] == pytest.approx(y[200:].mean(0).mean())
    assert by["logistic regression (mean+std fbank)"] > 0.95 and by["5-NN (mean+std fbank)"] > 0.9
    noise = rng.normal(size=(n, d))
    table = data_check.feature_baselines((noise[:200], y[:200]), (noise[200:], y[200:]), k=5)
    assert (table["mAP"] < 0.45).all()  # chance is ~0.25 for 4 balanced classes
    with pytest.raises(ValueError, match="disagree"):
        data_check.feature_baselines((noise, y), (noise[:, :3], y))


def test_a_class_without_training_clips_scores_zero():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 5)), np.zeros((40, 3))
    y[:, 0], y[::2, 1] = 1, 1  # class 2 never occurs
    table = data_check.feature_baselines((x[:30], y[:30]), (x[30:], y[30:]), k=3)
    assert len(table) == 3 and table["mAP"].notna().all()


def test_command_on_the_embedded_ci_set(embedded_copy, tmp_path, monkeypatch):
    # the session's embedded dataset (conftest, a private view of it) stands in for prepare_data's
    monkeypatch.setattr("dasslib.experiments.common.prepare_data", lambda *a, **k: embedded_copy)
    out = tmp_path / "check.csv"
    data_check.main(["--size", "ci", "--k", "3", "--out", str(out)])
    table = pd.read_csv(out)
    assert list(table["method"]) == ["constant predictor", "logistic regression (mean+std fbank)",
                                      "3-NN (mean+std fbank)"]
    assert (table["train_clips"] > 0).all() and table["mAP"].between(0, 1).all()
    classes = pd.read_csv(tmp_path / "check_classes.csv")
    assert list(classes.columns) == ["class", "clips_train", "clips_eval"] and classes["clips_train"].sum() > 0
