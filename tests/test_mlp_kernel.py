"""VMamba's MLP half-block as one Triton kernel (dasslib.models.mlp_kernel) on the CPU (Triton interpreter):
against the composite with the same casts (fp16: the interpreter rounds fp32 -> bf16 toward zero, so bf16 is
checked loosely here and tightly on the GPU, tests/gpu), positions and channels of no tile multiple, bad input,
and a DASS block taking it under autocast in inference only."""
from tests.interpreter_env import needs_fresh, only_in_a_shared_process, run_in_fresh_process  # noqa: I001

import pytest  # noqa: E402
import torch  # noqa: E402

triton = pytest.importorskip("triton")

from dasslib.models.mlp_kernel import MAX_C, fused_mlp_reference, mlp_kernel_supported, mlp_tiles  # noqa: E402


@only_in_a_shared_process
def test_in_fresh_process():
    run_in_fresh_process(__file__)


def _params(C, dtype, seed=0, hid=None):
    g = torch.Generator().manual_seed(seed)
    hid = hid or 4 * C
    r = lambda *s: torch.randn(*s, generator=g)   # noqa: E731
    return (r(C), r(C), 1e-5, (r(hid, C) / C ** 0.5).to(dtype), r(hid).to(dtype),
            (r(C, hid) / hid ** 0.5).to(dtype), r(C).to(dtype))


@needs_fresh
@pytest.mark.parametrize("C,h,w,hid", [(24, 5, 7, None), (96, 4, 40, None), (20, 3, 3, 72)])
def test_matches_the_composite_in_fp16(C, h, w, hid):
    x = torch.randn(2, C, h, w)
    p = _params(C, torch.float16, hid=hid)
    got = torch.ops.dasslib.vss_mlp(x, *p)
    want = fused_mlp_reference(x, *p)
    assert got.shape == x.shape and got.dtype == x.dtype
    torch.testing.assert_close(got - x, want - x, rtol=2e-3, atol=4e-3)


@needs_fresh
def test_bf16_within_the_interpreters_rounding():
    x = torch.randn(2, 32, 4, 6)
    p = _params(32, torch.bfloat16)
    got, want = torch.ops.dasslib.vss_mlp(x, *p) - x, fused_mlp_reference(x, *p) - x
    assert ((got - want).norm() / want.norm()).item() < 3e-2


@needs_fresh
def test_a_dass_block_takes_it_under_autocast_in_inference():
    from dasslib.models.dass import DASSConfig, VSSBlock

    torch.manual_seed(0)
    blk = VSSBlock(16, 0.1, DASSConfig(scan_backend="triton")).eval()
    x = torch.randn(2, 16, 6, 4)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.float16):
        assert blk._mlp_kernel_dtype(x) == torch.float16
        fused = blk(x)
        blk.fused_mlp = False
        assert blk._mlp_kernel_dtype(x) is None
        plain = blk(x)
    assert fused.dtype == plain.dtype == torch.float32
    torch.testing.assert_close(fused, plain, rtol=5e-3, atol=5e-3)
    blk.fused_mlp = True
    with torch.no_grad():
        assert blk._mlp_kernel_dtype(x) is None             # fp32: the layers, exactly
    with torch.autocast("cpu", dtype=torch.float16):
        assert blk._mlp_kernel_dtype(x.requires_grad_()) is None   # gradients: the layers
    blk.train()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.float16):
        assert blk._mlp_kernel_dtype(x.detach()) is None     # drop path active


def test_tiles_and_support():
    for C in (16, 96, 192, 256):
        cp, bp, bn, warps, stages = mlp_tiles(C)
        assert cp >= C and cp & (cp - 1) == 0 and bp >= 16 and cp * bp <= 16384 and bn == 64
    assert mlp_kernel_supported(192, torch.bfloat16) and mlp_kernel_supported(96, torch.float16)
    assert not mlp_kernel_supported(MAX_C + 1, torch.bfloat16)
    assert not mlp_kernel_supported(96, torch.float32)


def test_bad_input_is_refused():
    x = torch.randn(1, 8, 2, 2)
    p = list(_params(8, torch.bfloat16))
    with pytest.raises(ValueError, match="do not fit"):
        torch.ops.dasslib.vss_mlp(x[:, :4], *p)
    p32 = list(_params(8, torch.float32))
    with pytest.raises(ValueError, match="bf16 / fp16"):
        torch.ops.dasslib.vss_mlp(x, *p32)
