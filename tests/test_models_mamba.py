"""Mamba-based models: the mixer against the official formulas, AuM (checkpoint layout, CLS
positions, lengths) and SSAM / SSAST (patching, sin-cos table, masking, features)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dasslib.models import create, load_official
from dasslib.models.layers import sincos_table_2d
from dasslib.models.mamba_mixer import MambaMixer
from dasslib.models.masked import kept_patches, random_patch_mask
from dasslib.scans import selective_scan_ref

AUM_TINY = dict(embed_dim=32, depth=2, input_fdim=32, input_tdim=64, scan_backend="torch")
SSAM_TINY = dict(embed_dim=32, depth=2, d_state=4, expand=2, scan_backend="torch")


def mixer_reference(m, h):
    """mamba-ssm's slow path and Vim's bimamba_inner_fn_ref / v2 branch, step by step."""
    L = h.shape[1]
    x, z = m.in_proj(h).transpose(1, 2).chunk(2, dim=1)
    r, n = m.dt_rank, m.d_state

    def branch(x, conv, x_proj, dt_proj):
        u = F.silu(conv(x)[..., :L])
        dt, B, C = torch.split(x_proj(u.transpose(1, 2)), [r, n, n], dim=-1)
        dt = (dt @ dt_proj.weight.t()).transpose(1, 2)
        return u, dt, B.transpose(1, 2)[:, None], C.transpose(1, 2)[:, None]

    def scan(u, dt, A_log, B, C, D, z, bias):
        return selective_scan_ref(u, dt, -torch.exp(A_log), B, C, D=D, z=z, delta_bias=bias,
                                  delta_softplus=True, compute_dtype=torch.float64).float()

    u, dt, B, C = branch(x, m.conv1d, m.x_proj, m.dt_proj)
    y = scan(u, dt, m.A_log, B, C, m.D, z, m.dt_proj.bias)
    if m.bimamba == "fo_bi":
        f = lambda t: t.flip(-1)  # noqa: E731
        y = y + f(scan(f(u), f(dt), m.A_b_log, f(B), f(C), m.D, f(z), m.dt_proj.bias))
    elif m.bimamba == "bi_bi":
        u_b, dt_b, B_b, C_b = branch(x.flip(-1), m.conv1d_b, m.x_proj_b, m.dt_proj_b)
        y_b = scan(u_b, dt_b, m.A_b_log, B_b, C_b, m.D_b, z.flip(-1), m.dt_proj_b.bias)
        y = (y + y_b.flip(-1)) / 2
    return m.out_proj(y.transpose(1, 2))


@pytest.mark.parametrize("bimamba", ["none", "fo_bi", "bi_bi"])
def test_mixer_matches_official_formulas(bimamba):
    torch.manual_seed(0)
    m = MambaMixer(8, d_state=4, d_conv=3, expand=2, bimamba=bimamba, scan_backend="torch")
    with torch.no_grad():                     # break the symmetric init so directions differ
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    h = torch.randn(2, 9, 8)
    torch.testing.assert_close(m(h), mixer_reference(m, h), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bimamba", ["none", "fo_bi", "bi_bi"])
def test_scan_padding_to_an_aligned_length_changes_nothing(bimamba):
    """``scan_pad = "always"`` scans 9 -> 16 steps with zeros past the end: the same outputs and
    gradients (the forward rows never see the padding, a reversed row's state stays zero in it)."""
    torch.manual_seed(0)
    m = MambaMixer(8, d_state=4, d_conv=4, expand=2, bimamba=bimamba, scan_backend="torch")
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    h = torch.randn(2, 9, 8, dtype=torch.float64)
    m.double()
    outs, grads = [], []
    for mode in ("never", "always"):
        m.scan_pad = mode
        m.zero_grad()
        hh = h.clone().requires_grad_(True)
        y = m(hh)
        (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
        outs.append(y.detach())
        grads.append([hh.grad] + [p.grad for p in m.parameters()])
    assert m._scan_padding(9, None, False) == 7 and m._scan_padding(16, None, False) == 0
    assert m._scan_padding(9, torch.ones(2, 9), False) == 0 and m._scan_padding(9, None, True) == 0
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-12, atol=1e-12)
    for a, b in zip(grads[1], grads[0]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    m.scan_pad = "sometimes"
    with pytest.raises(ValueError, match="scan_pad"):
        m(h)


def official_aum_shapes(bimamba, d=768, depth=24, n_patches=512, num_classes=527):
    """AudioMamba state dict (base, 16x16 patches, 128 x 1024, middle CLS)."""
    e, r, n = 2 * d, math.ceil(d / 16), 16
    s = {"patch_embed.proj.weight": (d, 1, 16, 16), "patch_embed.proj.bias": (d,),
         "cls_token": (1, 1, d), "pos_embed.pos_embed": (1, n_patches + 1, d),
         "head.weight": (num_classes, d), "head.bias": (num_classes,), "norm_f.weight": (d,)}
    for i in range(depth):
        p = f"layers.{i}."
        s.update({p + "norm.weight": (d,), p + "mixer.in_proj.weight": (2 * e, d),
                  p + "mixer.conv1d.weight": (e, 1, 4), p + "mixer.conv1d.bias": (e,),
                  p + "mixer.x_proj.weight": (r + 2 * n, e), p + "mixer.dt_proj.weight": (e, r),
                  p + "mixer.dt_proj.bias": (e,), p + "mixer.A_log": (e, n), p + "mixer.D": (e,),
                  p + "mixer.out_proj.weight": (d, e)})
        if bimamba != "none":
            s[p + "mixer.A_b_log"] = (e, n)
        if bimamba == "bi_bi":
            s.update({p + "mixer.conv1d_b.weight": (e, 1, 4), p + "mixer.conv1d_b.bias": (e,),
                      p + "mixer.x_proj_b.weight": (r + 2 * n, e),
                      p + "mixer.dt_proj_b.weight": (e, r), p + "mixer.dt_proj_b.bias": (e,),
                      p + "mixer.D_b": (e,)})
    return s


@pytest.mark.parametrize("bimamba", ["none", "fo_bi", "bi_bi"])
def test_aum_official_checkpoint_layout_loads_strictly(bimamba):
    with torch.device("meta"):
        model = create("aum_base", bimamba=bimamba)
    sd = {"module." + k: torch.empty(s, device="meta")
          for k, s in official_aum_shapes(bimamba).items()}
    report = load_official(model, sd, strict=True)
    assert report.ok and len(report.loaded) == len(sd)


@pytest.mark.parametrize("bimamba", ["none", "fo_bi", "bi_bi"])
def test_aum_official_layout_copies_every_value(bimamba):
    """The report alone would pass if nothing were copied: check the values, on a small real model."""
    torch.manual_seed(0)
    model = create("aum_tiny", num_classes=5, bimamba=bimamba, **AUM_TINY)
    n_patches = model.state_dict()["pos_embed.pos_embed"].shape[1] - 1
    g = torch.Generator().manual_seed(1)
    sd = {"module." + k: torch.randn(s, generator=g)
          for k, s in official_aum_shapes(bimamba, d=32, depth=2, n_patches=n_patches, num_classes=5).items()}
    report = load_official(model, sd, strict=True)
    own = model.state_dict()
    assert report.ok and sorted(report.loaded) == sorted(own) == sorted(k[len("module."):] for k in sd)
    assert all(torch.equal(own[k[len("module."):]], v) for k, v in sd.items())


@pytest.mark.parametrize("position,index", [("head", 0), ("mid", 4), ("tail", 8)])
def test_aum_cls_token_position_and_its_position_embedding(position, index):
    # depth 0: the output is norm_f of the (positioned) CLS token wherever it sits
    model = create("aum_tiny", num_classes=0, cls_position=position, **{**AUM_TINY, "depth": 0})
    assert model.cls_index(8) == index
    x = torch.randn(2, 64, 32)          # 32 x 64 -> 2 x 4 = 8 patches
    expected = model.norm_f(model.cls_token[0, 0] + model.pos_embed.pos_embed[0, 0])
    pooled = model.forward_head(model.forward_features(x), pre_logits=True)
    torch.testing.assert_close(pooled, expected.expand(2, -1))


def test_aum_variants_lengths_and_mean_pool():
    torch.manual_seed(0)
    for bimamba in ("none", "fo_bi", "bi_bi"):
        model = create("aum_tiny", num_classes=3, bimamba=bimamba, **AUM_TINY)
        for t in (64, 112):
            assert model(torch.randn(2, t, 32)).shape == (2, 3)
    no_cls = create("aum_tiny", num_classes=3, cls_position="none", **AUM_TINY)
    assert "cls_token" not in no_cls.state_dict()
    assert no_cls.pos_embed.pos_embed.shape == (1, 8, 32)
    assert no_cls(torch.randn(2, 64, 32)).shape == (2, 3)


def test_aum_gradient_step_lowers_loss(bce_losses):
    torch.manual_seed(0)
    model = create("aum_tiny", num_classes=4, **AUM_TINY)
    x, y = torch.randn(4, 64, 32), (torch.rand(4, 4) > 0.5).float()
    losses = bce_losses(model, x, y, lr=3e-3)
    assert losses[-1] < losses[0]


def mae_sincos_2d(dim, rows, cols):
    """MAE's get_2d_sincos_pos_embed for a (rows, cols) grid, in numpy."""
    def one_d(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)
    gw, gh = np.meshgrid(np.arange(cols, dtype=np.float64), np.arange(rows, dtype=np.float64))
    return np.concatenate([one_d(dim // 2, gw), one_d(dim // 2, gh)], axis=1)


def test_sincos_2d_table_matches_mae():
    torch.testing.assert_close(sincos_table_2d(6, 5, 16).double(),
                               torch.from_numpy(mae_sincos_2d(16, 6, 5)), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["ssam_tiny", "ssast_tiny"])
def test_patch_tokens_and_targets_share_the_time_major_order(name):
    kw = SSAM_TINY if name.startswith("ssam") else dict(embed_dim=32, depth=2, num_heads=2)
    model = create(name, num_classes=0, **kw)
    x = torch.randn(2, 203, 81)                  # cropped to 200 x 80 -> 50 x 5 patches
    target = model.patchify(x)
    assert target.shape == (2, 250, 64)
    torch.testing.assert_close(target[0, 7], x[0, 4:8, 32:48].reshape(-1))   # t=1, f=2
    tokens, grid = model.patch_embed(x[:, :200, :80].unsqueeze(1))
    w = model.patch_embed.proj.weight.reshape(32, 64)
    torch.testing.assert_close(tokens, target @ w.t() + model.patch_embed.proj.bias,
                               rtol=1e-4, atol=1e-5)
    assert grid == (50, 5)


@pytest.mark.parametrize("ratio", [0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9])
def test_kept_count_is_the_official_integer_arithmetic(ratio):
    for n in (10, 249, 250, 400, 1212):
        official = int(n * (100 - ratio * 100) / 100)   # SSAM's masking code, as the spec records it
        assert kept_patches(n, ratio) == official
        assert int((~random_patch_mask(1, n, ratio)).sum()) == official
    if ratio == 0.8:
        assert (kept_patches(250, 0.8), int(250 * (1 - 0.8))) == (50, 49)  # the count the old code kept


def test_random_patch_mask_counts_and_generator():
    g = torch.Generator().manual_seed(3)
    mask = random_patch_mask(4, 250, 0.5, generator=g)
    assert mask.dtype == torch.bool and (mask.sum(1) == 125).all()
    again = random_patch_mask(4, 250, 0.5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(mask, again)
    assert (random_patch_mask(2, 10, 0.3).sum(1) == 3).all()      # keep int(10 * 0.7) = 7
    with pytest.raises(ValueError, match="mask_ratio"):
        random_patch_mask(1, 10, 1.0)


@pytest.mark.parametrize("name", ["ssam_tiny", "ssast_tiny"])
def test_pretrain_prediction_ignores_masked_content(name):
    torch.manual_seed(0)
    kw = SSAM_TINY if name.startswith("ssam") else dict(embed_dim=32, depth=2, num_heads=2)
    model = create(name, num_classes=0, **kw).eval()
    x = torch.randn(2, 200, 80)
    out = model.forward_pretrain(x, generator=torch.Generator().manual_seed(1))
    assert out["pred"].shape == out["target"].shape == (2, 250, 64)
    assert out["mask"].shape == (2, 250) and (out["mask"].sum(1) == 125).all()
    torch.testing.assert_close(out["target"], model.patchify(x))
    i = int(out["mask"][0].nonzero()[0])             # a masked patch of the first clip
    t, f = divmod(i, 5)
    x2 = x.clone()
    x2[0, 4 * t:4 * t + 4, 16 * f:16 * f + 16] += 5.0
    out2 = model.forward_pretrain(x2, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out2["pred"], out["pred"])
    assert not torch.allclose(out2["target"], out["target"])


def test_ssam_features_frames_and_classifier():
    torch.manual_seed(0)
    model = create("ssam_tiny", num_classes=10, **SSAM_TINY).eval()
    x = torch.randn(2, 200, 80)
    tokens = model.forward_features(x)
    mean = model.forward_head(tokens, pre_logits=True)
    frames = model.forward_frames(x)
    assert mean.shape == (2, 32) and frames.shape == (2, 50, 5 * 32)
    torch.testing.assert_close(frames.view(2, 50, 5, 32).mean((1, 2)), mean)
    torch.testing.assert_close(frames, tokens[:, 1:].reshape(2, 50, 5 * 32))   # time-major tokens
    model.reset_classifier(10, global_pool="cls")
    torch.testing.assert_close(model.forward_head(tokens, pre_logits=True), tokens[:, 0])
    assert model(x).shape == (2, 10)
    assert model(torch.randn(2, 120, 80)).shape == (2, 10)           # any length


def test_ssam_vim_variant_and_sizes():
    vim = create("ssam_tiny", num_classes=0, bimamba="bi_bi", **SSAM_TINY)
    assert "blocks.0.mixer.conv1d_b.weight" in vim.state_dict()
    assert vim(torch.randn(1, 200, 80)).shape == (1, 32)
    for name, paper in [("ssam_tiny", 4.8), ("ssam_small", 17.9), ("ssam_base", 69.3),
                        ("ssast_tiny", 5.4), ("ssast_small", 21.5), ("ssast_base", 85.7)]:
        with torch.device("meta"):
            model = create(name, num_classes=0)
        n = sum(p.numel() for p in model.parameters()) / 1e6
        assert abs(n - paper) / paper < 0.01, (name, n)


def test_ssam_pretraining_step_lowers_masked_mse():
    torch.manual_seed(0)
    model = create("ssam_tiny", num_classes=0, **SSAM_TINY)
    x = torch.randn(4, 48, 80)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(5):
        out = model.forward_pretrain(x, generator=torch.Generator().manual_seed(step))
        err = ((out["pred"] - out["target"]) ** 2).mean(-1)
        loss = (err * out["mask"]).sum() / out["mask"].sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
