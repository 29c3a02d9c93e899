"""Capturing a function as one CUDA graph, the way torch's docs ask for it.

Used by the whole-forward capture (:class:`dasslib.fast.CapturedForward`), the language model's graphed
step (:class:`dasslib.lalm.graphs.GraphedStep`) and the scan benchmark's kernel-only timings.
"""
from __future__ import annotations

import torch

__all__ = ["capture"]


def capture(fn, warmup: int = 2, device=None):
    """(graph, out): ``fn()`` called ``warmup`` times on a side stream (compilation, autotuning and lazy
    initialisation stay out of the graph), then captured once as a ``torch.cuda.CUDAGraph`` whose
    ``replay()`` reruns its kernels on the same buffers; ``out`` is what the captured call returned (the
    tensors each replay overwrites). ``device``: the CUDA device whose current stream the work follows."""
    current = torch.cuda.current_stream(device)
    side = torch.cuda.Stream(device)
    side.wait_stream(current)
    with torch.cuda.stream(side):
        for _ in range(warmup):
            fn()
    current.wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    return graph, out
