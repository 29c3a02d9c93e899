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


# ------------------------------------------------------------------------------ waveforms and noise sources

def test_haystack_waveform_zeros_is_silence_around_the_needle_cut_to_its_hops(needle):
    """3.21 s = 321 frames, needle 150 frames = 24 000 samples at 160 samples a hop; position 0.37 puts it at
    frame round(0.37 * 171) = 63, sample 10 080. The 1.6 s needle waveform (25 600 samples) is cut."""
    _, wave = needle
    out, first = niah.haystack_waveform(wave, 3.21, position=0.37, needle_frames=NEEDLE_FRAMES)
    assert out.shape == (1, 321 * 160) and out.dtype == torch.float32 and first == 10_080
    assert torch.count_nonzero(out[0, :10_080]) == 0 and torch.count_nonzero(out[0, 34_080:]) == 0
    assert torch.equal(out[0, 10_080:34_080], wave[0, :24_000])
    # a needle shorter than its frames is padded with silence; the defaults: position 0.5, 1024 frames
    short = torch.arange(1, 1001, dtype=torch.float32) / 1000
    out, first = niah.haystack_waveform(short, 12.0)
    assert out.shape == (1, 1200 * 160) and first == 88 * 160
    assert torch.equal(out[0, first:first + 1000], short) and torch.count_nonzero(out) == 1000


@pytest.mark.parametrize("kind", NOISE_KINDS)
def test_haystack_waveform_noise_is_haystack_noise_split_at_the_needle(needle, babble, kind):
    _, wave = needle
    out, first = niah.haystack_waveform(wave, 3.21, 0.37, kind, 4.0, seed=5, babble_wav=babble,
                                        needle_frames=NEEDLE_FRAMES)
    hay = (321 - NEEDLE_FRAMES) * 160
    noise = haystack_noise(kind, noise_num_samples(321 - NEEDLE_FRAMES), wave, 4.0, seed=5, babble_wav=babble)[0]
    assert first == 10_080 and out.shape == (1, 321 * 160)
    assert torch.equal(out[0, :first], noise[:first]) and torch.equal(out[0, first + 24_000:], noise[first:hay])
    assert torch.equal(out[0, first:first + 24_000], wave[0, :24_000])
    # needle as long as the input: no noise at all, whatever the kind
    out, first = niah.haystack_waveform(wave, NEEDLE_FRAMES / 100, 0.5, kind, 4.0, babble_wav=babble,
                                        needle_frames=NEEDLE_FRAMES)
    assert first == 0 and torch.equal(out[0], wave[0, :24_000])


def test_white_noise_blocks_read_the_same_however_cut():
    """1 s blocks from streams (*seed, 0, block): any range is the slice of one long read."""
    noise = niah._WhiteNoise((3, 1), 100)
    whole = noise.read(0, 350)
    assert whole.shape == (350,) and whole.dtype == np.float32
    np.testing.assert_array_equal(whole[100:200], np.random.default_rng((3, 1, 0, 1)).standard_normal(
        100, dtype=np.float32))
    for start, stop in ((0, 1), (99, 101), (50, 230), (230, 350), (100, 200), (349, 350)):
        np.testing.assert_array_equal(noise.read(start, stop), whole[start:stop])
    assert abs(float(whole.std()) - 1) < 0.15 and not np.array_equal(niah._WhiteNoise((3, 2), 100).read(0, 50),
                                                                     whole[:50])


def test_loop_noise_tiles_the_loop_from_its_offset():
    loop = np.arange(10, dtype=np.float32)
    noise = niah._LoopNoise(loop, (4,))
    off = noise.offset
    assert off == int(np.random.default_rng((4, 1)).integers(10))
    expected = np.array([(off + i) % 10 for i in range(37)], dtype=np.float32)
    np.testing.assert_array_equal(noise.read(0, 37), expected)
    for start, stop in ((0, 1), (3, 12), (9, 31), (20, 37)):
        np.testing.assert_array_equal(noise.read(start, stop), expected[start:stop])
    offsets = {niah._LoopNoise(loop, (s,)).offset for s in range(30)}
    assert len(offsets) > 5 and offsets <= set(range(10))


def test_make_needle_defaults_and_its_normalization():
    """AST's input by default: 1024 frames of 128 mel bins, (fbank - mean) / (2 std) with AudioSet's stats."""
    from dasslib.data.fbank import AUDIOSET_MEAN, AUDIOSET_STD
    wave = _wave(1)
    raw = wav2fbank(wave, SR, 128, 1024)
    x, w = make_needle(wave)
    assert x.shape == (1024, 128) and w is wave
    torch.testing.assert_close(x, (raw - AUDIOSET_MEAN) / (2 * AUDIOSET_STD))
    x, _ = make_needle(wave, SR, num_mel_bins=32, target_length=100, mean=-2.0, std=1.5)
    torch.testing.assert_close(x, (wav2fbank(wave, SR, 32, 100) + 2.0) / 3.0)


