"""SS2D's scan with the dt projection inside the kernel (ss2d_scan_dtproj, SS2D.dtproj_in_scan) on the
CPU (Triton interpreter): against the scan of the materialised delta, odd grids, N 1 and 2, the last
tile partial, reversed directions; DASS with it against without; a fullgraph compile; bad input."""
from tests.interpreter_env import needs_fresh, only_in_a_shared_process, run_in_fresh_process  # noqa: I001

import pytest  # noqa: E402
import torch  # noqa: E402

triton = pytest.importorskip("triton")


@only_in_a_shared_process
def test_in_fresh_process():
    run_in_fresh_process(__file__)


def _case(b, d, L, N, R, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)   # noqa: E731
    x_dbl = r(b, 4, R + 2 * N, L)
    return dict(u2=r(b, 2, d, L), x_dbl=x_dbl, dt_weight=0.5 * r(4, d, R), A=-torch.exp(r(4 * d, N)),
                B=x_dbl[:, :, R:R + N].contiguous(), C=x_dbl[:, :, R + N:].contiguous(), D=r(4 * d),
                delta_bias=0.3 * r(4 * d))


def _rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@needs_fresh
@pytest.mark.parametrize("b,d,L,N,R", [(2, 4, 35, 1, 3), (1, 8, 150, 2, 6), (1, 4, 300, 1, 12)])
def test_matches_the_scan_of_the_materialised_delta(b, d, L, N, R):
    from dasslib.scans.triton_backend import ss2d_scan_dtproj, ss2d_scan_triton

    c = _case(b, d, L, N, R)
    delta = torch.einsum("bkrl,kdr->bkdl", c["x_dbl"][:, :, :R], c["dt_weight"]).reshape(b, 4 * d, L)
    with torch.no_grad():
        want = ss2d_scan_triton(c["u2"], delta, c["A"], c["B"], c["C"], D=c["D"], delta_bias=c["delta_bias"])
        got = ss2d_scan_dtproj(**c)
    assert got.shape == (b, 4 * d, L) and got.dtype == torch.float32
    assert _rel(got, want) < 1e-6


@needs_fresh
def test_dass_with_the_projection_in_the_scan_matches_without():
    from dasslib.models import create

    torch.manual_seed(0)
    m = create("dass_small", depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), num_classes=5, scan_backend="triton").eval()
    x = torch.randn(1, 24, 20)          # grids 5 x 6, 3 x 3, 2 x 2, 1 x 1 (odd sides)
    with torch.no_grad():
        fused = m(x)                     # the default: the projection in the scan
        for mod in m.modules():
            if hasattr(mod, "dtproj_in_scan"):
                mod.dtproj_in_scan = False
        plain = m(x)
    assert _rel(fused, plain) < 1e-5


@needs_fresh
def test_ss2d_with_it_compiles_whole_and_keeps_gradients_on_the_layers():
    from dasslib.models.ss2d import SS2D

    torch.manual_seed(0)
    m = SS2D(8, d_state=1, scan_backend="triton").eval()
    m.dtproj_in_scan = True
    x = torch.randn(1, 8, 5, 3)
    with torch.no_grad():
        eager = m(x)
        compiled = torch.compile(m, backend="aot_eager", fullgraph=True)(x)
    assert _rel(compiled, eager) < 1e-6
    m(x).sum().backward()                # with gradients SS2D takes the materialised delta
    assert m.dt_projs_weight.grad is not None and m.dt_projs_weight.grad.abs().sum() > 0


@needs_fresh
def test_bad_input_is_refused():
    from dasslib.scans.triton_backend import ss2d_scan_dtproj

    c = _case(1, 4, 20, 1, 3)
    with pytest.raises(ValueError, match="dt_weight must be"):
        ss2d_scan_dtproj(**dict(c, dt_weight=c["dt_weight"][:, :, :2]))
    with pytest.raises(ValueError, match="x_dbl must be"):
        ss2d_scan_dtproj(**dict(c, x_dbl=c["x_dbl"][:, :3]))
    with pytest.raises(ValueError, match="no backward"):
        ss2d_scan_dtproj(**dict(c, u2=c["u2"].clone().requires_grad_(True)))
