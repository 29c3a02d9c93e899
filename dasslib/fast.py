"""Fast paths on CUDA: a model's forward compiled by ``torch.compile`` and, for small inputs,
replayed as a CUDA graph.

Why: eager DASS spends most of its GPU time in glue around the scan (layer norms over permuted
grids, casts, the flips and cats of the cross-scan: ~75% of a B=32 forward) and, at batch 1, in
launching ~700 kernels. Inductor fuses that glue into a few kernels; the selective scan is a
custom op (``dasslib::selective_scan_fwd`` / ``_bwd``) that it calls as is, so a model compiles
end to end with no graph break. A CUDA graph then replays all launches of a fixed shape at once.

Modes (``fast=``):

- ``"off"``: plain eager forward.
- ``"compile"``: ``torch.compile(model, fullgraph=True, dynamic=False)``: one compile per input
  shape (and per train/eval mode), cached by dynamo.
- ``"graphs"``: the same, compiled with ``mode="reduce-overhead"`` (inductor's CUDA-graph trees:
  recorded once per shape, then replayed; outputs are overwritten by the next replay, so copy
  them before calling again).
- ``"auto"``: ``"off"`` on the CPU (compiling costs more than it saves there); on CUDA
  ``"graphs"`` for inputs of at most :data:`GRAPH_MAX_ELEMS` elements and ``"compile"`` above
  (a graph keeps its activations' memory pool alive, which long inputs cannot afford, and at
  long inputs launches cost nothing next to the work).

A shape beyond the first ``max_shapes`` compiled ones runs eagerly (with one warning), so a
sweep over many lengths does not pay a compile per length without saying so. If compiling
fails, the forward warns and runs eagerly from then on (out-of-memory errors are raised as
they are, so :func:`dasslib.inference.predict` still reports the longest input that fits).
"""
import collections
import warnings

import torch

from .cuda_graph import capture

__all__ = ["FAST_MODES", "GRAPH_MAX_ELEMS", "check_fast", "resolve_fast", "FastForward", "CapturedForward",
           "fast_forward", "clear_cache", "resolve_train_fast", "compile_for_training"]

FAST_MODES = ("auto", "off", "compile", "graphs")
# inputs up to this many elements (32 clips of 1024 x 128 fbank frames) are graph-replayed
GRAPH_MAX_ELEMS = 32 * 1024 * 128
# model -> {mode: FastForward}, the most recently used last. A compiled forward holds its model,
# so only the last CACHED_MODELS models are kept (a weak-keyed cache would never free them).
CACHED_MODELS = 2
_cache = collections.OrderedDict()
# torch.compile backend; tests on the CPU swap in "aot_eager" (the same graph capture and
# autograd, without inductor's minutes of C++ compiling)
COMPILE_BACKEND = "inductor"
# how "graphs" makes a shape's CUDA graph (read when a FastForward is built):
# - "inductor": torch.compile's mode="reduce-overhead" (CUDA-graph trees);
# - "whole": the forward compiled without graphs and captured by torch.cuda.graph as one graph per shape,
#   replayed on a static copy of the input (:class:`CapturedForward`). Each call then skips dynamo's guards
#   and the trees' bookkeeping, host work that a call timed alone waits for (bench_models times every
#   call between CUDA events after the GPU went idle). Only without gradients. H100, DASS-Small, B=32, bf16
#   (d787ac0): 9.93 ms per call against 10.21 ms with the trees, the same logits; not yet the default (one host).
GRAPH_CAPTURE = "inductor"


def check_fast(fast):
    """Validate a ``fast=`` argument."""
    if fast not in FAST_MODES:
        raise ValueError(f"fast must be one of {FAST_MODES}, got {fast!r}")
    return fast


def resolve_fast(fast, device, numel=0):
    """The concrete mode ("off" | "compile" | "graphs") of ``fast`` for an input of ``numel``
    elements on ``device``."""
    check_fast(fast)
    device = torch.device(device)
    if fast == "graphs" and device.type != "cuda":
        raise ValueError(f"fast='graphs' needs a CUDA device (CUDA graphs), got {device}")
    if fast != "auto":
        return fast
    if device.type != "cuda":
        return "off"
    return "graphs" if numel <= GRAPH_MAX_ELEMS else "compile"


