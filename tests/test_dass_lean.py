"""The lean DASS inference path (dasslib.models.dass_lean) against the plain forward: long random
inputs, odd grids, chunks down to one step, fp32 and bf16 autocast, the real dass_small config,
frame outputs, and its errors."""
import pytest
import torch

from dasslib.models import create
from dasslib.models.dass_lean import conv_time_chunk

TINY = dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), scan_backend="torch")


def _close(a, b, rtol):
    err = (a - b).abs().max().item()
    assert err <= rtol * max(1.0, b.abs().max().item()), err
    return err


@pytest.mark.parametrize("T,F", [(6000, 128), (37, 20), (129, 33), (1, 4)])
def test_lean_features_equal_plain_fp32(T, F):
    torch.manual_seed(0)
    model = create("dass_small", num_classes=5, depths=(1, 2, 1, 1), dims=(8, 16, 32, 64),
                   scan_backend="torch").eval()
    x = torch.randn(2, T, F)
    with torch.inference_mode():
        plain = model.forward_features(x)
        logits = model.forward_head(plain)
        frames = model.frame_head(plain, x.shape)
        sizes = [(1 << 25, 1 << 25), (20000, 5000)] if T > 1000 else [(1 << 25, 1 << 25), (700, 300), (1, 1)]
        for chunk_elems, scan_elems in sizes:
            lean = model.forward_features_lean(x, chunk_elems=chunk_elems, scan_elems=scan_elems)
            assert lean.shape == plain.shape and lean.dtype == plain.dtype
            _close(lean, plain, 1e-5)
            _close(model.forward_head(lean), logits, 1e-5)
            _close(model.frame_head(lean, x.shape), frames, 1e-5)


def test_lean_dass_small_real_config_fp32():
    torch.manual_seed(1)
    model = create("dass_small", num_classes=527).eval()
    x = torch.randn(1, 3000, 128)
    with torch.inference_mode():
        plain = model.forward_features(x)
        lean = model.forward_features_lean(x, chunk_elems=1 << 20, scan_elems=1 << 16)
        _close(lean, plain, 1e-5)
        _close(model.forward_head(lean), model.forward_head(plain), 1e-5)
        _close(model.frame_head(lean, x.shape), model.frame_head(plain, x.shape), 1e-5)


def test_lean_bf16_autocast_within_bf16_rounding():
    torch.manual_seed(2)
    model = create("dass_small", num_classes=5, **TINY).eval()
    x = torch.randn(1, 2000, 64)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        plain = model.forward_features(x)
        lean = model.forward_features_lean(x, chunk_elems=2000, scan_elems=500)
        logits_plain, logits_lean = model.forward_head(plain), model.forward_head(lean)
    assert lean.dtype == plain.dtype
    with torch.inference_mode():
        ref = model.forward_features(x)   # fp32: how far bf16 itself is from it
    bf16_err = (plain.float() - ref).abs().max().item()
    err = _close(lean.float(), plain.float(), 2 ** -6)
    assert err <= 2 * bf16_err + 1e-6
    _close(logits_lean.float(), logits_plain.float(), 2 ** -6)


def test_lean_input_on_host_frame_source():
    class Source:
        def __init__(self, x):
            self.x, self.num_frames, self.num_mel_bins, self.batch_size = x, x.shape[1], x.shape[2], x.shape[0]
            self.calls = []

        def frames(self, start, stop):
            self.calls.append((start, stop))
            return self.x[:, start:stop]

    torch.manual_seed(3)
    model = create("dass_small", num_classes=3, **TINY).eval()
    x = torch.randn(1, 1000, 32)
    src = Source(x)
    with torch.inference_mode():
        lean = model.forward_lean(src, chunk_elems=2000)
        plain = model(x)
    _close(lean, plain, 1e-5)
    assert len(src.calls) > 1 and max(b - a for a, b in src.calls) < 1000  # the input read in chunks


def test_conv_time_chunk_halo_and_padding():
    torch.manual_seed(4)
    for k, s, p in [(3, 2, 1), (3, 1, 1), (5, 3, 2), (2, 2, 0)]:
        conv = torch.nn.Conv2d(3, 4, k, stride=s, padding=p).double()
        x = torch.randn(2, 3, 5, 23, dtype=torch.float64)
        full = conv(x)
        n = full.shape[-1]
        for a, b in [(0, n), (0, 1), (n - 1, n), (2, min(n, 5))]:
            part = conv_time_chunk(conv, lambda i, j: x[..., i:j], a, b, x.shape[-1])
            torch.testing.assert_close(part, full[..., a:b], rtol=0, atol=1e-12)


def test_lean_errors():
    model = create("dass_small", num_classes=3, **TINY)
    x = torch.randn(1, 64, 16)
    with pytest.raises(RuntimeError, match="eval"):
        with torch.inference_mode():
            model.forward_lean(x)
    model.eval()
    with pytest.raises(RuntimeError, match="inference_mode"):
        model.forward_lean(x)
    with torch.inference_mode():
        with pytest.raises(ValueError, match=r"\(B, T, F\)"):
            model.forward_lean(x[0])
        with pytest.raises(ValueError, match="chunk_elems"):
            model.forward_lean(x, chunk_elems=0)
        with pytest.raises(TypeError, match="frame source"):
            model.forward_lean([1, 2, 3])
