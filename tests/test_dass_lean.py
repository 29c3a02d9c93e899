"""The lean DASS inference path (dasslib.models.dass_lean) against the plain forward: long random
inputs, odd grids, chunks down to one step, fp32 and bf16 autocast, the real dass_small config,
frame outputs, and its errors."""
import pytest
import torch

from dasslib.models import create
from dasslib.models.dass_lean import conv_time_chunk

TINY = dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), scan_backend="torch")


def _close(a, b, rtol):
    err = (a - b).abs().max().item()
    assert err <= rtol * max(1.0, b.abs().max().item()), err
    return err


@pytest.mark.parametrize("T,F", [(6000, 128), (37, 20), (129, 33), (1, 4)])
def test_lean_features_equal_plain_fp32(T, F):
    torch.manual_seed(0)
    model = create("dass_small", num_classes=5, depths=(1, 2, 1, 1), dims=(8, 16, 32, 64),
                   scan_backend="torch").eval()
    x = torch.randn(2, T, F)
    with torch.inference_mode():
        plain = model.forward_features(x)
        logits = model.forward_head(plain)
        frames = model.frame_head(plain, x.shape)
        sizes = [(1 << 25, 1 << 25), (20000, 5000)] if T > 1000 else [(1 << 25, 1 << 25), (700, 300), (1, 1)]
        for chunk_elems, scan_elems in sizes:
            lean = model.forward_features_lean(x, chunk_elems=chunk_elems, scan_elems=scan_elems)
            assert lean.shape == plain.shape and lean.dtype == plain.dtype
            _close(lean, plain, 1e-5)
            _close(model.forward_head(lean), logits, 1e-5)
            _close(model.frame_head(lean, x.shape), frames, 1e-5)


def test_lean_dass_small_real_config_fp32():
    torch.manual_seed(1)
    model = create("dass_small", num_classes=527).eval()
    x = torch.randn(1, 3000, 128)
    with torch.inference_mode():
        plain = model.forward_features(x)
        lean = model.forward_features_lean(x, chunk_elems=1 << 20, scan_elems=1 << 16)
        _close(lean, plain, 1e-5)
        _close(model.forward_head(lean), model.forward_head(plain), 1e-5)
        _close(model.frame_head(lean, x.shape), model.frame_head(plain, x.shape), 1e-5)


def test_lean_bf16_autocast_within_bf16_rounding():
    torch.manual_seed(2)
    model = create("dass_small", num_classes=5, **TINY).eval()
    x = torch.randn(1, 2000, 64)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        plain = model.forward_features(x)
        lean = model.forward_features_lean(x, chunk_elems=2000, scan_elems=500)
        logits_plain, logits_lean = model.forward_head(plain), model.forward_head(lean)
    assert lean.dtype == plain.dtype
    with torch.inference_mode():
        ref = model.forward_features(x)   # fp32: how far bf16 itself is from it
    bf16_err = (plain.float() - ref).abs().max().item()
    err = _close(lean.float(), plain.float(), 2 ** -6)
    assert err <= 2 * bf16_err + 1e-6
    _close(logits_lean.float(), logits_plain.float(), 2 ** -6)


def test_lean_input_on_host_frame_source():
    class Source:
        def __init__(self, x):
            self.x, self.num_frames, self.num_mel_bins, self.batch_size = x, x.shape[1], x.shape[2], x.shape[0]
            self.calls = []

        def frames(self, start, stop):
            self.calls.append((start, stop))
            return self.x[:, start:stop]

    torch.manual_seed(3)
    model = create("dass_small", num_classes=3, **TINY).eval()
    x = torch.randn(1, 1000, 32)
    src = Source(x)
    with torch.inference_mode():
        lean = model.forward_lean(src, chunk_elems=2000)
        plain = model(x)
    _close(lean, plain, 1e-5)
    assert len(src.calls) > 1 and max(b - a for a, b in src.calls) < 1000  # the input read in chunks


def test_conv_time_chunk_halo_and_padding():
    torch.manual_seed(4)
    for k, s, p in [(3, 2, 1), (3, 1, 1), (5, 3, 2), (2, 2, 0)]:
        conv = torch.nn.Conv2d(3, 4, k, stride=s, padding=p).double()
        x = torch.randn(2, 3, 5, 23, dtype=torch.float64)
        full = conv(x)
        n = full.shape[-1]
        for a, b in [(0, n), (0, 1), (n - 1, n), (2, min(n, 5))]:
            part = conv_time_chunk(conv, lambda i, j: x[..., i:j], a, b, x.shape[-1])
            torch.testing.assert_close(part, full[..., a:b], rtol=0, atol=1e-12)


