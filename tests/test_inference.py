"""Long-input inference: predict on CPU, the memory model, its extrapolation and error message."""
import pytest
import torch
from torch import nn

from dasslib import inference
from dasslib.inference import InputTooLongError, LengthFit, fit_memory_model, max_length_that_fits, measure, predict

MEL, CLASSES = 16, 5


class TinyConv(nn.Module):
    """(B, T, F) -> (B, C): conv over time, dropout (so eval mode matters), mean pooling."""

    def __init__(self, max_frames=None):
        super().__init__()
        self.conv = nn.Conv1d(MEL, 8, 3, padding=1)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(8, CLASSES)
        self.max_frames = max_frames

    def forward(self, x):
        if self.max_frames is not None and x.shape[1] > self.max_frames:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")
        h = self.drop(torch.relu(self.conv(x.transpose(1, 2))))
        return self.head(h.mean(dim=2))


@pytest.fixture
def model():
    torch.manual_seed(0)
    return TinyConv()


def _x(*shape):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(1))


def _linear_probe(limit, base=1e9, per_frame=3e5):
    """Fake peak-memory probe: out of memory (None) above ``limit`` frames."""
    calls = []

    def probe(frames):
        calls.append(frames)
        return None if frames > limit else int(base + per_frame * frames)
    probe.calls = calls
    return probe


def test_predict_matches_eval_forward_on_cpu(model):
    x = _x(5, 40, MEL)
    model.train()
    out = predict(model, x, "cpu")
    assert model.training                                # mode restored
    with torch.no_grad():
        expected = model.eval()(x)
    assert out.dtype == torch.float32 and out.device.type == "cpu" and out.shape == (5, CLASSES)
    assert not out.requires_grad
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-6)
    # the autocast dtype only applies on CUDA; batching does not change the result
    torch.testing.assert_close(predict(model, x, dtype=torch.bfloat16, batch_size=2), expected,
                               atol=1e-6, rtol=1e-6)
    single = predict(model, x[3])
    assert single.shape == (CLASSES,)
    torch.testing.assert_close(single, expected[3], atol=1e-6, rtol=1e-6)


def test_predict_rejects_bad_input(model):
    with pytest.raises(TypeError, match="torch.Tensor"):
        predict(model, [[0.0] * MEL])
    with pytest.raises(ValueError, match="shape"):
        predict(model, _x(MEL))
    with pytest.raises(ValueError, match="batch_size"):
        predict(model, _x(2, 10, MEL), batch_size=0)
    with pytest.raises(ValueError, match="model.to"):
        predict(model, _x(2, 10, MEL), device="cuda")
    with pytest.raises(ValueError, match="dtype"):
        predict(model, _x(2, 10, MEL), dtype=torch.int8)


def test_fit_memory_model_linear_and_quadratic():
    probes = [(1000, 1e9 + 3e5 * 1000), (2000, 1e9 + 3e5 * 2000)]
    frames, coeffs = fit_memory_model(probes, budget_bytes=10e9)
    assert frames == 30000
    assert coeffs == pytest.approx((3e5, 1e9))
    assert fit_memory_model(probes, budget_bytes=0.5e9)[0] == 0      # not even the weights fit

    def quad(f):
        return 1e8 + 1e3 * f + 2.0 * f * f
    frames, coeffs = fit_memory_model([(f, quad(f)) for f in (500, 1000, 2000)], 1e10, degree=2)
    assert quad(frames) <= 1e10 < quad(frames + 1)
    assert coeffs == pytest.approx((2.0, 1e3, 1e8), rel=1e-6)
    # a quadratic fit of linear data falls back to the line
    assert fit_memory_model([(f, 1e9 + 3e5 * f) for f in (500, 1000, 2000)], 10e9, degree=2)[0] == 30000


def test_fit_memory_model_rejects_what_it_cannot_extrapolate():
    with pytest.raises(ValueError, match="does not grow"):
        fit_memory_model([(1000, 5e9), (2000, 5e9)], 10e9)
    with pytest.raises(ValueError, match="2 distinct lengths"):
        fit_memory_model([(1000, 5e9), (1000, 5e9)], 10e9)
    with pytest.raises(ValueError, match="degree"):
        fit_memory_model([(1000, 5e9), (2000, 6e9)], 10e9, degree=3)


