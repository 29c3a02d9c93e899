"""SS2D's cross-merge + out-norm kernel (dasslib.scans.ss2d_merge) on the CPU (Triton interpreter):
against the torch formulation in float64 and float32, grids whose sides are not tile multiples, the
compute-dtype output, the tile choice, bad input, and SS2D taking it in inference."""
from tests.interpreter_env import needs_fresh, only_in_a_shared_process, run_in_fresh_process  # noqa: I001

import pytest  # noqa: E402
import torch  # noqa: E402

triton = pytest.importorskip("triton")

from dasslib.scans.ss2d_merge import merge_tiles, ss2d_merge_norm, ss2d_merge_norm_reference  # noqa: E402


@only_in_a_shared_process
def test_in_fresh_process():
    run_in_fresh_process(__file__)


def _case(b, d, h, w, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    ys = torch.randn(b, 4, d, h * w, generator=g, dtype=dtype) * 3 + 1
    return ys, torch.randn(d, generator=g, dtype=dtype), torch.randn(d, generator=g, dtype=dtype)


@needs_fresh
@pytest.mark.parametrize("b,d,h,w", [(2, 6, 5, 3), (1, 20, 16, 8), (1, 9, 3, 12)])
def test_matches_torch_float64(b, d, h, w):
    ys, wt, bs = _case(b, d, h, w)
    got = ss2d_merge_norm(ys, wt, bs, 1e-5, h, w)
    want = ss2d_merge_norm_reference(ys, wt, bs, 1e-5, h, w)
    assert got.shape == (b, d, h, w) and got.dtype == torch.float64
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@needs_fresh
def test_float32_in_bfloat16_out():
    ys, wt, bs = _case(2, 12, 8, 4, dtype=torch.float32)
    got = ss2d_merge_norm(ys, wt, bs, 1e-5, 8, 4, out_dtype=torch.bfloat16)
    want = ss2d_merge_norm_reference(ys, wt, bs, 1e-5, 8, 4)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want, rtol=8e-3, atol=8e-3)
    f32 = ss2d_merge_norm(ys, wt, bs, 1e-5, 8, 4)
    torch.testing.assert_close(f32, want, rtol=2e-6, atol=2e-6)


@needs_fresh
def test_bfloat16_scan_outputs_are_summed_in_float32():
    # SS2D with scan_fp32=False hands the kernel bf16 ys: the sums and the norm still run in fp32
    ys, wt, bs = _case(2, 12, 8, 4, dtype=torch.float32)
    ys = ys.bfloat16()
    got = ss2d_merge_norm(ys, wt, bs, 1e-5, 8, 4, out_dtype=torch.float32)
    want = ss2d_merge_norm_reference(ys.double(), wt.double(), bs.double(), 1e-5, 8, 4)
    torch.testing.assert_close(got.double(), want, rtol=2e-6, atol=2e-6)


@needs_fresh
def test_ss2d_takes_the_kernel_in_inference():
    from dasslib.models.ss2d import SS2D

    torch.manual_seed(0)
    m = SS2D(8, d_state=1, scan_backend="triton").eval()
    x = torch.randn(2, 8, 6, 4)
    with torch.no_grad():
        fused = m(x)
        m.merge_kernel = False
        plain = m(x)
        m.fused_scan = False
        copies = m(x)
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fused, copies, rtol=1e-5, atol=1e-6)


