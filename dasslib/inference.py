"""Inference on long inputs: :func:`predict`, :func:`measure` and :func:`max_length_that_fits`.

Everything runs under ``torch.inference_mode()`` with the model in eval mode, under autocast
at ``dtype`` on CUDA (bfloat16 by default; weights stay float32) and in plain float32 on the
CPU. Inputs are moved to the device one batch at a time and dropped as soon as the logits are
on the host.

When an input does not fit in memory, :func:`predict` and :func:`measure` raise
:class:`InputTooLongError` (a ``MemoryError``, deliberately not a ``RuntimeError``, so it is never
mistaken for, or swallowed as, a raw CUDA error) on every device: CUDA's out-of-memory error and the
CPU allocator's ("can't allocate memory", or a ``MemoryError``) alike. Its message gives the largest
length that fits, predicted by :func:`max_length_that_fits`: peak memory is measured at a few
shorter lengths that do fit, a polynomial in the length is fitted to it (degree 1: SSMs and flash /
memory-efficient attention grow linearly; degree 2 for eager attention) and solved for the memory
available on the device (the search is :func:`dasslib.bench.capacity.fit_and_verify`; this module
measures and budgets). On CUDA the peak is ``max_memory_allocated``; on the CPU (Linux) the peak
growth of a forked copy of the process (:mod:`dasslib.host_memory`), and the memory available the
least of the address-space limit, a cgroup limit and the machine's available memory.

``lean`` (every entry point): DASS models have a memory-lean inference path
(:meth:`dasslib.models.dass.DASS.forward_lean`, docs/long_inputs.md) with the plain forward's
outputs. "auto" (default) takes it for inputs of at least :data:`LEAN_AUTO_FRAMES` frames (batch
included), and also when the plain forward runs out of memory; :func:`max_length_that_fits` probes
the path the longest inputs get, i.e. the lean one for DASS. True / False force either path
(True on a model without one is an error). The lean path runs eager (``fast`` does not apply) and
moves the input to the device chunk by chunk.
"""
import statistics

import torch

from .bench.capacity import LengthFit, fit_and_verify, fit_memory_model
from .bench.memory import call_or_oom, free_memory, is_oom, reset_peak
from .bench.timing import time_step
from .data.frames import FRAMES_PER_SECOND, frames_text
from .fast import check_fast, fast_forward, resolve_fast
from .runtime import cuda_autocast, eval_mode, model_device

__all__ = ["FRAMES_PER_SECOND", "LEAN_AUTO_FRAMES", "LEAN_PROBE_FRAMES", "MAX_MEL_BINS", "InputTooLongError",
           "LengthFit", "expected_mel_bins", "fit_memory_model", "has_lean", "max_length_that_fits", "measure",
           "predict", "resolve_lean"]

MAX_MEL_BINS = 512  # a wider last dimension is not an fbank (a raw waveform, or a transposed fbank)
_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
LEAN_AUTO_FRAMES = 1 << 17   # lean="auto": the lean path from this many frames (x batch) on (~22 min)
LEAN_PROBE_FRAMES = 1 << 20  # on CUDA the lean path is probed from here (its chunk buffers at full size)
_LEANS = ("auto", True, False)


def has_lean(model):
    """Whether ``model`` (or the module a compile / DDP wrapper holds) has a lean inference path."""
    return callable(getattr(model, "forward_features_lean", None))


def _check_lean(model, lean):
    if not any(lean is v for v in _LEANS):   # "is": 1 / 0 are not True / False here
        raise ValueError(f"lean must be 'auto', True or False, got {lean!r}")
    if lean is True and not has_lean(model):
        raise ValueError(f"lean=True but {type(model).__name__} has no lean inference path (DASS has)")


def resolve_lean(model, lean, frames=None):
    """The path a call takes: True for the lean one. ``lean`` "auto": lean for a model that has
    one when ``frames`` (batch x length; None: the longest inputs, as :func:`max_length_that_fits`
    asks) is at least :data:`LEAN_AUTO_FRAMES`."""
    _check_lean(model, lean)
    if lean != "auto":
        return lean
    return has_lean(model) and (frames is None or frames >= LEAN_AUTO_FRAMES)


def _call(model, x, lean):
    """Logits of fbank x (B, T, F) (anywhere when lean: read chunk by chunk) on the chosen path."""
    return model.forward_lean(x) if lean else model(x)


