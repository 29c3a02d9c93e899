"""Run a classifier over a whole recording: clip logits and frame logits, in one pass when the
recording fits in memory, else in overlapping chunks.

A chunked run splits the fbank into cores of ``max_frames - 2 * overlap`` frames (multiples of
the model's ``frame_hop``), runs each core with up to ``overlap`` frames of context on either
side, and keeps the frames that start inside the core, so the frame grid is the one-pass grid.
Clip logits of a chunked run are the core-length-weighted mean of the chunks' clip logits.
"""
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..bench.memory import call_or_oom
from ..inference import _is_oom, has_lean, max_length_that_fits, resolve_lean
from ..runtime import cuda_autocast, eval_mode

__all__ = ["Passes", "plan_chunks", "run_passes", "pass_limit", "CPU_MAX_PASS_SECONDS", "PROBE_FRAMES"]

CPU_MAX_PASS_SECONDS = 600.0  # off CUDA there is no peak-memory counter to size a pass from
MIN_PASS_FRAMES = 1024
PROBE_FRAMES = 8192   # max_length_that_fits measures up to this length: shorter inputs need no estimate


@dataclass
class Passes:
    """Model outputs for one recording: clip_logits (C,), frame_logits (T', C) or None, and
    how they were computed (``chunks`` passes of at most ``max_frames`` frames, on the lean DASS
    path or not; ``fits_frames``: the longest pass found to fit on the device, when it was asked)."""
    clip_logits: torch.Tensor
    frame_logits: torch.Tensor | None
    chunks: int
    max_frames: int
    overlap: int
    lean: bool = False
    fits_frames: int | None = None

    @property
    def mode(self):
        path = " (lean path)" if self.lean else ""
        if self.chunks == 1:
            fits = "" if self.fits_frames is None else f", up to {self.fits_frames / 100:g} s fits in one pass"
            return f"one pass{path}{fits}"
        return (f"chunked{path}: {self.chunks} passes of <= {self.max_frames / 100:g} s "
                f"with {self.overlap / 100:g} s overlap")


def plan_chunks(n_frames, max_frames, overlap, hop):
    """[(lo, hi, core_start, core_end)] fbank frame ranges covering ``n_frames``; one range
    when it fits in ``max_frames``. ``overlap`` and the core length are rounded to ``hop``."""
    if n_frames <= max_frames:
        return [(0, n_frames, 0, n_frames)]
    overlap = overlap // hop * hop
    core = (max_frames - 2 * overlap) // hop * hop
    if core < hop:
        raise ValueError(f"a pass of {max_frames} frames leaves no room beside 2 x {overlap} "
                         "frames of overlap: lower the overlap or allow longer passes")
    return [(max(0, s - overlap), min(n_frames, s + core + overlap), s, min(n_frames, s + core))
            for s in range(0, n_frames, core)]


def _one(model, x, frames, device, dtype, lean=False):
    """(clip logits (C,), frame logits (T', C) or None) of fbank x (T, F) (or, lean, a frame source
    such as :class:`dasslib.data.fbank.ChunkedFbank`), float32 on the CPU; ``lean``: through the
    lean DASS path (x read chunk by chunk)."""
    with torch.inference_mode(), cuda_autocast(device, dtype):
        if not torch.is_tensor(x):
            shape = (1, x.num_frames, x.num_mel_bins)
            features = model.forward_features_lean(x)
        elif lean:
            shape = (1,) + tuple(x.shape)
            features = model.forward_features_lean(x[None])
        else:
            x = x.to(device)[None]
            shape = x.shape
            features = model.forward_features(x)
        clip = model.forward_head(features)[0].float().cpu()
        if not frames:
            return clip, None
        return clip, model.frame_head(features, shape)[0].float().cpu()


def _frames_of(fbank):
    return fbank.shape[0] if torch.is_tensor(fbank) else fbank.num_frames


def _piece(fbank, lo, hi, whole):
    """Frames [lo, hi) of an fbank (T, F) or a frame source (the source itself when ``whole``)."""
    if torch.is_tensor(fbank):
        return fbank[lo:hi]
    return fbank if whole else fbank.frames(lo, hi)[0]


