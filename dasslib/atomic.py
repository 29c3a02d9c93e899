"""Atomic files: write to a temporary file in the same folder, fsync, then ``os.replace``.

A crash or kill during a write leaves the previous file intact (``os.replace`` is atomic on POSIX
and Windows when both paths are on one file system, which the same folder guarantees). Every file
the library writes goes through here (checkpoints: :mod:`dasslib.train.checkpoint`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "atomic_write_json", "atomic_write_csv"]


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Call ``write(binary file)`` on a temporary file, then move it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    return atomic_write_bytes(text.encode("utf-8"), path)


def atomic_write_json(obj, path: str | os.PathLike, indent: int = 1, **dumps) -> Path:
    """``json.dumps(obj, indent=indent, **dumps)`` plus a newline, written to ``path`` atomically;
    returns the path."""
    return atomic_write_text(json.dumps(obj, indent=indent, **dumps) + "\n", path)


def atomic_write_csv(df, path: str | os.PathLike, **to_csv) -> None:
    """``df.to_csv(path, **to_csv)`` (a pandas DataFrame), written atomically. Returns None, like
    ``to_csv`` with a path (a notebook cell ending with it shows no output)."""
    atomic_write_text(df.to_csv(**to_csv), path)