class InputTooLongError(MemoryError):
    """The input does not fit in accelerator memory.

    requested_frames: the input length that failed; fit: the :class:`LengthFit` estimate of the
    largest length that fits (None when it could not be made).
    """

    def __init__(self, requested_frames, fit=None, device=None):
        self.requested_frames = requested_frames
        self.fit = fit
        where = f" on {device}" if device is not None else ""
        text = f"an input of {frames_text(requested_frames)} does not fit in memory{where}"
        super().__init__(text + (f"; {fit}" if fit is not None else ""))


def _check_dtype(dtype):
    if dtype is not None and dtype not in _DTYPES:
        raise ValueError(f"dtype must be None or one of {_DTYPES}, got {dtype!r}")


def _forward(model, x, device, dtype, fast, lean=False):
    """Logits of one batch: x moved to ``device`` here (lean: chunk by chunk), freed on return;
    float32 host result."""
    with torch.inference_mode(), cuda_autocast(device, dtype):
        if lean:
            logits = model.forward_lean(x)
        else:
            x = x.to(device)
            logits = fast_forward(model, fast, x)(x)
        del x
        return logits.float().cpu()


def _cuda_probe(model, num_mel_bins, device, batch_size, dtype, lean=False):
    """``probe(frames) -> peak allocated bytes`` of one forward (lean or plain) on a random input,
    None on OOM."""
    def run(frames):
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        with torch.inference_mode(), cuda_autocast(device, dtype):
            _call(model, torch.randn(batch_size, frames, num_mel_bins, device=device), lean)
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device)

    def probe(frames):
        return call_or_oom(lambda: run(frames), device, lambda err: isinstance(err, torch.cuda.OutOfMemoryError))[0]
    return probe


def _cpu_probe(model, num_mel_bins, batch_size, kind, lean=False):
    """``probe(frames) -> peak bytes`` of one CPU forward on a random input (input included), measured
    in a forked copy of the process (:func:`dasslib.host_memory.peak_growth`; ``kind``: "vm" address
    space or "rss" resident memory), None when it runs out of memory; None itself when nothing can be
    measured here (not Linux)."""
    from .host_memory import peak_growth

    def forward(frames):
        with torch.inference_mode():
            _call(model, torch.randn(batch_size, frames, num_mel_bins), lean)

    if peak_growth(lambda: None) is None:
        return None

    def probe(frames):
        return call_or_oom(lambda: peak_growth(lambda: forward(frames))[kind], "cpu", _is_oom)[0]
    return probe


def _cuda_budget(device, headroom):
    """(bytes PyTorch can still hold: free + its own cache, whole device), times ``headroom``; both within
    the process's allocator cap (``torch.cuda.set_per_process_memory_fraction``, `dasslib.bench.limit_memory`)."""
    free_memory(device)
    free, total = torch.cuda.mem_get_info(device)
    cap = torch.cuda.get_per_process_memory_fraction(device) * total
    return (int(min(free + torch.cuda.memory_reserved(device), cap) * headroom),
            int(min(total, cap) * headroom))


