"""Selective scan on the CPU: the PyTorch backend against the float64 step-by-step reference
(values and gradients), the two-level chunked scan at chunk boundaries, pieces and carried
states, backend dispatch, and the layouts (SS2D cross-scan / cross-merge, bidirectional).
The Triton backend has its own file (tests/test_scan_triton.py)."""
import logging
import subprocess
import sys

import pytest
import torch

from dasslib.scans import (
    bidirectional_selective_scan,
    cross_merge_2d,
    cross_scan_2d,
    cross_selective_scan_2d,
    selective_scan,
    selective_scan_ref,
)
from dasslib.scans.api import resolve_backend
from dasslib.scans.torch_backend import _linear_scan, _sequential_scan, selective_scan_torch


def make(b=2, d=6, L=37, N=4, G=2, z=True, varying=True, dtype=torch.float32, seed=0):
    """Random scan arguments (dict) with mamba-like magnitudes."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    args = dict(u=r(b, d, L), delta=r(b, d, L) * 0.5, A=-torch.exp(r(d, N) * 0.5),
                B=r(b, G, N, L) if varying else r(d, N), C=r(b, G, N, L) if varying else r(d, N),
                D=r(d), z=r(b, d, L) if z else None, delta_bias=r(d) * 0.1)
    return {k: (v.to(dtype) if v is not None and k in ("u", "delta", "B", "C", "z") else v)
            for k, v in args.items()}


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def with_grad(args):
    return {k: (v.clone().requires_grad_(True) if v is not None else None) for k, v in args.items()}


@pytest.mark.parametrize("L", [1, 2, 15, 16, 17, 255, 256, 257, 600])
@pytest.mark.parametrize("chunk", [2, 16])
def test_two_level_scan_matches_the_sequential_one(L, chunk):
    g = torch.Generator().manual_seed(L)
    a = torch.rand(3, 2, L, generator=g, dtype=torch.float64)
    x = torch.randn(3, 2, L, generator=g, dtype=torch.float64)
    assert torch.allclose(_linear_scan(a, x, chunk), _sequential_scan(a, x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", [
    dict(),                                    # groups 2, z, D, delta_bias, softplus
    dict(L=1), dict(L=300), dict(G=1), dict(G=6, d=6), dict(varying=False), dict(z=False, N=1),
])
def test_torch_backend_matches_float64_reference(case):
    args = make(**case)
    for softplus in (True, False):
        kw = dict(args, delta_softplus=softplus)
        if not softplus:
            kw["delta"] = kw["delta"].abs()    # without softplus delta must stay positive
        y = selective_scan(**kw, backend="torch")
        ref = selective_scan_ref(**{k: (v.double() if torch.is_tensor(v) else v) for k, v in kw.items()})
        assert y.dtype == torch.float32 and y.shape == args["u"].shape
        assert rel(y, ref) < 1e-5


def test_torch_backend_gradients_match_reference():
    args = make(L=70, seed=3)
    a1, a2 = with_grad(args), with_grad({k: (v.double() if v is not None else None) for k, v in args.items()})
    y = selective_scan(**a1, delta_softplus=True, backend="torch")
    ref = selective_scan_ref(**a2, delta_softplus=True)
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    (y * w).sum().backward()
    (ref * w.double()).sum().backward()
    for k in a1:
        if a1[k] is not None:
            assert rel(a1[k].grad, a2[k].grad) < 1e-5, k


def test_gradcheck_in_float64():
    args = {k: (v.double() if v is not None else None) for k, v in make(b=1, d=2, L=19, N=2, G=1, seed=5).items()}
    names = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]
    inputs = tuple(args[k].clone().requires_grad_(True) for k in names)

    def f(*xs):
        return selective_scan_torch(**dict(zip(names, xs)), delta_softplus=True)
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6)


def test_return_last_state_and_carrying_it_across_two_chunks():
    args = make(L=50, z=False)
    y, h = selective_scan(**args, delta_softplus=True, return_last_state=True, backend="torch")
    ref_y, ref_h = selective_scan_ref(**{k: (v.double() if v is not None else None) for k, v in args.items()},
                                      delta_softplus=True, return_last_state=True)
    assert h.dtype == torch.float32 and h.shape == (2, 6, 4) and rel(h, ref_h) < 1e-5 and rel(y, ref_y) < 1e-5
    cut = 23
    first = {k: (v[..., :cut] if v is not None and v.dim() >= 3 else v) for k, v in args.items()}
    second = {k: (v[..., cut:] if v is not None and v.dim() >= 3 else v) for k, v in args.items()}
    y1, h1 = selective_scan(**first, delta_softplus=True, return_last_state=True, backend="torch")
    y2, h2 = selective_scan(**second, delta_softplus=True, return_last_state=True, initial_state=h1,
                            backend="torch")
    assert rel(torch.cat([y1, y2], -1), y) < 1e-6 and rel(h2, h) < 1e-6


def test_pieces_with_checkpointing_equal_one_piece():
    args = with_grad(make(L=90, seed=7))
    one = selective_scan_torch(**args, delta_softplus=True)
    (one ** 2).sum().backward()
    g_one = {k: v.grad.clone() for k, v in args.items() if v is not None}
    args2 = with_grad(make(L=90, seed=7))
    pieces = selective_scan_torch(**args2, delta_softplus=True, piece_elems=2 * 6 * 4 * 16)   # 16 steps a piece
    (pieces ** 2).sum().backward()
    assert rel(pieces, one) < 1e-6
    for k, g in g_one.items():
        assert rel(args2[k].grad, g) < 1e-5, k


def test_bf16_inputs_keep_their_dtype_and_fp32_state():
    args = make(dtype=torch.bfloat16, L=40)
    y, h = selective_scan(**args, delta_softplus=True, return_last_state=True, backend="torch")
    ref = selective_scan_ref(**{k: (v.double() if v is not None else None) for k, v in args.items()},
                             delta_softplus=True)
    assert y.dtype == torch.bfloat16 and h.dtype == torch.float32 and rel(y, ref) < 1e-2


def test_auto_picks_torch_on_cpu_and_logs_it(caplog):
    assert resolve_backend("auto", torch.device("cpu")) == "torch"
    assert resolve_backend("auto", torch.device("cuda"), need_initial_state=True) == "triton"
    # triton on CUDA even where mamba-ssm is installed: its kernel is not a custom op, so
    # torch.compile would break the graph at every scan
    assert resolve_backend("auto", torch.device("cuda")) == "triton"
    with pytest.raises(ValueError, match="unknown scan backend"):
        resolve_backend("cuda", torch.device("cpu"))
    import dasslib.scans.api as api
    api._logged.clear()
    with caplog.at_level(logging.DEBUG, logger="dasslib.scans"):
        selective_scan(**make(L=5), backend="auto")
    assert "auto -> torch" in caplog.text


def test_mamba_backend_needs_cuda_and_no_import_at_load():
    with pytest.raises(ValueError, match="mamba_ssm"):
        selective_scan(**make(L=5), backend="mamba_ssm")
    code = "import sys, dasslib, dasslib.scans, dasslib.models; print('mamba_ssm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_bad_shapes_raise_clear_errors():
    args = make(L=8)
    with pytest.raises(ValueError):
        selective_scan(**dict(args, delta=args["delta"][..., :5]), backend="torch")
    with pytest.raises(ValueError):
        selective_scan(**dict(args, A=args["A"][:, :2]), backend="torch")


def test_selective_scan_defaults_are_auto_backend_and_no_softplus():
    args = make(L=12, seed=4)
    args["delta"] = args["delta"].abs()                  # without softplus delta must stay positive
    y = selective_scan(**args)
    ref = selective_scan_ref(**{k: (v.double() if v is not None else None) for k, v in args.items()},
                             delta_softplus=False)
    assert torch.is_tensor(y) and rel(y, ref) < 1e-5     # one tensor: no last state by default


def test_selective_scan_logs_each_backend_choice_once(caplog, monkeypatch):
    import dasslib.scans.api as api
    monkeypatch.setattr(api, "_logged", set())
    args = make(L=5)
    with caplog.at_level(logging.DEBUG, logger="dasslib.scans"):
        selective_scan(**args)
        selective_scan(**args)                                                   # the same choice again
        selective_scan(**{k: (v.double() if v is not None else None) for k, v in args.items()})
        selective_scan(**args, backend="torch")
    assert [r.getMessage() for r in caplog.records] == [
        "selective_scan backend=auto -> torch on cpu (torch.float32)",
        "selective_scan backend=auto -> torch on cpu (torch.float64)",
        "selective_scan backend=torch -> torch on cpu (torch.float32)"]


@pytest.mark.parametrize("name, bad, message", [
    ("D", torch.zeros(5), "D must have shape (6,), got (5,)"),
    ("z", torch.zeros(2, 6, 7), "z must have shape (2, 6, 8), got (2, 6, 7)"),
    ("delta_bias", torch.zeros(6, 1), "delta_bias must have shape (6,), got (6, 1)"),
    ("initial_state", torch.zeros(2, 6, 3), "initial_state must have shape (2, 6, 4), got (2, 6, 3)"),
])
@pytest.mark.parametrize("backend", ["torch", "mamba_ssm"])
def test_selective_scan_checks_its_optional_arguments(name, bad, message, backend):
    """selective_scan checks the arguments before any backend runs: also for mamba-ssm, whose wrapper checks
    none (on the CPU it would otherwise say that it needs CUDA, or refuse the initial state)."""
    args = make(L=8)                                     # b=2, d=6, L=8, N=4
    with pytest.raises(ValueError) as err:
        selective_scan(**dict(args, **{name: bad}), backend=backend)
    assert str(err.value) == message


def test_selective_scan_out_dtype():
    args = make(L=16, dtype=torch.bfloat16)
    y = selective_scan(**args, delta_softplus=True, out_dtype=torch.float32)
    ref = selective_scan_ref(**{k: (v.double() if v is not None else None) for k, v in args.items()},
                             delta_softplus=True)
    assert y.dtype == torch.float32 and rel(y, ref) < 1e-5    # a float32 result, not bf16 rounded
    with pytest.raises(ValueError) as err:
        selective_scan(**args, out_dtype=torch.float16)
    assert str(err.value) == "out_dtype must be None, u's dtype or torch.float32, got torch.float16"


def test_mamba_backend_refuses_an_initial_state():
    args = make(L=5)
    with pytest.raises(ValueError) as err:
        selective_scan(**args, initial_state=torch.zeros(2, 6, 4), backend="mamba_ssm")
    assert str(err.value) == "backend 'mamba_ssm' does not support initial_state; use 'triton' or 'torch'"


# ------------------------------------------------------------------------------ layouts

def test_cross_scan_orders_and_merge_inverts_them():
    b, c, h, w = 2, 3, 4, 5
    x = torch.arange(b * c * h * w, dtype=torch.float32).reshape(b, c, h, w)
    xs = cross_scan_2d(x)
    assert xs.shape == (b, 4, c, h * w)
    assert torch.equal(xs[:, 0], x.flatten(2))                          # row-major h*W + w
    assert torch.equal(xs[:, 1, :, 1], x[:, :, 1, 0])                   # column-major: index w*H + h
    assert torch.equal(xs[:, 1], x.transpose(2, 3).flatten(2))
    assert torch.equal(xs[:, 2], xs[:, 0].flip(-1)) and torch.equal(xs[:, 3], xs[:, 1].flip(-1))
    assert torch.equal(cross_merge_2d(xs, h, w), 4 * x.flatten(2))      # each direction maps back
    with pytest.raises(ValueError):
        cross_merge_2d(xs, h + 1, w)
    with pytest.raises(ValueError):
        cross_scan_2d(x.flatten(2))


def test_cross_selective_scan_equals_four_separate_scans():
    b, c, h, w, N = 1, 3, 3, 4, 2
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, c, h, w, generator=g)
    L = h * w
    delta = torch.randn(b, 4, c, L, generator=g) * 0.5
    A = -torch.rand(4 * c, N, generator=g) - 0.5
    B, C = torch.randn(b, 4, N, L, generator=g), torch.randn(b, 4, N, L, generator=g)
    D, bias = torch.randn(4 * c, generator=g), torch.randn(4 * c, generator=g) * 0.1
    out = cross_selective_scan_2d(x, delta, A, B, C, D=D, delta_bias=bias, backend="torch")
    xs = cross_scan_2d(x)
    ys = torch.stack([selective_scan_ref(xs[:, k], delta[:, k], A[k * c:(k + 1) * c], B[:, k:k + 1],
                                         C[:, k:k + 1], D=D[k * c:(k + 1) * c],
                                         delta_bias=bias[k * c:(k + 1) * c], delta_softplus=True)
                      for k in range(4)], dim=1)
    assert out.shape == (b, c, L) and rel(out, cross_merge_2d(ys, h, w)) < 1e-5


@pytest.mark.parametrize("variant", ["fo_bi", "bi_bi"])
def test_bidirectional_scan_is_forward_plus_flipped_backward(variant):
    args = make(L=21, G=1, seed=2)
    g = torch.Generator().manual_seed(9)
    A_b = -torch.rand(args["A"].shape, generator=g) - 0.5
    extra = {}
    if variant == "bi_bi":
        extra = dict(u_b=torch.randn(args["u"].shape, generator=g), delta_b=torch.randn(args["u"].shape, generator=g),
                     B_b=torch.randn(args["B"].shape, generator=g), C_b=torch.randn(args["C"].shape, generator=g),
                     D_b=torch.randn(args["D"].shape, generator=g), delta_bias_b=torch.zeros_like(args["delta_bias"]),
                     divide_out=True)
    out = bidirectional_selective_scan(**args, delta_softplus=True, A_b=A_b, backend="torch", **extra)
    fwd = selective_scan_ref(**args, delta_softplus=True)
    flip = lambda t: t.flip(-1)  # noqa: E731
    bwd_args = dict(u=flip(extra.get("u_b", args["u"])), delta=flip(extra.get("delta_b", args["delta"])), A=A_b,
                    B=flip(extra.get("B_b", args["B"])), C=flip(extra.get("C_b", args["C"])),
                    D=extra.get("D_b", args["D"]), z=flip(args["z"]),
                    delta_bias=extra.get("delta_bias_b", args["delta_bias"]))
    bwd = flip(selective_scan_ref(**bwd_args, delta_softplus=True))
    expected = (fwd + bwd) / (2 if variant == "bi_bi" else 1)
    assert rel(out, expected) < 1e-5
    with pytest.raises(ValueError, match="A_b"):
        bidirectional_selective_scan(**args, A_b=None)


def test_the_documented_default_configs_are_the_code_s():
    """docs/scans.md lists pick_config's choices for its example shapes on an H100 (132 SMs):
    every listed field must be what pick_config returns, so the table cannot drift."""
    import re
    from pathlib import Path

    pytest.importorskip("triton")
    from dasslib.scans.triton_backend import pick_config
    text = (Path(__file__).parents[1] / "docs" / "scans.md").read_text()
    lines = re.findall(r"^- `pick_config\((\d+), (\d+), (\d+)\)`: (.+)$", text, re.M)
    assert len(lines) >= 5
    for rows, L, N, fields in lines:
        cfg = pick_config(int(rows), int(L), int(N), torch.device("cpu"), sms=132)
        for item in fields.split():
            key, value = item.split("=")
            assert str(getattr(cfg, key)) == value, (rows, L, N, key, getattr(cfg, key), value)
