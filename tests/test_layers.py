"""Shared layers taken from timm (dasslib.models.layers): the same numbers as the hand-written versions they
replace, and timm imported only when a model needs it."""
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from dasslib.models import layers


def test_layernorm2d_is_timms_with_layernorms_eps_and_the_channel_norm():
    import timm.layers

    ln = layers.LayerNorm2d(6)
    assert isinstance(ln, timm.layers.LayerNorm2d) and ln.eps == 1e-5
    assert sorted(ln.state_dict()) == ["bias", "weight"]
    with torch.no_grad():
        ln.weight.uniform_(0.5, 1.5), ln.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    ln = ln.double()
    # float64 reference written independently: normalise each position's channel vector
    mu, var = x.mean(1, keepdim=True), x.var(1, unbiased=False, keepdim=True)
    ref = (x - mu) / torch.sqrt(var + 1e-5) * ln.weight[:, None, None] + ln.bias[:, None, None]
    torch.testing.assert_close(ln(x), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("mode", ["bilinear", "bilinear_aa"])
@pytest.mark.parametrize("new", [(12, 40), (6, 101), (12, 20)])
def test_resize_pos_grid_equals_plain_interpolation(mode, new):
    pos = torch.randn(1, 12 * 50, 16)
    out = layers.resize_pos_grid(pos, (12, 50), new, mode)
    grid = pos.reshape(1, 12, 50, 16).permute(0, 3, 1, 2)   # the hand-written version timm's replaced
    ref = F.interpolate(grid, size=new, mode="bilinear", align_corners=False, antialias=mode == "bilinear_aa")
    ref = ref.permute(0, 2, 3, 1).reshape(1, new[0] * new[1], 16)
    assert out.shape == ref.shape and out.dtype == pos.dtype
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)


def test_import_of_the_models_does_not_import_timm():
    code = "import sys, dasslib.models; print('timm' in sys.modules, 'torchvision' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
    code = ("import sys, dasslib.models as m; m.create('dass_small', depths=(1, 1, 1, 1), dims=(8, 16, 32, 64)); "
            "print('timm' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.split() == ["True"]
