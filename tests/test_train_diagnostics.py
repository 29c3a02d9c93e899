"""dasslib.train.diagnostics: per-stage gradient norms and activation statistics in the history."""
import math

import pandas as pd
import torch
from torch import nn

from dasslib.models import create
from dasslib.train import fit
from dasslib.train.diagnostics import EpochDiagnostics, activation_stats, grad_norms, stages
from tests.test_train import TinyNet, loaders, small_cfg

TINY_DASS = dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), num_classes=3)


def _run(out_dir, **kw):
    torch.manual_seed(0)
    model = TinyNet()
    train, ev = loaders()
    return model, fit(model, train, ev, small_cfg(**kw), out_dir)


def test_diagnostics_are_observations_only(tmp_path):
    """With diagnostics every step, the weights and every training column of the history are those of a
    run without them (same random stream), and the history gains the diagnostic columns."""
    m0, r0 = _run(tmp_path / "off")
    m1, r1 = _run(tmp_path / "on", diagnostics_every=1)
    assert all(torch.equal(a, b) for a, b in zip(m0.state_dict().values(), m1.state_dict().values()))
    extra = [c for c in r1.history.columns if c not in r0.history.columns]
    assert {"grad_norm", "grad_norm_max", "grad_norm/net", "act_rms/net", "act_shared/net", "logit_std"} == set(extra)
    pd.testing.assert_frame_equal(r0.history.drop(columns="time_s"),
                                  r1.history.drop(columns=["time_s", *extra]))
    h = r1.history
    assert (h.grad_norm > 0).all() and (h.grad_norm_max >= h.grad_norm).all()
    assert (h.logit_std > 0).all()
    # one stage: its norm is the whole model's
    assert ((h["grad_norm/net"] - h.grad_norm).abs() < 1e-9).all()
    on_disk = pd.read_csv(r1.out_dir / "history.csv")
    assert "grad_norm/net" in on_disk.columns


def test_grad_norms_per_stage_and_unscaling():
    torch.manual_seed(0)
    model = create("dass_small", **TINY_DASS)
    model(torch.randn(2, 64, 32)).sum().backward()
    norms = grad_norms(model)
    names = [k.split("/", 1)[1] for k in norms if "/" in k]
    assert {"layers.0", "layers.3", "patch_embed"} <= set(names)
    total = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters() if p.grad is not None]))
    assert math.isclose(norms["grad_norm"], float(total), rel_tol=1e-5)
    assert math.isclose(math.sqrt(sum(v ** 2 for k, v in norms.items() if "/" in k)), norms["grad_norm"],
                        rel_tol=1e-6)
    half = grad_norms(model, scale=2.0)
    assert math.isclose(half["grad_norm"], norms["grad_norm"] / 2, rel_tol=1e-6)


def test_activation_stats_see_a_collapse_and_restore_the_mode():
    torch.manual_seed(0)
    model = create("dass_small", **TINY_DASS).train()
    x = torch.randn(4, 64, 32)
    live = activation_stats(model, x, lambda: torch.autocast("cpu", enabled=False))
    assert model.training
    assert live["logit_std"] > 0 and all(v > 0 for k, v in live.items() if k.startswith("act_rms/layers"))
    head = model.get_classifier()
    with torch.no_grad():                       # constant outputs: a zero head with a bias
        head.weight.zero_()
        head.bias.fill_(0.3)
    dead = activation_stats(model, x, lambda: torch.autocast("cpu", enabled=False))
    assert dead["logit_std"] == 0.0


def test_act_shared_is_the_clip_mean_share_and_sees_a_drowning_constant():
    """act_shared = mean square of the clip mean / mean square: by hand on a known stage output, and
    near 1 once a large clip-independent vector is added to a stage's output (what LayerNorm then divides
    away), near 0 for independent clips."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Identity())
    x = torch.randn(64, 10)
    got = activation_stats(net, x, lambda: torch.autocast("cpu", enabled=False))["act_shared/0"]
    assert math.isclose(got, float(x.mean(0).pow(2).mean() / x.pow(2).mean()), rel_tol=1e-6)
    assert got < 0.05
    offset = torch.full((10,), 30.0)
    shared = activation_stats(net, x + offset, lambda: torch.autocast("cpu", enabled=False))["act_shared/0"]
    assert shared > 0.99
    model = create("dass_small", **TINY_DASS)
    model.layers[3].register_forward_hook(lambda m, i, out: out + 100.0)
    stats = activation_stats(model, torch.randn(4, 64, 32), lambda: torch.autocast("cpu", enabled=False))
    assert stats["act_shared/layers.3"] > 0.99 > stats["act_shared/layers.2"]


def test_epoch_accumulator():
    d = EpochDiagnostics(every=3)
    assert [s for s in range(1, 10) if d.due(s)] == [3, 6, 9]
    assert d.row() == {}
    d.add({"grad_norm": 1.0, "grad_norm/a": 0.5})
    d.add({"grad_norm": 3.0, "grad_norm/a": 1.5})
    assert d.row() == {"grad_norm": 2.0, "grad_norm/a": 1.0, "grad_norm_max": 3.0}
    d.reset()
    assert d.row() == {} and not EpochDiagnostics(0).due(5)


def test_stages_split_module_lists():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(2, 2)
            self.blocks = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])

    assert list(stages(M())) == ["embed", "blocks.0", "blocks.1"]


def test_resuming_with_diagnostics_switched_on_is_allowed(tmp_path):
    """The option is not part of a run's identity: a finished run without it is returned as stored."""
    _, first = _run(tmp_path / "run")
    _, again = _run(tmp_path / "run", diagnostics_every=2)
    pd.testing.assert_frame_equal(first.history, again.history)
