"""AudioDataset: items as AST builds them, seeded augmentations, bad clips, weights, stats."""
import dataclasses
import json

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.compliance.kaldi as kaldi

from dasslib.data import (
    AUDIOSET_MEAN,
    AUDIOSET_STD,
    AudioConf,
    AudioDataset,
    balanced_sample_weights,
    compute_norm_stats,
    mixup_waveforms,
)

SMALL = AudioConf(target_length=128)  # toy clips are 0.8-1.2 s (78-118 frames)
MASKED = (0.0 - AUDIOSET_MEAN) / (2 * AUDIOSET_STD)  # a SpecAugment-masked value after normalizing


def read_wave(path):
    """(1, n) float64 straight from the file (soundfile), not through load_audio."""
    data, sr = sf.read(path, dtype="float64")
    assert sr == 16000 and data.ndim == 1
    return torch.from_numpy(data)[None]


def ref_fbank(wave, target_length=128, mean=-4.2677393, std=4.5689974):
    """AST's item, written out independently of dasslib: the mean-removed waveform through torchaudio's
    Kaldi fbank with AST's arguments, zero-padded to target_length frames, then (x - mean) / (2 std)
    (AudioSet's stats as numbers; mean=None: not normalized)."""
    wave = wave - wave.mean()
    fb = kaldi.fbank(wave, htk_compat=True, sample_frequency=16000, use_energy=False, window_type="hanning",
                     num_mel_bins=128, dither=0.0, frame_shift=10)
    fb = torch.cat([fb, fb.new_zeros(target_length - len(fb), 128)])
    return fb if mean is None else (fb - mean) / (2 * std)


def test_eval_item_is_normalized_fbank_and_multi_hot(toy):
    ds = AudioDataset(toy["json"], toy["csv"], SMALL)
    assert len(ds) == 4 and ds.num_classes == 3
    fbank, y = ds[2]
    assert fbank.shape == (128, 128) and fbank.dtype == torch.float32
    assert y.dtype == torch.float32 and y.tolist() == [1.0, 0.0, 1.0]
    # clip 2 is 0.8 s: 78 frames, then zeros (AST pads with 0 before normalizing)
    expected = ref_fbank(read_wave(ds.entries[2].wav)).float()
    torch.testing.assert_close(fbank, expected, atol=5e-4, rtol=0)  # float32 vs float64 in quiet bins
    assert torch.allclose(fbank[78:], torch.tensor(4.2677393 / (2 * 4.5689974)))
    fbank_last, _ = ds[-1]
    torch.testing.assert_close(fbank_last, ds[3][0])
    with pytest.raises(IndexError):
        ds[4]


def test_eval_mode_ignores_augmentation_settings(toy):
    noisy_conf = dataclasses.replace(SMALL, freqm=30, timem=40, mixup=1.0, noise=True, seed=1)
    plain = AudioDataset(toy["json"], toy["csv"], SMALL)
    augmented = AudioDataset(toy["json"], toy["csv"], noisy_conf)
    for i in range(4):
        torch.testing.assert_close(augmented[i][0], plain[i][0])
        torch.testing.assert_close(augmented[i][1], plain[i][1])


def test_no_normalization_when_stats_are_none(toy):
    ds = AudioDataset(toy["json"], toy["csv"], dataclasses.replace(SMALL, mean=None))
    torch.testing.assert_close(ds[0][0], ref_fbank(read_wave(ds.entries[0].wav), mean=None).float(), atol=2e-3,
                               rtol=0)


def test_mixup_mixes_waveforms_and_labels_as_ast(toy):
    conf = dataclasses.replace(SMALL, train=True, mixup=1.0, seed=5)
    ds = AudioDataset(toy["json"], toy["csv"], conf)
    ds.set_epoch(3)
    fbank, y = ds[1]
    rng = np.random.default_rng([5, 3, 1])  # replay the item's generator
    assert rng.random() < 1.0
    other = int(rng.integers(4))
    lam = rng.beta(10.0, 10.0)
    # AST's mixup by hand: both mean-removed, the other clip zero-padded or cut to this one's length
    a, b = read_wave(ds.entries[1].wav), read_wave(ds.entries[other].wav)
    a, b = a - a.mean(), b - b.mean()
    b = torch.cat([b, b.new_zeros(1, max(0, a.shape[1] - b.shape[1]))], dim=1)[:, :a.shape[1]]
    torch.testing.assert_close(fbank, ref_fbank(lam * a + (1 - lam) * b).float(), atol=5e-4, rtol=0)
    torch.testing.assert_close(y, lam * ds.target(1) + (1 - lam) * ds.target(other))
    assert 0.0 < lam < 1.0


