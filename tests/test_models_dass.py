"""DASS: exact official sizes and key layout, official-checkpoint loading, SS2D against a
per-direction reference, odd grids, pooling, training step."""
import math

import pytest
import torch
import torch.nn.functional as F

from dasslib.models import create, load_official
from dasslib.models.pooling import pool_grid
from dasslib.scans import selective_scan_ref

TINY = dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), scan_backend="torch")


def official_dass_shapes(depths, dims=(96, 192, 384, 768), num_classes=527):
    """Key -> shape of the official DASS state dict (module.v. stripped), written from the
    documented layout of the official VSSM (not from our model)."""
    s = {"patch_embed.0.weight": (dims[0] // 2, 1, 3, 3), "patch_embed.0.bias": (dims[0] // 2,),
         "patch_embed.2.weight": (dims[0] // 2,), "patch_embed.2.bias": (dims[0] // 2,),
         "patch_embed.5.weight": (dims[0], dims[0] // 2, 3, 3), "patch_embed.5.bias": (dims[0],),
         "patch_embed.7.weight": (dims[0],), "patch_embed.7.bias": (dims[0],)}
    for i, (depth, c) in enumerate(zip(depths, dims)):
        r = math.ceil(c / 16)
        for j in range(depth):
            p = f"layers.{i}.blocks.{j}."
            s.update({p + "norm.weight": (c,), p + "norm.bias": (c,),
                      p + "op.x_proj_weight": (4, r + 2, c), p + "op.dt_projs_weight": (4, c, r),
                      p + "op.dt_projs_bias": (4, c), p + "op.A_logs": (4 * c, 1),
                      p + "op.Ds": (4 * c,), p + "op.out_norm.weight": (c,),
                      p + "op.out_norm.bias": (c,), p + "op.in_proj.weight": (c, c),
                      p + "op.conv2d.weight": (c, 1, 3, 3), p + "op.out_proj.weight": (c, c),
                      p + "norm2.weight": (c,), p + "norm2.bias": (c,),
                      p + "mlp.fc1.weight": (4 * c, c), p + "mlp.fc1.bias": (4 * c,),
                      p + "mlp.fc2.weight": (c, 4 * c), p + "mlp.fc2.bias": (c,)})
        if i < len(depths) - 1:
            p = f"layers.{i}.downsample."
            s.update({p + "1.weight": (dims[i + 1], c, 3, 3), p + "1.bias": (dims[i + 1],),
                      p + "3.weight": (dims[i + 1],), p + "3.bias": (dims[i + 1],)})
    s.update({"classifier.norm.weight": (dims[-1],), "classifier.norm.bias": (dims[-1],),
              "classifier.head.weight": (num_classes, dims[-1]),
              "classifier.head.bias": (num_classes,)})
    return s


@pytest.mark.parametrize("name,depths,params,tensors", [
    ("dass_small", (2, 2, 8, 2), 29_884_463, 276),
    ("dass_medium", (2, 2, 20, 2), 48_648_239, 492),
])
def test_official_sizes_and_keys(name, depths, params, tensors):
    with torch.device("meta"):
        model = create(name)
    assert sum(p.numel() for p in model.parameters()) == params
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert len(shapes) == tensors
    assert shapes == official_dass_shapes(depths)


def test_load_official_strict_dataparallel_keys(tmp_path):
    model = create("dass_small")
    g = torch.Generator().manual_seed(0)
    sd = {"module.v." + k: torch.randn(shape, generator=g)
          for k, shape in official_dass_shapes((2, 2, 8, 2)).items()}
    torch.save(sd, tmp_path / "DASS_small.pth")
    report = load_official(model, tmp_path / "DASS_small.pth", strict=True)
    assert report.ok and len(report.loaded) == 276
    own = model.state_dict()
    assert all(torch.equal(own[k[len("module.v."):]], v) for k, v in sd.items())


def test_load_official_wrong_shape_is_a_clear_error():
    model = create("dass_small", depths=(1, 1, 1, 1))
    sd = {"module.v." + k: torch.zeros(shape)
          for k, shape in official_dass_shapes((1, 1, 1, 1)).items()}
    sd["module.v.classifier.head.weight"] = torch.zeros(10, 768)
    before = model.classifier.head.weight.clone()
    with pytest.raises(ValueError, match=r"classifier\.head\.weight: checkpoint \(10, 768\) vs "
                                         r"model \(527, 768\)"):
        load_official(model, sd, strict=True)
    assert torch.equal(model.classifier.head.weight, before)      # strict failure loads nothing
    del sd["module.v.layers.0.blocks.0.op.Ds"]
    sd["module.v.extra.weight"] = torch.zeros(3)
    report = load_official(model, sd, strict=False)
    assert report.missing == ["layers.0.blocks.0.op.Ds"]
    assert report.unexpected == ["extra.weight"]
    assert [m[0] for m in report.mismatched] == ["classifier.head.weight"]
    assert torch.equal(model.layers[0].blocks[0].op.A_logs, torch.zeros(4 * 96, 1))


def ss2d_reference(op, x):
    """SS2D v05_noz written direction by direction from the official description."""
    u = F.silu(op.conv2d(op.in_proj(x)))
    b, c, h, w = u.shape
    rows = torch.arange(h * w)
    cols = torch.arange(h * w).view(h, w).t().reshape(-1)        # sequence pos w*H+h -> h*W+w
    orders = [rows, cols, rows.flip(0), cols.flip(0)]
    flat = u.flatten(2)
    out = torch.zeros(b, c, h * w, dtype=torch.float64)
    r, n = op.dt_rank, op.d_state
    for k, idx in enumerate(orders):
        seq = flat[:, :, idx]
        x_dbl = torch.einsum("cd,bdl->bcl", op.x_proj_weight[k], seq)
        dt = torch.einsum("dr,brl->bdl", op.dt_projs_weight[k], x_dbl[:, :r])
        ch = slice(k * c, (k + 1) * c)
        y = selective_scan_ref(seq, dt, -torch.exp(op.A_logs[ch]), x_dbl[:, None, r:r + n],
                               x_dbl[:, None, r + n:], D=op.Ds[ch],
                               delta_bias=op.dt_projs_bias[k], delta_softplus=True,
                               compute_dtype=torch.float64)
        out[:, :, idx] += y.double()
    y = op.out_norm(out.float().view(b, c, h, w))
    return op.out_proj(y)


def test_ss2d_matches_direction_by_direction_reference():
    torch.manual_seed(0)
    op = create("dass_small", **TINY).layers[0].blocks[0].op
    x = torch.randn(2, 8, 3, 5)
    torch.testing.assert_close(op(x), ss2d_reference(op, x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("T,F_,grid", [(100, 40, (2, 4)), (37, 33, (2, 2)), (64, 128, (4, 2))])
def test_any_length_and_odd_grids(T, F_, grid):
    model = create("dass_small", num_classes=3, **TINY)
    feats = model.forward_grid(torch.randn(2, T, F_))
    assert feats.shape == (2, 64, *grid)           # n -> ceil(n / 2) five times
    assert model(torch.randn(2, T, F_)).shape == (2, 3)


def test_pool_grid_modes():
    x = torch.arange(2 * 3 * 2 * 4, dtype=torch.float32).view(2, 3, 2, 4)   # (B, C, F, T)
    # by hand: cell (b, c, f, t) holds 24 b + 8 c + 4 f + t, so the mean over (f, t) is 24 b + 8 c + 3.5,
    # the sum 8 times that, and the frequency mean at time t is 24 b + 8 c + 2 + t
    base = torch.tensor([[24.0 * b + 8.0 * c for c in range(3)] for b in range(2)])
    torch.testing.assert_close(pool_grid(x, "mean"), base + 3.5)
    torch.testing.assert_close(pool_grid(x, "sum"), 8 * (base + 3.5))
    torch.testing.assert_close(pool_grid(x, "first"), base + 2.0)
    torch.testing.assert_close(pool_grid(x, "mid"), base + 4.0)
    torch.testing.assert_close(pool_grid(x, "last"), base + 5.0)
    with pytest.raises(ValueError, match="pooling 'max'"):
        create("dass_small", pooling="max")


def test_pooling_override_changes_the_summary():
    torch.manual_seed(0)
    mean = create("dass_small", num_classes=4, **TINY).eval()
    last = create("dass_small", num_classes=4, pooling="last", **TINY).eval()
    last.load_state_dict(mean.state_dict())
    x = torch.randn(1, 200, 32)
    grid = mean.classifier.norm(mean.forward_grid(x))
    torch.testing.assert_close(last.forward_head(last.forward_features(x), pre_logits=True),
                               grid[..., -1].mean(2))
    # the default (mean) summary and logits, in float64: every grid cell counted once, then the linear head
    g = grid.detach().double()
    pooled = g.sum(dim=(2, 3)) / (g.shape[2] * g.shape[3])
    torch.testing.assert_close(mean.forward_head(mean.forward_features(x), pre_logits=True).double(), pooled,
                               rtol=1e-5, atol=1e-6)
    head = mean.classifier.head
    logits = pooled @ head.weight.detach().double().T + head.bias.detach().double()
    torch.testing.assert_close(mean(x).detach().double(), logits, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(mean(x), last(x))


def test_gradient_step_lowers_loss_and_bf16_autocast(bce_losses):
    torch.manual_seed(0)
    model = create("dass_small", num_classes=4, drop_path=0.0, **TINY)
    x, y = torch.randn(4, 64, 32), (torch.rand(4, 4) > 0.5).float()
    losses = bce_losses(model, x, y, lr=3e-3)
    assert losses[-1] < losses[0]
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.dtype == torch.bfloat16
    # float64 reference (scan_fp32=False lets the whole model run in float64): |logits| ~ 1, where bf16's
    # spacing is 2**-7 = 0.0078; the bf16 logits stay within two of those steps
    ref = create("dass_small", num_classes=4, scan_fp32=False, **TINY).double().eval()
    ref.load_state_dict(model.state_dict())
    with torch.no_grad():
        expected = ref(x.double())
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=2 * 2 ** -7)
    low = create("dass_small", num_classes=4, scan_fp32=False, **TINY).eval()
    low.load_state_dict(model.state_dict())
    assert not low.layers[0].blocks[0].op.scan_fp32
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        torch.testing.assert_close(low(x).double(), expected, rtol=0, atol=2 * 2 ** -7)


@pytest.mark.parametrize("scan_fp32", [True, False])
def test_scan_fp32_scans_in_float32_under_bf16_autocast(scan_fp32, monkeypatch):
    """scan_fp32 is an effect of ~0.008 on the logits: check it where it acts, on the scan's output,
    against the float64 reference scan of the very inputs the block passed (bf16 values)."""
    import dasslib.models.ss2d as ss2d

    calls = []
    real = ss2d.selective_scan

    def spy(u, delta, A, B, C, **kw):
        y = real(u, delta, A, B, C, **kw)
        calls.append((u, delta, A, B, C, kw, y))
        return y

    monkeypatch.setattr(ss2d, "selective_scan", spy)
    torch.manual_seed(0)
    model = create("dass_small", num_classes=4, scan_fp32=scan_fp32, **TINY).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.randn(2, 64, 32))
    u, delta, A, B, C, kw, y = calls[0]
    assert B.dtype == torch.bfloat16  # the block ran under autocast: its projections are bf16
    def d64(t):
        return t.double()
    with torch.no_grad():
        expected = selective_scan_ref(d64(u), d64(delta), d64(A), d64(B), d64(C), D=d64(kw["D"]),
                                      delta_bias=d64(kw["delta_bias"]), delta_softplus=True,
                                      compute_dtype=torch.float64)
    # relative error per element (elements below 1e-3 of the largest compared at that floor)
    err = float(((y.double() - expected).abs() / expected.abs().clamp_min(1e-3 * expected.abs().max())).max())
    if scan_fp32:
        assert y.dtype == torch.float32 and err < 1e-4   # float32 arithmetic on the bf16 inputs
    else:
        assert y.dtype == torch.bfloat16 and err > 1e-3  # rounded to bf16 (relative spacing up to 2**-7)


def test_mlp_chunking_is_exact():
    torch.manual_seed(0)
    whole = create("dass_small", num_classes=3, **TINY).eval()
    sliced = create("dass_small", num_classes=3, mlp_chunk_elems=100, **TINY).eval()
    sliced.load_state_dict(whole.state_dict())
    x = torch.randn(1, 90, 32)
    mlp, h = sliced.layers[0].blocks[0].mlp, torch.randn(1, 8, 8, 23)
    assert mlp.fc1.out_features * 8 * 23 > 100                   # really sliced (width-1 slices)
    torch.testing.assert_close(mlp(h), whole.layers[0].blocks[0].mlp(h))
    torch.testing.assert_close(sliced(x), whole(x))


@pytest.mark.parametrize("shape,k,stride,pad", [((2, 1, 13, 22), 3, 2, 1), ((1, 1, 8, 9), 4, 1, 0),
                                                ((1, 1, 7, 5), 3, (1, 2), (0, 1))])
def test_stem_taps_equal_the_convolution(shape, k, stride, pad):
    """The stem's compiled form (a sum of kernel taps, TapConv2d) is F.conv2d."""
    from dasslib.models.layers import TapConv2d, tap_conv
    torch.manual_seed(0)
    conv = TapConv2d(1, 5, k, stride=stride, padding=pad).double()
    x = torch.randn(*shape, dtype=torch.float64)
    ref = conv(x)                                   # eager: the convolution itself
    out = tap_conv(x, conv.weight, conv.bias, conv.stride, conv.padding)
    assert out.shape == ref.shape
    assert (out - ref).abs().max() < 1e-12
    keys = create("dass_small", depths=(1, 1, 1, 1), dims=(8, 16, 32, 64)).state_dict()
    assert {"patch_embed.0.weight", "patch_embed.0.bias"} <= set(keys)   # official keys kept


def test_default_config_runs_in_float64():
    """scan_fp32 (the default) widens lower precisions only: the model in float64 used to fail with
    'mixed dtype'; it now scans in float64 and matches the float32 model to float32 rounding."""
    torch.manual_seed(0)
    model = create("dass_small", num_classes=4, **TINY).eval()
    assert model.layers[0].blocks[0].op.scan_fp32
    x = torch.randn(2, 64, 32)
    with torch.no_grad():
        out32 = model(x)
        model.double()
        out64 = model(x.double())
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64.float(), out32, rtol=1e-4, atol=1e-5)
