"""Metrics against scikit-learn / scipy, plus the edge cases AST-style evaluation meets."""
import math

import numpy as np
import pytest
import torch
from scipy.stats import norm
from sklearn.metrics import accuracy_score, average_precision_score, roc_auc_score

from dasslib.metrics import chance_level, class_stats, d_prime, evaluate


def random_multilabel(n=200, c=7, seed=0):
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, c)) < 0.2).astype(np.float32)
    scores = targets * rng.normal(1.0, 1.0, (n, c)) + rng.normal(0.0, 1.0, (n, c))  # informative
    return scores, targets


def test_multilabel_matches_sklearn():
    scores, targets = random_multilabel()
    out = evaluate(scores, targets)
    assert set(out) == {"mAP", "mAUC", "d_prime"}
    assert out["mAP"] == pytest.approx(average_precision_score(targets, scores, average="macro"))
    assert out["mAUC"] == pytest.approx(roc_auc_score(targets, scores, average="macro"))
    assert out["d_prime"] == pytest.approx(math.sqrt(2) * norm.ppf(out["mAUC"]))
    assert 0.5 < out["mAUC"] < 1.0 and out["d_prime"] > 0


def test_class_stats_match_sklearn_per_class():
    scores, targets = random_multilabel(seed=1)
    stats = class_stats(torch.from_numpy(scores), torch.from_numpy(targets))
    np.testing.assert_allclose(stats["ap"], average_precision_score(targets, scores, average=None))
    np.testing.assert_allclose(stats["auc"], roc_auc_score(targets, scores, average=None))
    np.testing.assert_array_equal(stats["positives"], targets.sum(axis=0))


def test_class_without_positives_is_excluded():
    scores, targets = random_multilabel(seed=2)
    targets[:, 3] = 0
    stats = class_stats(scores, targets)
    assert np.isnan(stats["ap"][3]) and np.isnan(stats["auc"][3])
    keep = [c for c in range(7) if c != 3]
    out = evaluate(scores, targets)
    ap = [average_precision_score(targets[:, c], scores[:, c]) for c in keep]
    auc = [roc_auc_score(targets[:, c], scores[:, c]) for c in keep]
    assert out["mAP"] == pytest.approx(np.mean(ap))
    assert out["mAUC"] == pytest.approx(np.mean(auc))


def test_class_with_only_positives_has_ap_but_no_auc():
    scores, targets = random_multilabel(seed=3)
    targets[:, 0] = 1
    stats = class_stats(scores, targets)
    assert stats["ap"][0] == pytest.approx(1.0) and np.isnan(stats["auc"][0])
    assert evaluate(scores, targets)["mAUC"] == pytest.approx(np.nanmean(stats["auc"]))


def test_perfect_scores():
    _, targets = random_multilabel(seed=4)
    out = evaluate(targets * 5.0 - 2.0, targets)
    assert out["mAP"] == 1.0 and out["mAUC"] == 1.0 and out["d_prime"] == math.inf


def test_chance_level_is_the_mean_class_prevalence():
    targets = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 0, 0]], dtype=np.float32)
    c = chance_level(targets)
    assert c["mAP"] == pytest.approx((2 / 4 + 1 / 4 + 1 / 4) / 3)
    assert c["mAUC"] == pytest.approx(0.5) and c["d_prime"] == pytest.approx(0.0)
    # a model whose scores ignore the input scores the same whatever the constant
    assert evaluate(np.full(targets.shape, 3.0), targets)["mAP"] == pytest.approx(c["mAP"])
    mc = chance_level(np.array([0, 1, 1, 2]), task="multiclass")
    assert mc["acc"] == pytest.approx(0.25)   # argmax of constant scores: class 0


def test_d_prime_values():
    assert d_prime(0.5) == 0.0
    assert d_prime(0.9) == pytest.approx(math.sqrt(2) * 1.2815515655446004)


def test_multiclass_accuracy_and_one_hot_metrics():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 5, 300)
    scores = np.eye(5)[labels] * 1.5 + rng.normal(0, 1, (300, 5))
    out = evaluate(torch.from_numpy(scores), torch.from_numpy(labels), task="multiclass")
    assert out["acc"] == pytest.approx(accuracy_score(labels, scores.argmax(axis=1)))
    one_hot = np.eye(5)[labels]
    assert out["mAP"] == pytest.approx(average_precision_score(one_hot, scores, average="macro"))
    assert out["mAUC"] == pytest.approx(roc_auc_score(one_hot, scores, average="macro"))
    assert evaluate(scores, one_hot, task="multiclass") == out
    assert 0.2 < out["acc"] < 1.0


