"""dasslib.losses against values computed by hand."""
import math

import pytest
import torch

from dasslib.losses import (
    BCEWithLogits,
    CrossEntropy,
    KDLoss,
    MaskedMSE,
    bce_distillation,
    get_loss,
    kl_distillation,
    list_losses,
    masked_patch_errors,
    needs_teacher,
)

LOG2 = math.log(2.0)
LOG3 = math.log(3.0)


def t(rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_bce_with_logits_hand_value():
    # logit 0 vs target 1: log 2; logit 2 vs target 0: log(1 + e^2)
    got = BCEWithLogits()(t([[0.0, 2.0]]), t([[1.0, 0.0]]))
    assert got.item() == pytest.approx((LOG2 + math.log(1 + math.e ** 2)) / 2, rel=1e-6)


def test_bce_computes_in_float32_from_bf16():
    got = BCEWithLogits()(t([[0.0, 2.0]]).bfloat16(), t([[1.0, 0.0]]))
    assert got.dtype == torch.float32


def test_cross_entropy_indices_and_probabilities():
    logits = t([[0.0, LOG3]])  # softmax = [0.25, 0.75]
    ce = CrossEntropy()
    assert ce(logits, torch.tensor([1])).item() == pytest.approx(-math.log(0.75), rel=1e-6)
    assert ce(logits, torch.tensor([0])).item() == pytest.approx(-math.log(0.25), rel=1e-6)
    assert ce(logits, t([[0.0, 1.0]])).item() == pytest.approx(-math.log(0.75), rel=1e-6)
    mixed = -(0.5 * math.log(0.25) + 0.5 * math.log(0.75))
    assert ce(logits, t([[0.5, 0.5]])).item() == pytest.approx(mixed, rel=1e-6)
    with pytest.raises(TypeError, match="integers"):
        ce(logits, torch.tensor([1.0]))


def test_kl_distillation_hand_value():
    # student uniform over 2 classes, teacher softmax [0.25, 0.75]: KL(teacher || student)
    expected = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    got = kl_distillation(t([[0.0, 0.0], [5.0, 5.0]]), t([[0.0, LOG3], [1.0, 1.0 + LOG3]]))
    assert got.item() == pytest.approx(expected, rel=1e-5)  # batchmean of two equal rows


def test_kl_temperature_divides_teacher_only_without_t_squared():
    # T = 2: teacher probs proportional to [1, sqrt(3)]; the student logits are not divided, no T**2
    p = torch.tensor([1.0, math.sqrt(3.0)])
    p = p / p.sum()
    student = t([[0.0, 0.0]])
    expected = float((p * (p / 0.5).log()).sum())
    assert kl_distillation(student, t([[0.0, LOG3]]), temperature=2.0).item() == pytest.approx(expected, rel=1e-5)
    # dividing the student too would change the value for non-uniform students: check we do not
    s = t([[1.0, 0.0]])
    ps = torch.softmax(s[0], dim=0)
    expected = float((p * (p / ps).log()).sum())
    assert kl_distillation(s, t([[0.0, LOG3]]), temperature=2.0).item() == pytest.approx(expected, rel=1e-5)


def test_kl_is_a_softmax_over_classes():
    # adding a constant to all teacher logits changes every per-class sigmoid but not the softmax: KL unchanged
    s, teacher = t([[0.3, -1.0, 2.0]]), t([[1.0, 0.0, -1.0]])
    assert kl_distillation(s, teacher).item() == pytest.approx(kl_distillation(s, teacher + 4.0).item(), abs=1e-6)
    assert bce_distillation(s, teacher).item() != pytest.approx(bce_distillation(s, teacher + 4.0).item(), abs=1e-3)


def test_bce_distillation_hand_value():
    # student sigmoid [0.75, 0.5]; soft targets sigmoid(teacher) = [0.5, 0.75]
    first = -(0.5 * math.log(0.75) + 0.5 * math.log(0.25))
    second = LOG2
    got = bce_distillation(t([[LOG3, 0.0]]), t([[0.0, LOG3]]))
    assert got.item() == pytest.approx((first + second) / 2, rel=1e-6)


def test_kd_kl_combines_half_bce_half_kl():
    student, y, teacher = t([[0.0, 0.0]]), t([[1.0, 0.0]]), t([[0.0, LOG3]])
    kl = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    loss = get_loss("kd_kl")
    parts = loss.components(student, y, teacher)
    assert parts["hard"].item() == pytest.approx(LOG2, rel=1e-6)
    assert parts["distill"].item() == pytest.approx(kl, rel=1e-5)
    assert loss(student, y, teacher).item() == pytest.approx(0.5 * LOG2 + 0.5 * kl, rel=1e-5)
    heavier = get_loss("kd_kl", weight=0.25)(student, y, teacher)
    assert heavier.item() == pytest.approx(0.75 * LOG2 + 0.25 * kl, rel=1e-5)


def test_kd_bce_uses_sigmoid_teacher_targets():
    student, y, teacher = t([[LOG3, 0.0]]), t([[1.0, 1.0]]), t([[0.0, LOG3]])
    hard = -(math.log(0.75) + math.log(0.5)) / 2
    soft = (-(0.5 * math.log(0.75) + 0.5 * math.log(0.25)) + LOG2) / 2
    assert get_loss("kd_bce")(student, y, teacher).item() == pytest.approx(0.5 * hard + 0.5 * soft, rel=1e-6)


def test_kd_rejects_missing_teacher_and_bad_options():
    with pytest.raises(ValueError, match="teacher"):
        KDLoss()(t([[0.0]]), t([[1.0]]), None)
    with pytest.raises(ValueError, match="distill"):
        KDLoss(distill="l2")
    with pytest.raises(ValueError, match="weight"):
        KDLoss(weight=1.5)
    with pytest.raises(ValueError, match="temperature"):
        KDLoss(temperature=0.0)
    with pytest.raises(ValueError, match="same shape"):
        kl_distillation(t([[0.0, 1.0]]), t([[0.0, 1.0, 2.0]]))


def test_masked_mse_averages_masked_patches_only():
    pred = torch.zeros(1, 3, 2)
    target = t([[[1.0, 1.0], [2.0, 0.0], [3.0, 3.0]]])
    mask = torch.tensor([[True, False, True]])
    # masked patch errors: (1 + 1) / 2 = 1 and (9 + 9) / 2 = 9; the unmasked one (error 2) is left out
    assert MaskedMSE()(pred, target, mask).item() == pytest.approx(5.0)
    assert masked_patch_errors(pred, target, mask).tolist() == [[1.0, 0.0, 9.0]]


def test_masked_mse_all_patches_is_the_official_ssam_loss():
    pred = torch.zeros(1, 3, 2)
    target = t([[[1.0, 1.0], [2.0, 0.0], [3.0, 3.0]]])
    mask = torch.tensor([[True, False, True]])
    # every patch counts: (1 + 2 + 9) / 3 = 4, also the unmasked one and whatever the mask is
    assert MaskedMSE(patches="all")(pred, target, mask).item() == pytest.approx(4.0)
    assert MaskedMSE(patches="all")(pred, target, torch.zeros(1, 3, dtype=torch.bool)).item() == pytest.approx(4.0)
    assert torch.nn.functional.mse_loss(pred, target).item() == pytest.approx(4.0)  # the official mae_loss(mask=None)
    with pytest.raises(ValueError, match="patches must be one of"):
        MaskedMSE(patches="visible")


def test_masked_mse_norm_target():
    pred = torch.zeros(1, 1, 2)
    target = t([[[1.0, 3.0]]])  # mean 2, unbiased variance 2 -> normalized to -+1/sqrt(2)
    got = MaskedMSE(norm_target=True)(pred, target, torch.tensor([[True]]))
    assert got.item() == pytest.approx(0.5, rel=1e-5)
    assert MaskedMSE()(pred, target, torch.tensor([[True]])).item() == pytest.approx(5.0)


def test_masked_mse_bad_inputs():
    pred = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match="no patch"):
        MaskedMSE()(pred, pred, torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool"):
        MaskedMSE()(pred, pred, torch.ones(2, 3))
    with pytest.raises(ValueError, match="mask"):
        MaskedMSE()(pred, pred, torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(B, N, P\)"):
        MaskedMSE()(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2, dtype=torch.bool))


def test_registry():
    assert list_losses() == ["bce", "ce", "kd_bce", "kd_kl", "masked_mse"]
    assert isinstance(get_loss("masked_mse", norm_target=True), MaskedMSE)
    assert needs_teacher(get_loss("kd_bce")) and not needs_teacher(get_loss("bce"))
    with pytest.raises(ValueError, match="did you mean 'kd_kl'"):
        get_loss("kd_kll")


def _kl64(student, teacher, temperature):
    """KL(softmax(teacher / T) || softmax(student)), batch mean, in float64 from explicit exponentials."""
    s = torch.as_tensor(student, dtype=torch.float64)
    q = torch.as_tensor(teacher, dtype=torch.float64) / temperature
    p_t = q.exp() / q.exp().sum(dim=1, keepdim=True)
    p_s = s.exp() / s.exp().sum(dim=1, keepdim=True)
    return float((p_t * (p_t.log() - p_s.log())).sum() / s.shape[0])


def _bce64(logits, targets):
    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(targets, dtype=torch.float64)
    sig = 1.0 / (1.0 + (-z).exp())
    return float(-(y * sig.log() + (1 - y) * (1 - sig).log()).mean())


@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0])
def test_kd_loss_passes_its_temperature_to_both_distill_terms(temperature):
    student = [[0.2, -1.0, 1.5], [0.0, 0.7, -0.3]]
    teacher = [[2.0, -0.5, 0.1], [-1.2, 1.1, 0.4]]
    y = [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    hard = _bce64(student, y)
    kl = _kl64(student, teacher, temperature)
    soft = torch.sigmoid(torch.tensor(teacher, dtype=torch.float64) / temperature)
    bce = _bce64(student, soft)
    for name, distill in (("kd_kl", kl), ("kd_bce", bce)):
        loss = get_loss(name, weight=0.3, temperature=temperature)
        parts = loss.components(t(student), t(y), t(teacher))
        assert parts["distill"].item() == pytest.approx(distill, rel=1e-5), name
        assert parts["hard"].item() == pytest.approx(hard, rel=1e-5), name
        assert parts["loss"].item() == pytest.approx(0.7 * hard + 0.3 * distill, rel=1e-5), name
    # the temperature matters for these logits: T = 3 and T = 1 give clearly different terms
    if temperature == 3.0:
        assert abs(kl - _kl64(student, teacher, 1.0)) > 0.05


def test_bce_distillation_temperature_hand_value():
    # student logits log 3 (sigmoid 0.75). Teacher logit 2 log 3 at T = 2: target sigmoid(log 3) = 0.75;
    # teacher logit 0: target 0.5 whatever T
    first = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    second = -(0.5 * math.log(0.75) + 0.5 * math.log(0.25))
    got = bce_distillation(t([[LOG3, LOG3]]), t([[2 * LOG3, 0.0]]), temperature=2.0)
    assert got.item() == pytest.approx((first + second) / 2, rel=1e-6)
    # at T = 1 the first soft target would be 0.9: another value
    assert bce_distillation(t([[LOG3, LOG3]]), t([[2 * LOG3, 0.0]])).item() != pytest.approx(got.item(), rel=1e-3)


@pytest.mark.parametrize("loss", ["kd_kl", "kd_bce"])
@pytest.mark.parametrize("task", ["multilabel", "multiclass"])
def test_train_config_kd_settings_reach_the_loss(loss, task):
    from dasslib.train import TrainConfig
    from dasslib.train.objectives import build_objective

    obj = build_objective(TrainConfig(loss=loss, kd_weight=0.2, kd_temperature=4.0, progress=False), task)
    assert (obj.loss_fn.weight, obj.loss_fn.temperature) == (0.2, 4.0)
    # and the value the objective returns is built with them
    student, teacher = [[0.5, -0.5, 1.0]], [[3.0, 0.0, -2.0]]
    if task == "multiclass":
        y = torch.tensor([2])
        s64 = torch.tensor(student, dtype=torch.float64)
        hard = float(-(s64[0, 2] - s64.exp().sum().log()))
    else:
        y = t([[0.0, 1.0, 1.0]])
        hard = _bce64(student, y)
    if loss == "kd_kl":
        distill = _kl64(student, teacher, 4.0)
    else:
        distill = _bce64(student, torch.sigmoid(torch.tensor(teacher, dtype=torch.float64) / 4.0))
    value, parts = obj.loss(t(student), y, t(teacher))
    assert value.item() == pytest.approx(0.8 * hard + 0.2 * distill, rel=1e-5)
    assert parts["distill"].item() == pytest.approx(distill, rel=1e-5)


# ---- the error contract: each message names the argument and the shapes (mutation testing found these
# unchecked: a wrong name or a lost shape in a message passed every test)
@pytest.mark.parametrize("loss,args,names", [
    (BCEWithLogits(), ("logits", "targets"), ("logits", "targets")),
    (CrossEntropy(), ("logits", "targets"), ("logits", "targets")),
    (kl_distillation, ("student_logits", "teacher_logits"), ("student_logits", "teacher_logits")),
    (bce_distillation, ("student_logits", "teacher_logits"), ("student_logits", "teacher_logits")),
])
def test_messages_name_the_arguments_and_their_shapes(loss, args, names):
    first, second = names
    with pytest.raises(ValueError, match=rf"^{first} must be a \(B, C\) tensor, got \(2, 3, 4\)$"):
        loss(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match=rf"^{first} must be a \(B, C\) tensor, got list$"):
        loss([[0.0]], torch.zeros(1, 1))
    with pytest.raises(ValueError, match=rf"^{first} \(2, 3\) and {second} \(2, 4\) must have the same shape$"):
        loss(torch.zeros(2, 3), torch.zeros(2, 4))


def test_cross_entropy_index_targets_message():
    with pytest.raises(ValueError, match=r"^targets \(3,\) must hold one class index per row of logits \(2, 5\)$"):
        CrossEntropy()(torch.zeros(2, 5), torch.zeros(3, dtype=torch.long))


def test_kd_weight_bounds_are_inclusive_and_messages_list_the_choices():
    logits, targets = torch.randn(2, 3), torch.rand(2, 3).round()
    teacher = torch.randn(2, 3)
    bce, kl = BCEWithLogits()(logits, targets), kl_distillation(logits, teacher)
    torch.testing.assert_close(KDLoss(weight=0.0)(logits, targets, teacher), bce)
    torch.testing.assert_close(KDLoss(weight=1.0)(logits, targets, teacher), kl)
    for bad in (-0.01, 1.01):
        with pytest.raises(ValueError, match=rf"^weight must lie in \[0, 1\], got {bad}$"):
            KDLoss(weight=bad)
    with pytest.raises(ValueError, match=r"^hard must be one of \['bce', 'ce'\], got 'mse'$"):
        KDLoss(hard="mse")
    with pytest.raises(ValueError, match=r"^distill must be one of \['bce', 'kl'\], got 'l2'$"):
        KDLoss(distill="l2")
    with pytest.raises(ValueError, match="^a distillation loss needs teacher_logits$"):
        KDLoss()(logits, targets, None)
    with pytest.raises(ValueError, match=r"^pred \(2, 3, 4\) and target \(2, 3, 5\) must have the same shape$"):
        MaskedMSE()(torch.zeros(2, 3, 4), torch.zeros(2, 3, 5), torch.ones(2, 3, dtype=torch.bool))