def test_max_length_that_fits_halves_until_a_probe_fits(model):
    probe = _linear_probe(limit=5000)
    fit = max_length_that_fits(model, MEL, "cpu", start_frames=16384, probe=probe,
                               budget_bytes=int(10e9), total_bytes=int(20e9))
    assert probe.calls == [16384, 8192, 4096, 2048]
    assert fit.max_frames == 30000 and fit.max_seconds == 300.0
    assert fit.max_frames_total == 63333
    assert fit.probes == ((16384, None), (8192, None), (4096, int(1e9 + 3e5 * 4096)),
                          (2048, int(1e9 + 3e5 * 2048)))
    text = str(fit)
    assert "30000 frames (300.0 s)" in text and "63333 frames (633.3 s)" in text
    assert "4096, 2048" in text


def test_max_length_that_fits_when_nothing_fits(model):
    fit = max_length_that_fits(model, MEL, "cpu", start_frames=512, min_frames=64,
                               probe=_linear_probe(limit=10), budget_bytes=int(1e9))
    assert fit.max_frames == 0 and fit.coeffs is None
    assert [f for f, _ in fit.probes] == [512, 256, 128, 64]
    assert "nothing fits: even 64 frames" in str(fit)


def test_max_length_that_fits_measures_the_cpu(model, monkeypatch):
    from dasslib import host_memory

    # peak resident memory of two probes; their tensors (64-128 MiB) are above glibc's largest mmap
    # threshold (32 MiB), so each is fresh memory: smaller ones can land in memory the process freed
    # before (then the peak does not grow and the fit refuses to extrapolate)
    n = 1 << 21
    fit = max_length_that_fits(model, MEL, "cpu", start_frames=n)
    assert [f for f, _ in fit.probes] == [n, n // 2] and fit.probes[0][1] > fit.probes[1][1] > 0
    assert fit.max_frames > n and fit.budget_bytes <= host_memory.memory_budget()[0]
    monkeypatch.setattr(host_memory, "peak_growth", lambda call: None)  # as where /proc is missing
    with pytest.raises(ValueError, match="memory cannot be measured on cpu"):
        max_length_that_fits(model, MEL, "cpu")
    with pytest.raises(ValueError, match="min_frames"):
        max_length_that_fits(model, MEL, "cpu", start_frames=32, min_frames=64,
                             probe=_linear_probe(100), budget_bytes=1)


def test_input_too_long_error_message():
    fit = LengthFit(30000, None, int(10e9), None, 1, (3e5, 1e9), ((4096, 2), (2048, 1)))
    err = InputTooLongError(900_000, fit, "cuda:0")
    assert isinstance(err, MemoryError) and not isinstance(err, RuntimeError)
    text = str(err)
    assert text.startswith("an input of 900000 frames (9000.0 s) does not fit in memory on cuda:0")
    assert "30000 frames (300.0 s)" in text and "9.31 GiB" in text


@pytest.fixture
def fake_gpu_budget(monkeypatch):
    """max_length_that_fits with injected measurements, as predict / measure call it."""
    real = inference.max_length_that_fits
    probe = _linear_probe(limit=3000)

    def injected(*args, **kwargs):
        return real(*args, probe=probe, budget_bytes=int(4e9), total_bytes=None, **kwargs)
    monkeypatch.setattr(inference, "max_length_that_fits", injected)
    return probe


def test_predict_turns_out_of_memory_into_input_too_long(fake_gpu_budget):
    model = TinyConv(max_frames=3000)
    model.train()
    with pytest.raises(InputTooLongError) as info:
        predict(model, _x(2, 8000, MEL), batch_size=1)
    err = info.value
    assert err.requested_frames == 8000
    assert err.fit.max_frames == 10000 and err.fit.batch_size == 1
    assert fake_gpu_budget.calls[0] == 3968                       # half the failing length, 64-aligned
    assert err.__cause__ is None and err.__context__ is None      # no raw OOM traceback attached
    assert "8000 frames (80.0 s) does not fit" in str(err) and "10000 frames (100.0 s)" in str(err)
    assert model.training


def test_measure_on_cpu(model):
    out = measure(model, 50, "cpu", num_mel_bins=MEL, batch_size=2, warmup=1, repeats=3)
    assert out["length_frames"] == 50 and out["length_s"] == 0.5 and out["batch_size"] == 2
    assert len(out["seconds_all"]) == 3 and out["seconds"] > 0
    assert out["seconds"] == sorted(out["seconds_all"])[1]
    assert out["peak_mem_bytes"] is None and out["dtype"] == "float32" and out["device"] == "cpu"
    with pytest.raises(ValueError, match="repeats"):
        measure(model, 50, num_mel_bins=MEL, repeats=0)


def test_measure_reports_too_long(fake_gpu_budget):
    with pytest.raises(InputTooLongError, match="10000 frames"):
        measure(TinyConv(max_frames=3000), 6000, num_mel_bins=MEL)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_predict_measure_and_fit():
    torch.manual_seed(0)
    model = TinyConv().cuda()
    x = _x(3, 500, MEL)
    out = predict(model, x)
    assert out.device.type == "cpu" and out.dtype == torch.float32
    torch.testing.assert_close(out, predict(model.cpu(), x), atol=5e-2, rtol=5e-2)
    model.cuda()
    stats = measure(model, 4000, num_mel_bins=MEL)
    assert stats["peak_mem_bytes"] > 4000 * MEL * 4 and stats["dtype"] == "bfloat16"
    fit = max_length_that_fits(model, MEL, start_frames=4096)
    assert fit.max_frames > 4096 and fit.coeffs[0] > 0


def test_cuda_budget_honours_the_allocator_cap(monkeypatch):
    """A process capped with set_per_process_memory_fraction (bench.limit_memory) can hold no more than its
    cap, however much the card has free: the budget max_length_that_fits solves for stays within it."""
    import dasslib.inference as inf

    gib = 2**30
    monkeypatch.setattr(inf, "free_memory", lambda device: None)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (70 * gib, 80 * gib))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 2 * gib)
    monkeypatch.setattr(torch.cuda, "get_per_process_memory_fraction", lambda device=None: 1.0)
    assert inf._cuda_budget("cuda", 1.0) == (72 * gib, 80 * gib)
    monkeypatch.setattr(torch.cuda, "get_per_process_memory_fraction", lambda device=None: 0.1)
    assert inf._cuda_budget("cuda", 0.5) == (4 * gib, 4 * gib)


