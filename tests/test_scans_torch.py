"""The PyTorch selective scan (dasslib/scans/torch_backend.py) called directly: hand-computed geometric
series for the two-level scan on any layout, its own argument checks and defaults, float32 compute whatever
the other arguments' dtype, float64 last states, and how long inputs are cut into (checkpointed) pieces.
The comparisons with the step-by-step reference through ``selective_scan`` are in tests/test_scans.py."""
import math

import pytest
import torch

from dasslib.scans import selective_scan_ref
from dasslib.scans import torch_backend as tb
from dasslib.scans.torch_backend import _linear_scan, selective_scan_torch


def make(b=2, d=6, L=37, N=4, G=2, varying=True, seed=0, dtype=torch.float32):
    """Random scan arguments with positive deltas (no softplus needed) and every optional tensor."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    args = dict(u=r(b, d, L), delta=r(b, d, L).abs() * 0.5 + 0.05, A=-torch.exp(r(d, N) * 0.5),
                B=r(b, G, N, L) if varying else r(d, N), C=r(b, G, N, L) if varying else r(d, N),
                D=r(d), z=r(b, d, L), delta_bias=r(d) * 0.1, initial_state=r(b, d, N))
    return {k: v.to(dtype) for k, v in args.items()}


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def geometric(a, L):
    """h_t = sum_{k<=t} a^k: the scan of constant decay a and input 1, in closed form (float64)."""
    t = torch.arange(L, dtype=torch.float64)
    a = torch.as_tensor(a, dtype=torch.float64)[..., None]
    return (1 - a ** (t + 1)) / (1 - a)


@pytest.mark.parametrize("L, chunk", [(40, 16), (16, 16), (37, 4), (5, 16), (300, 3)])
def test_linear_scan_is_the_geometric_series_on_a_1d_axis(L, chunk):
    """One axis only (no leading dims): the length is the last axis's, whatever the layout."""
    h = _linear_scan(torch.full((L,), 0.5, dtype=torch.float64), torch.ones(L, dtype=torch.float64), chunk)
    assert h.shape == (L,)
    assert torch.allclose(h, 2 - 0.5 ** torch.arange(L, dtype=torch.float64), rtol=1e-13, atol=0)


def test_linear_scan_on_rows_longer_than_the_chunk_and_many_rows():
    """(rows, L) with more rows than steps and more steps than rows: each row its own decay."""
    for rows, L in ((40, 37), (7, 50)):
        a = torch.linspace(0.1, 0.95, rows, dtype=torch.float64)
        h = _linear_scan(a[:, None].expand(rows, L), torch.ones(rows, L, dtype=torch.float64), 4)
        assert h.shape == (rows, L) and torch.allclose(h, geometric(a, L), rtol=1e-12, atol=0)


def test_hand_computed_scan_with_the_defaults():
    """b = d = N = 1, A = -ln 2, delta = 1, B = C = u = 1: a = 1/2 and h_t = y_t = 2 - 2^-t. Called with
    the defaults: no softplus on delta (softplus(1) = 1.313 would give a = 0.40), one tensor back."""
    L = 20
    one = torch.ones(1, 1, L)
    y = selective_scan_torch(one, one, torch.full((1, 1), -math.log(2)), torch.ones(1, 1), torch.ones(1, 1))
    assert torch.is_tensor(y) and y.shape == (1, 1, L)
    assert torch.allclose(y[0, 0].double(), 2 - 0.5 ** torch.arange(L, dtype=torch.float64), rtol=1e-6, atol=0)
    # D = 3 adds 3 u; z = 0 multiplies by silu(0) = 0; an initial state of 4 adds 4 * 2^-(t+1)
    y, h = selective_scan_torch(one, one, torch.full((1, 1), -math.log(2)), torch.ones(1, 1), torch.ones(1, 1),
                                D=torch.full((1,), 3.0), initial_state=torch.full((1, 1, 1), 4.0),
                                return_last_state=True)
    t = torch.arange(L, dtype=torch.float64)
    assert torch.allclose(y[0, 0].double(), 2 - 0.5 ** t + 3 + 4 * 0.5 ** (t + 1), rtol=1e-6, atol=0)
    assert h.shape == (1, 1, 1) and abs(h.item() - (2 - 0.5 ** (L - 1) + 4 * 0.5 ** L)) < 1e-6
    y = selective_scan_torch(one, one, torch.full((1, 1), -math.log(2)), torch.ones(1, 1), torch.ones(1, 1),
                             z=torch.zeros(1, 1, L))
    assert torch.equal(y, torch.zeros(1, 1, L))


@pytest.mark.parametrize("name, bad, message", [
    ("D", torch.zeros(5), "D must have shape (6,), got (5,)"),
    ("z", torch.zeros(2, 6, 7), "z must have shape (2, 6, 8), got (2, 6, 7)"),
    ("delta_bias", torch.zeros(6, 1), "delta_bias must have shape (6,), got (6, 1)"),
    ("initial_state", torch.zeros(2, 6, 3), "initial_state must have shape (2, 6, 4), got (2, 6, 3)"),
])
def test_checks_its_optional_arguments_itself(name, bad, message):
    """Called directly (not through selective_scan, which checks first), the backend checks them too."""
    args = make(L=8)
    with pytest.raises(ValueError) as err:
        selective_scan_torch(**dict(args, **{name: bad}))
    assert str(err.value) == message


