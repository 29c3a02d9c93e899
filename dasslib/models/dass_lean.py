"""DASS inference for very long inputs: the plain forward's outputs at a fraction of its memory.

The plain forward keeps whole-length intermediates alive at once: the four scan directions (or,
in place, their deltas and four fp32 outputs), fp32 copies, the MLP's 4x hidden activation.
This path runs the same modules (the same functions of :class:`SS2D` and the blocks) on pieces:

- the stem, the downsampling convolutions and each block's in_proj + depthwise conv run on
  chunks along time with the convolutions' halo (the frames a chunk's edge needs from its
  neighbours; zeros beyond the input, as the convolutions' padding gives), written into one
  preallocated tensor per stage; the previous stage is freed once the next one is built;
- the scan runs on segments: step i scans the i-th segment of each of the four orders
  (row-major, column-major, each reversed) in one grouped call, carrying the fp32 state from
  segment to segment (``initial_state`` / ``return_last_state``), with each segment's x_proj /
  dt_proj computed just in time: no whole-length cross-scan copy or delta ever exists. The four
  outputs are added into one accumulator (fp32 with ``scan_fp32``);
- the out-norm + out_proj, the norms and the MLP run on chunks along time, added in place into
  the residual stream (they are position-wise);
- the input is an fbank (B, T, F) anywhere (each chunk is moved to the model's device when
  needed) or a frame source such as :class:`dasslib.data.fbank.ChunkedFbank`, which computes
  the fbank of the frames a chunk needs from the waveform.

Alive at the peak of a stage: the residual stream (fp32 under autocast, as the plain forward
keeps it), u (compute dtype) and the fp32 sum of the scan outputs, plus chunk-sized buffers:
5 bf16-sized copies of a stage's activation (docs/long_inputs.md counts the bytes).

Outputs equal the plain forward's up to rounding: the scan's segments and the chunked
convolutions / matmuls add in another order (fp32: ~1e-6 relative; bf16 autocast: bf16 rounding
of the same values). Inference only (no gradients, no drop path).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from dasslib.scans import selective_scan

from .layers import conv_out_size

__all__ = ["CHUNK_ELEMS", "SCAN_ELEMS", "MIN_ELEMS", "lean_features", "conv_time_chunk"]

CHUNK_ELEMS = 1 << 25   # at most: elements of the widest position-wise intermediate of a chunk (the MLP's)
SCAN_ELEMS = 1 << 23    # at most: elements of u in one direction's scan segment (batch x channels x positions)
MIN_ELEMS = 1 << 16     # at least (both), so short inputs do not run in tiny pieces


def _auto(given, numel, share, cap):
    """``given``, or (None) ``numel / share`` (a stage's activation elements) clamped to
    [MIN_ELEMS, cap]: chunk buffers stay a small fraction of the activation at any length."""
    return given if given is not None else min(cap, max(MIN_ELEMS, numel // share))


def conv_time_chunk(conv, src, start, stop, n_in):
    """Output steps [start, stop) along the last (time) axis of ``conv`` (an nn.Conv2d) applied
    to an input of ``n_in`` steps, from ``src(i0, i1)`` -> the input's steps [i0, i1) (B, C, H, i1 - i0).
    Steps beyond [0, n_in) are the zeros of the conv's padding. Returns (B, C_out, H', stop - start)."""
    k, s, p = conv.kernel_size[1], conv.stride[1], conv.padding[1]
    d = conv.dilation[1]
    lo, hi = s * start - p, s * (stop - 1) - p + d * (k - 1) + 1
    x = src(max(lo, 0), min(hi, n_in))
    if lo < 0 or hi > n_in:
        x = F.pad(x, (max(0, -lo), max(0, hi - n_in)))
    return F.conv2d(x, conv.weight, conv.bias, conv.stride, (conv.padding[0], 0), conv.dilation,
                    conv.groups)


def _conv_stages(seq):
    """An nn.Sequential of convolutions each followed by position-wise modules -> [(conv, [modules])]."""
    groups = []
    for m in seq:
        if isinstance(m, nn.Identity):
            continue
        if isinstance(m, nn.Conv2d):
            if m.padding_mode != "zeros" or isinstance(m.padding, str):
                raise ValueError(f"time chunks need explicit zero padding, got {m}")
            groups.append((m, []))
        elif not groups:
            raise ValueError(f"{type(m).__name__} before the first convolution of {seq}")
        else:
            groups[-1][1].append(m)
    return groups


def _chained(seq, src, n_in):
    """(fn(start, stop) -> ``seq``'s output steps [start, stop), its output length) for ``seq``
    (convolutions and position-wise modules) applied to ``src`` of ``n_in`` steps."""
    fn, n = src, n_in
    for conv, post in _conv_stages(seq):
        def fn(a, b, conv=conv, post=post, prev=fn, n_prev=n):
            y = conv_time_chunk(conv, prev, a, b, n_prev)
            for m in post:
                y = m(y)
            return y
        n = conv_out_size(n, conv.kernel_size[1], conv.stride[1], conv.padding[1])
    return fn, n


def _fill(fn, n, step):
    """fn(start, stop) over [0, n) in steps of ``step``, written into one tensor (B, C, H, n)."""
    out = None
    for t0 in range(0, n, step):
        t1 = min(n, t0 + step)
        piece = fn(t0, t1)
        if out is None:
            out = piece.new_empty(*piece.shape[:-1], n)
        out[..., t0:t1] = piece
        del piece
    return out


def _time_step(x_shape, width, chunk_elems):
    """Time steps per chunk: ``chunk_elems`` over batch x ``width`` channels x frequency rows."""
    b, _, h, _ = x_shape
    return max(1, chunk_elems // max(1, b * width * h))


def _scan_directions(op, u, scan_elems):
    """Sum of the four directions' scan outputs of ``op`` (an SS2D) on u (B, D, H, W) ->
    (B, D, H, W) in the scan's output dtype.

    Step i scans the i-th segment of every direction's order in one grouped call (4D rows, as
    the plain path's one call), each from the state its previous segment left: segments of
    ``c * H`` positions, c time steps (``scan_elems`` / (B * D * H)); k0 row-major positions
    [t0 H, t1 H), k1 the time steps [t0, t1) column by column, k2 / k3 the same counted from the
    end (reversed). Each output is added at its grid positions."""
    b, d, h, w = u.shape
    L = h * w
    A, kw = op.scan_params(u.dtype)
    if kw["out_dtype"] is None:
        kw["out_dtype"] = u.dtype
    flat = u.view(b, d, L)
    y = torch.zeros(b, d, h, w, dtype=kw["out_dtype"], device=u.device)
    y_flat = y.view(b, d, L)
    c = max(1, scan_elems // max(1, b * d * h))
    state = None
    for t0 in range(0, w, c):
        t1 = min(w, t0 + c)
        n, r0, r1 = t1 - t0, w - t1, w - t0
        segs = torch.stack([flat[..., t0 * h:t1 * h],
                            u[..., t0:t1].transpose(2, 3).reshape(b, d, n * h),
                            flat[..., r0 * h:r1 * h].flip(-1),
                            u[..., r0:r1].transpose(2, 3).reshape(b, d, n * h).flip(-1)], dim=1)
        dts, Bs, Cs = op.direction_inputs(segs)                  # (B, 4D, l), (B, 4, N, l)
        out, state = selective_scan(segs.view(b, 4 * d, n * h), dts, A, Bs, Cs, initial_state=state,
                                    return_last_state=True, backend=op.scan_backend, **kw)
        del segs, dts, Bs, Cs
        out = out.view(b, 4, d, n * h)
        y_flat[..., t0 * h:t1 * h] += out[:, 0]
        y[..., t0:t1] += out[:, 1].view(b, d, n, h).transpose(2, 3)
        y_flat[..., r0 * h:r1 * h] += out[:, 2].flip(-1)
        y[..., r0:r1] += out[:, 3].flip(-1).view(b, d, n, h).transpose(2, 3)
        del out
    return y


def _block(block, x, chunk_elems, scan_elems):
    """One VSS block on the residual stream x (B, C, H, W), updated in place and returned."""
    op = block.op
    n = x.shape[-1]
    chunk_elems = _auto(chunk_elems, x.numel(), 8, CHUNK_ELEMS)
    scan_elems = _auto(scan_elems, x.numel(), 32, SCAN_ELEMS)
    d_inner = op.in_proj.out_features
    step = _time_step(x.shape, max(d_inner, block.mlp.fc1.out_features), chunk_elems)

    def mixer_in(a, b):   # in_proj(norm(x)) on steps [a, b): the depthwise conv's input
        return op.in_proj(block.norm(x[..., a:b]))

    u = _fill(lambda a, b: op.act(conv_time_chunk(op.conv2d, mixer_in, a, b, n)), n, step)
    y = _scan_directions(op, u, scan_elems)
    dtype = u.dtype
    del u
    for t0 in range(0, n, step):
        x[..., t0:t0 + step] += op.output(y[..., t0:t0 + step], dtype)
    del y
    for t0 in range(0, n, step):
        x[..., t0:t0 + step] += block.mlp(block.norm2(x[..., t0:t0 + step]))
    return x


def _frames_source(model, x):
    """(src(i0, i1) -> the stem's input steps [i0, i1) (B, 1, F, i1 - i0) on the model's device,
    number of frames, batch, mel bins) for an fbank (B, T, F) or a frame source."""
    device = next(model.parameters()).device
    if torch.is_tensor(x):
        if x.dim() != 3:
            raise ValueError(f"DASS expects (B, T, F) input, got shape {tuple(x.shape)}")
        n, (b, f) = x.shape[1], (x.shape[0], x.shape[2])

        def src(i0, i1):
            return x[:, i0:i1].to(device).unsqueeze(1).transpose(2, 3)
        return src, n, b, f
    for attr in ("num_frames", "num_mel_bins", "frames"):
        if not hasattr(x, attr):
            raise TypeError(f"x must be an fbank tensor (B, T, F) or a frame source with num_frames, "
                            f"num_mel_bins and frames(start, stop); got {type(x).__name__}")

    def src(i0, i1):
        return x.frames(i0, i1).to(device).unsqueeze(1).transpose(2, 3)
    return src, x.num_frames, getattr(x, "batch_size", 1), x.num_mel_bins


def lean_features(model, x, *, chunk_elems=None, scan_elems=None):
    """The DASS ``model``'s final feature grid (B, C, ceil(F/32), ceil(T/32)) (what
    ``forward_features`` returns) for x: an fbank (B, T, F) on any device, or a frame source
    (``num_frames``, ``num_mel_bins``, ``frames(start, stop) -> (B, stop - start, F)``), computed
    stage by stage on chunks (module docstring). ``chunk_elems``: elements of the widest
    intermediate of one position-wise chunk; ``scan_elems``: elements of u in one direction's scan
    segment; None (default): per stage, 1/8 and 1/32 of the stage's activation, within
    [:data:`MIN_ELEMS`, :data:`CHUNK_ELEMS`] and [:data:`MIN_ELEMS`, :data:`SCAN_ELEMS`].
    Inference only: raises RuntimeError when gradients are enabled and the model has trainable
    parameters, or when it is in training mode."""
    if model.training:
        raise RuntimeError("the lean DASS path is for inference: call model.eval() first")
    if torch.is_grad_enabled() and any(p.requires_grad for p in model.parameters()):
        raise RuntimeError("the lean DASS path does not keep what a backward needs: run it under "
                           "torch.inference_mode() or torch.no_grad()")
    for name, v in (("chunk_elems", chunk_elems), ("scan_elems", scan_elems)):
        if v is not None and not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            raise ValueError(f"{name} must be None or a positive int, got {v!r}")
    src, n, b, f = _frames_source(model, x)
    if n < 1:
        raise ValueError("the input has no frames")
    stem, n = _chained(model.patch_embed, src, n)
    first = model.cfg.dims[0]
    stem_elems = _auto(chunk_elems, b * first * math.ceil(f / 4) * n, 8, CHUNK_ELEMS)
    grid = _fill(stem, n, _time_step((b, 0, math.ceil(f / 2), 0), first, stem_elems))
    for layer in model.layers:
        for block in layer.blocks:
            grid = _block(block, grid, chunk_elems, scan_elems)
        if not isinstance(layer.downsample, nn.Identity):
            grid = _downsample(layer.downsample, grid, chunk_elems)
    return grid


def _downsample(seq, prev, chunk_elems):
    """The next stage's grid from ``prev`` (B, C, H, W) through ``seq`` (conv + norm), in chunks;
    nothing here refers to ``prev`` once it returns."""
    down, n = _chained(seq, lambda a, b: prev[..., a:b], prev.shape[-1])
    c_out = _conv_stages(seq)[0][0].out_channels
    chunk_elems = _auto(chunk_elems, prev.numel(), 8, CHUNK_ELEMS)
    return _fill(down, n, _time_step(prev.shape, c_out, chunk_elems))