def test_the_search_is_the_bench_one_and_inference_stays_light():
    """max_length_that_fits is dasslib.bench.capacity.fit_and_verify with this device's probe and budgets:
    the same LengthFit from either; importing inference (hence capacity) loads no pandas."""
    import subprocess
    import sys

    from dasslib.bench import capacity

    assert inference.LengthFit is capacity.LengthFit and inference.fit_memory_model is capacity.fit_memory_model
    model = TinyConv()
    via_inference = max_length_that_fits(model, MEL, "cpu", start_frames=16384, probe=_linear_probe(limit=5000),
                                         budget_bytes=int(10e9), total_bytes=int(20e9))
    direct = capacity.fit_and_verify(_linear_probe(limit=5000), int(10e9), int(20e9), start_frames=16384)
    assert via_inference == direct
    code = "import sys, dasslib.inference; print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_confirming_bisects_an_overstated_prediction_with_the_capacity_search():
    """confirm=True: a prediction that does not fit is bisected down (by the search of
    largest_fitting_length, to within its tolerance) to a length that does; one that fits is kept."""
    from dasslib.bench import capacity

    # peaks 1e9 + 3e5 * frames predict (4e9 - 1e9) / 3e5 = 10000 frames; the real limit is 7000
    probe = _linear_probe(limit=7000)
    fit = capacity.fit_and_verify(probe, int(4e9), start_frames=2048, confirm=True)
    tol = max(capacity.ABS_TOL_FRAMES, capacity.REL_TOL * 7000)
    assert fit.confirmed and 7000 - tol <= fit.max_frames <= 7000
    assert probe.calls[:3] == [2048, 1024, 10000] and all(f <= 10000 for f in probe.calls)
    kept = capacity.fit_and_verify(_linear_probe(limit=20000), int(4e9), start_frames=2048, confirm=True)
    assert kept.confirmed and kept.max_frames == 10000
    # peaks that do not grow: the lengths are tried from the largest probe up to upper_frames
    flat = capacity.fit_and_verify(lambda f: None if f > 5000 else int(1e9), int(4e9), start_frames=1024,
                                   confirm=True, upper_frames=9000)
    assert flat.coeffs is None and 5000 - capacity.ABS_TOL_FRAMES <= flat.max_frames <= 5000