def test_lean_errors():
    model = create("dass_small", num_classes=3, **TINY)
    x = torch.randn(1, 64, 16)
    with pytest.raises(RuntimeError, match="eval"):
        with torch.inference_mode():
            model.forward_lean(x)
    model.eval()
    with pytest.raises(RuntimeError, match="inference_mode"):
        model.forward_lean(x)
    with torch.inference_mode():
        with pytest.raises(ValueError, match=r"\(B, T, F\)"):
            model.forward_lean(x[0])
        with pytest.raises(ValueError, match="chunk_elems"):
            model.forward_lean(x, chunk_elems=0)
        with pytest.raises(TypeError, match="frame source"):
            model.forward_lean([1, 2, 3])


# ------------------------------------------------------------- predict, measure, fits, tagging
from dasslib import inference  # noqa: E402
from dasslib.data.fbank import ChunkedFbank, fbank_frames, normalize_fbank, wav2fbank  # noqa: E402


@pytest.fixture
def tiny():
    torch.manual_seed(5)
    return create("dass_small", num_classes=4, **TINY).eval()


def _spy(model, monkeypatch):
    calls = []
    real = model.forward_features_lean

    def spy(x, **kw):
        calls.append(x.shape if torch.is_tensor(x) else type(x).__name__)
        return real(x, **kw)
    monkeypatch.setattr(model, "forward_features_lean", spy)
    return calls


def test_predict_lean_equals_plain_and_auto_threshold(tiny, monkeypatch):
    x = torch.randn(2, 700, 32)
    calls = _spy(tiny, monkeypatch)
    plain = inference.predict(tiny, x, lean=False)
    assert not calls
    lean = inference.predict(tiny, x, lean=True)
    assert len(calls) == 1
    _close(lean, plain, 1e-5)
    inference.predict(tiny, x)                                  # auto: short input, plain path
    assert len(calls) == 1
    monkeypatch.setattr(inference, "LEAN_AUTO_FRAMES", 1400)    # batch x length counts
    auto = inference.predict(tiny, x)
    assert len(calls) == 2 and torch.equal(auto, lean)
    assert inference.predict(tiny, x[0], lean=True).shape == (4,)
    out = inference.measure(tiny, 700, num_mel_bins=32, warmup=0, repeats=1, lean=True)
    assert out["lean"] is True and out["fast"] == "off"


def test_predict_auto_retries_lean_after_out_of_memory(tiny, monkeypatch):
    calls = _spy(tiny, monkeypatch)

    def no_memory(x):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")
    monkeypatch.setattr(tiny, "forward", no_memory)
    x = torch.randn(1, 300, 32)
    out = inference.predict(tiny, x)
    assert calls and out.shape == (1, 4)


def test_predict_lean_errors(tiny):
    ast = torch.nn.Linear(16, 3)
    with pytest.raises(ValueError, match="no lean inference path"):
        inference.predict(ast, torch.randn(1, 20, 16), lean=True)
    with pytest.raises(ValueError, match="lean must be"):
        inference.predict(tiny, torch.randn(1, 20, 16), lean="yes")
    src = ChunkedFbank(torch.randn(16000), num_mel_bins=32)
    with pytest.raises(ValueError, match="lean path only"):
        inference.predict(tiny, src, lean=False)


def test_max_length_that_fits_probes_the_lean_path(tiny, monkeypatch):
    seen = []
    real = inference._cpu_probe

    def spy(model, bins, batch, kind, lean=False):
        seen.append(lean)
        return real(model, bins, batch, kind, lean)
    monkeypatch.setattr(inference, "_cpu_probe", spy)
    budget = int(2e9)
    def probe(f):
        return (int(1e8 + 1e4 * f))
    fit = inference.max_length_that_fits(tiny, 32, "cpu", probe=probe, budget_bytes=budget)
    assert fit.max_frames == (budget - int(1e8)) // int(1e4)
    assert inference.resolve_lean(tiny, "auto") is True          # the longest inputs: lean
    assert inference.resolve_lean(tiny, "auto", 100) is False
    assert inference.resolve_lean(torch.nn.Linear(2, 2), "auto") is False
    try:
        inference.max_length_that_fits(tiny, 32, "cpu", start_frames=4096, min_frames=1024)
    except ValueError:
        pass   # a CPU where memory cannot be measured, or probes too small to grow
    assert seen and all(seen)