def test_scaled_noise_statistics_by_hand():
    """A loop of known samples, read in chunks of 3: (raw - mean) / rms * rms_needle / 10^(snr/20)."""
    loop = np.array([1.0, 4.0, 2.0, 8.0, 5.0], dtype=np.float32)
    source = niah._LoopNoise(loop, (2,))
    raw = np.array([loop[(source.offset + i) % 5] for i in range(11)], dtype=np.float64)
    scaled = niah._ScaledNoise(source, 11, 0.7, 6.0, chunk=3)
    expected = (raw - raw.mean()) / raw.std() * 0.7 / 10 ** (6.0 / 20)
    assert abs(scaled.mean - raw.mean()) < 1e-12
    out = scaled.read(0, 11)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-7)


def test_babble_noise_is_the_loop_from_the_default_seed_s_offset(needle):
    """haystack_noise with the default seed 0: the loop tiled from offset rng((0, 1)), mean-removed and scaled
    to the SNR, float32; measured to float rounding on a short noise."""
    _, wave = needle
    loop = torch.from_numpy(synth_talker(0.05, SR, seed=1).astype(np.float32))
    n, off = 2000, int(np.random.default_rng((0, 1)).integers(len(loop)))
    raw = np.tile(loop.numpy().astype(np.float64), 4)[off:off + n]
    expected = (raw - raw.mean()) / raw.std() * _rms(wave) / 10 ** (3.0 / 20)
    noise = haystack_noise("babble", n, wave, 3.0, babble_wav=loop)
    assert noise.dtype == torch.float32 and noise.shape == (1, n)
    np.testing.assert_allclose(noise[0].numpy(), expected, rtol=1e-5, atol=1e-7)
    assert abs(20 * math.log10(_rms(wave) / _rms(noise)) - 3.0) < 1e-4
    white = haystack_noise("white", 500, wave, -2.0)
    assert white.dtype == torch.float32 and abs(20 * math.log10(_rms(wave) / _rms(white)) + 2.0) < 1e-4


def test_build_haystack_default_seed_and_sample_rate(needle):
    """build_haystack's default seed is haystack_noise's seed 0; at 8 kHz the noise has the 8 kHz frame grid
    (200-sample window, 80-sample hop)."""
    fbank, wave = needle
    x, start = build_haystack(fbank, wave, 3.0, 1.0, "white", 2.0)
    noise = haystack_noise("white", noise_num_samples(150), wave, 2.0, seed=0)
    torch.testing.assert_close(x[:start], normalize_fbank(wav2fbank(noise, SR, 64, target_length=None)),
                               atol=1e-4, rtol=0)
    wave8 = wave[:, ::2]
    x, start = build_haystack(fbank, wave8, 3.0, 1.0, "white", 2.0, seed=4, sr=8000)
    assert noise_num_samples(150, 8000) == 200 + 80 * 149
    noise = haystack_noise("white", noise_num_samples(150, 8000), wave8, 2.0, seed=4, sr=8000)
    torch.testing.assert_close(x[:start], normalize_fbank(wav2fbank(noise, 8000, 64, target_length=None)),
                               atol=1e-4, rtol=0)
    ds = NiahDataset([(fbank, wave8, None)], 3.0, position=1.0, kind="white", snr_db=2.0, seed=4, sr=8000)
    assert torch.equal(ds[0][0], build_haystack(fbank, wave8, 3.0, 1.0, "white", 2.0, seed=(4, 0), sr=8000)[0])
    ds = NiahDataset([(fbank, wave, None)], 3.0)                           # default position 0.5, zeros
    x, start = ds[0][0], insert_index(0.5, 300, NEEDLE_FRAMES)
    assert start == 75 and torch.equal(x[75:225], fbank) and torch.count_nonzero(x[:75]) == 0


def test_zeros_haystack_needs_no_needle_wave(needle):
    fbank, _ = needle
    for length_s in (NEEDLE_FRAMES / 100, 3.0):
        x, start = build_haystack(fbank, None, length_s, 0.0, "zeros")
        assert start == 0 and torch.equal(x[:NEEDLE_FRAMES], fbank) and torch.count_nonzero(x[NEEDLE_FRAMES:]) == 0
    with pytest.raises(ValueError) as err:       # a noise kind checks it even when no noise frame is left
        build_haystack(fbank, None, NEEDLE_FRAMES / 100, 0.0, "white", 5.0)
    assert str(err.value) == "noise haystacks need needle_wave (the needle's waveform) to set the SNR"


