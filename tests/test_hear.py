"""HEAR 2021 API contract (dasslib.hear) on tiny encoders of every family, on the CPU."""
import argparse
import math

import pytest
import torch
import torchaudio

import dasslib.hear as hear
from dasslib.models import create

TINY = {"ssam_tiny": dict(embed_dim=16, depth=2, expand=1, d_state=4),
        "ssast_tiny": dict(embed_dim=16, depth=2, num_heads=2),
        "ast_tiny": dict(embed_dim=16, depth=2, num_heads=2),
        "aum_tiny": dict(embed_dim=16, depth=2, d_state=4, expand=1),
        "dass_small": dict(depths=(1, 1), dims=(8, 16))}
# step width: SSAM / SSAST 5 bands x 16; AST 12 overlapping bands x 16; AuM 8 bands x 16; DASS C
WIDTH = {"ssam_tiny": 80, "ssast_tiny": 80, "ast_tiny": 192, "aum_tiny": 128, "dass_small": 16}
SECONDS = (0.1, 1, 2, 10, 30)


def _model(name, **kw):
    torch.manual_seed(0)
    return hear.load_model("", name=name, **TINY[name], **kw)


@pytest.fixture(scope="module")
def models():
    return {name: _model(name) for name in TINY}


def _audio(n, seconds, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(n, int(16000 * seconds), generator=g)


def _expected_timestamps(name, n_samples):
    """Step centres in ms, from each family's geometry, written out per family."""
    if name.startswith("ss"):      # official log-mel: frame j at 10 j ms; 200-frame chunks, 4-frame steps
        frames = 1 + n_samples // 160
        starts = [200 * c + 4 * k for c in range(math.ceil(frames / 200)) for k in range(50)]
        return [10 * (s + 1.5) for s in starts if s < frames]
    frames = 1 + (n_samples - 400) // 160    # Kaldi: frame j centred at 10 j + 12.5 ms
    if name == "dass_small":       # two stages: stem /4, one downsampling /2 -> every 8th frame
        return [12.5 + 10 * 8 * k for k in range(math.ceil(frames / 8))]
    stride, per_chunk = (10, 101) if name == "ast_tiny" else (16, 64)    # 1024-frame chunks
    starts = [1024 * c + stride * k for c in range(math.ceil(frames / 1024)) for k in range(per_chunk)]
    return [12.5 + 10 * (s + 7.5) for s in starts if s < frames]


@pytest.mark.parametrize("name", sorted(TINY))
def test_shapes_dtypes_and_timestamps(models, name):
    model = models[name]
    assert model.sample_rate == 16000
    assert model.scene_embedding_size == model.timestamp_embedding_size == WIDTH[name]
    for seconds in SECONDS:
        audio = _audio(2, seconds)
        emb, ts = hear.get_timestamp_embeddings(audio, model)
        scene = hear.get_scene_embeddings(audio, model)
        n = len(_expected_timestamps(name, audio.shape[1]))
        assert emb.shape == (2, n, WIDTH[name]) and ts.shape == (2, n), (seconds, emb.shape)
        assert scene.shape == (2, WIDTH[name])
        assert emb.dtype == ts.dtype == scene.dtype == torch.float32
        assert torch.isfinite(emb).all() and torch.isfinite(scene).all()
        assert (ts[:, 1:] > ts[:, :-1]).all()
        expected = torch.tensor(_expected_timestamps(name, audio.shape[1]))
        torch.testing.assert_close(ts, expected.expand(2, -1).float())
        torch.testing.assert_close(scene, emb.mean(dim=1))


def test_full_size_widths_and_chunks():
    """The registry's real sizes (built on the meta device: no weights, no compute)."""
    expected = {"ssam_tiny": (960, 200), "ssam_small": (1920, 200), "ssam_base": (3840, 200),
                "dass_small": (768, None), "ast_base": (12 * 768, 1024), "aum_base": (8 * 768, 1024)}
    for name, (width, chunk) in expected.items():
        with torch.device("meta"):
            encoder = create(name, num_classes=0)
        model = hear.wrap(encoder)
        assert (model.scene_embedding_size, model.chunk_frames) == (width, chunk), name


@pytest.mark.parametrize("name", sorted(TINY))
def test_batch_independence(models, name):
    audio = _audio(3, 2.5, seed=1)
    audio[1] *= 10                  # a loud batch mate
    together = hear.get_timestamp_embeddings(audio, models[name])[0]
    for i in range(3):
        alone = hear.get_timestamp_embeddings(audio[i:i + 1], models[name])[0]
        torch.testing.assert_close(together[i:i + 1], alone, atol=1e-5, rtol=1e-4)


def _official_log_mel(audio):
    mel = torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_fft=400, win_length=400,
                                               hop_length=160, f_min=50.0, f_max=8000.0,
                                               n_mels=80, power=2.0)
    x = torch.log(mel(audio) + torch.finfo(torch.float32).eps)        # (B, 80, T)
    mean = x.mean(dim=(1, 2), keepdim=True)
    std = x.std(dim=(1, 2), keepdim=True)
    return ((x - mean) / (std + 1e-8)).transpose(1, 2)


