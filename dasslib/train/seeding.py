"""Seeding and random-number-generator state: seed everything, seed DataLoader workers,
capture and restore the python / numpy / torch / CUDA generators for exact resumption."""
from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python's ``random``, numpy's global generator and torch (CPU and every CUDA device);
    ``deterministic=True`` also calls `use_deterministic_algorithms`."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        use_deterministic_algorithms()


def use_deterministic_algorithms() -> None:
    """Ask torch for deterministic kernels (warnings only where none exists) and switch cuDNN's
    benchmark off: some CUDA ops (scatter-add, cuBLAS workspaces) need it for run-to-run equality."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn`` for DataLoaders: derive numpy's and python's seeds from the worker's torch seed
    (which torch sets from the loader's generator), so augmentations in workers are reproducible."""
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def make_generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed`` (for DataLoader ``generator=``)."""
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def get_rng_state() -> dict:
    """Snapshot of every global generator, made only of tensors and plain python values
    (so it loads with ``torch.load(weights_only=True)``)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def set_rng_state(state: dict) -> None:
    """Restore a `get_rng_state` snapshot. CUDA states are restored when the device count matches."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda", [])
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
