"""DistributedDataParallel plumbing: detect ``torchrun`` from its environment variables, start the
process group (NCCL on CUDA, gloo on CPU), and gather per-rank results."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..runtime import resolve_device


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job: ``rank`` of ``world_size`` processes, ``local_rank`` on its host."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_info() -> DistInfo:
    """Read ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (set by ``torchrun``); a single process without them."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise ValueError(f"malformed torchrun environment variable: {exc}") from exc
    if not 0 <= rank < world:
        raise ValueError(f"RANK={rank} outside WORLD_SIZE={world}")
    return DistInfo(rank, world, local)


def init_distributed(device_type: str | None = None) -> DistInfo:
    """Join the process group when launched by ``torchrun`` (no-op otherwise or when already joined).

    ``device_type`` ("cuda" or "cpu", default: cuda when available) picks the backend: NCCL for CUDA,
    gloo for CPU. On CUDA this process is bound to device ``LOCAL_RANK``.
    """
    info = env_info()
    if not info.enabled:
        return info
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), info.local_rank)
    device_type = device_type or resolve_device("auto").type
    if device_type == "cuda":
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return info


def current() -> DistInfo:
    """The joined process group, or a single process."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), env_info().local_rank)
    return DistInfo()


def barrier() -> None:
    if current().enabled:
        dist.barrier()


def gather_interleaved(tensor: torch.Tensor, total: int) -> torch.Tensor:
    """Undo a strided split: rank ``r`` holds items ``r, r + K, r + 2K, ...`` of a list padded to a
    multiple of ``K`` ranks (``ResumableSampler``'s eval order). Every rank passes its ``(M, ...)`` tensor
    (same M on all ranks) and receives the first ``total`` items in the original order, on the CPU."""
    info = current()
    if not info.enabled:
        return tensor[:total].cpu()
    parts = [torch.empty_like(tensor) for _ in range(info.world_size)]
    dist.all_gather(parts, tensor.contiguous())
    stacked = torch.stack(parts, dim=1)  # (M, K, ...): item j of rank r sits at position j * K + r
    return stacked.reshape(-1, *tensor.shape[1:])[:total].cpu()


def all_gather_objects(obj) -> list:
    """Every rank's ``obj`` (picklable), in rank order."""
    info = current()
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, src: int = 0):
    """Rank ``src``'s ``obj`` on every rank."""
    if not current().enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