def max_length_that_fits(model: torch.nn.Module, num_mel_bins: int, device=None, *, batch_size: int = 1,
                         dtype: torch.dtype | None = torch.bfloat16, start_frames: int = 8192, min_frames: int = 64,
                         degree: int = 1, headroom: float = 0.95, upper_frames: int | None = None,
                         probe=None, budget_bytes: int | None = None, total_bytes: int | None = None,
                         lean="auto") -> LengthFit:
    """Predict the largest input length (frames) ``model`` can run on ``device``.

    ``lean``: the path probed ("auto": the one :func:`predict` takes for the longest inputs,
    i.e. the lean path where the model has one; see the module docstring). On CUDA the lean path
    is probed from at least :data:`LEAN_PROBE_FRAMES` frames (about 2.9 h, a few GiB for DASS),
    where its chunk buffers have reached their fixed size: shorter probes, whose buffers still
    grow with the length, would overstate the per-frame slope (a prediction then errs short).

    Peak memory is probed at ``start_frames`` (halved until it fits, down to ``min_frames``)
    and at that length / 2 (and / 4 for ``degree=2``); :func:`fit_memory_model` extrapolates
    (the search: :func:`dasslib.bench.capacity.fit_and_verify`, with this device's probe and budgets).
    The budget is ``headroom`` times the memory PyTorch can still use (CUDA: free + its cache;
    CPU: what the process may still allocate, :func:`dasslib.host_memory.memory_budget`);
    ``total`` the same for the whole device (CPU: the process's allowance).
    Measured: the peaks of the probes (CUDA ``max_memory_allocated``; CPU, Linux only: the peak
    growth of the address space or of the resident memory, whichever the budget counts, in a forked
    copy of the process, :func:`dasslib.host_memory.peak_growth`). Predicted: the
    largest length, by extrapolating them. ``probe(frames) -> peak bytes or None`` and the two
    budgets can be injected (tests, other devices). On the CPU under an address-space limit
    (``RLIMIT_AS``), where the allocator's reuse of freed space makes the peaks noisy, the predicted
    length is then run (forked) and bisected down to one that fits: measured, ``confirmed=True``
    (near that limit the allocator's state moves the boundary by a few percent between calls).
    On the CPU, probes whose tensors are below glibc's mmap threshold (32 MiB) may land in memory
    the process freed earlier and show no growth: ValueError then, rather than a guess.
    Where the probes' peaks do not grow (small probes reusing freed memory), the confirming search
    runs from the largest probe up to ``upper_frames`` (a length known not to fit; default 16x the
    probe) instead of extrapolating; the fit then has no coefficients.
    ValueError when memory cannot be measured on ``device``. Returns a :class:`LengthFit`.
    """
    _check_dtype(dtype)
    lean = resolve_lean(model, lean)
    device = model_device(model, device)
    if lean and device.type == "cuda":
        start_frames = max(start_frames, LEAN_PROBE_FRAMES)
    confirm = False
    if probe is None or budget_bytes is None:
        if device.type == "cuda":
            budget, total = _cuda_budget(device, headroom)
            probe = probe or _cuda_probe(model, num_mel_bins, device, batch_size, dtype, lean)
        elif device.type == "cpu":
            from .host_memory import memory_budget

            budget, total, kind = memory_budget()
            budget, total = (None, None) if budget is None else (int(budget * headroom), int(total * headroom))
            confirm = probe is None and kind == "vm"  # an allocation past the limit fails cleanly: try it
            probe = probe or (kind and _cpu_probe(model, num_mel_bins, batch_size, kind, lean))
        else:
            budget = total = None
        if probe is None or (budget_bytes is None and budget is None):
            raise ValueError(f"memory cannot be measured on {device} here (CUDA, or a CPU under Linux); "
                             "pass probe= and budget_bytes= to use your own measurements")
        if budget_bytes is None:
            budget_bytes, total_bytes = budget, total
    with eval_mode(model):
        return fit_and_verify(probe, budget_bytes, total_bytes, batch_size=batch_size, start_frames=start_frames,
                              min_frames=min_frames, degree=degree, confirm=confirm, upper_frames=upper_frames)


def _is_oom(err) -> bool:
    """Out of memory (`dasslib.bench.memory.is_oom`), but not our own InputTooLongError, which already is the
    answer to one."""
    return is_oom(err) and not isinstance(err, InputTooLongError)


