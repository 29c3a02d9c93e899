"""NIAH haystacks: needle placement, frame counts, SNR, chunked features, seeds, babble, errors."""
import math

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.compliance.kaldi as kaldi

from dasslib.data import niah
from dasslib.data.babble import load_babble, synth_babble, synth_talker
from dasslib.data.datafile import write_datafile, write_label_csv
from dasslib.data.dataset import AudioConf, AudioDataset
from dasslib.data.fbank import normalize_fbank, num_frames, wav2fbank
from dasslib.data.niah import (
    NiahDataset,
    build_haystack,
    haystack_noise,
    insert_index,
    make_needle,
    noise_num_samples,
    total_frames,
)

SR = 16000
NEEDLE_FRAMES = 150
NOISE_KINDS = ("white", "babble")


def _wave(seed, seconds=1.6, amp=0.3):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SR)) / SR
    return (amp * torch.sin(2 * math.pi * 440 * t) + 0.05 * torch.randn(t.shape, generator=g))[None]


@pytest.fixture(scope="module")
def needle():
    wave = _wave(0)
    fbank, wave = make_needle(wave, SR, num_mel_bins=64, target_length=NEEDLE_FRAMES)
    return fbank, wave


@pytest.fixture(scope="module")
def babble():
    return synth_babble(duration_s=1.3, sr=SR, n_talkers=3, seed=0)


def _snr_kwargs(kind, babble):
    return dict(snr_db=5.0, babble_wav=babble) if kind == "babble" else (
        dict(snr_db=5.0) if kind == "white" else {})


def _rms(x):
    x = x.double().flatten()
    return float((x - x.mean()).pow(2).mean().sqrt())


def test_total_frames_and_insert_index():
    assert total_frames(10) == 1000
    assert total_frames(9000) == 900_000
    assert total_frames(3.21) == 321
    assert insert_index(0, 5000, 1024) == 0
    assert insert_index(1.0, 5000, 1024) == 5000 - 1024
    assert insert_index(0.5, 5000, 1024) == 1988
    assert insert_index(0.5, 1024, 1024) == 0


@pytest.mark.parametrize("kind", niah.KINDS)
@pytest.mark.parametrize("position", [0.0, 0.37, 1.0])
def test_needle_is_bit_identical_at_its_frame(needle, babble, kind, position):
    fbank, wave = needle
    x, start = build_haystack(fbank, wave, 3.21, position, kind, seed=3, **_snr_kwargs(kind, babble))
    assert x.shape == (321, 64) and x.dtype == torch.float32
    assert start == insert_index(position, 321, NEEDLE_FRAMES)
    assert torch.equal(x[start:start + NEEDLE_FRAMES], fbank)
    if position == 0.0:
        assert start == 0
    if position == 1.0:
        assert start + NEEDLE_FRAMES == 321 and torch.equal(x[-NEEDLE_FRAMES:], fbank)
    hay = torch.cat([x[:start], x[start + NEEDLE_FRAMES:]])
    if kind == "zeros":
        assert torch.count_nonzero(hay) == 0
    else:
        assert torch.isfinite(hay).all() and hay.std() > 0.05


@pytest.mark.parametrize("kind", niah.KINDS)
def test_length_equal_to_needle_gives_the_needle(needle, babble, kind):
    fbank, wave = needle
    x, start = build_haystack(fbank, wave, NEEDLE_FRAMES / 100, 0.5, kind, **_snr_kwargs(kind, babble))
    assert start == 0 and torch.equal(x, fbank)


@pytest.mark.parametrize("kind", NOISE_KINDS)
@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 12.5])
def test_noise_waveform_has_the_requested_snr(needle, babble, kind, snr_db):
    _, wave = needle
    noise = haystack_noise(kind, 24_000, wave, snr_db, seed=1, babble_wav=babble)
    assert noise.shape == (1, 24_000)
    assert abs(float(noise.double().mean())) < 1e-6
    measured = 20 * math.log10(_rms(wave) / _rms(noise))
    assert abs(measured - snr_db) < 0.1


