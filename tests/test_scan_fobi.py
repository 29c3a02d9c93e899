"""AuM's Fo-Bi scan by index arithmetic (layout "fobi", fobi_scan_triton) on the CPU (Triton
interpreter): both directions in one launch, the backward one scanning the same u, delta, z, B, C
right to left, against the float64 reference of the flipped-copy formulation, forward and
gradients, on the "rows" and "seq" forwards (one and two chunks) and the "rows" and "seq" backwards, odd
lengths and both state regimes (unrolled N <= 4, looped N > 4); and bidirectional_selective_scan taking it.
The Fo-Bi AuM on it: tests/test_scan_aum_variants.py."""
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
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)          # noqa: E731
    return dict(u=r(b, d, L), delta=r(b, d, L) - 1.0, A=-torch.exp(r(d, N)), A_b=-torch.exp(r(d, N)),
                B=r(b, G, N, L), C=r(b, G, N, L), D=r(d), z=r(b, d, L) if z else None,
                delta_bias=0.5 * r(d))


def _reference(c):
    """(y_f, y_b) in float64: the forward scan, and the scan of the flipped inputs flipped back."""
    f = {k: (v.double() if v is not None else None) for k, v in c.items()}
    flip = lambda t: None if t is None else t.flip(-1)    # noqa: E731
    kw = dict(D=f["D"], delta_bias=f["delta_bias"], delta_softplus=True, compute_dtype=torch.float64)
    y_f = selective_scan_ref(f["u"], f["delta"], f["A"], f["B"], f["C"], z=f["z"], **kw)
    y_b = selective_scan_ref(flip(f["u"]), flip(f["delta"]), f["A_b"], flip(f["B"]), flip(f["C"]),
                             z=flip(f["z"]), **kw).flip(-1)
    return y_f, y_b


@needs_fresh
@pytest.mark.parametrize("b,d,L,N,G,z,cfg", [
    (2, 8, 13, 2, 1, True, None),          # rows forward and backward, unrolled states, L % 4 = 1
    (1, 8, 37, 5, 1, True, None),          # the state loop (N > 4)
    (2, 8, 22, 2, 2, False, None),         # two B/C groups per direction, no gate
    (2, 8, 13, 5, 1, True, SEQ),           # AuM's forward kernel ("seq"), rows backward
    (1, 8, 38, 2, 1, True, SEQ),           # L % 4 = 2, several state tiles
    (1, 8, 21, 3, 1, True, dict(SEQ, prefetch=2, seq_bc_prefetch=True)),   # B / C loaded a tile ahead
    (1, 32, 21, 5, 1, True, dict(SEQ, bwd="seq")),                          # the seq backward, reversed rows
    (2, 64, 14, 3, 2, False, dict(SEQ, bwd="seq", bwd_row_sum=1)),      # ... two groups, atomics per row
    (1, 64, 13, 5, 1, True, dict(SEQ, seq_uniform=True, seq_thread_rows=2)),   # two rows per thread
])
def test_fobi_matches_the_flipped_copies(b, d, L, N, G, z, cfg, monkeypatch):
    if cfg is not None:
        base = tb.pick_config
        monkeypatch.setattr(tb, "pick_config", lambda *a, **k: tb.replace(base(*a, **k), **cfg))
    c = _case(b, d, L, N, G, z)
    for t in c.values():
        if t is not None:
            t.requires_grad_(True)
    y = tb.fobi_scan_triton(c["u"], c["delta"], c["A"], c["A_b"], c["B"], c["C"], D=c["D"], z=c["z"],
                            delta_bias=c["delta_bias"], delta_softplus=True)
    y_f, y_b = _reference(c)
    assert y.shape == (b, 2 * d, L)
    assert _rel(y[:, :d], y_f) < 2e-6 and _rel(y[:, d:], y_b) < 2e-6
    w = torch.randn(b, 2 * d, L, generator=torch.Generator().manual_seed(1))
    grads = torch.autograd.grad((y * w).sum(), [t for t in c.values() if t is not None])
    ref = torch.autograd.grad((torch.cat([y_f, y_b], 1) * w.double()).sum(),
                              [t for t in c.values() if t is not None])
    for name, g, gr in zip([k for k, t in c.items() if t is not None], grads, ref):
        assert g.shape == gr.shape and _rel(g, gr) < 2e-5, (name, _rel(g, gr))


