"""The fast paths of dasslib.fast on the CPU: torch.compile captures the whole model (no graph
break) and computes what eager computes (logits and gradients), through predict, measure,
make_step and the training loop. Inductor's C++ compile takes minutes on the CPU, so these use
the "aot_eager" backend (the same graph capture and AOT autograd); the GPU benchmark
(benchmarks/bench_models.py) checks inductor and CUDA graphs against eager on the GPU."""
import pytest
import torch
import torch.nn.functional as F

import dasslib.fast as fast
import dasslib.models as M
from dasslib.bench import make_step
from dasslib.inference import measure, predict
from dasslib.train import TrainConfig

TINY = dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), num_classes=5)


@pytest.fixture(autouse=True)
def aot_eager(monkeypatch):
    monkeypatch.setattr(fast, "COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def test_resolve_fast_modes():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert fast.resolve_fast("auto", cpu) == "off"
    assert fast.resolve_fast("auto", cuda, 1 * 1024 * 128) == "graphs"
    assert fast.resolve_fast("auto", cuda, fast.GRAPH_MAX_ELEMS) == "graphs"
    assert fast.resolve_fast("auto", cuda, fast.GRAPH_MAX_ELEMS + 1) == "compile"
    assert fast.resolve_fast("compile", cpu) == "compile"
    assert fast.resolve_fast("off", cuda) == "off"
    with pytest.raises(ValueError, match="CUDA"):
        fast.resolve_fast("graphs", cpu)
    with pytest.raises(ValueError, match="fast must be one of"):
        fast.resolve_fast("fastest", cpu)
    with pytest.raises(ValueError, match="fast must be one of"):
        predict(M.create("dass_small", **TINY), torch.randn(64, 32), fast="yes")


@pytest.mark.parametrize("name,kw,frames,mel", [
    ("dass_small", TINY, 64, 32),
    ("aum_tiny", dict(depth=2, embed_dim=32, num_classes=5), 64, 32),
    ("ssam_tiny", dict(depth=2, embed_dim=32, num_classes=5), 64, 80),
    ("ast_tiny", dict(depth=2, num_classes=5), 64, 32),
])
def test_compiled_model_matches_eager_logits_and_gradients(name, kw, frames, mel):
    torch.manual_seed(0)
    m = M.create(name, **kw)
    for mod in m.modules():             # no drop path: both runs must see the same network
        if hasattr(mod, "drop_prob"):
            mod.drop_prob = 0.0
    x = torch.randn(2, frames, mel)
    y = torch.rand(2, kw["num_classes"])
    m.eval()
    with torch.inference_mode():
        ref = m(x)
        out = fast.FastForward(m, "compile")(x)   # fullgraph=True: a graph break would raise
    assert rel(out, ref) < 1e-6
    m.train()
    F.binary_cross_entropy_with_logits(m(x), y).backward()
    g_ref = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
    m.zero_grad(set_to_none=True)
    net = fast.compile_for_training(m, "compile", "cpu")
    F.binary_cross_entropy_with_logits(net(x), y).backward()
    g = {n: p.grad for n, p in m.named_parameters() if p.grad is not None}
    assert g.keys() == g_ref.keys() and len(g) > 10
    worst = max(rel(g[n], g_ref[n]) for n in g)
    assert worst < 1e-5, worst


def test_predict_and_measure_take_the_fast_path_and_agree():
    torch.manual_seed(0)
    m = M.create("dass_small", **TINY)
    x = torch.randn(3, 64, 32)
    eager = predict(m, x, fast="off", batch_size=2)
    calls = []
    real = fast.FastForward.__call__

    def spy(self, xx):
        calls.append(tuple(xx.shape))
        return real(self, xx)
    fast.FastForward.__call__ = spy
    try:
        compiled = predict(m, x, fast="compile", batch_size=2)
        r = measure(m, 64, num_mel_bins=32, fast="compile", repeats=1)
    finally:
        fast.FastForward.__call__ = real
    assert calls == [(2, 64, 32), (1, 64, 32), (1, 64, 32), (1, 64, 32)]
    assert rel(compiled, eager) < 1e-6
    assert r["fast"] == "compile" and r["seconds"] > 0
    assert measure(m, 64, num_mel_bins=32, repeats=1)["fast"] == "off"
    # the compiled forward is cached per model and mode
    assert fast.fast_forward(m, "compile", x) is fast.fast_forward(m, "compile", x)
    assert fast.fast_forward(m, "off", x) is m


def test_new_shapes_past_the_limit_run_eagerly_with_one_warning():
    torch.manual_seed(0)
    m = M.create("dass_small", **TINY).eval()
    ff = fast.FastForward(m, "compile", max_shapes=1)
    with torch.inference_mode():
        a = ff(torch.randn(1, 64, 32))
        with pytest.warns(UserWarning, match="more than 1 input shapes"):
            b = ff(torch.randn(1, 96, 32))
        c = ff(torch.randn(1, 128, 32))
    assert a.shape == b.shape == c.shape == (1, 5) and len(ff.shapes) == 1


def test_make_step_fast_train_updates_like_eager():
    x = torch.randn(2, 64, 32)
    weights = []
    for mode in ("off", "compile"):
        torch.manual_seed(0)
        m = M.create("dass_small", **TINY)
        init = {k: v.clone() for k, v in m.state_dict().items()}
        for mod in m.modules():
            if hasattr(mod, "drop_prob"):
                mod.drop_prob = 0.0
        step = make_step(m, "train", x, optimizer="sgd", lr=0.1, fast=mode)
        step()
        step()
        weights.append({k: v.clone() for k, v in m.state_dict().items()})
    worst = max(rel(weights[1][k], weights[0][k]) for k in weights[0] if weights[0][k].is_floating_point())
    assert worst < 1e-5
    changed = sum(not torch.equal(weights[1][k], init[k]) for k in init)
    assert changed > 10


def test_train_config_fast_option():
    assert TrainConfig().fast == "auto"
    assert TrainConfig(fast="compile").fast == "compile"
    assert TrainConfig(fast="graphs").fast == "graphs"
    with pytest.raises(ValueError, match="fast must be one of"):
        TrainConfig(fast="cudagraphs")
    # switching the fast path does not change results, so a run may resume with another value
    assert TrainConfig(fast="off").differences(TrainConfig(fast="compile")) == {}


def test_train_fast_resolves_per_device():
    assert fast.resolve_train_fast("auto", "cpu") == "off"
    assert fast.resolve_train_fast("auto", "cuda") == "graphs"
    assert fast.resolve_train_fast("compile", "cpu") == "compile"
    with pytest.raises(ValueError, match="needs a CUDA device"):
        fast.resolve_train_fast("graphs", "cpu")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        make_step(M.create("dass_small", **TINY), "train", torch.randn(1, 64, 32), fast="graphs")


def test_a_failing_compile_falls_back_to_eager_with_a_warning(monkeypatch):
    torch.manual_seed(0)
    m = M.create("dass_small", **TINY).eval()
    x = torch.randn(1, 64, 32)
    ff = fast.FastForward(m, "compile")

    def broken(_x):
        raise RuntimeError("backend compiler failed")
    ff.compiled = broken
    with torch.inference_mode():
        with pytest.warns(UserWarning, match="compiled forward failed"):
            out = ff(x)
        again = ff(x)                       # no second warning, still eager
        ref = m(x)
    assert torch.equal(out, ref) and torch.equal(again, ref)
    assert isinstance(ff.failed, RuntimeError)
    # a genuine input error is raised by the eager call, not swallowed
    ff2 = fast.FastForward(m, "compile")
    with torch.inference_mode(), pytest.warns(UserWarning), pytest.raises(ValueError, match="expects"):
        ff2(torch.randn(64, 32))


def test_the_cache_keeps_only_the_last_models():
    import gc
    import weakref
    fast.clear_cache()
    models = [M.create("dass_small", **TINY) for _ in range(fast.CACHED_MODELS + 1)]
    x = torch.randn(1, 64, 32)
    first = [fast.fast_forward(m, "compile", x) for m in models]
    with torch.inference_mode():
        first[0](x)                # compiled once: dynamo's caches must not keep it alive either
    assert fast.fast_forward(models[-1], "compile", x) is first[-1]      # cached
    gone = weakref.ref(models[0])
    del models[0], first
    gc.collect()
    assert gone() is None          # evicted: the oldest model is freed with its compiled forward
    fast.clear_cache()
    assert not fast._cache


def test_whole_graph_capture_keys_on_shape_mode_and_the_model_tensors(monkeypatch):
    """GRAPH_CAPTURE = "whole": one capture per (shape, dtype, mode, autocast, inference mode, parameter and
    buffer addresses); a weight loaded in place keeps the capture (a graph reads the same addresses), a
    new tensor makes a new one and drops the stale one; with gradients on, the compiled forward runs as
    it is. The CUDA capture itself is stood in for here (tests/gpu/test_cuda_paths.py runs it)."""
    made = []

    class FakeCapture:
        def __init__(self, fn, x):
            made.append(tuple(x.shape))
            self.fn = fn

        def __call__(self, x):
            return self.fn(x)

    monkeypatch.setattr(fast, "CapturedForward", FakeCapture)
    monkeypatch.setattr(fast, "GRAPH_CAPTURE", "whole")
    torch.manual_seed(0)
    m = M.create("dass_small", **TINY).eval()
    ff = fast.FastForward(m, "graphs")
    x = torch.randn(2, 64, 32)
    with torch.inference_mode():
        a = ff(x)
        ff(x)
        assert made == [(2, 64, 32)] and torch.allclose(a, m(x), atol=1e-5)
        ff(torch.randn(1, 64, 32))
        assert made == [(2, 64, 32), (1, 64, 32)]
    with torch.no_grad():
        m.classifier.head.weight.mul_(2.0)            # loaded in place: the same capture
    with torch.inference_mode():
        ff(x)
    assert len(made) == 2
    head = m.classifier.head
    m.classifier.head = torch.nn.Linear(head.in_features, head.out_features)   # a new tensor: recaptured
    with torch.inference_mode():
        ff(x)
    assert len(made) == 3 and len(ff.captured) == 2      # the stale (2, 64, 32) capture was dropped
    m.load_state_dict({k: v.clone() for k, v in m.state_dict().items()}, assign=True)   # new tensors
    with torch.inference_mode():
        ff(x)
    assert len(made) == 4
    m.classifier.head.bias.data = m.classifier.head.bias.data.clone()     # new storage, no registration
    with torch.inference_mode():
        ff(x)
        ff(x)
    assert len(made) == 5 and len(ff.captured) == 2
    y = ff(x.requires_grad_(True))                       # gradients: no capture
    assert len(made) == 5 and y.requires_grad


def test_graph_capture_setting_is_checked_and_capture_needs_cuda(monkeypatch):
    m = M.create("dass_small", **TINY).eval()
    monkeypatch.setattr(fast, "GRAPH_CAPTURE", "everything")
    with pytest.raises(ValueError, match="GRAPH_CAPTURE"):
        fast.FastForward(m, "graphs")
    with pytest.raises(ValueError, match="needs a CUDA input"):
        fast.CapturedForward(m, torch.randn(1, 64, 32))