@pytest.mark.parametrize("varying", [True, False])
def test_float32_u_computes_in_float32_whatever_the_other_dtypes(varying):
    """The compute dtype follows u alone: float64 delta, A, B, C, D, z, bias and state give bit for bit the
    result of their float32 roundings (a float64 operand left unconverted would promote the scan)."""
    args64 = make(L=40, varying=varying, seed=1, dtype=torch.float64)
    args32 = {k: v.float() for k, v in args64.items()}
    mixed = dict(args64, u=args32["u"])
    for softplus in (False, True):
        y, h = selective_scan_torch(**mixed, delta_softplus=softplus, return_last_state=True)
        y32, h32 = selective_scan_torch(**args32, delta_softplus=softplus, return_last_state=True)
        assert y.dtype == h.dtype == torch.float32
        assert torch.equal(y, y32) and torch.equal(h, h32)
        ref, ref_h = selective_scan_ref(**args64, delta_softplus=softplus, return_last_state=True,
                                        compute_dtype=torch.float64)
        assert rel(y, ref) < 1e-5 and rel(h, ref_h) < 1e-5


def test_float64_inputs_give_a_float64_last_state():
    args = make(L=45, seed=2, dtype=torch.float64)
    y, h = selective_scan_torch(**args, return_last_state=True)
    ref, ref_h = selective_scan_ref(**args, return_last_state=True, compute_dtype=torch.float64)
    assert y.dtype == h.dtype == torch.float64
    assert rel(y, ref) < 1e-12 and rel(h, ref_h) < 1e-12


class _Spy:
    """Wraps torch_backend._piece: the length of every piece it is called on (forward and recompute)."""

    def __init__(self, monkeypatch):
        self.lengths, self.real = [], tb._piece
        monkeypatch.setattr(tb, "_piece", self)

    def __call__(self, u, *rest):
        self.lengths.append(u.shape[-1])
        return self.real(u, *rest)


@pytest.mark.parametrize("b, d, N, piece_elems, lengths", [
    (1, 1, 1, 4, [4, 4, 2]),          # 4 steps of one state element each
    (1, 2, 2, 3, [1] * 10),           # less than one step's 4 elements: still one step a piece
    (1, 2, 2, 8, [2] * 5),
    (2, 3, 2, 12 * 6, [6, 4]),        # two pieces
])
def test_pieces_hold_at_most_piece_elems_state_elements(monkeypatch, b, d, N, piece_elems, lengths):
    args = make(b=b, d=d, N=N, G=1, L=10, seed=3)
    one = selective_scan_torch(**args, delta_softplus=True, return_last_state=True)
    spy = _Spy(monkeypatch)
    with torch.no_grad():
        y, h = selective_scan_torch(**args, delta_softplus=True, return_last_state=True, piece_elems=piece_elems)
    assert spy.lengths == lengths
    ref, ref_h = selective_scan_ref(**{k: v.double() for k, v in args.items()}, delta_softplus=True,
                                    return_last_state=True, compute_dtype=torch.float64)
    assert y.shape == ref.shape and rel(y, ref) < 1e-5 and rel(h, ref_h) < 1e-5
    assert rel(y, one[0]) < 1e-6 and rel(h, one[1]) < 1e-6


@pytest.mark.parametrize("case", [dict(G=1), dict(G=3), dict(varying=False), dict(G=1, varying=False)])
def test_pieces_slice_time_varying_b_c_only(case):
    """B, C of (batch, G, N, L) are cut with u; time-invariant (dim, N) ones are passed whole."""
    args = make(L=50, N=4, seed=4, **case)
    one = selective_scan_torch(**args)
    for pieces in (2, 4):
        y = selective_scan_torch(**args, piece_elems=2 * 6 * 4 * -(-50 // pieces))
        assert rel(y, one) < 1e-6
    ref = selective_scan_ref(**{k: v.double() for k, v in args.items()}, compute_dtype=torch.float64)
    assert rel(one, ref) < 1e-5


def test_only_several_pieces_are_checkpointed(monkeypatch):
    """With autograd, a cut input recomputes each piece in the backward pass (checkpointing); an input that
    fits in one piece is not recomputed."""
    args = {k: v.requires_grad_(True) for k, v in make(b=1, d=2, N=2, G=1, L=12, seed=5).items()}
    spy = _Spy(monkeypatch)
    selective_scan_torch(**args, piece_elems=4 * 12).sum().backward()
    assert spy.lengths == [12]
    spy.lengths.clear()
    selective_scan_torch(**args, piece_elems=4 * 5).sum().backward()
    assert spy.lengths[:3] == [5, 5, 2] and sorted(spy.lengths[3:]) == [2, 5, 5]   # backward: last first


def test_pieces_support_autograd_grad():
    """torch.autograd.grad (as a gradient penalty uses) through checkpointed pieces equals the one-piece
    gradients: the checkpoints must be the non-reentrant kind, which supports it."""
    args = {k: v.requires_grad_(True) for k, v in make(L=40, seed=6).items()}
    names = ["u", "delta", "A", "B", "C", "initial_state"]
    w = torch.randn(2, 6, 40, generator=torch.Generator().manual_seed(7))
    grads = {}
    for piece_elems in (tb.PIECE_ELEMS, 2 * 6 * 4 * 16):
        y = selective_scan_torch(**args, delta_softplus=True, piece_elems=piece_elems)
        grads[piece_elems] = torch.autograd.grad((y * w).sum(), [args[k] for k in names])
    for name, g_one, g_pieces in zip(names, *grads.values()):
        assert rel(g_pieces, g_one) < 1e-5, name
