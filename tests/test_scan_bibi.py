"""Bi-Bi's scan by index arithmetic (layout "bibi", bibi_scan_triton) on the CPU (Triton interpreter):
the two streams stacked along channels in natural order, the upper half scanned right to left, against
the float64 reference of the flipped-copy formulation, forward and gradients, on the "rows" and "seq"
forwards and backwards; bidirectional_selective_scan taking it (the gate applied to the sum). The Bi-Bi
AuM on it: tests/test_scan_aum_variants.py."""
from tests.interpreter_env import needs_fresh, only_in_a_shared_process, run_in_fresh_process  # noqa: I001

import pytest  # noqa: E402
import torch  # noqa: E402

from tests.scan_helpers import SEQ, rel as _rel  # noqa: E402

triton = pytest.importorskip("triton")

import dasslib.scans.triton_backend as tb  # noqa: E402
from dasslib.scans.reference import selective_scan_ref  # noqa: E402


@only_in_a_shared_process
def test_in_fresh_process():
    run_in_fresh_process(__file__)


def _case(b, d, L, N, G, z=True, seed=0):
    """The stacked inputs of both streams: u, delta, z (b, 2 d, L); B, C (b, 2 G, N, L); A (2 d, N)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)          # noqa: E731
    return dict(u=r(b, 2 * d, L), delta=r(b, 2 * d, L) - 1.0, A=-torch.exp(r(2 * d, N)),
                B=r(b, 2 * G, N, L), C=r(b, 2 * G, N, L), D=r(2 * d), z=r(b, 2 * d, L) if z else None,
                delta_bias=0.5 * r(2 * d))


def _reference(c, d, G):
    """float64 (b, 2 d, L): rows [:d] scanned forwards, rows [d:] flipped, scanned and flipped back."""
    f = {k: (v.double() if v is not None else None) for k, v in c.items()}
    lo, hi = slice(None, d), slice(d, None)
    part = lambda t, s: None if t is None else t[:, s]    # noqa: E731
    flip = lambda t: None if t is None else t.flip(-1)    # noqa: E731
    kw = dict(delta_softplus=True, compute_dtype=torch.float64)
    y_f = selective_scan_ref(f["u"][:, lo], f["delta"][:, lo], f["A"][lo], f["B"][:, :G], f["C"][:, :G],
                             D=f["D"][lo], z=part(f["z"], lo), delta_bias=f["delta_bias"][lo], **kw)
    y_b = selective_scan_ref(flip(f["u"][:, hi]), flip(f["delta"][:, hi]), f["A"][hi], flip(f["B"][:, G:]),
                             flip(f["C"][:, G:]), D=f["D"][hi], z=flip(part(f["z"], hi)),
                             delta_bias=f["delta_bias"][hi], **kw).flip(-1)
    return torch.cat([y_f, y_b], 1)


@needs_fresh
@pytest.mark.parametrize("b,d,L,N,G,z,cfg", [
    (2, 8, 13, 2, 1, True, None),          # rows forward and backward, unrolled states, L % 4 = 1
    (1, 8, 37, 5, 1, False, None),         # the state loop (N > 4)
    (2, 8, 22, 2, 2, True, None),          # two B / C groups per direction
    (2, 8, 13, 5, 1, True, SEQ),           # the "seq" forward, rows backward
    (1, 32, 21, 5, 1, True, dict(SEQ, bwd="seq")),                       # the seq backward, reversed rows
    (2, 64, 14, 3, 2, False, dict(SEQ, bwd="seq", bwd_row_sum=1)),   # ... two groups, atomics per row
    (1, 64, 13, 5, 1, True, dict(SEQ, bwd="seq", seq_uniform=True, seq_thread_rows=2)),   # two rows per thread
])
def test_bibi_matches_the_flipped_copies(b, d, L, N, G, z, cfg, monkeypatch):
    if cfg is not None:
        base = tb.pick_config
        monkeypatch.setattr(tb, "pick_config", lambda *a, **k: tb.replace(base(*a, **k), **cfg))
    c = _case(b, d, L, N, G, z)
    for t in c.values():
        if t is not None:
            t.requires_grad_(True)
    y = tb.bibi_scan_triton(**c, delta_softplus=True)
    ref = _reference(c, d, G)
    assert y.shape == (b, 2 * d, L)
    assert _rel(y[:, :d], ref[:, :d]) < 2e-6 and _rel(y[:, d:], ref[:, d:]) < 2e-6
    w = torch.randn(b, 2 * d, L, generator=torch.Generator().manual_seed(1))
    names = [k for k, t in c.items() if t is not None]
    grads = torch.autograd.grad((y * w).sum(), [c[k] for k in names])
    refs = torch.autograd.grad((ref * w.double()).sum(), [c[k] for k in names])
    for name, g, gr in zip(names, grads, refs):
        assert g.shape == gr.shape and _rel(g, gr) < 2e-5, (name, _rel(g, gr))


@needs_fresh
def test_bibi_refuses_what_it_cannot_do():
    c = _case(1, 8, 13, 2, 1)
    with pytest.raises(ValueError, match="time-varying"):
        tb.bibi_scan_triton(**dict(c, B=torch.randn(16, 2)))
    with pytest.raises(ValueError, match="even"):
        tb.bibi_scan_triton(**dict(c, B=c["B"][:, :1]))
    with pytest.raises(ValueError, match="unknown scan layout"):
        tb._Launch(c["u"], c["B"], c["C"], 2, tb.pick_config(16, 13, 2, c["u"].device), layout="bobi")


@needs_fresh
def test_bidirectional_scan_takes_the_bibi_layout_and_matches_the_copies(monkeypatch):
    """Bi-Bi through bidirectional_selective_scan: one "bibi" scan, the same output and gradients as the
    flipped copies (torch backend) with the gate on the sum and divide_out; a fullgraph compile."""
    from dasslib.scans import layouts
    f, b = _case(2, 8, 13, 2, 1, seed=0), _case(2, 8, 13, 2, 1, seed=1)
    d = 8
    args = (f["u"][:, :d], f["delta"][:, :d], f["A"][:d], f["B"][:, :1], f["C"][:, :1])
    kw = dict(D=f["D"][:d], z=f["z"][:, :d], delta_bias=f["delta_bias"][:d], delta_softplus=True,
              A_b=b["A"][:d], u_b=b["u"][:, :d], delta_b=b["delta"][:, :d], B_b=b["B"][:, :1],
              C_b=b["C"][:, :1], D_b=b["D"][:d], delta_bias_b=b["delta_bias"][:d], divide_out=True)
    leaves = [t.clone().requires_grad_(True) for t in (*args, *kw.values()) if torch.is_tensor(t)]
    calls = []
    real = layouts.bibi_scan_triton
    monkeypatch.setattr(layouts, "bibi_scan_triton", lambda *a, **k: calls.append(1) or real(*a, **k))

    def run(backend, ts, **extra):
        it = iter(ts)
        a = tuple(next(it) for _ in args)
        k = {n: (next(it) if torch.is_tensor(v) else v) for n, v in kw.items()}
        return layouts.bidirectional_selective_scan(*a, backend=backend, **k, **extra)

    ref_leaves = [t.detach().double().requires_grad_(True) for t in leaves]
    ref = run("torch", ref_leaves)
    out = run("triton", leaves)
    assert calls and _rel(out, ref) < 2e-6
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(2))
    got = torch.autograd.grad((out * w).sum(), leaves)
    exp = torch.autograd.grad((ref * w.double()).sum(), ref_leaves)
    for i, (g, e) in enumerate(zip(got, exp)):
        assert _rel(g, e) < 2e-5, (i, _rel(g, e))
    n = len(calls)                      # in_place=False keeps the flipped copies
    with torch.no_grad():
        assert _rel(run("triton", leaves, in_place=False), ref) < 2e-6 and len(calls) == n
    monkeypatch.setattr(layouts, "bibi_scan_triton", real)
    torch._dynamo.reset()
    compiled = torch.compile(lambda *ts: run("triton", ts), backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        assert _rel(compiled(*leaves), ref) < 2e-6


@needs_fresh
def test_bibi_custom_op_passes_opcheck():
    c = _case(2, 8, 13, 2, 1)
    args = (c["u"], c["delta"], c["A"], c["B"], c["C"], c["D"], c["z"], c["delta_bias"], None, True, True, "",
            False, "bibi")
    args = tuple(t.clone().requires_grad_(True) if torch.is_tensor(t) else t for t in args)
    res = torch.library.opcheck(torch.ops.dasslib.selective_scan_fwd.default, args)
    assert set(res.values()) == {"SUCCESS"}, res