def test_chunked_fbank_equals_whole_waveform_fbank():
    torch.manual_seed(6)
    wave = torch.randn(16000 * 3 + 123) * 0.1 + 0.05
    whole = normalize_fbank(wav2fbank(wave, num_mel_bins=32, target_length=None))
    src = ChunkedFbank(wave, num_mel_bins=32)
    assert src.num_frames == whole.shape[0] == len(src)
    for a, b in [(0, whole.shape[0]), (0, 1), (17, 250), (whole.shape[0] - 3, whole.shape[0])]:
        torch.testing.assert_close(src.frames(a, b)[0], whole[a:b], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(fbank_frames(wave - wave.mean(), 5, 9, num_mel_bins=32),
                               wav2fbank(wave, num_mel_bins=32, target_length=None)[5:9], rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="not within"):
        fbank_frames(wave, 0, 10 ** 6)
    with pytest.raises(ValueError, match="mono"):
        ChunkedFbank(torch.randn(2, 16000))
    with pytest.raises(ValueError, match="fewer than one"):
        ChunkedFbank(torch.randn(100))


def test_predict_on_a_waveform_frame_source(tiny):
    torch.manual_seed(7)
    wave = torch.randn(16000 * 4) * 0.1
    fb = normalize_fbank(wav2fbank(wave, num_mel_bins=32, target_length=None))
    src = ChunkedFbank(wave, num_mel_bins=32)
    with torch.inference_mode():
        grid = tiny.forward_features_lean(src, chunk_elems=3000)
    out = inference.predict(tiny, src)
    assert out.shape == (4,)
    _close(out, inference.predict(tiny, fb, lean=False), 1e-4)
    assert grid.shape[-1] == -(-fb.shape[0] // 32)


def test_tagging_passes_on_the_lean_path(tiny, monkeypatch):
    from dasslib.tagging.passes import run_passes

    torch.manual_seed(8)
    fb = torch.randn(900, 32)
    calls = _spy(tiny, monkeypatch)
    plain = run_passes(tiny, fb, lean=False, device="cpu")
    lean = run_passes(tiny, fb, lean=True, device="cpu", fits_frames=5000)
    assert calls and lean.lean and not plain.lean
    assert lean.mode == "one pass (lean path), up to 50 s fits in one pass" and plain.mode == "one pass"
    _close(lean.clip_logits, plain.clip_logits, 1e-5)
    _close(lean.frame_logits, plain.frame_logits, 1e-5)
    chunked = run_passes(tiny, fb, lean=True, device="cpu", max_frames=400, overlap=64)
    assert chunked.mode.startswith("chunked (lean path): ")


def test_lean_path_peak_host_memory_is_a_fraction_of_the_plain_path():
    """Peak resident growth of one CPU forward (forked, dasslib.host_memory) at DASS-Small's widths
    (one block a stage): the lean path needs a fraction of the plain path's memory."""
    from dasslib.host_memory import peak_growth

    model = create("dass_small", num_classes=527, depths=(1, 1, 1, 1)).eval()
    x = torch.randn(1, 8000, 128)

    def peak(lean):
        def call():
            with torch.inference_mode():
                model.forward_lean(x) if lean else model(x)
        got = peak_growth(call)
        if got is None:
            pytest.skip("host memory cannot be measured here")
        return got["rss"]
    plain, lean = peak(False), peak(True)
    assert plain > 300 * 2**20 and lean < 0.3 * plain, (plain, lean)


def test_tag_command_on_the_lean_path(tiny, wav_writer):
    import numpy as np

    import dasslib

    wav = wav_writer("rec.wav", 0.05 * np.random.default_rng(0).standard_normal(12 * 16000))
    tiny.reset_classifier(3)
    out = {lean: dasslib.tag(wav, tiny, timeline=True, device="cpu", progress=False, lean=lean)
           for lean in (True, False)}
    assert out[True].files["mode"][0] == "one pass (lean path)" and out[False].files["mode"][0] == "one pass"
    np.testing.assert_allclose(out[True].clips.score, out[False].clips.score, atol=1e-5)
    np.testing.assert_allclose(out[True].timeline.iloc[:, 3:], out[False].timeline.iloc[:, 3:], atol=1e-5)


def test_tagging_one_lean_pass_reads_the_waveform_in_chunks(tiny, wav_writer, monkeypatch):
    import numpy as np

    import dasslib
    from dasslib.tagging import api

    wav = wav_writer("rec.wav", 0.05 * np.random.default_rng(1).standard_normal(15 * 16000))
    tiny.reset_classifier(3)
    made = []
    real = api.ChunkedFbank

    def spy(*args, **kw):
        made.append(real(*args, **kw))
        return made[-1]
    monkeypatch.setattr(api, "ChunkedFbank", spy)
    lean = dasslib.tag(wav, tiny, timeline=True, device="cpu", progress=False, lean=True)
    assert made and lean.files["mode"][0] == "one pass (lean path)"
    plain = dasslib.tag(wav, tiny, timeline=True, device="cpu", progress=False, lean=False)
    assert len(made) == 1
    np.testing.assert_allclose(lean.clips.score, plain.clips.score, atol=1e-5)
    np.testing.assert_allclose(lean.timeline.iloc[:, 3:], plain.timeline.iloc[:, 3:], atol=1e-5)
    # chunked passes on the lean path read their frames from the source
    from dasslib.tagging.passes import run_passes

    src = made[0]
    whole = run_passes(tiny, src, lean=True, device="cpu")
    parts = run_passes(tiny, src, lean=True, device="cpu", max_frames=600, overlap=64)
    assert parts.chunks > 1 and parts.frame_logits.shape == whole.frame_logits.shape
    with pytest.raises(ValueError, match="lean path only"):
        run_passes(tiny, src, lean=False, device="cpu")
