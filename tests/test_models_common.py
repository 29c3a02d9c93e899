"""Registry, checkpoint helpers, and identical outputs across scan backends."""
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from dasslib.models import create, get_config, init_dass_from_vmamba, list_models, load_official, read_state_dict

ALL = ["ast_base", "ast_small", "ast_tiny", "aum_base", "aum_small", "aum_tiny", "dass_medium",
       "dass_small", "ssam_base", "ssam_small", "ssam_tiny", "ssast_base", "ssast_small",
       "ssast_tiny"]


def test_registry_names_and_errors():
    assert list_models() == ALL
    assert get_config("dass_medium").depths == (2, 2, 20, 2)
    assert get_config("aum_small", num_classes=35).num_classes == 35
    with pytest.raises(ValueError, match="unknown model 'dass_large'"):
        create("dass_large")
    with pytest.raises(TypeError, match="unknown option.*'embed_dims'.*'dass_small'"):
        create("dass_small", embed_dims=8)
    for name, bad in [("dass_small", dict(pooling="max")), ("aum_tiny", dict(bimamba="v2")),
                      ("aum_tiny", dict(cls_position="end")), ("ast_tiny", dict(attn="flash")),
                      ("ast_tiny", dict(pos_embed="rope")), ("ssam_tiny", dict(pool="max")),
                      ("ssam_tiny", dict(mask_ratio=1.5))]:
        with pytest.raises(ValueError, match=repr(next(iter(bad.values())))[:-1]):
            get_config(name, **bad)


def test_read_state_dict_unwraps_and_validates(tmp_path):
    sd = {"a": torch.ones(2)}
    assert read_state_dict({"model": sd}) is sd
    torch.save({"state_dict": sd}, tmp_path / "ck.pth")
    assert torch.equal(read_state_dict(tmp_path / "ck.pth")["a"], sd["a"])
    with pytest.raises(ValueError, match="not found"):
        read_state_dict(tmp_path / "missing.pth")
    with pytest.raises(TypeError, match="checkpoint path or a state dict"):
        read_state_dict(3)
    with pytest.raises(TypeError, match="not tensors"):
        read_state_dict({"a": torch.ones(1), "epoch": 3})


class _TrainerState:
    """Stands for any object a training script pickles next to its weights (picklable: module level)."""

    def __init__(self, step):
        self.step = step


def test_official_ssam_training_files_load_and_other_pickles_need_trusted(tmp_path):
    import argparse

    model = create("ssam_tiny", num_classes=3)
    sd = model.state_dict()
    # the official SSAM training checkpoint: {model, optimizer, epoch, scaler, args: argparse.Namespace}
    torch.save({"model": sd, "optimizer": {"state": {}, "param_groups": []}, "epoch": 7, "scaler": {},
                "args": argparse.Namespace(lr=1.5e-4, mask_ratio=0.5)}, tmp_path / "ssam.pth")
    assert load_official(create("ssam_tiny", num_classes=3), tmp_path / "ssam.pth").ok
    # any other pickled object: the safe loader refuses, with a message that names the opt-in
    torch.save({"model": sd, "trainer": _TrainerState(3)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="trusted=True"):
        read_state_dict(tmp_path / "other.pth")
    fresh = create("ssam_tiny", num_classes=3)
    assert load_official(fresh, tmp_path / "other.pth", trusted=True).ok
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), sd.values()))


def test_init_dass_from_vmamba_sums_rgb_stem_and_keeps_head():
    torch.manual_seed(0)
    model = create("dass_small", num_classes=5, depths=(1, 1, 1, 1), dims=(8, 16, 32, 64))
    head = model.classifier.head.weight.clone()
    src = {k: torch.randn_like(v) for k, v in model.state_dict().items()
           if not k.startswith("classifier.head")}
    src["patch_embed.0.weight"] = torch.randn(4, 3, 3, 3)            # ImageNet RGB stem
    src["classifier.head.weight"], src["classifier.head.bias"] = torch.randn(1000, 64), torch.randn(1000)
    report = init_dass_from_vmamba(model, {"model": src})
    assert report.ok and not any(k.startswith("classifier.head") for k in report.loaded)
    torch.testing.assert_close(model.patch_embed[0].weight, src["patch_embed.0.weight"].sum(1, True))
    assert torch.equal(model.classifier.head.weight, head)


def test_load_official_reports_prefix_stripping_for_aum():
    model = create("aum_tiny", num_classes=3, embed_dim=32, depth=1, input_fdim=32, input_tdim=64)
    sd = {"module." + k: v for k, v in model.state_dict().items()}
    assert load_official(model, sd).ok