@pytest.mark.parametrize("kind", NOISE_KINDS)
def test_chunked_haystack_matches_one_fbank_call(needle, babble, kind):
    """The haystack's noise frames equal one wav2fbank call over the whole noise waveform,
    whatever the chunking (chunks overlap on the 400-sample window / 160-sample hop grid)."""
    fbank, wave = needle
    length_s, position, hay = 4.0, 0.42, 400 - NEEDLE_FRAMES
    noise = haystack_noise(kind, noise_num_samples(hay), wave, 3.0, seed=7, babble_wav=babble)
    reference = normalize_fbank(wav2fbank(noise, SR, 64, target_length=None))
    assert reference.shape == (hay, 64)
    for chunk_s in (0.37, 1.0, 600):
        x, start = build_haystack(fbank, wave, length_s, position, kind, 3.0, seed=7,
                                  chunk_s=chunk_s, babble_wav=babble)
        frames = torch.cat([x[:start], x[start + NEEDLE_FRAMES:]])
        # wav2fbank removes each chunk's own mean: float rounding, far below a hop's difference
        torch.testing.assert_close(frames, reference, atol=1e-3, rtol=0)
    # a grid off by one hop is far away: the tolerance above does check the alignment
    shifted = normalize_fbank(wav2fbank(noise[:, 160:], SR, 64, target_length=None))
    assert (frames[:hay - 1] - shifted).abs().max() > 0.1
    # the fbank device only moves the computation: the haystack stays a CPU tensor, same values
    on_dev, _ = build_haystack(fbank, wave, length_s, position, kind, 3.0, seed=7, chunk_s=600,
                               babble_wav=babble, fbank_device="cpu")
    assert on_dev.device.type == "cpu" and torch.equal(on_dev, x)


@pytest.mark.parametrize("chunk_frames", [1, 7, 64, 1000])
def test_chunk_spans_give_the_frames_of_one_call(chunk_frames):
    """On the Kaldi frame grid: the chunks' frames, concatenated, are one call's (to float
    rounding: a 1-row chunk takes a different BLAS kernel than a many-row one)."""
    kw = dict(htk_compat=True, sample_frequency=SR, use_energy=False, window_type="hanning",
              num_mel_bins=40, dither=0.0, frame_shift=10)
    wave = torch.randn(1, noise_num_samples(230), generator=torch.Generator().manual_seed(0))
    spans = niah._chunk_spans(230, chunk_frames, SR)
    assert spans[0][:3] == (0, min(chunk_frames, 230), 0) and spans[-1][1] == 230
    assert spans[-1][3] == wave.shape[1]
    parts = [kaldi.fbank(wave[:, s0:s1], **kw) for _, _, s0, s1 in spans]
    assert [p.shape[0] for p in parts] == [f1 - f0 for f0, f1, _, _ in spans]
    torch.testing.assert_close(torch.cat(parts), kaldi.fbank(wave, **kw), atol=1e-5, rtol=1e-6)


def test_noise_num_samples_is_the_shortest_waveform_with_those_frames():
    for frames in (1, 2, 37, 250):
        n = noise_num_samples(frames)
        assert num_frames(n) == frames and num_frames(n - 1) == frames - 1
    assert wav2fbank(torch.randn(noise_num_samples(37)), SR, 64, target_length=None).shape == (37, 64)
    assert noise_num_samples(0) == 0


@pytest.mark.parametrize("kind", NOISE_KINDS)
def test_deterministic_by_seed(needle, babble, kind):
    fbank, wave = needle
    a, _ = build_haystack(fbank, wave, 3.0, 0.5, kind, 0.0, seed=11, babble_wav=babble)
    b, _ = build_haystack(fbank, wave, 3.0, 0.5, kind, 0.0, seed=11, babble_wav=babble)
    c, _ = build_haystack(fbank, wave, 3.0, 0.5, kind, 0.0, seed=12, babble_wav=babble)
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 0.1


