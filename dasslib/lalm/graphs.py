"""A language model's recurrent step replayed as one CUDA graph (generation at small batch).

At batch 1 a Mamba LM's step is a few hundred small kernels. On the H100 (2026-12-07, notebook 06's gpu
profile) the eager step took 8.6 ms per token at the Mamba-130M shape, where its weights (0.5 GB in fp32)
need about 0.2 ms to read. The launches cost the rest. A CUDA graph launches the captured kernels as one.

The state must have a fixed shape, as Mamba's (conv_state, ssm_state) per layer has; a transformers KV cache
grows and is not captured. Written by hand because torch's graph helpers (``torch.cuda.make_graphed_callables``)
expect autograd-able functions of tensors, not a step that carries a list of state tuples.
"""
from __future__ import annotations

import torch

from ..cuda_graph import capture

__all__ = ["GraphedStep"]


class GraphedStep:
    """``lm.step`` on fixed buffers: ``logits = stepper(ids)`` advances the state held inside.

    lm: a module with ``step(input_ids (B,), state) -> (logits (B, V), state)`` whose state is a list of
    tuples of tensors of fixed shapes; state: the state after the prefix (copied, not changed);
    ids: (B,) example token ids (shape, dtype and device of every later call). With ``use_graph`` (default:
    on CUDA) the step is captured once as a CUDA graph and replayed; without it the same buffers are stepped
    eagerly (CPU, tests). The returned logits are a buffer that the next call overwrites.
    """

    def __init__(self, lm, state, ids: torch.Tensor, use_graph: bool | None = None):
        if ids.dim() != 1:
            raise ValueError(f"GraphedStep takes one token per row (B,), got shape {tuple(ids.shape)}")
        self.lm = lm
        self.ids = ids.clone()
        self.state = [tuple(t.clone() for t in layer) for layer in state]
        self.use_graph = ids.is_cuda if use_graph is None else bool(use_graph)
        if self.use_graph and not ids.is_cuda:
            raise ValueError("a CUDA graph needs CUDA tensors")
        self.graph = None
        self.logits = None
        if self.use_graph:
            self._capture()

    def _body(self):
        logits, new = self.lm.step(self.ids, self.state)
        for old, fresh in zip(self.state, new):
            for o, f in zip(old, fresh):
                o.copy_(f)
        return logits

    def _capture(self):
        saved = [tuple(t.clone() for t in layer) for layer in self.state]

        def body():
            with torch.no_grad():
                return self._body()
        self.graph, self.logits = capture(body, device=self.ids.device)
        for layer, kept in zip(self.state, saved):      # the warm-up and the capture stepped the state
            for t, k in zip(layer, kept):
                t.copy_(k)

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B,) -> next-token logits (B, V); the state advances by one token."""
        if ids.shape != self.ids.shape:
            raise ValueError(f"GraphedStep was built for ids of shape {tuple(self.ids.shape)}, got {tuple(ids.shape)}")
        self.ids.copy_(ids)
        if self.graph is None:
            with torch.no_grad():
                return self._body()
        self.graph.replay()
        return self.logits