def _too_long(model, shape, device, batch_size, dtype, lean="auto"):
    """The InputTooLongError for a (B, T, F) input that ran out of memory, with the largest length
    that fits on the path ``lean`` gives the longest inputs (None where memory cannot be measured:
    a CPU outside Linux)."""
    free_memory(device)
    frames, mel_bins = shape[1], shape[2]
    try:
        fit = max_length_that_fits(model, mel_bins, device, batch_size=batch_size, dtype=dtype,
                                   start_frames=max(64, frames // 2 // 64 * 64), min_frames=64,
                                   upper_frames=frames, lean=lean)
    except ValueError:
        if device.type == "cuda":
            raise
        fit = None
    return InputTooLongError(frames, fit, device)


def expected_mel_bins(model):
    """Mel bins (input width F) ``model`` was built for, or None when it does not say.

    Looks through ``.module`` / ``._orig_mod`` wrappers for a ``num_mel_bins`` attribute, then
    for ``cfg.input_fdim`` (AST, AuM: their positional grid is stored for that width and would
    be silently resized to another). DASS (convolutional), SSAM and SSAST (sin-cos positions)
    run on any width and record none: set ``model.num_mel_bins = 128`` to have :func:`predict`
    check it.
    """
    seen = set()
    while model is not None and id(model) not in seen:
        seen.add(id(model))
        bins = getattr(model, "num_mel_bins", None)
        if bins is None:
            bins = getattr(getattr(model, "cfg", None), "input_fdim", None)
        if isinstance(bins, int) and not isinstance(bins, bool):
            return bins
        inner = getattr(model, "module", None)
        model = inner if inner is not None else getattr(model, "_orig_mod", None)
    return None


def _as_batch(x, model=None):
    """Check ``x`` against the fbank contract (and ``model``'s mel bins); return it as (B, T, F)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point fbank (T, F) or (B, T, F), got dtype {x.dtype} "
                        "(integer samples are a raw waveform: compute the fbank first, "
                        "dasslib.data.fbank.wav2fbank)")
    if x.dim() not in (2, 3):
        raise ValueError(f"x must be (T, F) or (B, T, F), got shape {tuple(x.shape)}")
    frames, width = x.shape[-2:]
    bins = expected_mel_bins(model) if model is not None else None
    want = f"(T, {bins}) or (B, T, {bins})" if bins else "(T, F) or (B, T, F) with F mel bins"
    if bins is not None and width != bins:
        hint = ""
        if frames == bins:
            hint = " (it looks transposed: mel bins first; pass x.transpose(-1, -2))"
        elif width > MAX_MEL_BINS:
            hint = " (a raw waveform? compute the fbank first, dasslib.data.fbank.wav2fbank)"
        raise ValueError(f"x has shape {tuple(x.shape)} but the model expects {bins} mel bins: "
                         f"expected {want}{hint}")
    if width > MAX_MEL_BINS:
        raise ValueError(f"x has shape {tuple(x.shape)}: its last dimension ({width}) is wider than any "
                         f"fbank (at most {MAX_MEL_BINS} mel bins); a raw waveform or a transposed fbank? "
                         f"expected {want}")
    bad = (~torch.isfinite(x)).sum().item()
    if bad:
        raise ValueError(f"x holds {bad} non-finite value(s) (NaN or inf) of {x.numel()}")
    if x.dtype == torch.float64:
        x = x.float()  # e.g. an fbank from numpy: the models run float32 (or autocast)
    return x[None] if x.dim() == 2 else x


def predict(model: torch.nn.Module, x, device=None, *, dtype: torch.dtype | None = torch.bfloat16,
            batch_size: int | None = None, fast: str = "auto", lean="auto") -> torch.Tensor:
    """Logits of ``model`` on fbank input ``x``: (B, T, F) -> (B, C), or (T, F) -> (C,).

    lean: "auto" (default), True or False: the memory-lean DASS path (module docstring); "auto"
    takes it from :data:`LEAN_AUTO_FRAMES` frames per batch on, and when the plain forward runs out
    of memory. x may also be a frame source (:class:`dasslib.data.fbank.ChunkedFbank`: the fbank
    computed chunk by chunk from a waveform) -> (C,), on the lean path.

    device: where the model already is (None: the model's device); x may live anywhere, each
    batch of ``batch_size`` items (None: all at once) is moved there just in time.
    dtype: autocast dtype on CUDA (None or float32: none); the CPU always runs float32.
    fast: "auto" (default: on CUDA the model compiled, and CUDA-graph replayed for inputs up to
    32 x 1024 x 128; eager on the CPU), "compile", "graphs" or "off" (eager); see
    :mod:`dasslib.fast`. Each new batch shape compiles once (tens of seconds), later calls
    reuse it.
    Returns float32 logits on the CPU. Raises :class:`InputTooLongError` instead of an
    out-of-memory error (on CUDA with the largest length predicted to fit).

    Input contract (checked before the model runs): a floating-point tensor (float64 is cast
    to float32), (T, F) or (B, T, F),
    finite, with F = the model's mel bins where :func:`expected_mel_bins` knows them, and at
    most :data:`MAX_MEL_BINS` otherwise (so a raw waveform or a transposed fbank is rejected);
    a TypeError / ValueError names the expected shape.
    """
    _check_dtype(dtype)
    check_fast(fast)
    _check_lean(model, lean)
    if _is_frame_source(x):
        return _predict_source(model, x, device, dtype, lean)
    batch = _as_batch(x, model)
    device = model_device(model, device)
    size = batch.shape[0] if batch_size is None else batch_size
    if not (isinstance(size, int) and size >= 1):
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
    outputs = []
    with eval_mode(model):
        for start in range(0, batch.shape[0], size):
            part = batch[start:start + size]
            outputs.append(_forward_or_raise(model, part, device, dtype, fast, lean,
                                             (min(size, batch.shape[0]),) + tuple(batch.shape[1:])))
    logits = torch.cat(outputs)
    return logits[0] if x.dim() == 2 else logits


def _forward_or_raise(model, part, device, dtype, fast, lean, shape):
    """:func:`_forward` on the path ``lean`` picks for ``part`` (B, T, F); "auto" retries the lean
    path after an out-of-memory error of the plain one; InputTooLongError when nothing fits."""
    use = resolve_lean(model, lean, part.shape[0] * part.shape[1])
    retry = lean == "auto" and not use and has_lean(model)
    for attempt in ((use, True) if retry else (use,)):
        logits, oom = call_or_oom(lambda: _forward(model, part, device, dtype, fast, attempt), device, _is_oom)
        if not oom:
            return logits
    raise _too_long(model, shape, device, shape[0], dtype, lean)


def _is_frame_source(x):
    return not isinstance(x, torch.Tensor) and all(hasattr(x, a) for a in ("frames", "num_frames", "num_mel_bins"))


def _predict_source(model, source, device, dtype, lean):
    """Logits (C,) of a frame source (one recording) on the lean path."""
    if lean is False:
        raise ValueError("a frame source (e.g. ChunkedFbank) runs on the lean path only: lean must be 'auto' or True")
    if not has_lean(model):
        raise ValueError(f"{type(model).__name__} has no lean inference path to read a frame source (DASS has)")
    bins = expected_mel_bins(model)
    if bins is not None and source.num_mel_bins != bins:
        raise ValueError(f"the frame source has {source.num_mel_bins} mel bins but the model expects {bins}")
    device = model_device(model, device)
    with eval_mode(model):
        logits, oom = call_or_oom(lambda: _forward(model, source, device, dtype, "off", True), device, _is_oom)
        if not oom:
            return logits[0]
        raise _too_long(model, (1, source.num_frames, source.num_mel_bins), device, 1, dtype, True)


def _timed_calls(model, shape, device, dtype, warmup, repeats, fast="off", lean=False):
    """Seconds of each timed forward on a random input of ``shape`` (`dasslib.bench.time_step`: CUDA events
    on the GPU, the CPU clock elsewhere); CUDA peak stats are reset after the warm-up. The input lives in
    this frame only, so it is freed on any exit."""
    x = torch.randn(*shape, device=device)
    forward = model.forward_lean if lean else fast_forward(model, fast, x)

    def call():
        with torch.inference_mode(), cuda_autocast(device, dtype):
            forward(x)

    for _ in range(warmup):
        call()
    reset_peak(device)
    return [ms / 1e3 for ms in time_step(call, device, warmup=0, repeats=repeats).times_ms]


def measure(model: torch.nn.Module, length_frames: int, device=None, *, num_mel_bins: int = 128,
            batch_size: int = 1, dtype: torch.dtype | None = torch.bfloat16, warmup: int = 1, repeats: int = 3,
            fast: str = "off", lean="auto") -> dict:
    """Time and peak memory of a forward on a random (batch_size, length_frames, num_mel_bins)
    input.

    Returns dict(length_frames, length_s, batch_size, seconds (median of ``repeats`` calls,
    after ``warmup`` untimed ones), seconds_all, peak_mem_bytes (``max_memory_allocated``
    during the timed calls: weights + input + the forward's high-water mark; None on the CPU,
    which has no such counter), device, dtype, fast (the path that ran: "off", "compile" or
    "graphs"), lean (the path that ran)). ``fast`` as in :func:`predict` (default "off": eager;
    with a compiled path the warm-up calls include the compile); ``lean`` as in :func:`predict`
    (the lean path runs eager). Raises :class:`InputTooLongError` when the length does not fit.
    """
    _check_dtype(dtype)
    check_fast(fast)
    use_lean = resolve_lean(model, lean, batch_size * length_frames)
    if warmup < 0 or repeats < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1, got {warmup}, {repeats}")
    device = model_device(model, device)
    shape = (batch_size, length_frames, num_mel_bins)
    with eval_mode(model):
        times, oom = call_or_oom(lambda: _timed_calls(model, shape, device, dtype, warmup, repeats, fast, use_lean),
                                 device, _is_oom)
        if oom:
            raise _too_long(model, shape, device, batch_size, dtype, lean)
    cuda = device.type == "cuda"
    return dict(length_frames=length_frames, length_s=length_frames / FRAMES_PER_SECOND,
                batch_size=batch_size, seconds=statistics.median(times), seconds_all=times,
                peak_mem_bytes=torch.cuda.max_memory_allocated(device) if cuda else None,
                device=str(device),
                dtype=str(dtype).removeprefix("torch.") if cuda and dtype else "float32",
                fast="off" if use_lean else resolve_fast(fast, device, batch_size * length_frames * num_mel_bins),
                lean=bool(use_lean))