@needs_fresh
def test_fobi_seq_forward_in_chunks(monkeypatch):
    """The chunked sequential forward (few rows: a pre-pass of chunk summaries) with reversed rows."""
    base = tb.pick_config
    monkeypatch.setattr(tb, "pick_config", lambda *a, **k: tb.replace(base(*a, **k), fwd="seq", n_chunks=3,
                                                                     block_l=16, prefetch=1))
    c = _case(1, 8, 45, 3, 1)
    with torch.no_grad():
        y = tb.fobi_scan_triton(c["u"], c["delta"], c["A"], c["A_b"], c["B"], c["C"], D=c["D"], z=c["z"],
                                delta_bias=c["delta_bias"], delta_softplus=True)
    y_f, y_b = _reference(c)
    assert _rel(y[:, :8], y_f) < 2e-6 and _rel(y[:, 8:], y_b) < 2e-6


@needs_fresh
def test_bidirectional_scan_takes_the_fobi_layout_and_matches_the_copies(monkeypatch):
    from dasslib.scans import layouts
    c = _case(2, 8, 13, 2, 1)
    kw = dict(D=c["D"], z=c["z"], delta_bias=c["delta_bias"], delta_softplus=True, A_b=c["A_b"])
    calls = []
    real = layouts.fobi_scan_triton
    monkeypatch.setattr(layouts, "fobi_scan_triton", lambda *a, **k: calls.append(1) or real(*a, **k))
    out = layouts.bidirectional_selective_scan(c["u"], c["delta"], c["A"], c["B"], c["C"], backend="triton", **kw)
    ref = layouts.bidirectional_selective_scan(c["u"], c["delta"], c["A"], c["B"], c["C"], backend="torch", **kw)
    assert calls and _rel(out, ref) < 2e-6
    n = len(calls)                      # in_place=False keeps the flipped copies
    out2 = layouts.bidirectional_selective_scan(c["u"], c["delta"], c["A"], c["B"], c["C"], backend="triton",
                                                in_place=False, **kw)
    assert len(calls) == n and _rel(out2, ref) < 2e-6
    monkeypatch.setattr(layouts, "fobi_scan_triton", real)
    # as the AuM mixer calls it inside torch.compile: one graph, no break
    torch._dynamo.reset()
    compiled = torch.compile(lambda *a: layouts.bidirectional_selective_scan(*a, backend="triton", **kw),
                             backend="aot_eager", fullgraph=True)
    assert _rel(compiled(c["u"], c["delta"], c["A"], c["B"], c["C"]), ref) < 2e-6


@needs_fresh
def test_fobi_refuses_what_it_cannot_do():
    c = _case(1, 8, 13, 2, 1)
    with pytest.raises(ValueError, match="time-varying"):
        tb.fobi_scan_triton(c["u"], c["delta"], c["A"], c["A_b"], torch.randn(8, 2), c["C"])
    with pytest.raises(ValueError, match="A_b"):
        tb.fobi_scan_triton(c["u"], c["delta"], c["A"], c["A_b"][:4], c["B"], c["C"])


@needs_fresh
def test_fobi_custom_op_passes_opcheck_and_compiles_without_graph_break():
    """The "fobi" layout through dasslib::selective_scan_fwd: fake shapes ((batch, 2 d, L) from a
    (batch, d, L) delta), autograd (opcheck); a fullgraph compile gives eager's gradients."""
    c = _case(2, 8, 13, 2, 1)
    A2 = torch.cat([c["A"], c["A_b"]])
    args = (c["u"], c["delta"], A2, c["B"], c["C"], torch.cat([c["D"], c["D"]]), c["z"],
            torch.cat([c["delta_bias"], c["delta_bias"]]), None, True, True, "", False, "fobi")
    args = tuple(t.clone().requires_grad_(True) if torch.is_tensor(t) else t for t in args)
    res = torch.library.opcheck(torch.ops.dasslib.selective_scan_fwd.default, args)
    assert set(res.values()) == {"SUCCESS"}, res

    def f(**kw):
        y = tb.fobi_scan_triton(**kw, delta_softplus=True)
        return (y * y).sum()
    ref = {k: v.clone().requires_grad_(True) for k, v in c.items() if v is not None}
    got = {k: v.clone().requires_grad_(True) for k, v in c.items() if v is not None}
    f(**ref).backward()
    torch.compile(f, backend="aot_eager", fullgraph=True)(**got).backward()
    for k in ref:
        assert _rel(got[k].grad, ref[k].grad) < 1e-6, k