def _run(model, fbank, frames, device, dtype, max_frames, overlap, progress, lean="auto", fits=None):
    hop = model.frame_hop
    chunks = plan_chunks(_frames_of(fbank), max_frames, overlap, hop)
    use = resolve_lean(model, lean, max(hi - lo for lo, hi, _, _ in chunks))
    if not torch.is_tensor(fbank) and not use:
        raise ValueError("a frame source runs on the lean path only: lean must be 'auto' or True")
    clips, weights, kept = [], [], []
    for lo, hi, start, end in tqdm(chunks, desc="passes", unit="pass", leave=False,
                                   disable=not progress or len(chunks) == 1):
        clip, frame_logits = _one(model, _piece(fbank, lo, hi, len(chunks) == 1), frames, device, dtype, use)
        clips.append(clip)
        weights.append(end - start)
        if frames:
            first = (start - lo) // hop                           # frames starting in [start, end)
            kept.append(frame_logits[first:first + -(-(end - start) // hop)])
    w = torch.tensor(weights, dtype=torch.float32)[:, None]
    clip = (torch.stack(clips) * w).sum(0) / w.sum()
    return Passes(clip, torch.cat(kept) if frames else None, len(chunks), max_frames,
                  0 if len(chunks) == 1 else overlap // hop * hop, bool(use), fits)


def pass_limit(model, num_mel_bins, device, max_pass_seconds=None, dtype=torch.bfloat16, lean="auto"):
    """Longest pass in fbank frames: ``max_pass_seconds`` when given; on CUDA the length
    predicted to fit in free memory (:func:`dasslib.inference.max_length_that_fits`, on the path
    ``lean`` gives long passes: the lean one for DASS under "auto"); on the CPU
    :data:`CPU_MAX_PASS_SECONDS`."""
    if max_pass_seconds is not None:
        if not max_pass_seconds > 0:
            raise ValueError(f"max_pass_seconds must be positive, got {max_pass_seconds!r}")
        return max(1, int(max_pass_seconds * 100))
    if torch.device(device).type != "cuda":
        return int(CPU_MAX_PASS_SECONDS * 100)
    with eval_mode(model):
        fit = max_length_that_fits(model, num_mel_bins, device, dtype=dtype, start_frames=PROBE_FRAMES, lean=lean)
    return max(MIN_PASS_FRAMES, fit.max_frames)


def run_passes(model, fbank, *, frames=True, device="cpu", dtype=torch.bfloat16, max_frames=60000,
               overlap=1000, progress=False, lean="auto", fits_frames=None):
    """Outputs of ``model`` (on ``device``, eval mode) for a normalised fbank (T, F), or a frame
    source (:class:`dasslib.data.fbank.ChunkedFbank`, on the lean path): a :class:`Passes`. ``lean``: the
    path, as :func:`dasslib.inference.predict` takes it ("auto":
    the lean DASS path for passes of :data:`dasslib.inference.LEAN_AUTO_FRAMES` frames or more,
    and after an out-of-memory error of the plain one); ``fits_frames``: the longest pass known
    to fit, reported in the :class:`Passes`. Out of memory in a pass (on the lean path where
    there is one) halves ``max_frames`` and starts again (down to :data:`MIN_PASS_FRAMES`)."""
    device = torch.device(device)
    while True:
        passes, oom = call_or_oom(
            lambda: _run(model, fbank, frames, device, dtype, max_frames, overlap, progress, lean, fits_frames),
            device, _is_oom)
        if not oom:
            return passes
        # out of memory: retry on the lean path, or in shorter passes
        if lean == "auto" and has_lean(model) and not resolve_lean(model, lean, min(max_frames, _frames_of(fbank))):
            lean = True          # the plain path ran out of memory: the lean one first
            continue
        if max_frames // 2 < MIN_PASS_FRAMES:
            raise MemoryError(f"a pass of {MIN_PASS_FRAMES} frames does not fit in memory on {device}")
        max_frames //= 2
        overlap = min(overlap, max_frames // 4)