_BACKEND_SCRIPT = textwrap.dedent("""
    import json, torch
    from dasslib.models import create
    specs = {   # name: (overrides, input (B, T, F)); no drop path so both runs are identical
        "dass_small": (dict(depths=(1, 1), dims=(4, 8), drop_path=0.0), (1, 32, 16)),
        "aum_tiny": (dict(embed_dim=8, depth=1, patch_size=8, fstride=8, tstride=8,
                          input_fdim=16, input_tdim=32, bimamba="bi_bi", d_state=2), (1, 32, 16)),
        "ssam_tiny": (dict(embed_dim=8, depth=1, d_state=2, expand=2, bimamba="fo_bi"),
                      (1, 16, 16)),
    }
    diffs = {}
    for name, (kw, shape) in specs.items():
        torch.manual_seed(0)
        ref = create(name, num_classes=3, scan_backend="torch", **kw)
        tri = create(name, num_classes=3, scan_backend="triton", **kw)
        tri.load_state_dict(ref.state_dict())
        x = torch.randn(*shape)
        y_ref, y_tri = ref(x), tri(x)
        y_ref.square().sum().backward()
        y_tri.square().sum().backward()
        grad = max(((a.grad - b.grad).abs().max() / (a.grad.abs().max() + 1e-6)).item()
                   for a, b in zip(ref.parameters(), tri.parameters()) if a.grad is not None)
        diffs[name] = dict(out=(y_ref - y_tri).abs().max().item(), grad=grad)
    print(json.dumps(diffs))
""")


@pytest.mark.skipif(importlib.util.find_spec("dasslib.scans.triton_backend") is None
                    or importlib.util.find_spec("triton") is None,
                    reason="dasslib.scans has no triton backend (or triton is not installed)")
def test_torch_and_triton_scan_backends_agree_forward_and_backward():
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", _BACKEND_SCRIPT], env=env, cwd=root,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    diffs = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(diffs) == {"dass_small", "aum_tiny", "ssam_tiny"}
    assert all(d["out"] < 1e-4 and d["grad"] < 1e-3 for d in diffs.values()), diffs


def test_dass_traces_with_torch_compile_fullgraph():
    """The model and the torch scan backend trace into one graph (dynamo, eager backend: no C++ build)."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = create("dass_small", num_classes=3, depths=[1, 1, 1, 1], dims=[8, 16, 32, 64],
                   scan_backend="torch").eval()
    x = torch.randn(2, 64, 32)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x))


def test_count_parameters_matches_the_official_totals():
    """The official DASS-Small / Medium checkpoints hold 29,884,463 / 48,648,239 parameters
    (527 classes); count_parameters is the one parameter counter the experiments use."""
    from dasslib.models import count_parameters
    with torch.device("meta"):
        small, medium = create("dass_small"), create("dass_medium")
    assert count_parameters(small) == 29_884_463
    assert count_parameters(medium) == 48_648_239
    tiny = create("dass_small", depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), num_classes=3)
    total = count_parameters(tiny)
    tiny.classifier.head.requires_grad_(False)
    assert count_parameters(tiny, trainable_only=True) == total - (64 * 3 + 3)


def test_runtime_resolves_devices_and_autocast():
    import contextlib

    from dasslib.runtime import autocast, resolve_device
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    assert isinstance(autocast("cpu", torch.float32), contextlib.nullcontext)
    assert isinstance(autocast("cpu", None), contextlib.nullcontext)
    with autocast("cpu", torch.bfloat16):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


def test_one_home_for_the_fbank_frame_rate_and_device_resolution():
    """The frame rate and 'auto' device resolution are defined once (dasslib.data.frames,
    dasslib.runtime); other modules import them."""
    import pathlib
    import re

    import dasslib
    root = pathlib.Path(dasslib.__file__).parent
    rate, auto = [], []
    for path in root.rglob("*.py"):
        text = path.read_text()
        if re.search(r"^FRAMES_PER_SECOND\s*=", text, re.M):
            rate.append(path.relative_to(root).as_posix())
        if re.search(r'"cuda" if torch\.cuda\.is_available\(\) else "cpu"', text):
            auto.append(path.relative_to(root).as_posix())
    assert rate == ["data/frames.py"]
    assert auto == ["runtime.py"]


def test_load_official_logs_its_report_when_verbose(caplog):
    import logging
    m = create("dass_small", depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), num_classes=3)
    sd = {f"module.v.{k}": v for k, v in m.state_dict().items()}
    with caplog.at_level(logging.INFO, logger="dasslib.models.checkpoints"):
        report = load_official(m, sd, verbose=True)
    assert report.ok and len(report.loaded) == len(sd)
    assert any("loaded" in r.getMessage() for r in caplog.records)


# --- tap convolutions (the compiled form of one-input-channel and depthwise convolutions) ---------

@pytest.mark.parametrize("cls,shape,channels,k,stride,pad,bias", [
    ("TapConv2d", (2, 6, 9, 11), 6, 3, 1, 1, True),          # SS2D's depthwise 3x3
    ("TapConv2d", (1, 4, 8, 7), 4, 3, 2, 1, False),
    ("TapConv2d", (1, 1, 9, 10), 5, 3, 2, 1, True),          # DASS's stem: one input channel
    ("TapConv1d", (2, 6, 13), 6, 4, 1, 3, True),             # Mamba's causal depthwise conv (k 4, pad 3)
    ("TapConv1d", (1, 3, 5), 3, 4, 1, 3, False),
])
def test_tap_conv_equals_the_convolution(cls, shape, channels, k, stride, pad, bias):
    """tap_conv (a sum of kernel taps) is F.conv1d / F.conv2d in float64, for one input channel and for
    depthwise convolutions; the modules keep nn.Conv's parameter names."""
    from dasslib.models import layers
    torch.manual_seed(0)
    c_in = shape[1]
    conv = getattr(layers, cls)(c_in, channels, k, stride=stride, padding=pad, bias=bias,
                                groups=1 if c_in == 1 else c_in).double()
    assert layers._tap_form(conv)
    x = torch.randn(*shape, dtype=torch.float64)
    ref = conv(x)                                   # eager: the convolution itself
    out = layers.tap_conv(x, conv.weight, conv.bias, conv.stride, conv.padding)
    assert out.shape == ref.shape
    assert (out - ref).abs().max() < 1e-12
    assert set(conv.state_dict()) == ({"weight", "bias"} if bias else {"weight"})


