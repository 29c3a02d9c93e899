"""DASS's stem kernel (dasslib.models.stem_kernel: conv 3x3 s2 from one channel, LayerNorm, GELU) on the CPU
(Triton interpreter): against torch in float64 / float32 and with bf16 autocast rounding, odd sizes, bad
input, and DASS taking it in inference."""
from tests.interpreter_env import needs_fresh, only_in_a_shared_process, run_in_fresh_process  # noqa: I001

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton")

from dasslib.models.stem_kernel import stem_conv_norm_gelu, stem_conv_norm_gelu_reference  # noqa: E402


@only_in_a_shared_process
def test_in_fresh_process():
    run_in_fresh_process(__file__)


def _case(b, t, f, c, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    args = [torch.randn(b, t, f, generator=g, dtype=dtype) * 2 - 1, torch.randn(c, 1, 3, 3, generator=g, dtype=dtype),
            torch.randn(c, generator=g, dtype=dtype), torch.randn(c, generator=g, dtype=dtype),
            torch.randn(c, generator=g, dtype=dtype)]
    return args


@needs_fresh
@pytest.mark.parametrize("b,t,f,c", [(2, 37, 12, 6), (1, 300, 9, 24)])   # odd sides, partial blocks
def test_matches_torch(b, t, f, c):
    args = _case(b, t, f, c)
    want = stem_conv_norm_gelu_reference(*args, 1e-6)           # float64
    args32 = [a.float() for a in args]
    got = stem_conv_norm_gelu(*args32, 1e-6)                    # the kernel computes in fp32
    assert got.shape == (b, c, (f + 1) // 2, (t + 1) // 2) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
    bf = stem_conv_norm_gelu(*args32, 1e-6, round_bf16=True, out_dtype=torch.bfloat16)
    want_bf = stem_conv_norm_gelu_reference(*args32, 1e-6, round_bf16=True)
    assert bf.dtype == torch.bfloat16
    # equal after the output's rounding, but for a few near-ties: a bf16 convolution output one ulp apart
    # (summation order) moves the normalised value
    diff = (bf.float() - want_bf.bfloat16().float()).abs()
    assert (diff > 0).float().mean() < 0.02 and diff.max() < 0.05, ((diff > 0).float().mean(), diff.max())


@needs_fresh
@pytest.mark.parametrize("tiles", [(16, 1), (32, 2, True), (64, 4, True), (16, 1, False, True),
                                   (32, 4, True, True), None])
def test_tiles_the_transposed_read_and_the_dot_form_give_the_same_output(tiles):
    """Other program sizes, the kernel reading a (B, F, T) copy of the fbank, and the convolution as a matrix
    product (the default since 3819f87's timings; benchmarks/bench_stem.py times them all) write what the
    first form does (128 positions x 8 warps): the same bits where only the program shape changes, within
    fp32 summation order for the matrix product; under bf16 rounding the same bf16 values but at a few
    near-ties."""
    from dasslib.models.stem_kernel import launch_stem, stem_tiles

    x, w, cb, nw, nb = [a.float() for a in _case(2, 37, 12, 6)]
    dot = len(tiles or stem_tiles(6, 19)) > 3 and (tiles or stem_tiles(6, 19))[3]
    first = (128, 8, False, False)
    want = launch_stem(x, w, cb, nw, nb, 1e-6, False, torch.empty(2, 6, 6, 19), tiles=first)
    got = launch_stem(x, w, cb, nw, nb, 1e-6, False, torch.empty_like(want), tiles=tiles)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6 if dot else 0)
    want_bf = launch_stem(x, w, cb, nw, nb, 1e-6, True, torch.empty_like(want), tiles=first)
    got_bf = launch_stem(x, w, cb, nw, nb, 1e-6, True, torch.empty_like(want), tiles=tiles)
    diff = (got_bf - want_bf).abs()
    assert (diff > 1e-5).float().mean() < 0.02 and diff.max() < 0.05, ((diff > 1e-5).float().mean(), diff.max())


@needs_fresh
def test_dass_passes_its_stem_tiles_on():
    """``DASS.stem_tiles`` reaches the kernel (the bench_models labels of the dot form set it)."""
    from dasslib.models import create, stem_kernel

    torch.manual_seed(0)
    m = create("dass_small", depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), num_classes=5, scan_backend="triton").eval()
    x = torch.randn(2, 26, 18)
    seen = []
    launch = stem_kernel.launch_stem

    def spy(*args, tiles=None):
        seen.append(tiles)
        return launch(*args, tiles=tiles)

    stem_kernel.launch_stem = spy
    try:
        with torch.no_grad():
            plain = m._stem_forward(x)
            m.stem_tiles = (16, 1, False, False)       # the first form (the default is the dot form)
            dot = m._stem_forward(x)
    finally:
        stem_kernel.launch_stem = launch
    assert seen == [None, [16, 1, 0, 0]]
    torch.testing.assert_close(dot, plain, rtol=0, atol=1e-5)


@needs_fresh
def test_dass_takes_it_in_inference():
    from dasslib.models import create

    torch.manual_seed(0)
    m = create("dass_small", depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), num_classes=5, scan_backend="triton").eval()
    x = torch.randn(2, 26, 18)
    with torch.no_grad():
        plain = m.patch_embed(x.unsqueeze(1).transpose(2, 3))
        assert m.stem_kernel and m._stem_kernel_dtype(x) == torch.float32     # on by default
        m.stem_kernel = False
        assert m._stem_kernel_dtype(x) is None
        m.stem_kernel = True
        fused = m._stem_forward(x)                     # what forward_features starts with
    assert fused.shape == plain.shape == (2, 8, 5, 7)
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-5)
    assert m._stem_kernel_dtype(x) is None          # gradients on: the layers run


def test_the_dot_form_refuses_programs_under_16_positions():
    from dasslib.models.stem_kernel import launch_stem

    x, w, cb, nw, nb = [a.float() for a in _case(1, 40, 8, 4)]
    with pytest.raises(ValueError, match="at least 16 positions"):
        launch_stem(x, w, cb, nw, nb, 1e-6, False, torch.empty(1, 4, 4, 20), tiles=(8, 1, False, True))


def test_bad_input_is_refused():
    x, w, cb, nw, nb = _case(1, 8, 6, 4)
    with pytest.raises(ValueError, match=r"fbank \(B, T, F\)"):
        stem_conv_norm_gelu(x[0], w, cb, nw, nb, 1e-6)
    with pytest.raises(ValueError, match=r"\(C, 1, 3, 3\)"):
        stem_conv_norm_gelu(x, w[:, :, :2], cb, nw, nb, 1e-6)
    with pytest.raises(ValueError, match="norm bias"):
        stem_conv_norm_gelu(x, w, cb, nw, nb[:3], 1e-6)