def _allow_recompiles(n):
    """Let dynamo keep ``n`` compiled versions of a forward: its cache is per code object, so
    every instance of a model class (and each shape, train/eval mode and dtype) shares the
    default limit of 8, past which it would fall back to eager."""
    cfg = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(cfg, name) and getattr(cfg, name) < n:
            setattr(cfg, name, n)


class FastForward:
    """``model``'s forward, compiled (``mode`` "compile") or compiled and graph-replayed
    (``mode`` "graphs"), for fixed input shapes: ``__call__(x) -> model(x)``.

    Compiles lazily at the first call of each shape; after ``max_shapes`` distinct shapes, new
    ones run eagerly. The model's parameters are read at every call (not copied), so loading new
    weights needs no recompile.
    """

    def __init__(self, model, mode="compile", max_shapes=8):
        if mode not in ("compile", "graphs"):
            raise ValueError(f"mode must be 'compile' or 'graphs', got {mode!r}")
        if GRAPH_CAPTURE not in ("inductor", "whole"):
            raise ValueError(f"GRAPH_CAPTURE must be 'inductor' or 'whole', got {GRAPH_CAPTURE!r}")
        self.model, self.mode, self.max_shapes = model, mode, max_shapes
        _allow_recompiles(64)
        self.whole = mode == "graphs" and GRAPH_CAPTURE == "whole"
        graphs = mode == "graphs" and COMPILE_BACKEND == "inductor" and not self.whole
        self.compiled = torch.compile(model, fullgraph=True, dynamic=False,
                                      backend=COMPILE_BACKEND,
                                      mode="reduce-overhead" if graphs else None)
        self.captured = {}   # "whole": key -> CapturedForward
        self._tensors, self._registrations = None, -1   # "whole": the model's tensors, as listed
        self.shapes = set()
        self._warned = False
        self.failed = None   # the exception that made this forward fall back to eager

    def __call__(self, x):
        key = (tuple(x.shape), x.dtype, x.device, self.model.training, torch.is_grad_enabled(),
               torch.is_autocast_enabled(x.device.type)
               and torch.get_autocast_dtype(x.device.type))
        if key not in self.shapes:
            if len(self.shapes) >= self.max_shapes:
                if not self._warned:
                    warnings.warn(f"{type(self.model).__name__}: more than {self.max_shapes} input "
                                  f"shapes; {tuple(x.shape)} and later new shapes run eagerly")
                    self._warned = True
                return self.model(x)
            self.shapes.add(key)
        if self.failed is not None:
            return self.model(x)
        try:
            if self.whole and not torch.is_grad_enabled():
                return self._replay(key, x)
            if self.mode == "graphs" and not self.whole:
                torch.compiler.cudagraph_mark_step_begin()
            return self.compiled(x)
        except torch.OutOfMemoryError:
            raise
        except Exception as e:  # a compile failure: run eagerly from now on (a genuine input
            self.failed = e     # error is raised again by the eager call below)
            warnings.warn(f"{type(self.model).__name__}: the compiled forward failed "
                          f"({type(e).__name__}: {str(e)[:300]}); running eagerly from now on")
            return self.model(x)

    def _replay(self, key, x):
        """GRAPH_CAPTURE "whole": the captured graph of this key and of the model's current tensors."""
        if self._tensors is None or self._registrations != _registrations:
            # a parameter, buffer or module was (re)registered somewhere since: list the model's tensors
            # again (a walk over the module tree: about 0.6 ms for DASS-Small on a slow host, so not per call)
            self._tensors = [*self.model.parameters(), *self.model.buffers()]
            self._registrations = _registrations
        key = key + (torch.is_inference_mode_enabled(), tensor_addresses(self._tensors))
        cap = self.captured.get(key)
        if cap is None:
            stale = [k for k in self.captured if k[:-1] == key[:-1]]   # the same shape, other tensors
            for k in stale:
                del self.captured[k]
            cap = self.captured[key] = CapturedForward(self.compiled, x)
        return cap(x)