def test_default_babble_is_synthetic_and_cached(needle, monkeypatch):
    fbank, wave = needle
    monkeypatch.setattr(niah, "_BABBLE_LOOP_S", 1.0)
    niah._default_babble.cache_clear()
    try:
        x, start = build_haystack(fbank, wave, 2.5, 1.0, "babble", 0.0)
        assert niah._default_babble.cache_info().misses == 1
        loop = niah._default_babble(SR)
        assert loop.shape == (1, SR)
        assert torch.equal(x[start:], fbank)
    finally:
        niah._default_babble.cache_clear()


def test_babble_from_wav_files(tmp_path, needle):
    fbank, wave = needle
    paths = []
    for i in range(2):
        path = tmp_path / f"talker{i}.wav"
        sf.write(path, synth_talker(0.5 + 0.3 * i, SR, seed=i), SR)
        paths.append(path)
    loop = load_babble(paths, SR)
    assert loop.shape == (1, int(0.8 * SR))
    assert abs(_rms(loop) - 1.0) < 1e-4
    x, start = build_haystack(fbank, wave, 2.0, 0.0, "babble", 10.0, babble_wav=[str(p) for p in paths])
    assert torch.equal(x[:NEEDLE_FRAMES], fbank) and x.shape == (200, 64)
    noise = haystack_noise("babble", 16_000, wave, 10.0, babble_wav=str(paths[0]))
    assert abs(20 * math.log10(_rms(wave) / _rms(noise)) - 10.0) < 0.1
    with pytest.raises(ValueError, match="nothere.wav"):
        load_babble(tmp_path / "nothere.wav")


def test_synthetic_babble_properties():
    a = synth_babble(2.0, SR, n_talkers=4, seed=5)
    assert a.shape == (1, 2 * SR) and a.dtype == torch.float32
    assert torch.equal(a, synth_babble(2.0, SR, n_talkers=4, seed=5))
    assert not torch.equal(a, synth_babble(2.0, SR, n_talkers=4, seed=6))
    assert abs(float(a.double().mean())) < 1e-6 and abs(_rms(a) - 1.0) < 1e-4


def test_synthetic_talker_is_speech_like():
    """One talker: syllabic energy modulation at a few Hz, pauses, and most energy below 1 kHz."""
    x = synth_talker(8.0, SR, seed=3).astype(np.float64)
    frames = x[: len(x) // 160 * 160].reshape(-1, 160)
    energy = (frames ** 2).mean(axis=1)                           # 100 frames / s
    envelope = np.sqrt(energy) - np.sqrt(energy).mean()
    spectrum = np.abs(np.fft.rfft(envelope))
    freqs = np.fft.rfftfreq(len(envelope), 1 / 100)
    assert 2.0 <= freqs[np.argmax(spectrum[1:]) + 1] <= 8.0    # syllable rate
    assert np.mean(energy < 1e-3 * energy.max()) > 0.05          # pauses between phrases
    power = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SR)
    assert power[f < 1000].sum() > 0.5 * power.sum()


def test_niah_dataset_items(needle, babble):
    fbank, wave = needle
    needles = [(fbank, wave, torch.tensor([1.0, 0.0])),
               (fbank * 0.5, wave * 2, torch.tensor([0.0, 1.0]))]
    ds = NiahDataset(needles, 2.5, position=0.25, kind="babble", snr_db=0.0, seed=4, babble_wav=babble)
    assert len(ds) == 2
    for i, (f, w, y) in enumerate(needles):
        x, labels = ds[i]
        expected, start = build_haystack(f, w, 2.5, 0.25, "babble", 0.0, seed=(4, i), babble_wav=babble)
        assert torch.equal(x, expected) and torch.equal(labels, y)
        assert torch.equal(x[start:start + NEEDLE_FRAMES], f)
    assert (ds[0][0][:start] - ds[1][0][:start]).abs().max() > 0.1   # own noise per needle