def test_mixup_waveforms_pads_or_cuts_the_second_clip():
    w1, w2 = torch.ones(1, 6) * 2.0, torch.arange(4.0).unsqueeze(0)
    mixed = mixup_waveforms(w1, w2, 0.25)
    w2c = torch.tensor([[0.0, 1.0, 2.0, 3.0, 0.0, 0.0]]) - 1.5
    w2c[0, 4:] = 0.0
    expected = 0.75 * w2c
    torch.testing.assert_close(mixed, expected - expected.mean())
    assert mixup_waveforms(w2, w1, 0.5).shape == (1, 4)
    assert abs(float(mixed.mean())) < 1e-6


def _masked_band(fbank, axis):
    """Indices along ``axis`` (0 time, 1 freq) whose whole line equals the masked value."""
    full = (fbank - MASKED).abs().lt(1e-6).all(dim=1 - axis)
    return torch.nonzero(full).flatten().tolist()


def test_spec_augment_masks_are_seeded_per_epoch(toy):
    # clip 0 is 1 s = 98 frames: no padding frames that would look masked
    conf = dataclasses.replace(SMALL, target_length=98, train=True, freqm=48, timem=40, seed=0)
    ds = AudioDataset(toy["json"], toy["csv"], conf)
    bands = {}
    for epoch in range(6):
        ds.set_epoch(epoch)
        fbank, _ = ds[0]
        torch.testing.assert_close(fbank, ds[0][0])  # same epoch, same item: identical
        t, f = _masked_band(fbank, 0), _masked_band(fbank, 1)
        assert len(f) < 48 and len(t) < 40
        for band in (t, f):  # each mask is one contiguous band (or empty)
            assert band == list(range(band[0], band[0] + len(band))) if band else band == []
        bands[epoch] = (tuple(t), tuple(f))
    assert sum(len(t) > 0 for t, _ in bands.values()) >= 4
    assert sum(len(f) > 0 for _, f in bands.values()) >= 4
    assert len(set(bands.values())) >= 5  # epochs draw different masks
    other = AudioDataset(toy["json"], toy["csv"], conf)  # a fresh instance replays epoch 4
    other.set_epoch(4)
    ds.set_epoch(4)
    torch.testing.assert_close(other[0][0], ds[0][0])


def test_seed_none_still_augments(toy):
    conf = dataclasses.replace(SMALL, train=True, freqm=48, timem=40, mixup=0.5, noise=True)
    ds = AudioDataset(toy["json"], toy["csv"], conf)
    items = [ds[0][0] for _ in range(4)]
    assert all(x.shape == (128, 128) for x in items)
    assert any(not torch.equal(items[0], x) for x in items[1:])


def test_noise_augmentation_is_seeded(toy):
    conf = dataclasses.replace(SMALL, train=True, noise=True, seed=2)
    ds = AudioDataset(toy["json"], toy["csv"], conf)
    clean = AudioDataset(toy["json"], toy["csv"], SMALL)[0][0]
    noisy = ds[0][0]
    torch.testing.assert_close(noisy, ds[0][0])
    assert not torch.equal(noisy, clean)
    shifts = [s for s in range(-10, 10) if (torch.roll(clean, s, 0) - noisy).max() <= 0.1
              and (noisy - torch.roll(clean, s, 0)).min() >= 0.0]
    assert len(shifts) >= 1  # noisy = roll(clean + U(0, 0.1) noise, shift)


def test_unknown_label_names_label_and_file(toy, tmp_path):
    data = json.load(open(toy["json"]))
    data["data"][1]["labels"] = "/m/b,/m/nope"
    path = tmp_path / "unknown.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"unknown label.*'/m/nope' in .*clips/1\.wav"):
        AudioDataset(path, toy["csv"], SMALL)


def _with_bad_clip(toy, tmp_path):
    (tmp_path / "bad.wav").write_text("garbage " * 50)
    data = json.load(open(toy["json"]))
    data["data"].insert(2, {"wav": "bad.wav", "labels": "/m/a"})
    path = tmp_path / "with_bad.json"
    path.write_text(json.dumps(data))
    return str(path), str(tmp_path / "bad.wav")


