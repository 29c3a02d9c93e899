"""dasslib.train.objectives on hand-made logits and reconstructions: batches, the loss each objective takes,
per-batch evaluation tensors and the summary, with values and messages written out."""
import math

import pytest
import torch
from torch import nn

from dasslib.train import TrainConfig
from dasslib.train.objectives import (
    ClassificationObjective,
    PretrainObjective,
    _is_scalar,
    build_objective,
    split_batch,
)


def t(rows):
    return torch.tensor(rows, dtype=torch.float32)


def bce(logit, target):
    """Binary cross-entropy of one logit, by hand."""
    p = 1 / (1 + math.exp(-logit))
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


def ce(row, label):
    """Cross-entropy of one row of logits against a class index, by hand."""
    return math.log(sum(math.exp(v) for v in row)) - row[label]


# --- split_batch -------------------------------------------------------------------------------------------

def test_split_batch():
    x, y, extra = torch.zeros(2, 3), torch.ones(2), torch.full((2,), 7.0)
    assert split_batch(x)[0] is x and split_batch(x)[1] is None
    got = split_batch((x,))
    assert got[0] is x and got[1] is None
    got = split_batch([x, y, extra])
    assert got[0] is x and got[1] is y
    for bad, name in (((), "tuple"), ([], "list"), ({"x": x}, "dict")):
        with pytest.raises(TypeError) as err:
            split_batch(bad)
        assert str(err.value) == f"a batch must be a tensor or an (x, y, ...) tuple, got {name}"


# --- ClassificationObjective -------------------------------------------------------------------------------

def test_classification_refuses_a_bad_task_or_the_pretraining_loss():
    with pytest.raises(ValueError) as err:
        ClassificationObjective(task="regression")
    assert str(err.value) == "task must be 'multilabel' or 'multiclass', got 'regression'"
    with pytest.raises(ValueError) as err:
        ClassificationObjective(loss="masked_mse")
    assert str(err.value) == "masked_mse is the pretraining loss: use objective='pretrain'"


def test_classification_defaults_bce_multilabel_and_metric_names():
    obj = ClassificationObjective()
    model = nn.Linear(2, 2)
    assert obj.module(model) is model
    assert obj.needs_teacher is False
    assert obj.metric_names == ("eval_loss", "mAP", "mAUC", "d_prime")
    assert ClassificationObjective(loss="ce", task="multiclass").metric_names == (
        "eval_loss", "mAP", "mAUC", "d_prime", "acc")
    loss, parts = obj.loss(t([[2.0, -1.0]]), t([[1.0, 0.0]]))
    assert parts == {}
    assert loss.item() == pytest.approx((bce(2.0, 1) + bce(-1.0, 0)) / 2, rel=1e-6)


def test_classification_loss_messages():
    obj = ClassificationObjective()
    with pytest.raises(ValueError) as err:
        obj.loss(t([[0.0]]), None)
    assert str(err.value) == "classification batches must be (x, y) pairs"
    with pytest.raises(ValueError) as err:
        obj.loss(t([[0.0]]), t([[1.0]]), teacher_outputs=t([[0.0]]))
    assert str(err.value) == "a teacher was given but the loss is not a distillation loss (kd_kl / kd_bce)"
    kd = ClassificationObjective(loss="kd_kl")
    assert kd.needs_teacher is True
    with pytest.raises(ValueError) as err:
        kd.loss(t([[0.0]]), t([[1.0]]))
    assert str(err.value) == "a distillation loss needs a teacher model"