def test_niah_dataset_from_audio_dataset(tmp_path):
    wavs = []
    for i in range(2):
        path = tmp_path / f"clip{i}.wav"
        sf.write(path, _wave(i, seconds=1.2)[0].numpy(), SR)
        wavs.append(path)
    write_label_csv(tmp_path / "labels.csv", ["/m/a", "/m/b"], ["a", "b"])
    write_datafile(tmp_path / "eval.json", [(wavs[0], ["/m/a"]), (wavs[1], ["/m/a", "/m/b"])])
    # the dataset's own normalization stats, far from AudioSet's: the haystack must use them too
    mean, std = -2.0, 1.5
    base = AudioDataset(tmp_path / "eval.json", tmp_path / "labels.csv",
                        AudioConf(target_length=128, num_mel_bins=32, mean=mean, std=std))
    ds = NiahDataset.from_audio_dataset(base, 3.0, position=1.0, kind="white", snr_db=5.0)
    for i in range(2):
        x, labels = ds[i]
        assert x.shape == (300, 32)
        assert torch.equal(x[-128:], base[i][0]) and torch.equal(labels, base.target(i))
        # the 172 noise frames before the needle: Kaldi fbank of the noise (AST's arguments), called
        # directly, normalized by hand with the dataset's stats: (fbank - mean) / (2 std)
        wave, _ = sf.read(wavs[i], dtype="float32")
        noise = haystack_noise("white", noise_num_samples(172), torch.from_numpy(wave), 5.0, seed=(0, i))
        noise = (noise - noise.mean()).double()
        raw = kaldi.fbank(noise, htk_compat=True, sample_frequency=SR, use_energy=False, window_type="hanning",
                          num_mel_bins=32, dither=0.0, frame_shift=10)
        assert raw.shape == (172, 32)
        torch.testing.assert_close(x[:172].double(), (raw - mean) / (2 * std), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="train"):
        NiahDataset.from_audio_dataset(
            AudioDataset(tmp_path / "eval.json", tmp_path / "labels.csv", AudioConf(train=True)), 3.0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(position=-0.1), "position"),
    (dict(position=1.01), "position"),
    (dict(position=float("nan")), "position"),
    (dict(length_s=1.0), "shorter than the needle"),
    (dict(length_s=0), "length_s"),
    (dict(kind="pink"), "kind"),
    (dict(kind="white"), "snr_db"),
    (dict(kind="babble"), "snr_db"),
    (dict(kind="zeros", snr_db=5.0), "snr_db"),
    (dict(kind="white", snr_db=5.0, needle_wave=None), "needle_wave"),
    (dict(kind="white", snr_db=5.0, needle_wave=torch.zeros(1, 800)), "silent"),
    (dict(chunk_s=0), "chunk_s"),
    (dict(seed=-1, kind="white", snr_db=0.0), "seed"),
])
def test_bad_arguments_raise_value_error(needle, kwargs, match):
    fbank, wave = needle
    args = dict(needle_fbank=fbank, needle_wave=wave, length_s=3.0, position=0.5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        build_haystack(**args)


def test_bad_needle_and_dataset_arguments(needle):
    fbank, wave = needle
    with pytest.raises(ValueError, match="needle_fbank"):
        build_haystack(fbank[None], wave, 3.0, 0.5)
    with pytest.raises(ValueError, match="snr_db"):
        NiahDataset([(fbank, wave, None)], 3.0, kind="white")
    with pytest.raises(ValueError, match="position"):
        NiahDataset([(fbank, wave, None)], 3.0, position=2)
    with pytest.raises(ValueError, match="num_samples"):
        haystack_noise("white", 0, wave, 0.0)
    with pytest.raises(ValueError, match="no noise"):
        haystack_noise("zeros", 100, wave, None)
