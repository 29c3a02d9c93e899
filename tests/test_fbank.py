"""Kaldi fbank as AST computes it: golden values, frame count, padding, normalization."""
import json
import math
import os

import numpy as np
import pytest
import torch
import torchaudio.compliance.kaldi as kaldi

from dasslib.data import AUDIOSET_MEAN, AUDIOSET_STD, normalize_fbank, num_frames, pad_or_crop, wav2fbank

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "fbank_chirp.json")
GOLDEN_ROWS = (0, 50, 100, 150, 197)


def golden_waveform() -> torch.Tensor:
    """(1, 32000) float32: 2 s linear chirp 100 -> 4000 Hz, 440 Hz tone, a 1 kHz tone in the
    second half and a DC offset of 0.05."""
    sr = 16000
    t = np.arange(2 * sr, dtype=np.float64) / sr
    chirp = 0.3 * np.sin(2 * np.pi * (100.0 * t + (4000.0 - 100.0) / 4.0 * t ** 2))
    tones = 0.2 * np.sin(2 * np.pi * 440.0 * t) + 0.1 * np.sin(2 * np.pi * 1000.0 * t) * (t >= 1.0)
    return torch.from_numpy((chirp + tones + 0.05).astype(np.float32)).unsqueeze(0)


def golden_summary(fbank: torch.Tensor) -> dict:
    """What the golden file pins: shape, selected rows, per-bin and per-frame means."""
    x = fbank.double().numpy()
    return {"shape": list(x.shape), "rows": {str(r): x[r].round(5).tolist() for r in GOLDEN_ROWS},
            "bin_mean": x.mean(axis=0).round(5).tolist(),
            "frame_mean": x.mean(axis=1).round(5).tolist()}


def test_golden_fbank_of_chirp_and_tones():
    fbank = wav2fbank(golden_waveform(), target_length=None)
    with open(GOLDEN) as f:
        golden = json.load(f)
    got = golden_summary(fbank)
    assert got["shape"] == golden["shape"] == [198, 128]
    for r in GOLDEN_ROWS:
        np.testing.assert_allclose(got["rows"][str(r)], golden["rows"][str(r)], atol=2e-3)
    np.testing.assert_allclose(got["bin_mean"], golden["bin_mean"], atol=1e-3)
    np.testing.assert_allclose(got["frame_mean"], golden["frame_mean"], atol=1e-3)


