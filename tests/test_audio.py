"""load_audio: mono 16 kHz float32 out of any readable file; ValueError naming bad files."""
import math
import pathlib

import numpy as np
import pytest
import soundfile as sf
import torch

from dasslib.data import load_audio


def dominant_freq(wav: torch.Tensor, sr: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(wav[0].numpy()))
    return float(np.argmax(spectrum) * sr / wav.shape[1])


def test_mono_16k_pcm16_round_trip(wav_writer, tone):
    data = tone(440.0, 1.0)
    wav = load_audio(wav_writer("a.wav", data))
    assert wav.dtype == torch.float32 and wav.shape == (1, 16000)
    np.testing.assert_allclose(wav[0].numpy(), data, atol=1.0 / 32768)


def test_stereo_44k_is_downmixed_and_resampled(wav_writer, tone):
    left = tone(440.0, 1.0, sr=44100, amp=0.4)
    stereo = np.stack([left, 0.5 * left], axis=1)  # mono mix = 0.75 * left
    wav = load_audio(wav_writer("s.wav", stereo, sr=44100))
    assert wav.shape == (1, math.ceil(44100 * 16000 / 44100))
    assert abs(dominant_freq(wav) - 440.0) <= 1.0
    middle = wav[0, 2000:-2000]
    assert abs(float(middle.abs().max()) - 0.75 * 0.4) < 0.01


def test_8k_flac_is_upsampled(wav_writer, tone):
    wav = load_audio(pathlib.Path(wav_writer("a.flac", tone(1000.0, 0.5, sr=8000), sr=8000)))
    assert wav.shape == (1, 8000)
    assert abs(dominant_freq(wav) - 1000.0) <= 2.0


def test_target_sr_parameter(wav_writer, tone):
    wav = load_audio(wav_writer("a.wav", tone(200.0, 1.0)), target_sr=8000)
    assert wav.shape == (1, 8000)


def test_missing_file(tmp_path):
    path = str(tmp_path / "nope.wav")
    with pytest.raises(ValueError, match="not found") as err:
        load_audio(path)
    assert path in str(err.value)


def test_empty_zero_byte_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="cannot read") as err:
        load_audio(path)
    assert str(path) in str(err.value)


def test_valid_header_without_samples(tmp_path):
    path = str(tmp_path / "zero.wav")
    sf.write(path, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(ValueError, match="no samples") as err:
        load_audio(path)
    assert path in str(err.value)


def test_non_audio_file(tmp_path):
    path = tmp_path / "text.wav"
    path.write_text("this is not audio\n" * 20)
    with pytest.raises(ValueError, match="cannot read") as err:
        load_audio(path)
    assert str(path) in str(err.value)


def test_truncated_header(tmp_path, wav_writer, tone):
    full = pathlib.Path(wav_writer("full.wav", tone(300.0, 1.0)))
    cut = tmp_path / "cut_header.wav"
    cut.write_bytes(full.read_bytes()[:30])
    with pytest.raises(ValueError, match="cannot read") as err:
        load_audio(cut)
    assert str(cut) in str(err.value)


def test_truncated_flac(tmp_path, wav_writer, tone):
    noise = 0.01 * np.random.default_rng(0).standard_normal(16000)  # noise: a FLAC of many frames
    full = pathlib.Path(wav_writer("full.flac", tone(300.0, 1.0) + noise))
    cut = tmp_path / "cut.flac"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(ValueError, match="cannot read") as err:
        load_audio(cut)
    assert str(cut) in str(err.value)


def test_truncated_wav_data_reads_what_is_there(tmp_path, wav_writer, tone):
    data = tone(300.0, 1.0)
    full = pathlib.Path(wav_writer("full.wav", data))
    cut = tmp_path / "cut_data.wav"
    cut.write_bytes(full.read_bytes()[:44 + 2 * 5000])  # header + 5000 PCM_16 samples
    wav = load_audio(cut)
    assert wav.shape == (1, 5000)
    np.testing.assert_allclose(wav[0].numpy(), data[:5000], atol=1.0 / 32768)


def test_non_finite_samples(wav_writer):
    data = np.zeros(1600, dtype=np.float32)
    data[10] = np.nan
    path = wav_writer("nan.wav", data, subtype="FLOAT")
    with pytest.raises(ValueError, match="NaN") as err:
        load_audio(path)
    assert path in str(err.value)