@pytest.mark.parametrize("seconds", [1, 4, 7.3])
def test_ssam_official_layout_against_an_independent_regrouping(models, seconds):
    """The official wrapper: pad to whole 200-frame chunks (a whole extra chunk when already
    whole), encode each chunk, read its time-major tokens as 'b (f t) d -> b t (f d)', stack the
    chunks, drop int(50 * pad / 200) steps, mean over steps."""
    model = models["ssam_tiny"]
    encoder = model.encoder
    audio = _audio(2, seconds, seed=2)
    x = _official_log_mel(audio)
    pad = 200 - x.shape[1] % 200
    x = torch.nn.functional.pad(x, (0, 0, 0, pad))
    steps = []
    with torch.no_grad():
        for c in range(x.shape[1] // 200):
            tokens, (tg, fg) = encoder.forward_features(x[:, 200 * c:200 * (c + 1)])[:, 1:], (50, 5)
            for t in range(tg):
                steps.append(torch.cat([tokens[:, f * tg + t] for f in range(fg)], dim=-1))
    expected = torch.stack(steps, dim=1)
    expected = expected[:, :expected.shape[1] - int(50 * pad / 200)]
    emb, _ = hear.get_timestamp_embeddings(audio, model)
    torch.testing.assert_close(emb, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(hear.get_scene_embeddings(audio, model), expected.mean(dim=1),
                               atol=1e-5, rtol=1e-4)


def test_ssam_official_scene_slots_average_windows_over_all_bands(models):
    """What the official grouping means for one whole chunk (200 frames): scene slot s (D wide)
    is the mean of the tokens of time steps 10 s .. 10 s + 9 (0.4 s) over all 5 bands."""
    model = models["ssam_tiny"]
    audio = _audio(1, 1.99, seed=7)                       # 31840 samples -> 200 frames
    with torch.no_grad():
        tokens = model.encoder.forward_features(_official_log_mel(audio))[0, 1:]     # (50 * 5, D)
    windows = tokens.reshape(5, 10 * 5, 16).mean(dim=1).flatten()                  # time-major
    torch.testing.assert_close(hear.get_scene_embeddings(audio, model)[0], windows, atol=1e-5, rtol=1e-4)


def test_ssam_dasslib_layout_groups_each_time_step(models):
    model = _model("ssam_tiny", layout="dasslib")
    audio = _audio(1, 2.0, seed=3)
    x = torch.nn.functional.pad(_official_log_mel(audio), (0, 0, 0, 199))     # 201 frames
    with torch.no_grad():
        tokens = torch.cat([model.encoder.forward_features(x[:, i:i + 200])[:, 1:]
                            for i in (0, 200)], dim=1)                      # (1, 2 * 250, D)
    step = lambda t: tokens[0, 5 * t:5 * t + 5].flatten()                   # noqa: E731
    emb, _ = hear.get_timestamp_embeddings(audio, model)
    assert emb.shape == (1, 51, 80)
    for t in (0, 7, 49, 50):
        torch.testing.assert_close(emb[0, t], step(t), atol=1e-5, rtol=1e-4)
    # the official layout of the same weights differs (its steps mix time steps) but not its scene mean
    official = hear.get_timestamp_embeddings(audio, models["ssam_tiny"])[0]
    assert not torch.allclose(official, emb, atol=1e-3)


@pytest.mark.parametrize("name", ["ast_tiny", "aum_tiny"])
def test_ast_aum_steps_are_the_patch_tokens_of_each_time_step(models, name):
    """One 1024-frame chunk; AST drops CLS + distillation tokens, AuM its middle CLS token; the
    f-major patch tokens of time step t (index f * t_dim + t) concatenated over f."""
    model = models[name]
    audio = _audio(1, 3.0, seed=6)
    x = model.frontend(audio)
    x = torch.cat([x, torch.full((1, 1024 - x.shape[1], 128), model.frontend.pad_value)], dim=1)
    with torch.no_grad():
        if name == "ast_tiny":
            tokens, (fg, tg) = model.encoder.forward_features(x)[:, 2:], (12, 101)
        else:
            tokens, (fg, tg) = model.encoder.forward_features(x), (8, 64)
            mid = fg * tg // 2
            tokens = torch.cat([tokens[:, :mid], tokens[:, mid + 1:]], dim=1)
    emb, _ = hear.get_timestamp_embeddings(audio, model)
    for t in (0, 5, emb.shape[1] - 1):
        expected = torch.cat([tokens[0, f * tg + t] for f in range(fg)])
        torch.testing.assert_close(emb[0, t], expected, atol=1e-5, rtol=1e-4)


def test_kaldi_frontend_matches_the_dasslib_fbank():
    from dasslib.data.fbank import wav2fbank
    model = _model("ssam_tiny", frontend="kaldi")
    audio = _audio(1, 1.0, seed=4)
    x = wav2fbank(audio[0], num_mel_bins=80, target_length=None)
    torch.testing.assert_close(model.frontend(audio)[0], (x - x.mean()) / (x.std() + 1e-8))
    assert model.frontend.offset_ms == 12.5
    dass = _model("dass_small")
    y = wav2fbank(audio[0], num_mel_bins=128, target_length=None)
    torch.testing.assert_close(dass.frontend(audio)[0], (y + 4.2677393) / (2 * 4.5689974))


def test_bad_input_is_a_clear_error(models):
    model = models["ssam_tiny"]
    good = _audio(1, 0.5)
    cases = [(good.double(), TypeError, "float32"), (good.numpy(), TypeError, "torch.Tensor"),
             (good[None], ValueError, "n_sounds, n_samples"), (good[:0], ValueError, "empty"),
             (good[:, :399], ValueError, "fewer than one 25 ms frame"),
             (good.clone().index_fill_(1, torch.tensor([5]), float("nan")), ValueError, "NaN"),
             (good.to(torch.int16), TypeError, "float32")]
    for audio, err, match in cases:
        with pytest.raises(err, match=match):
            hear.get_scene_embeddings(audio, model)
    with pytest.raises(ValueError, match="16000 Hz"):
        model.scene_embeddings(good, sample_rate=44100)
    assert hear.get_scene_embeddings(good[0], model).shape == (1, 80)     # one 1-D sound
    with pytest.raises(ValueError, match="layout"):
        _model("ssam_tiny", layout="frames")
    with pytest.raises(ValueError, match="frontend 'official' for DASS"):
        _model("dass_small", frontend="official")
    with pytest.raises(TypeError, match="no HEAR wrapper"):
        hear.wrap(torch.nn.Linear(2, 2))


def test_checkpoints_official_and_dasslib(tmp_path, models):
    audio = _audio(1, 1.0, seed=5)
    ref = models["ssam_tiny"]
    # official SSAM file: {model, optimizer, epoch, scaler, args}, DataParallel prefix, fixed pos_embed
    sd = {f"module.{k}": v for k, v in ref.encoder.state_dict().items()}
    sd["module.pos_embed"] = torch.zeros(1, 251, 16)
    torch.save({"model": sd, "optimizer": {}, "epoch": 99, "scaler": {},
                "args": argparse.Namespace(model="ssam_tiny")}, tmp_path / "official.pth")
    torch.manual_seed(1)
    loaded = hear.load_model(str(tmp_path / "official.pth"), name="ssam_tiny", **TINY["ssam_tiny"])
    torch.testing.assert_close(hear.get_scene_embeddings(audio, loaded),
                               hear.get_scene_embeddings(audio, ref))
    # a dasslib classifier's weights (head included) into the head-less DASS encoder
    torch.manual_seed(0)
    classifier = create("dass_small", num_classes=5, **TINY["dass_small"]).eval()
    torch.save(classifier.state_dict(), tmp_path / "model_final.pt")
    dass = hear.load_model(str(tmp_path / "model_final.pt"), name="dass_small", **TINY["dass_small"])
    with torch.no_grad():
        expected = classifier.forward_head(classifier.forward_features(dass.frontend(audio)),
                                           pre_logits=True)
    torch.testing.assert_close(hear.get_scene_embeddings(audio, dass), expected, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="does not match"):
        hear.load_model(str(tmp_path / "model_final.pt"), name="ssam_tiny", **TINY["ssam_tiny"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_follows_the_model():
    model = _model("ssam_tiny").to("cuda")
    emb, ts = hear.get_timestamp_embeddings(_audio(2, 1.0), model)
    assert emb.device.type == ts.device.type == "cuda"
