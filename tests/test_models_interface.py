"""The classifier interface (timm conventions) of every family: forward == forward_head(forward_features),
forward_grid, forward_frames and their frame rate, reset_classifier, and official-layout checkpoints
giving the logits of the pre-interface forward."""
import pytest
import torch

from dasslib.models import create, load_official
from dasslib.models.pooling import pool_grid

TINY = {
    "dass_small": dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), drop_path=0.0),
    "ast_tiny": dict(embed_dim=32, depth=1, num_heads=2, input_fdim=32, input_tdim=64),
    "aum_tiny": dict(embed_dim=32, depth=1, input_fdim=32, input_tdim=64),
    "ssam_tiny": dict(embed_dim=32, depth=1),
    "ssast_tiny": dict(embed_dim=32, depth=1, num_heads=2),
}
# name: (input (B, T, F), grid (F', T'), frame rate in frames per second of audio)
SHAPES = {
    "dass_small": ((2, 200, 32), (1, 7), 100 / 32),       # n -> ceil(n / 2) five times
    "ast_tiny": ((2, 200, 32), (2, 19), 10.0),             # 16 x 16 patches, stride 10
    "aum_tiny": ((2, 200, 32), (2, 12), 6.25),             # stride 16
    "ssam_tiny": ((2, 200, 80), (5, 50), 25.0),            # (4, 16) time x frequency patches
    "ssast_tiny": ((2, 200, 80), (5, 50), 25.0),
}


def _model(name, num_classes=5, **kw):
    torch.manual_seed(0)
    return create(name, num_classes=num_classes, **{**TINY[name], **kw}).eval()


@pytest.mark.parametrize("name", sorted(TINY))
def test_forward_is_head_of_features_and_grid_shape(name):
    model = _model(name)
    shape, grid, rate = SHAPES[name]
    x = torch.randn(*shape)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert torch.equal(model(x), model.forward_head(feats))
        pooled = model.forward_head(feats, pre_logits=True)
        assert pooled.shape == (2, model.num_features)
        assert torch.equal(model.get_classifier()(pooled), model.forward_head(feats))
        assert model.forward_grid(x).shape == (2, model.num_features, *grid)
    assert model.frame_rate == pytest.approx(rate) and model.num_classes == 5


@pytest.mark.parametrize("name", ["dass_small", "ast_tiny", "aum_tiny"])
def test_forward_frames_shape_and_rate(name):
    model = _model(name)
    shape, (_, frames), rate = SHAPES[name]
    x = torch.randn(*shape)
    with torch.no_grad():
        out = model.forward_frames(x)
        emb = model.forward_frames(x, pre_logits=True)
        assert torch.equal(model.frame_head(model.forward_features(x), x.shape), out)
    assert out.shape == (2, frames, 5) and emb.shape == (2, frames, model.num_features)
    assert frames == pytest.approx(shape[1] / 100 * rate, abs=1.0)   # frames per second of audio


def test_dass_mean_pooled_frames_average_to_the_clip_logits():
    model = _model("dass_small")
    x = torch.randn(2, 200, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_frames(x).mean(1), model(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(TINY))
def test_reset_classifier(name):
    model = _model(name)
    keys = list(model.state_dict())
    x = torch.randn(*SHAPES[name][0])
    with torch.no_grad():
        before = model.forward_head(model.forward_features(x), pre_logits=True)
        model.reset_classifier(3)
        assert model(x).shape == (2, 3) and model.num_classes == model.cfg.num_classes == 3
        assert list(model.state_dict()) == keys                   # official key names kept
        assert torch.equal(model.forward_head(model.forward_features(x), pre_logits=True), before)
        model.reset_classifier(0)
        assert model(x).shape == (2, model.num_features)
    with pytest.raises(ValueError, match="num_classes"):
        model.reset_classifier(-1)


def test_reset_classifier_global_pool():
    dass = _model("dass_small")
    dass.reset_classifier(4, global_pool="last")
    assert dass.pooling == "last"
    ssam = _model("ssam_tiny")
    ssam.reset_classifier(4, global_pool="cls")
    assert ssam.pool == "cls"
    with pytest.raises(ValueError, match="fixed pooling"):
        _model("ast_tiny").reset_classifier(4, global_pool="avg")


def _old_forward(name, model, x):
    """The forward as it was before the interface: pooled features, then the head."""
    if name == "dass_small":
        return model.classifier.head(pool_grid(model.classifier.norm(model.forward_features(x)), "mean"))
    if name == "ast_tiny":
        tokens = model.forward_features(x)
        return model.mlp_head((tokens[:, 0] + tokens[:, 1]) / 2)
    h = model.forward_features(x)
    return model.head(h[:, model.cls_index(h.shape[1] - 1)])


@pytest.mark.parametrize("name,prefix", [("dass_small", "module.v."), ("ast_tiny", "module.v."),
                                         ("aum_tiny", "module.")])
def test_official_layout_loads_and_gives_the_same_logits(name, prefix):
    source = _model(name)
    official = {prefix + k: v for k, v in source.state_dict().items()}
    if name == "ast_tiny":   # DeiT's 1000-class heads ride along in the official file
        official.update({"module.v.head.weight": torch.zeros(1000, 32), "module.v.head_dist.bias": torch.zeros(1000)})
    torch.manual_seed(1)
    target = create(name, num_classes=5, **TINY[name]).eval()
    assert load_official(target, official).ok
    x = torch.randn(*SHAPES[name][0])
    with torch.no_grad():
        assert torch.equal(target(x), source(x))
        assert torch.equal(target(x), _old_forward(name, target, x))
