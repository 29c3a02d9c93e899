"""AST: sizes, the official AudioSet checkpoint layout, positional embeddings, attention modes."""
import math

import pytest
import torch
import torch.nn.functional as F

from dasslib.models import create, load_official
from dasslib.models.layers import resize_pos_grid, sinusoid_table_1d

TINY = dict(embed_dim=32, depth=2, num_heads=2, input_fdim=32, input_tdim=64)


def official_ast_base_shapes(d=768, depth=12, n_pos=1214, num_classes=527):
    """The AST AudioSet checkpoint (base384, fstride = tstride = 10, 128 x 1024, 527 classes)."""
    s = {"module.v.cls_token": (1, 1, d), "module.v.dist_token": (1, 1, d),
         "module.v.pos_embed": (1, n_pos, d), "module.v.patch_embed.proj.weight": (d, 1, 16, 16),
         "module.v.patch_embed.proj.bias": (d,), "module.v.norm.weight": (d,),
         "module.v.norm.bias": (d,), "module.v.head.weight": (1000, d), "module.v.head.bias": (1000,),
         "module.v.head_dist.weight": (1000, d), "module.v.head_dist.bias": (1000,),
         "module.mlp_head.0.weight": (d,), "module.mlp_head.0.bias": (d,),
         "module.mlp_head.1.weight": (num_classes, d), "module.mlp_head.1.bias": (num_classes,)}
    for i in range(depth):
        p = f"module.v.blocks.{i}."
        s.update({p + "norm1.weight": (d,), p + "norm1.bias": (d,),
                  p + "attn.qkv.weight": (3 * d, d), p + "attn.qkv.bias": (3 * d,),
                  p + "attn.proj.weight": (d, d), p + "attn.proj.bias": (d,),
                  p + "norm2.weight": (d,), p + "norm2.bias": (d,),
                  p + "mlp.fc1.weight": (4 * d, d), p + "mlp.fc1.bias": (4 * d,),
                  p + "mlp.fc2.weight": (d, 4 * d), p + "mlp.fc2.bias": (d,)})
    return s


def test_official_audioset_checkpoint_layout_loads_strictly():
    with torch.device("meta"):
        model = create("ast_base")
    assert model.grid == (12, 101)
    sd = {k: torch.empty(s, device="meta") for k, s in official_ast_base_shapes().items()}
    report = load_official(model, sd, strict=True)
    assert report.ok and len(report.loaded) == len(model.state_dict())
    assert sorted(report.ignored) == ["module.v.head.bias", "module.v.head.weight",
                                      "module.v.head_dist.bias", "module.v.head_dist.weight"]
    total = sum(math.prod(s) for s in official_ast_base_shapes().values())
    assert round(total / 1e6, 1) == 88.1             # the checkpoint's 88.1M, heads included


def test_official_layout_copies_every_value():
    """The report alone would pass if nothing were copied: check the values, on a small real model."""
    torch.manual_seed(0)
    model = create("ast_tiny", num_classes=5, **TINY)
    n_pos = model.state_dict()["pos_embed"].shape[1]
    g = torch.Generator().manual_seed(1)
    sd = {k: torch.randn(s, generator=g)
          for k, s in official_ast_base_shapes(d=32, depth=2, n_pos=n_pos, num_classes=5).items()}
    report = load_official(model, sd, strict=True)
    own = model.state_dict()
    assert report.ok and sorted(report.loaded) == sorted(own)
    for key, value in sd.items():
        name = key.replace("module.v.", "").replace("module.", "")
        if key in report.ignored:
            continue
        assert torch.equal(own[name], value), key


@pytest.mark.parametrize("name,millions", [("ast_tiny", 5.7), ("ast_small", 22.1),
                                           ("ast_base", 86.6)])
def test_sizes(name, millions):
    with torch.device("meta"):
        model = create(name)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == millions


def test_sinusoidal_table_formula():
    n, d = 7, 8
    table = sinusoid_table_1d(n, d)
    for p in range(n):
        for i in range(d // 2):
            angle = p / 10000 ** (2 * i / d)
            assert table[p, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[p, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_sinusoidal_model_any_length_and_ignores_official_table():
    model = create("ast_tiny", num_classes=3, pos_embed="sinusoidal", **TINY)
    assert "pos_embed" not in model.state_dict()
    for t in (64, 150):
        assert model(torch.randn(2, t, 32)).shape == (2, 3)
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    sd["pos_embed"] = torch.zeros(2 + 3 * 5, 32)
    assert load_official(model, sd).ignored == ["pos_embed"]
    # positions 2 + f * t_dim + t of the flattened sequence
    grid = model.patch_embed.grid(32, 150)
    torch.testing.assert_close(model.position_table(grid, "cpu")[0],
                               sinusoid_table_1d(2 + grid[0] * grid[1], 32))


def test_learned_pos_official_resize_rule():
    pos = torch.randn(1, 3 * 10, 4)                    # (f, t) = (3, 10), f-major
    grid = pos.view(1, 3, 10, 4)
    short = resize_pos_grid(pos, (3, 10), (3, 4), "official")   # shorter: crop the middle
    torch.testing.assert_close(short.view(1, 3, 4, 4), grid[:, :, 3:7])
    long_ = resize_pos_grid(pos, (3, 10), (3, 16), "official")  # longer: bilinear in time
    ref = F.interpolate(grid.permute(0, 3, 1, 2), size=(3, 16), mode="bilinear")
    torch.testing.assert_close(long_, ref.permute(0, 2, 3, 1).reshape(1, 48, 4))
    assert resize_pos_grid(pos, (3, 10), (3, 10), "official") is pos


def test_learned_pos_model_runs_at_other_lengths():
    model = create("ast_tiny", num_classes=3, **TINY)
    assert model.pos_embed.shape == (1, 2 + 2 * 5, 32)   # 32 x 64 input, 16x16 patches, stride 10
    for t in (40, 64, 200):
        assert model(torch.randn(2, t, 32)).shape == (2, 3)


def test_eager_and_sdpa_attention_agree():
    torch.manual_seed(0)
    sdpa = create("ast_tiny", num_classes=3, **TINY).eval()
    eager = create("ast_tiny", num_classes=3, attn="eager", **TINY).eval()
    eager.load_state_dict(sdpa.state_dict())
    assert not eager.blocks[0].attn.fused_attn and sdpa.blocks[0].attn.fused_attn
    x = torch.randn(2, 64, 32)
    torch.testing.assert_close(eager(x), sdpa(x), rtol=1e-4, atol=1e-5)


def test_output_is_head_of_mean_of_cls_and_dist():
    model = create("ast_tiny", num_classes=3, **TINY).eval()
    x = torch.randn(2, 64, 32)
    tokens = model.forward_features(x)
    torch.testing.assert_close(model(x), model.mlp_head((tokens[:, 0] + tokens[:, 1]) / 2))
    assert tokens.shape == (2, 2 + 2 * 5, 32)                  # unpooled: cls, dist, 2 x 5 patches


def test_gradient_step_lowers_loss(bce_losses):
    torch.manual_seed(0)
    model = create("ast_tiny", num_classes=4, **TINY)
    x, y = torch.randn(4, 64, 32), (torch.rand(4, 4) > 0.5).float()
    losses = bce_losses(model, x, y, lr=1e-3)
    assert losses[-1] < losses[0]
