"""The sequential scan backward (``bwd="seq"``: a thread per row after the "seq" forward) on the CPU
(Triton interpreter) against the float64 reference: every gradient, with and without the gate, one and
two B / C groups, odd lengths, dB / dC summed over the warp's rows or added per row, an initial state and
the last state's gradient, bf16 inputs; the cases it does not take fall back to the rows backward; the
custom op's fake shapes (the states stored as (n_tiles, NP, batch, dim)) pass opcheck."""
from tests.interpreter_env import needs_fresh, only_in_a_shared_process, run_in_fresh_process  # noqa: I001

import pytest  # noqa: E402
import torch  # noqa: E402

from tests.scan_helpers import rel as _rel  # noqa: E402

triton = pytest.importorskip("triton")

import dasslib.scans.triton_backend as tb  # noqa: E402
from dasslib.scans.reference import selective_scan_ref  # noqa: E402

SEQ = dict(fwd="seq", seq_warps=1, n_chunks=1, prefetch=1, bwd="seq")


@only_in_a_shared_process
def test_in_fresh_process():
    run_in_fresh_process(__file__)


def _case(b, d, L, N, G, z=True, h0=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)          # noqa: E731
    return dict(u=r(b, d, L), delta=r(b, d, L) - 1.0, A=-torch.exp(r(d, N)), B=r(b, G, N, L),
                C=r(b, G, N, L), D=r(d), z=r(b, d, L) if z else None, delta_bias=0.5 * r(d),
                initial_state=r(b, d, N) if h0 else None)


@pytest.fixture
def seq_launches(monkeypatch):
    """Counts the launches of the seq backward kernel."""
    calls = []
    real = tb._seq_bwd_kernel

    class Spy:
        def __getitem__(self, grid):
            calls.append(grid)
            return real[grid]
    monkeypatch.setattr(tb, "_seq_bwd_kernel", Spy())
    return calls


def _grads(c, cfg, dtype=torch.float32, last=False):
    """(y, last state or None, gradients by name) of the Triton scan under ``cfg`` for the loss
    sum(y * w) (+ sum(last * v))."""
    x = {k: (v.to(dtype) if k not in ("A", "D", "delta_bias", "initial_state") else v).clone().requires_grad_(True)
         for k, v in c.items() if v is not None}
    out = tb.selective_scan_triton(**x, delta_softplus=True, return_last_state=last, config=tb.TritonConfig(**cfg))
    y, h = out if last else (out, None)
    gen = torch.Generator().manual_seed(1)
    loss = (y.float() * torch.randn(y.shape, generator=gen)).sum()
    if last:
        loss = loss + (h * torch.randn(h.shape, generator=gen)).sum()
    return y, h, dict(zip(x, torch.autograd.grad(loss, list(x.values()))))


def _ref_grads(c, last=False):
    x = {k: v.double().requires_grad_(True) for k, v in c.items() if v is not None}
    out = selective_scan_ref(**x, delta_softplus=True, return_last_state=last, compute_dtype=torch.float64)
    y, h = out if last else (out, None)
    gen = torch.Generator().manual_seed(1)
    loss = (y * torch.randn(y.shape, generator=gen).double()).sum()
    if last:
        loss = loss + (h * torch.randn(h.shape, generator=gen).double()).sum()
    return y, h, dict(zip(x, torch.autograd.grad(loss, list(x.values()))))


@needs_fresh
@pytest.mark.parametrize("b,d,L,N,G,z,row_sum", [
    (2, 32, 13, 5, 1, True, 32),         # AuM-like: N > 4 (the state loop), the gate, L % 4 = 1
    (1, 64, 22, 16, 2, False, 1),        # N = 16, two B / C groups, no gate, one atomic per row
    (2, 32, 7, 3, 1, True, 32),          # N <= 4 (unrolled states), shorter than two tiles
    (1, 32, 40, 2, 1, True, 8),          # sums over 8 rows
])
def test_seq_backward_matches_float64(b, d, L, N, G, z, row_sum, seq_launches):
    c = _case(b, d, L, N, G, z)
    y, _, got = _grads(c, dict(SEQ, bwd_row_sum=row_sum))
    yr, _, ref = _ref_grads(c)
    assert seq_launches, "the seq backward did not run"
    assert _rel(y, yr) < 2e-6
    for name, g in got.items():
        assert g.shape == ref[name].shape and _rel(g, ref[name]) < 2e-5, (name, _rel(g, ref[name]))