# registrations of parameters, buffers and submodules on any module (torch's global registration hooks):
# a whole-graph FastForward lists its model's tensors again only when this changed
_registrations = 0


def _count_registration(*_):
    global _registrations
    _registrations += 1


for _register in (torch.nn.modules.module.register_module_parameter_registration_hook,
                  torch.nn.modules.module.register_module_buffer_registration_hook,
                  torch.nn.modules.module.register_module_module_registration_hook):
    _register(_count_registration)


def tensor_addresses(tensors):
    """The address of each tensor's data: a captured graph reads the model's parameters and buffers there,
    so weights loaded in place are seen, and a new tensor (a replaced module, a load with ``assign=True``,
    an assignment to ``.data``) means a new capture. (The listed tensors are held, so a new one cannot
    reuse an old one's address.) About 25 us per call for DASS-Small's 276 tensors on a slow host."""
    return tuple(t.data_ptr() for t in tensors)


class CapturedForward:
    """``fn(x)`` captured once as one CUDA graph on a static copy of ``x`` (no gradients), then replayed:
    ``__call__(x)`` copies x in and returns the graph's output tensors, which the next call overwrites.
    Two warm-up calls on a side stream first (compilation, autotuning and lazy initialisation stay out
    of the graph). Written by hand rather than with ``torch.cuda.make_graphed_callables``, which
    captures a backward too and needs inputs that require gradients."""

    def __init__(self, fn, x):
        if not x.is_cuda:
            raise ValueError(f"a CUDA graph needs a CUDA input, got {x.device}")
        self.x = x.clone()
        self.graph, self.out = capture(lambda: fn(self.x), device=x.device)

    def __call__(self, x):
        if x.shape != self.x.shape or x.dtype != self.x.dtype:
            raise ValueError(f"captured for {tuple(self.x.shape)} {self.x.dtype}, got {tuple(x.shape)} {x.dtype}")
        self.x.copy_(x)
        self.graph.replay()
        return self.out


def fast_forward(model, fast="auto", x=None):
    """The forward to call for input ``x`` under ``fast`` (see the module docstring): ``model``
    itself for "off", else a :class:`FastForward` cached per model and mode (for the last
    :data:`CACHED_MODELS` models used; :func:`clear_cache` drops them)."""
    p = next(model.parameters(), None)
    device = x.device if x is not None else (p.device if p is not None else torch.device("cpu"))
    mode = resolve_fast(fast, device, x.numel() if x is not None else 0)
    if mode == "off":
        return model
    per_model = _cache.pop(model, {})
    _cache[model] = per_model
    while len(_cache) > CACHED_MODELS:
        _cache.popitem(last=False)
    if mode not in per_model:
        per_model[mode] = FastForward(model, mode)
    return per_model[mode]


def clear_cache():
    """Drop every cached compiled forward (and with it the reference to its model)."""
    _cache.clear()


def resolve_train_fast(fast, device):
    """The concrete mode ("off" | "compile" | "graphs") of a training step under ``fast``:
    "auto" is eager on the CPU and "graphs" on CUDA (the fastest of the three on the GPU for the models
    measured, docs/speed.md)."""
    return resolve_fast(fast, device)   # a training step has no input size limit for graphs


def compile_for_training(module, fast="auto", device="cuda"):
    """``module`` compiled for training steps (forward + backward through AOT autograd), or
    ``module`` itself when ``fast`` resolves to "off" (:func:`resolve_train_fast`).

    "compile": inductor kernels launched one by one; "graphs": the same kernels replayed as CUDA
    graphs (``mode="reduce-overhead"``: the forward and the backward are one graph each per
    input shape). Under "graphs" call ``torch.compiler.cudagraph_mark_step_begin()`` at the start
    of every step (:func:`dasslib.bench.make_step` and :mod:`dasslib.train` do): the step's
    outputs and gradients live in the graphs' memory and are overwritten by the next step."""
    mode = resolve_train_fast(fast, device)
    if mode == "off":
        return module
    _allow_recompiles(64)
    graphs = mode == "graphs" and COMPILE_BACKEND == "inductor"
    return torch.compile(module, dynamic=False, backend=COMPILE_BACKEND,
                         mode="reduce-overhead" if graphs else None)