def test_tap_form_only_for_one_input_channel_per_output():
    from dasslib.models import layers
    assert not layers._tap_form(layers.TapConv2d(4, 8, 3, padding=1))              # dense
    assert not layers._tap_form(layers.TapConv2d(4, 4, 3, padding="same", groups=4))
    assert not layers._tap_form(layers.TapConv1d(4, 4, 3, padding=2, dilation=2, groups=4))
    assert layers._tap_form(layers.TapConv1d(4, 4, 4, padding=3, groups=4))


@pytest.mark.parametrize("autocast", [False, True])
def test_tap_conv_compiled_matches_eager(autocast):
    """Traced by torch.compile (aot_eager on the CPU) the modules take the tap form; the result equals
    the eager convolution (fp32), and under autocast it has the convolution's output dtype."""
    from dasslib.models.layers import TapConv1d, TapConv2d
    torch.manual_seed(0)
    for conv, x in ((TapConv2d(6, 6, 3, padding=1, groups=6), torch.randn(2, 6, 9, 11)),
                    (TapConv1d(6, 6, 4, padding=3, groups=6), torch.randn(2, 6, 13)),
                    (TapConv2d(1, 4, 3, stride=2, padding=1), torch.randn(2, 1, 12, 10))):
        conv.tap_form = True     # TapConv2d's default is off (cuDNN measured faster in DASS)
        torch._dynamo.reset()
        compiled = torch.compile(conv, backend="aot_eager", fullgraph=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            ref, out = conv(x), compiled(x)
        assert out.dtype == ref.dtype
        tol = 2e-2 if autocast else 1e-5
        torch.testing.assert_close(out.float(), ref.float(), rtol=tol, atol=tol)


def test_reversed_causal_conv_is_the_flipped_form_without_flips():
    """TapConv1d.reversed_causal (Bi-Bi's backward stream) equals the causal convolution of the flipped
    sequence flipped back, eager (cuDNN / F.conv1d) and compiled (the tap form), in float64; it refuses a
    convolution that is not Mamba's causal one."""
    from dasslib.models.layers import TapConv1d
    torch.manual_seed(0)
    conv = TapConv1d(6, 6, 4, padding=3, groups=6).double()
    x = torch.randn(2, 6, 13, dtype=torch.float64)
    ref = conv(x.flip(-1))[..., :13].flip(-1)
    assert (conv.reversed_causal(x) - ref).abs().max() < 1e-12
    torch._dynamo.reset()
    compiled = torch.compile(conv.reversed_causal, backend="aot_eager", fullgraph=True)
    assert (compiled(x) - ref).abs().max() < 1e-12
    with pytest.raises(ValueError, match="padding"):
        TapConv1d(6, 6, 4, padding=1, groups=6).reversed_causal(x.float())


def test_tap_form_can_be_switched_off(monkeypatch):
    """``tap_form = False`` keeps the convolution in the compiled form too (benchmark comparisons)."""
    from dasslib.models import layers

    def no_taps(*a, **k):
        raise AssertionError("tap form used")

    monkeypatch.setattr(layers, "tap_conv", no_taps)
    conv = layers.TapConv2d(4, 4, 3, padding=1, groups=4)
    conv.tap_form = False
    torch._dynamo.reset()
    x = torch.randn(1, 4, 6, 6)
    torch.testing.assert_close(torch.compile(conv, backend="aot_eager", fullgraph=True)(x), conv(x))