@pytest.mark.parametrize("loss, task, hard", [
    ("kd_kl", "multilabel", "bce"), ("kd_bce", "multilabel", "bce"),
    ("kd_kl", "multiclass", "ce"), ("kd_bce", "multiclass", "ce"),
])
def test_distillation_parts_are_detached_and_the_hard_loss_follows_the_task(loss, task, hard):
    student = t([[1.0, -2.0, 0.5]]).requires_grad_(True)
    teacher = t([[0.0, 3.0, -1.0]])
    if task == "multiclass":
        y, want = torch.tensor([1]), ce([1.0, -2.0, 0.5], 1)
    else:
        y, want = t([[1.0, 0.0, 1.0]]), (bce(1.0, 1) + bce(-2.0, 0) + bce(0.5, 1)) / 3
    value, parts = ClassificationObjective(loss=loss, task=task).loss(student, y, teacher)
    assert sorted(parts) == ["distill", "hard"]
    assert not parts["hard"].requires_grad and not parts["distill"].requires_grad and value.requires_grad
    assert parts["hard"].item() == pytest.approx(want, rel=1e-6)
    # the default temperature 1: the teacher's own probabilities
    s_row, t_row = [1.0, -2.0, 0.5], [0.0, 3.0, -1.0]
    if loss == "kd_kl":       # KL(softmax(teacher) || softmax(student))
        log_p = [v - math.log(sum(math.exp(w) for w in s_row)) for v in s_row]
        log_q = [v - math.log(sum(math.exp(w) for w in t_row)) for v in t_row]
        distill = sum(math.exp(q) * (q - p) for p, q in zip(log_p, log_q))
    else:                     # BCE of the student against sigmoid(teacher)
        distill = sum(bce(v, 1 / (1 + math.exp(-w))) for v, w in zip(s_row, t_row)) / 3
    assert parts["distill"].item() == pytest.approx(distill, rel=1e-5)
    # the default weight 0.5 mixes the two halves
    assert value.item() == pytest.approx(0.5 * want + 0.5 * distill, rel=1e-5)


