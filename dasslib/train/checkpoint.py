"""Atomic checkpoints (written through :mod:`dasslib.atomic`).

Checkpoints written with ``checksum=True`` start with a header holding the SHA-256 of the
serialized payload; :func:`load_checkpoint` verifies it, so overwritten bytes are reported instead
of loading as silently wrong numbers.
"""
from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import torch

from ..atomic import atomic_write, atomic_write_bytes, atomic_write_text  # noqa: F401 (re-exported)

_MAGIC = b"DASSLIB-CHECKPOINT sha256="  # + 64 hex digits + newline, then the torch.save bytes
_HEADER = len(_MAGIC) + 64 + 1


def atomic_save(obj, path: str | os.PathLike, checksum: bool = False) -> Path:
    """``torch.save(obj)`` to ``path`` atomically; returns the path. ``checksum``: prepend the
    SHA-256 header that `load_checkpoint` verifies (the file is then no plain ``torch.load`` file)."""
    if not checksum:
        return atomic_write(path, lambda f: torch.save(obj, f))
    buf = io.BytesIO()
    torch.save(obj, buf)
    payload = buf.getbuffer()
    digest = hashlib.sha256(payload).hexdigest().encode("ascii")

    def write(f):
        f.write(_MAGIC + digest + b"\n")
        f.write(payload)
    return atomic_write(path, write)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load a checkpoint written by the training loop (tensors and plain python values only).

    A checksummed file is verified first; ValueError naming the file when it does not match or
    cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    data = path.read_bytes()
    source = path
    if data.startswith(_MAGIC):
        expected = data[len(_MAGIC):_HEADER - 1].decode("ascii", "replace")
        actual = hashlib.sha256(memoryview(data)[_HEADER:]).hexdigest()
        if actual != expected:
            raise ValueError(f"checkpoint {path} is corrupt: the SHA-256 of its payload is {actual}, its header "
                             f"says {expected} (the file was changed after it was written); delete it to "
                             "start over, or restore it from a copy")
        source = io.BytesIO(memoryview(data)[_HEADER:])
    try:
        return torch.load(source, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt or foreign file
        raise ValueError(f"cannot read checkpoint {path}: {exc}") from exc