@needs_fresh
def test_ss2d_inference_scan_output_in_the_compute_dtype(monkeypatch):
    """In inference on the fused path the scan writes y in u's dtype unless y_fp32_inference: fp32 runs are
    unchanged, a bf16 one hands the merge bf16 ys and differs from the fp32-y output by bf16 rounding only."""
    import dasslib.models.ss2d as ss2d_mod
    from dasslib.models.ss2d import SS2D

    seen = []
    real = ss2d_mod.ss2d_scan_dtproj

    def spy(*a, **k):
        y = real(*a, **k)
        seen.append(y.dtype)
        return y

    monkeypatch.setattr(ss2d_mod, "ss2d_scan_dtproj", spy)
    torch.manual_seed(0)
    m = SS2D(8, d_state=1, scan_backend="triton").eval()
    x = torch.randn(2, 8, 6, 4)
    with torch.no_grad():
        out = {}
        for dtype in (torch.float32, torch.bfloat16):
            for fp32_y in (False, True):
                m.y_fp32_inference = fp32_y
                out[dtype, fp32_y] = m.to(dtype)(x.to(dtype)).float()
    assert seen == [torch.float32, torch.float32, torch.bfloat16, torch.float32]
    torch.testing.assert_close(out[torch.float32, False], out[torch.float32, True], rtol=0, atol=0)
    torch.testing.assert_close(out[torch.bfloat16, False], out[torch.bfloat16, True], rtol=2e-2, atol=2e-2)


@needs_fresh
def test_compiled_ss2d_leaves_small_grids_to_inductor():
    from dasslib.models.ss2d import SS2D

    torch.manual_seed(0)
    m = SS2D(8, d_state=1, scan_backend="triton").eval()
    x = torch.randn(1, 8, 6, 4)                   # 24 positions, below merge_kernel_min_positions
    ops = []

    def backend(gm, example_inputs):
        ops.append({str(n.target) for n in gm.graph.nodes if n.op == "call_function"})
        return gm.forward

    with torch.no_grad():
        eager = m(x)
        for limit in (m.merge_kernel_min_positions, 0):
            m.merge_kernel_min_positions = limit
            torch._dynamo.reset()
            torch.testing.assert_close(torch.compile(m, backend=backend, fullgraph=True)(x), eager,
                                       rtol=1e-5, atol=1e-6)
    assert [any("ss2d_merge_norm" in t for t in g) for g in ops] == [False, True]


def test_tiles_for_two_byte_scan_outputs():
    # bf16 ys at D <= 128: twice the positions per program (16 rows of 8 at DASS's stage 1), else unchanged
    assert merge_tiles(96, 256, 32, ys_bytes=2) == (128, 16, 8, 4)
    assert merge_tiles(96, 256, 32) == (128, 8, 8, 4)
    assert merge_tiles(192, 128, 16, ys_bytes=2) == merge_tiles(192, 128, 16)


def test_tiles_hold_every_channel():
    # DASS-Small's four stages at 10 s (D, H, W): d_inner 96..768 on grids 256x32 .. 32x4
    for d, h, w in [(96, 256, 32), (192, 128, 16), (384, 64, 8), (768, 32, 4), (5, 3, 1)]:
        bd, bh, bw, warps = merge_tiles(d, h, w)
        assert bd >= d and bd & (bd - 1) == 0
        assert 1 <= bw <= 8 and bw <= triton.next_power_of_2(w) and bh <= triton.next_power_of_2(h)
        assert bd * bh * bw <= max(8192, 4 * bd) and warps in (4, 8, 16)
        # about 32 fp32 per thread and tensor, 64 at D <= 128 (4 warps measured faster there)
        assert bd * bh * bw <= (64 if bd <= 128 else 32) * 32 * warps


def test_bad_input_is_refused():
    ys, wt, bs = _case(1, 4, 3, 2)
    with pytest.raises(ValueError, match="does not hold"):
        ss2d_merge_norm(ys, wt, bs, 1e-5, 4, 2)
    with pytest.raises(ValueError, match=r"\(batch, 4, d, L\)"):
        ss2d_merge_norm(ys[:, :3], wt, bs, 1e-5, 3, 2)
    with pytest.raises(ValueError, match="weight and bias"):
        ss2d_merge_norm(ys, wt[:3], bs, 1e-5, 3, 2)


@needs_fresh
def test_opcheck():
    ys, wt, bs = _case(1, 5, 4, 3)
    torch.library.opcheck(torch.ops.dasslib.ss2d_merge_norm.default, (ys, wt, bs, 1e-5, 4, 3, torch.float32))