def _messages_cases():
    fbank = torch.zeros(150, 64)
    wave = _wave(0)
    flat = torch.ones(1, 1000)
    return [
        (lambda: build_haystack(fbank, torch.zeros(0), 3.0, 0.5, "white", 1.0), "needle_wave is empty"),
        (lambda: build_haystack(fbank, torch.ones(1), 3.0, 0.5, "white", 1.0),
         "needle_wave is silent: the SNR is undefined"),
        (lambda: build_haystack(fbank, flat, 3.0, 0.5, "white", 1.0), "needle_wave is silent: the SNR is undefined"),
        (lambda: haystack_noise("babble", 100, wave, 1.0, babble_wav=torch.full((1, 50), 0.3)),
         "the haystack noise is silent: cannot scale it to an SNR"),
        (lambda: haystack_noise("babble", 100, wave, 1.0, babble_wav=torch.ones(1)),
         "the haystack noise is silent: cannot scale it to an SNR"),
        (lambda: haystack_noise("white", 1, wave, 1.0), "the haystack noise is silent: cannot scale it to an SNR"),
        (lambda: haystack_noise("white", True, wave, 1.0), "num_samples must be a positive int, got True"),
        (lambda: haystack_noise("zeros", 100, wave, None), "kind='zeros' has no noise waveform"),
        (lambda: haystack_noise("babble", 100, wave, 1.0, babble_wav=torch.ones(2, 50)),
         "babble_wav waveform must be (samples,) or (1, samples), got (2, 50)"),
        (lambda: haystack_noise("babble", 100, wave, 1.0, babble_wav=torch.ones(0)),
         "babble_wav waveform must be (samples,) or (1, samples), got (0,)"),
        (lambda: build_haystack(fbank, wave, 3.0, 0.5, "zeros", 5.0),
         "snr_db only applies to noise haystacks, not kind='zeros'"),
        (lambda: build_haystack(fbank, wave, 3.0, 0.5, "white", True),
         "kind='white' needs a finite snr_db (dB), got True"),
        (lambda: build_haystack(fbank, wave, 3.0, 0.5, "white", "5"),
         "kind='white' needs a finite snr_db (dB), got '5'"),
        (lambda: build_haystack(fbank, wave, True, 0.5),
         "length_s must be a positive number of seconds, got True"),
        (lambda: build_haystack(fbank, wave, 3.0, True), "position must be a number in [0, 1], got True"),
        (lambda: build_haystack(fbank, wave, 3.0, 0.5, "white", 1.0, seed=True),
         "seed must be an int >= 0 or a tuple of them, got True"),
        (lambda: build_haystack("abc", wave, 3.0, 0.5), "needle_fbank must be a (frames, mel_bins) tensor, got str"),
        (lambda: build_haystack(fbank[None], wave, 3.0, 0.5),
         "needle_fbank must be a (frames, mel_bins) tensor, got torch.Size([1, 150, 64])"),
        (lambda: insert_index(0.5, 120, 150), "the input (120 frames, 1.2 s) is shorter than the needle (150 frames)"),
    ]


@pytest.mark.parametrize("index", range(19))
def test_error_messages_word_for_word(index):
    call, message = _messages_cases()[index]
    with pytest.raises(ValueError) as err:
        call()
    assert str(err.value) == message


@pytest.mark.parametrize("conf, message", [
    (dict(train=True), "needles must come from an evaluation dataset (conf.train=False): augmentation would "
                       "modify the needle"),
    (dict(mean=None), "needles must be normalized fbanks: the dataset's conf has no mean/std"),
    (dict(std=None), "needles must be normalized fbanks: the dataset's conf has no mean/std"),
    (dict(frame_shift=20.0), "NIAH inputs have 100 frames/s: the dataset's frame_shift must be 10 ms, got 20.0"),
])
def test_dataset_needles_refuses_datasets_whose_fbanks_are_no_needles(conf, message):
    from types import SimpleNamespace
    fields = dict(dict(train=False, mean=-4.0, std=4.0, frame_shift=10.0), **conf)
    with pytest.raises(ValueError) as err:
        niah.DatasetNeedles(SimpleNamespace(conf=SimpleNamespace(**fields)))
    assert str(err.value) == message


def test_niah_dataset_from_an_8_khz_audio_dataset(tmp_path):
    """Needles read at the dataset's own rate (8 kHz here, not the 16 kHz default), the haystack built at it."""
    from dasslib.data.audio import load_audio
    t = torch.arange(9600) / 8000
    path = tmp_path / "clip.wav"
    sf.write(path, (0.3 * torch.sin(2 * math.pi * 440 * t)).numpy(), 8000)
    write_label_csv(tmp_path / "labels.csv", ["/m/a"], ["a"])
    write_datafile(tmp_path / "eval.json", [(path, ["/m/a"])])
    base = AudioDataset(tmp_path / "eval.json", tmp_path / "labels.csv",
                        AudioConf(target_length=128, num_mel_bins=32, sample_rate=8000))
    fbank, wave, labels = niah.DatasetNeedles(base)[0]
    assert wave.shape == (1, 9600) and torch.equal(wave, load_audio(path, 8000))
    ds = NiahDataset.from_audio_dataset(base, 3.0, position=0.0, kind="white", snr_db=5.0)
    x, _ = ds[0]
    expected, start = build_haystack(fbank, wave, 3.0, 0.0, "white", 5.0, seed=(0, 0), sr=8000)
    assert start == 0 and torch.equal(x, expected) and torch.equal(x[:128], fbank)
