"""Host (CPU) memory on Linux: the peak memory of a call, and how much more this process may use.

PyTorch's CPU allocator keeps no peak counter, so the kernel's are used: :func:`peak_growth` runs
the call in a forked copy of the process, where the kernel starts the peaks (``VmPeak``: address
space, ``VmHWM``: resident memory) at the sizes the copy starts with, so their growth is what the
call needed at its high-water mark, intermediate buffers included. The copy shares the parent's
memory (copy-on-write) and its allocator state, and an out-of-memory there leaves this process
untouched. Without ``fork`` and ``/proc`` (not Linux) nothing is measured: None.
"""
from __future__ import annotations

import errno
import os
import pickle
import resource
from pathlib import Path

__all__ = ["memory_budget", "peak_growth"]

_CGROUP_LIMITS = (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # cgroup v2
                  ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"))


def _status_bytes(field: str) -> int | None:
    """A ``kB`` field of /proc/self/status (VmRSS, VmHWM, VmSize, VmPeak) in bytes, None when unreadable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _child(call, write_fd):
    """In the forked copy: run ``call`` on one thread, send back the peaks' growth or the error."""
    import torch

    torch.set_num_threads(1)  # OpenMP's thread pool does not survive fork
    start = {"vm": _status_bytes("VmSize"), "rss": _status_bytes("VmRSS")}
    try:
        call()
        peak = {"vm": _status_bytes("VmPeak"), "rss": _status_bytes("VmHWM")}
        result = {k: peak[k] - start[k] for k in start}
    except BaseException as err:  # noqa: BLE001 - everything goes back to the parent
        if isinstance(err, OSError) and err.errno in (errno.ENOMEM, errno.EAGAIN):
            result = MemoryError(f"out of memory in the measuring process: {err}")  # e.g. a thread or mmap
        else:
            result = err if isinstance(err, (MemoryError, RuntimeError)) else RuntimeError(repr(err))
    with os.fdopen(write_fd, "wb") as f:
        f.write(pickle.dumps(result))


def peak_growth(call) -> dict | None:
    """Run ``call()`` in a forked copy of this process and return how far its address space and
    resident memory peaked above their sizes at the start: ``{"vm": bytes, "rss": bytes}``; None when
    this cannot be measured here. A ``MemoryError`` or ``RuntimeError`` of ``call`` (the CPU
    allocator's "can't allocate memory" among them) is raised here; nothing of the call's results
    comes back."""
    if not hasattr(os, "fork") or _status_bytes("VmPeak") is None:
        return None
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the copy: never returns
        code = 0
        try:
            os.close(read_fd)
            _child(call, write_fd)
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    if not data:
        raise MemoryError("the measuring process ended without an answer (killed, e.g. out of memory)")
    result = pickle.loads(data)
    if isinstance(result, BaseException):
        raise result
    return result if None not in result.values() else None


def _read_int(path: str) -> int | None:
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None  # missing, or "max" (no limit)


def _meminfo() -> dict:
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
    except OSError:
        return {}
    return {k: int(v.split()[0]) * 1024 for k, _, v in (line.partition(":") for line in lines) if v.strip()}


def memory_budget() -> tuple[int | None, int | None, str | None]:
    """(bytes this process may still use, its total allowance, what they count: "vm" address space or
    "rss" resident memory): the tightest of the address-space limit (``RLIMIT_AS`` less ``VmSize``),
    a cgroup memory limit (less its usage) and the machine's ``MemAvailable`` / ``MemTotal``.
    (None, None, None) when none of them can be read."""
    limits = []  # (available, total, kind)
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    size = _status_bytes("VmSize")
    if soft != resource.RLIM_INFINITY and size is not None:
        limits.append((soft - size, soft, "vm"))
    for limit_file, usage_file in _CGROUP_LIMITS:
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < 2**60:  # v1 writes a huge number for "none"
            limits.append((limit - usage, limit, "rss"))
            break
    info = _meminfo()
    if "MemAvailable" in info and "MemTotal" in info:
        limits.append((info["MemAvailable"], info["MemTotal"], "rss"))
    if not limits:
        return None, None, None
    available, _, kind = min(limits)
    return max(0, available), min(t for _, t, _ in limits), kind