@pytest.mark.parametrize("scores, targets, task, match", [
    (np.zeros((4, 3)), np.zeros((4, 2)), "multilabel", "shape"),
    (np.zeros(4), np.zeros(4), "multilabel", r"\(N, C\)"),
    (np.full((2, 2), np.nan), np.eye(2), "multilabel", "NaN"),
    (np.zeros((2, 2)), np.full((2, 2), 0.5), "multilabel", "multi-hot"),
    (np.zeros((3, 2)), np.zeros((3, 2)), "multilabel", "no class has a positive"),
    (np.zeros((2, 2)), np.eye(2), "regression", "task"),
    (np.zeros((2, 3)), np.array([0, 3]), "multiclass", "class indices"),
    (np.zeros((2, 3)), np.array([0.5, 1]), "multiclass", "class indices"),
    (np.zeros((2, 3)), np.array([0, 1, 2]), "multiclass", "class indices"),
])
def test_bad_inputs(scores, targets, task, match):
    with pytest.raises(ValueError, match=match):
        evaluate(scores, targets, task=task)


def test_non_numeric_input():
    with pytest.raises(TypeError, match="scores"):
        evaluate([["a", "b"]], [[1, 0]])


# ---- found by mutation testing: boundaries of the AUC rule, the torch path, and the error contract
def test_auc_needs_both_a_positive_and_a_negative_and_one_of_each_is_enough():
    scores = np.array([[0.9, 0.2, 0.1], [0.1, 0.8, 0.7], [0.3, 0.4, 0.2]])
    targets = np.array([[1, 1, 0], [0, 1, 0], [0, 1, 0]])  # class 0: one positive; 1: all; 2: none
    stats = class_stats(scores, targets)
    assert stats["positives"].tolist() == [1, 3, 0] and stats["positives"].dtype == np.int64
    assert stats["auc"][0] == 1.0                      # the one positive ranks first: computed, not NaN
    assert np.isnan(stats["auc"][1]) and np.isnan(stats["auc"][2])
    assert stats["ap"][1] == 1.0 and np.isnan(stats["ap"][2])
    out = evaluate(scores, targets)
    assert out["mAUC"] == 1.0 and out["mAP"] == 1.0    # mean over the classes where each is defined


def test_no_class_with_an_auc_gives_nan_mauc_and_d_prime():
    out = evaluate(np.array([[0.2], [0.7]]), np.array([[1], [1]]))   # positives only
    assert out["mAP"] == 1.0 and math.isnan(out["mAUC"]) and math.isnan(out["d_prime"])


def test_tensors_that_require_grad_are_read():
    scores = torch.tensor([[0.9, 0.1], [0.2, 0.8]], requires_grad=True)
    assert evaluate(scores, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))["mAP"] == 1.0


def test_messages_name_the_argument_and_shapes():
    with pytest.raises(TypeError, match="^scores must be an array or tensor of numbers"):
        evaluate([["a"]], [[1]])
    with pytest.raises(TypeError, match="^targets must be an array or tensor of numbers"):
        evaluate([[0.5]], [["x"]])
    with pytest.raises(ValueError, match=r"^targets \(2, 3\) must have the shape of scores \(2, 2\)$"):
        evaluate(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="^scores contain NaN or infinite values$"):
        evaluate(np.array([[np.nan]]), np.array([[1]]))
    with pytest.raises(ValueError, match=r"^targets must be multi-hot \(0/1 only\); threshold soft labels first$"):
        evaluate(np.array([[0.5]]), np.array([[0.5]]))
    with pytest.raises(ValueError, match="^no class has a positive target: mAP is undefined$"):
        evaluate(np.array([[0.5]]), np.array([[0]]))
    with pytest.raises(ValueError, match=r"^scores must be \(N, C\), got shape \(3,\)$"):
        evaluate(np.zeros(3), np.zeros(3), task="multiclass")
    with pytest.raises(ValueError, match=r"^one-hot targets \(2, 4\) must match scores \(2, 3\)$"):
        evaluate(np.zeros((2, 3)), np.zeros((2, 4)), task="multiclass")
    with pytest.raises(ValueError, match=r"^multiclass targets must be \(N,\) = \(4,\) class indices in \[0, 3\)$"):
        evaluate(np.zeros((4, 3)), np.array([0, 1, 3, 0]), task="multiclass")
    with pytest.raises(ValueError, match=r"\(4,\) class indices"):
        evaluate(np.zeros((4, 3)), np.array([0, -1, 2, 0]), task="multiclass")