def numpy_kaldi_fbank(wave, sr=16000, num_mel_bins=128, frame_shift_ms=10):
    """Kaldi's fbank with AST's options, written out in float64 numpy from Kaldi's definitions (not
    through torchaudio): 25 ms frames every 10 ms (snip_edges), per-frame DC removal, pre-emphasis 0.97
    (the first sample against itself), symmetric Hann window, 512-point power spectrum, triangular
    filters equally spaced on the HTK mel scale 1127 ln(1 + f / 700) between 20 Hz and Nyquist, the
    Nyquist bin unused, log floored at float32 epsilon. The waveform's mean is removed first (AST)."""
    x = np.asarray(wave, dtype=np.float64).ravel()
    x = x - x.mean()
    win, hop = sr * 25 // 1000, int(sr * frame_shift_ms / 1000)
    nfft = 1 << (win - 1).bit_length()                                   # the next power of two (512 at 16 kHz)
    n = 1 + (len(x) - win) // hop
    frames = np.stack([x[i * hop:i * hop + win] for i in range(n)])
    frames = frames - frames.mean(axis=1, keepdims=True)
    frames = frames - 0.97 * np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
    frames = frames * (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / (win - 1)))
    power = np.abs(np.fft.rfft(frames, n=nfft, axis=1)) ** 2          # (n, 257)
    def mel(f):
        return 1127.0 * np.log(1.0 + np.asarray(f, dtype=np.float64) / 700.0)
    lo, hi = mel(20.0), mel(sr / 2)
    delta = (hi - lo) / (num_mel_bins + 1)
    fft_mel = mel(np.arange(nfft // 2) * sr / nfft)                   # bins below Nyquist; Nyquist unused
    weights = np.zeros((num_mel_bins, nfft // 2 + 1))
    for m in range(num_mel_bins):
        left, centre, right = lo + m * delta, lo + (m + 1) * delta, lo + (m + 2) * delta
        up, down = (fft_mel - left) / (centre - left), (right - fft_mel) / (right - centre)
        weights[m, :nfft // 2] = np.clip(np.minimum(up, down), 0.0, None)
    return np.log(np.maximum(power @ weights.T, np.finfo(np.float32).eps))


def test_wav2fbank_matches_kaldi_written_out_in_numpy():
    g = np.random.default_rng(3)
    t = np.arange(880) / 16000  # 4 frames
    wav = 0.4 * np.sin(2 * np.pi * 700 * t) + 0.1 * g.standard_normal(880) + 0.2
    got = wav2fbank(torch.tensor(wav, dtype=torch.float32), num_mel_bins=40, target_length=None)
    expected = numpy_kaldi_fbank(wav.astype(np.float32), num_mel_bins=40)
    assert got.shape == expected.shape == (4, 40)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-4, rtol=0)  # float32 vs float64: ~2e-5


def test_golden_file_agrees_with_kaldi_written_out_in_numpy():
    """The golden values were written by wav2fbank: check them against the independent computation."""
    with open(GOLDEN) as f:
        golden = json.load(f)
    ref = numpy_kaldi_fbank(golden_waveform().numpy())
    assert list(ref.shape) == golden["shape"]
    for r in GOLDEN_ROWS:
        # float32 vs float64 in the quietest bins (log of small energies): up to ~2e-3
        np.testing.assert_allclose(golden["rows"][str(r)], ref[r], atol=5e-3)
    np.testing.assert_allclose(golden["bin_mean"], ref.mean(axis=0), atol=1e-3)
    np.testing.assert_allclose(golden["frame_mean"], ref.mean(axis=1), atol=1e-3)


def test_matches_torchaudio_kaldi_with_ast_parameters():
    wav = golden_waveform()
    expected = kaldi.fbank(wav - wav.mean(), htk_compat=True, sample_frequency=16000,
                           use_energy=False, window_type="hanning", num_mel_bins=128,
                           dither=0.0, frame_shift=10)
    got = wav2fbank(wav, target_length=None)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("n", [400, 401, 559, 560, 16000, 160000])
def test_frame_count_and_shape(n):
    wav = torch.randn(1, n, generator=torch.Generator().manual_seed(n))
    fbank = wav2fbank(wav, target_length=None)
    assert fbank.shape == (1 + (n - 400) // 160, 128)
    assert num_frames(n) == fbank.shape[0]


def test_ten_seconds_pad_to_1024_with_zeros_at_the_end():
    wav = torch.randn(160000, generator=torch.Generator().manual_seed(0))
    fbank = wav2fbank(wav)  # (samples,) accepted, target_length 1024
    assert fbank.shape == (1024, 128)
    assert num_frames(160000) == 998
    assert torch.count_nonzero(fbank[998:]) == 0
    assert (fbank[:998] != 0).all()
    torch.testing.assert_close(fbank[:998], wav2fbank(wav, target_length=None))


def test_crop_keeps_first_frames():
    x = torch.arange(20.0).reshape(10, 2)
    torch.testing.assert_close(pad_or_crop(x, 4), x[:4])
    padded = pad_or_crop(x, 13)
    assert padded.shape == (13, 2) and torch.equal(padded[:10], x) and not padded[10:].any()
    with pytest.raises(ValueError, match="target_length"):
        pad_or_crop(x, 0)


def test_dc_offset_does_not_change_fbank():
    wav = golden_waveform()
    torch.testing.assert_close(wav2fbank(wav + 0.3), wav2fbank(wav), atol=1e-2, rtol=1e-3)


def test_pure_tone_peaks_at_its_htk_mel_bin():
    """A 1 kHz tone peaks in the mel bin whose centre (HTK mel scale, 20 Hz-8 kHz, 128 bins)
    is nearest 1 kHz."""
    t = np.arange(16000) / 16000
    wav = torch.from_numpy(np.sin(2 * np.pi * 1000 * t).astype(np.float32))
    fbank = wav2fbank(wav, target_length=None)
    def mel(f):
        return 1127.0 * math.log(1.0 + f / 700.0)
    lo, hi = mel(20.0), mel(8000.0)
    centres_mel = lo + (hi - lo) / 129 * np.arange(1, 129)
    expected_bin = int(np.argmin(np.abs(centres_mel - mel(1000.0))))
    assert int(fbank.mean(dim=0).argmax()) == expected_bin


def test_normalize_as_ast():
    x = torch.tensor([AUDIOSET_MEAN, AUDIOSET_MEAN + 2 * AUDIOSET_STD])
    torch.testing.assert_close(normalize_fbank(x), torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(normalize_fbank(torch.tensor([3.0]), mean=1.0, std=0.5),
                               torch.tensor([2.0]))
    assert (AUDIOSET_MEAN, AUDIOSET_STD) == (-4.2677393, 4.5689974)
    with pytest.raises(ValueError, match="std"):
        normalize_fbank(x, std=0.0)


def test_bad_waveforms_raise():
    with pytest.raises(ValueError, match="mono"):
        wav2fbank(torch.zeros(2, 16000))
    with pytest.raises(ValueError, match="fewer than one"):
        wav2fbank(torch.zeros(399))
    with pytest.raises(ValueError, match="NaN"):
        wav2fbank(torch.full((1, 1000), float("nan")))
    with pytest.raises(TypeError, match="torch.Tensor"):
        wav2fbank(np.zeros(16000))


if __name__ == "__main__":  # regenerate the golden file (only when the fbank definition changes)
    with open(GOLDEN, "w") as f:
        json.dump(golden_summary(wav2fbank(golden_waveform(), target_length=None)), f)


def test_other_sample_rate_and_frame_shift_follow_kaldi():
    """sr and frame_shift reach kaldi (mutation testing: dropping either passed every 16 kHz / 10 ms test)."""
    g = torch.Generator().manual_seed(3)
    wave = torch.randn(1, 8000, generator=g) * 0.1
    ours = wav2fbank(wave, sr=8000, num_mel_bins=40, target_length=None, frame_shift=20.0).double().numpy()
    ref = numpy_kaldi_fbank(wave.numpy(), sr=8000, num_mel_bins=40, frame_shift_ms=20)
    assert ours.shape == ref.shape == (num_frames(8000, 8000, 20.0), 40) == (49, 40)
    np.testing.assert_allclose(ours, ref, atol=2e-3)


def test_frame_count_and_padding_edges():
    assert num_frames(399) == 0 and num_frames(400) == 1 and num_frames(0) == 0   # shorter than one window
    x = torch.arange(6.0).reshape(3, 2)
    assert torch.equal(pad_or_crop(x, 1), x[:1])                                  # target_length 1 is valid
    assert pad_or_crop(x, 3) is x or torch.equal(pad_or_crop(x, 3), x)
    with pytest.raises(ValueError):
        pad_or_crop(x, 0)