def test_bad_clip_error_names_item_and_file(toy, tmp_path):
    datafile, bad = _with_bad_clip(toy, tmp_path)
    ds = AudioDataset(datafile, toy["csv"], SMALL)
    assert ds[1][0].shape == (128, 128)
    with pytest.raises(ValueError, match="item 2") as err:
        ds[2]
    assert bad in str(err.value) and datafile in str(err.value)


@pytest.mark.parametrize("workers", [0, 1])
def test_dataloader_failure_says_which_clip(toy, tmp_path, workers):
    datafile, bad = _with_bad_clip(toy, tmp_path)
    loader = torch.utils.data.DataLoader(AudioDataset(datafile, toy["csv"], SMALL), batch_size=1,
                                         num_workers=workers)
    with pytest.raises(ValueError) as err:
        for _ in loader:
            pass
    assert bad in str(err.value)


def test_short_clip_error_names_file(toy, tmp_path, wav_writer):
    wav_writer("tiny.wav", np.zeros(100))
    path = tmp_path / "short.json"
    path.write_text(json.dumps({"data": [{"wav": "tiny.wav", "labels": "/m/a"}]}))
    with pytest.raises(ValueError, match="fewer than one") as err:
        AudioDataset(path, toy["csv"], SMALL)[0]
    assert str(tmp_path / "tiny.wav") in str(err.value)


def test_balanced_weights_follow_ast_formula(toy):
    ds = AudioDataset(toy["json"], toy["csv"], SMALL)
    w = balanced_sample_weights(ds)
    wa, wb, wc = 1000 / 3.01, 1000 / 1.01, 1000 / 1.01  # class counts 3, 1, 1
    np.testing.assert_allclose(w, [wa, wb, wa + wc, wa])
    np.testing.assert_allclose(balanced_sample_weights(toy["json"], toy["csv"]), w)
    sampler = torch.utils.data.WeightedRandomSampler(w, num_samples=4000,
                                                     generator=torch.Generator().manual_seed(0))
    counts = np.bincount(list(sampler), minlength=4)
    np.testing.assert_allclose(counts / 4000, w / w.sum(), atol=0.03)
    assert counts[1] > 2 * counts[0]  # the rare class's clip is drawn far more often


def test_norm_stats_are_moments_of_unnormalized_padded_fbanks(toy):
    mean, std = compute_norm_stats(toy["json"], toy["csv"], SMALL, batch_size=3)
    ds = AudioDataset(toy["json"], toy["csv"], SMALL)
    x = torch.stack([ref_fbank(read_wave(e.wav), mean=None) for e in ds.entries])
    assert mean == pytest.approx(float(x.mean()), rel=1e-5)  # float32 fbanks vs float64
    assert std == pytest.approx(float(x.std(unbiased=False)), rel=1e-5)
    sub_mean, _ = compute_norm_stats(toy["json"], toy["csv"], SMALL, max_items=2, seed=1)
    subset = np.sort(np.random.default_rng(1).choice(4, 2, replace=False))
    assert sub_mean == pytest.approx(float(x[subset].mean()), rel=1e-5)


def test_conf_validation():
    with pytest.raises(ValueError, match="mixup"):
        AudioConf(mixup=1.5)
    with pytest.raises(ValueError, match="target_length"):
        AudioConf(target_length=0)
    with pytest.raises(ValueError, match="freqm"):
        AudioConf(freqm=-1)
    with pytest.raises(ValueError, match="std"):
        AudioConf(std=0.0)
    with pytest.raises(ValueError, match="unknown AudioConf field"):
        AudioConf.from_dict({"target_length": 10, "freq_mask": 3})
    assert AudioConf.from_dict({"freqm": 48, "train": True}) == AudioConf(freqm=48, train=True)
    with pytest.raises(TypeError, match="AudioConf"):
        AudioDataset("x.json", "y.csv", {"freqm": 1})


def test_embedded_dataset_items(embedded):
    conf = AudioConf(train=True, freqm=48, timem=192, mixup=0.5, seed=0)
    ds = AudioDataset(embedded["train_json"], embedded["label_csv"], conf)
    fbank, y = ds[0]
    assert fbank.shape == (1024, 128) and y.shape == (26,)
    assert torch.isfinite(fbank).all()
    eval_ds = AudioDataset(embedded["eval_json"], embedded["label_csv"])
    labels = torch.stack([eval_ds.target(i) for i in range(len(eval_ds))])
    assert set(labels.sum(dim=1).tolist()) <= {1.0, 2.0, 3.0}
