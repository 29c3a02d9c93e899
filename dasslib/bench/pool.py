"""Models of several specs, built once each and kept one at a time on the device.

A budgeted sweep visits the specs breadth-first (every model's 1 s point, then every model's
10 s point, ...) and a capacity search runs the cheapest (model, mode) first, so the same model
is needed again after others. Rebuilding it each time costs seconds for a full-size model;
keeping several on the GPU would put their weights into each other's peak memory and move the
out-of-memory boundary. :class:`ModelPool` builds each model once (seeded, on the CPU, as
``spec.factory()`` does) and keeps only the model in use on the device; the others wait on the
CPU (``model.to("cpu")``, the GPU copy is freed at once).
"""
import torch

from .memory import free_memory

__all__ = ["ModelPool"]


class ModelPool:
    """``get(spec)``: the model of ``spec`` on ``device``, built on first use (after
    ``torch.manual_seed(seed)``, so its weights do not depend on the visiting order); the model
    used before it goes back to the CPU. Models are keyed by ``spec.label``. Use as a context
    manager, or call :meth:`close` to drop them all."""

    def __init__(self, device, seed=0):
        self.device = torch.device(device)
        self.seed = seed
        self._models = {}
        self._resident = None
        self.builds = 0          # factory calls so far

    def built(self, spec):
        """The model of ``spec`` if it was built (wherever it is now), else None; builds nothing."""
        return self._models.get(spec.label)

    def get(self, spec):
        label = spec.label
        if self._resident is not None and self._resident != label:
            self.park()
        model = self._models.get(label)
        if model is None:
            torch.manual_seed(self.seed)
            model = spec.factory()
            self.builds += 1
            self._models[label] = model
        if self._resident != label:
            model.to(self.device)
            self._resident = label
        return model

    def park(self):
        """Move the model on the device (if any) to the CPU."""
        if self._resident is not None and self.device.type != "cpu":
            self._models[self._resident].to("cpu")
        self._resident = None

    def close(self):
        self._models.clear()
        self._resident = None
        free_memory(self.device)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