def test_classification_eval_batch_and_summary_multilabel():
    obj = ClassificationObjective()
    logits = torch.tensor([[2.0, -1.0], [-1.0, 1.0], [0.5, 0.0]], dtype=torch.bfloat16, requires_grad=True)
    targets = t([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    batch = obj.eval_batch(logits, targets)
    assert sorted(batch) == ["logits", "targets"] and batch["targets"] is targets
    assert batch["logits"].dtype == torch.float32 and not batch["logits"].requires_grad
    summary = obj.summarize(batch)
    assert sorted(summary) == ["d_prime", "eval_loss", "mAP", "mAUC"]
    want = sum(bce(v, y) for row, ys in zip([[2.0, -1.0], [-1.0, 1.0], [0.5, 0.0]], targets.tolist())
               for v, y in zip(row, ys)) / 6
    assert summary["eval_loss"] == pytest.approx(want, rel=1e-6)
    assert summary["mAP"] == 1.0 and summary["mAUC"] == 1.0        # every positive outscores every negative


@pytest.mark.parametrize("one_hot", [False, True])
def test_classification_summary_multiclass(one_hot):
    """The eval loss of a multi-class objective is the cross-entropy (also for a distillation loss), with
    class-index or one-hot targets."""
    obj = ClassificationObjective(loss="kd_kl", task="multiclass")
    rows = [[2.0, 0.0, -1.0], [0.0, 1.0, 3.0], [1.0, 0.5, 0.0], [0.0, 2.0, 1.0]]
    labels = [0, 2, 1, 1]                                 # the third row is wrong: acc 3/4
    targets = torch.eye(3)[labels] if one_hot else torch.tensor(labels)
    summary = obj.summarize(obj.eval_batch(t(rows), targets))
    assert sorted(summary) == ["acc", "d_prime", "eval_loss", "mAP", "mAUC"]
    assert summary["acc"] == 0.75
    assert summary["eval_loss"] == pytest.approx(sum(ce(r, k) for r, k in zip(rows, labels)) / 4, rel=1e-6)


def test_only_scalar_metrics_reach_the_summary():
    """summarize keeps the scalar metrics of dasslib.metrics.evaluate: numbers and 0-d arrays or tensors."""
    import numpy as np
    for v in (1, 0.5, np.float64(0.5), np.array(0.5), torch.tensor(0.5)):
        assert _is_scalar(v), v
    for v in (np.zeros(3), torch.zeros(1), "0.5", None):
        assert not _is_scalar(v), v


# --- PretrainObjective -------------------------------------------------------------------------------------

class MAE(nn.Module):
    def forward_pretrain(self, x):
        return {"pred": x * 2, "target": x, "mask": x[..., 0] > 0}


def test_pretrain_module_runs_forward_pretrain_and_needs_it():
    obj = PretrainObjective()
    assert obj.needs_teacher is False and obj.metric_names == ("eval_loss",)
    module = obj.module(MAE())
    x = t([[[1.0, 2.0], [-1.0, 0.0]]])
    out = module(x)
    assert torch.equal(out["pred"], x * 2) and torch.equal(out["mask"], torch.tensor([[True, False]]))
    with pytest.raises(TypeError) as err:
        obj.module(nn.Linear(2, 2))
    assert str(err.value) == "Linear has no forward_pretrain(x) method for masked pretraining"


def test_pretrain_loss_takes_a_dict_or_a_triple():
    pred = torch.zeros(1, 2, 2)
    target = t([[[1.0, 1.0], [3.0, 3.0]]])
    mask = torch.tensor([[True, False]])
    obj = PretrainObjective()                              # all patches, as the official SSAM
    for out in ({"pred": pred, "target": target, "mask": mask}, (pred, target, mask), [pred, target, mask]):
        loss, parts = obj.loss(out)
        assert parts == {} and loss.item() == pytest.approx((1 + 9) / 2)
    assert PretrainObjective(patches="masked").loss((pred, target, mask))[0].item() == pytest.approx(1.0)
    with pytest.raises(TypeError) as err:
        obj.loss((pred, target))
    assert str(err.value) == ("forward_pretrain must return (pred (B, N, P), target (B, N, P), mask (B, N) bool) "
                              "or a dict with those keys")
    with pytest.raises(ValueError) as err:
        obj.loss((pred, target, mask), teacher_outputs=pred)
    assert str(err.value) == "masked pretraining takes no teacher"


def test_pretrain_eval_batch_and_summary():
    pred = torch.zeros(2, 3, 1)
    target = t([[[1.0], [2.0], [3.0]], [[4.0], [0.0], [0.0]]])
    mask = torch.tensor([[True, False, True], [False, False, False]])
    obj = PretrainObjective(patches="masked")
    batch = obj.eval_batch((pred, target, mask))
    assert torch.equal(batch["err"], t([1.0 + 9.0, 0.0]))          # squared errors of the scored patches
    assert torch.equal(batch["count"], t([2.0, 0.0]))
    assert obj.summarize(batch) == {"eval_loss": 5.0}
    assert obj.summarize({"err": t([4.0, 0.0]), "count": t([1.0, 0.0])}) == {"eval_loss": 4.0}   # one patch
    # nothing scored at all: 0, not a division by zero
    assert obj.summarize({"err": t([0.0]), "count": t([0.0])}) == {"eval_loss": 0.0}


def test_pretrain_normalized_targets():
    """norm_target: each target patch is standardized (mean 0, unbiased variance 1) before the error, in the
    loss and in evaluation alike."""
    pred = torch.zeros(1, 1, 2)
    target = t([[[1.0, 3.0]]])                          # mean 2, variance 2 -> (-1/sqrt 2, 1/sqrt 2): error 1/2
    out = (pred, target, torch.tensor([[True]]))
    obj = PretrainObjective(norm_target=True)
    assert obj.loss(out)[0].item() == pytest.approx(0.5, rel=1e-5)
    assert obj.eval_batch(out)["err"].item() == pytest.approx(0.5, rel=1e-5)
    assert PretrainObjective().loss(out)[0].item() == pytest.approx(5.0)     # (1 + 9) / 2 without


# --- build_objective ---------------------------------------------------------------------------------------

def test_build_objective():
    obj = build_objective(TrainConfig(loss="ce", progress=False), "multiclass")
    assert isinstance(obj, ClassificationObjective) and obj.task == "multiclass"
    assert build_objective(TrainConfig(progress=False)).task == "multilabel"
    pre = build_objective(TrainConfig(objective="pretrain", loss="masked_mse", norm_target=True,
                                      recon_patches="masked", progress=False))
    assert isinstance(pre, PretrainObjective)
    assert (pre.loss_fn.norm_target, pre.loss_fn.patches) == (True, "masked")
    with pytest.raises(ValueError) as err:
        build_objective(TrainConfig(objective="pretrain", loss="bce", progress=False))
    assert str(err.value) == "objective='pretrain' trains with loss='masked_mse', got loss='bce'"