@needs_fresh
def test_seq_backward_after_a_chunked_forward(seq_launches):
    """Few rows: the forward in 3 chunks (a pre-pass of chunk summaries); every chunk's output pass stores
    its tiles' states where the backward reads them."""
    c = _case(1, 32, 45, 5, 1)
    y, _, got = _grads(c, dict(SEQ, n_chunks=3, block_l=16))
    yr, _, ref = _ref_grads(c)
    assert seq_launches and _rel(y, yr) < 2e-6
    for name, g in got.items():
        assert _rel(g, ref[name]) < 2e-5, (name, _rel(g, ref[name]))


@needs_fresh
def test_seq_backward_with_initial_and_last_state(seq_launches):
    """An initial state (its gradient is dA_0 lam_0) and the last state's gradient (it enters the
    adjoint at the last step); the last state read back from the transposed states buffer."""
    c = _case(2, 32, 11, 5, 1, h0=True)
    y, h, got = _grads(c, SEQ, last=True)
    yr, hr, ref = _ref_grads(c, last=True)
    assert seq_launches
    assert _rel(y, yr) < 2e-6 and h.shape == hr.shape and _rel(h, hr) < 2e-6
    for name, g in got.items():
        assert _rel(g, ref[name]) < 2e-5, (name, _rel(g, ref[name]))


@needs_fresh
def test_seq_backward_in_bf16(seq_launches):
    c = _case(1, 32, 19, 16, 1)
    _, _, got = _grads(c, SEQ, dtype=torch.bfloat16)
    _, _, ref = _ref_grads({k: (v.bfloat16().float() if k in ("u", "delta", "B", "C", "z") else v)
                            for k, v in c.items() if v is not None})
    assert seq_launches
    for name, g in got.items():
        assert g.dtype == (torch.bfloat16 if name in ("u", "delta", "B", "C", "z") else torch.float32)
        assert _rel(g, ref[name]) < 2e-2, (name, _rel(g, ref[name]))


@needs_fresh
@pytest.mark.parametrize("what", ["channels", "invariant_B", "rows_forward"])
def test_seq_backward_falls_back_to_rows(what, seq_launches):
    """Channels per B / C group not a multiple of 32, time-invariant B, or the rows forward: the rows
    backward runs (the forward stored its states for it), with the same gradients."""
    c = _case(2, 16 if what == "channels" else 32, 9, 5, 1)
    cfg = dict(SEQ, fwd="rows") if what == "rows_forward" else SEQ
    if what == "invariant_B":
        c["B"] = torch.randn(32, 5)
    _, _, got = _grads(c, cfg)
    _, _, ref = _ref_grads(c)
    assert not seq_launches
    for name, g in got.items():
        assert _rel(g, ref[name]) < 2e-5, (name, _rel(g, ref[name]))


@needs_fresh
def test_seq_backward_custom_op_passes_opcheck():
    c = _case(1, 32, 9, 5, 1, h0=True)
    spec = tb.json.dumps(tb.asdict(tb.TritonConfig(**SEQ)))
    args = (c["u"], c["delta"], c["A"], c["B"], c["C"], c["D"], c["z"], c["delta_bias"], c["initial_state"],
            True, True, spec)
    args = tuple(t.clone().requires_grad_(True) if torch.is_tensor(t) else t for t in args)
    res = torch.library.opcheck(torch.ops.dasslib.selective_scan_fwd.default, args)
    assert set(res.values()) == {"SUCCESS"}, res
    _, states = torch.ops.dasslib.selective_scan_fwd(*args)
    assert states.shape == (3, 5, 1, 32)      # (n_tiles = ceil(9 / 4), N, batch, dim)


@needs_fresh
@pytest.mark.parametrize("bimamba,pad", [("fo_bi", "always"), ("none", "never")])
def test_mamba_mixer_on_the_seq_backward_matches_the_torch_scan(bimamba, pad, seq_launches, monkeypatch):
    """The mixer as AuM (Fo-Bi, the sequence padded to 16) and SSAM / the LM (one direction) call it, with
    pick_config taking the seq forward and backward: outputs and every parameter's gradient as on the
    torch scan."""
    from dasslib.models.mamba_mixer import MambaMixer

    monkeypatch.setattr(tb, "pick_config", lambda *a, **k: tb.TritonConfig(**dict(SEQ, bwd_row_sum=8)))
    torch.manual_seed(0)
    m = MambaMixer(16, d_state=16, d_conv=4, expand=2, bimamba=bimamba, scan_backend="triton")
    m.scan_pad = pad
    h = torch.randn(2, 13, 16)
    outs = []
    for backend in ("triton", "torch"):
        m.scan_backend = backend
        m.zero_grad()
        hh = h.clone().requires_grad_(True)
        y = m(hh)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        outs.append([y.detach(), hh.grad] + [p.grad.clone() for p in m.parameters()])
    assert seq_launches
    for a, b in zip(*outs):
        assert _rel(a, b) < 2e-5, _rel(a, b)
