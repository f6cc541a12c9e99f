"""Small helpers for work split over torchrun processes (gloo on CPU, nccl on GPU).

Launch with ``torchrun --nproc_per_node N script.py``; the script calls
:func:`init_from_env` once, then e.g. :func:`nvr.text.cache.encode_sharded`. Every
helper also works in a plain single process (rank 0 of 1), so callers need no
special case.
"""

from __future__ import annotations

import os

import numpy as np


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() else None


def world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` unless a process group is initialized."""
    dist = _dist()
    if dist is None or not dist.is_initialized():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def is_distributed() -> bool:
    return world()[1] > 1


def init_from_env(backend: str = "auto") -> bool:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1 in the environment).

    ``backend="auto"`` picks nccl when CUDA is available, else gloo; on CUDA the
    process is pinned to ``cuda:LOCAL_RANK`` so ``device="auto"`` means its own GPU.
    Returns True when running with more than one process.
    """
    import torch

    dist = _dist()
    if dist is None or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return is_distributed()
    if not dist.is_initialized():
        if backend == "auto":
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    return is_distributed()


def barrier() -> None:
    if is_distributed():
        _dist().barrier()


def shard_range(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Contiguous, balanced ``[start, end)`` of ``n`` items for ``rank`` (sizes differ by <= 1)."""
    base, rem = divmod(n, world_size)
    start = rank * base + min(rank, rem)
    return start, start + base + (1 if rank < rem else 0)


def _comm_device():
    import torch

    dist = _dist()
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def gather_rows(local: np.ndarray, n_total: int, dst: int = 0) -> np.ndarray | None:
    """Concatenate each rank's contiguous shard (from :func:`shard_range`) on ``dst``.

    Returns the full ``(n_total, ...)`` array on ``dst`` and None on the other ranks;
    in a single process returns ``local`` itself.
    """
    import torch

    rank, ws = world()
    if ws == 1:
        return local
    dist = _dist()
    sizes = [shard_range(n_total, r, ws) for r in range(ws)]
    sizes = [b - a for a, b in sizes]
    if local.shape[0] != sizes[rank]:
        raise ValueError(f"rank {rank}: shard has {local.shape[0]} rows, expected {sizes[rank]}")
    width = max(sizes)
    dev = _comm_device()
    buf = torch.zeros((width, *local.shape[1:]), dtype=torch.from_numpy(local[:0]).dtype, device=dev)
    if sizes[rank]:
        buf[: sizes[rank]] = torch.from_numpy(np.ascontiguousarray(local)).to(dev)
    parts = [torch.empty_like(buf) for _ in range(ws)] if rank == dst else None
    dist.gather(buf, gather_list=parts, dst=dst)
    if rank != dst:
        return None
    return np.concatenate([p[:s].cpu().numpy() for p, s in zip(parts, sizes)], axis=0)


class Group:
    """The process group a training run sees (rank 0 of 1 without torchrun)."""

    def __init__(self, rank: int = 0, world: int = 1):
        self.rank, self.world = rank, world

    def gather(self, t):
        """All-gather along dim 0; the own slice keeps its autograd graph."""
        if self.world == 1:
            return t
        import torch

        dist = _dist()
        parts = [torch.empty_like(t) for _ in range(self.world)]
        dist.all_gather(parts, t.detach().contiguous())
        parts[self.rank] = t
        return torch.cat(parts)

    def all_reduce(self, t) -> None:
        if self.world > 1:
            _dist().all_reduce(t)

    def barrier(self) -> None:
        if self.world > 1:
            _dist().barrier()


def init_group(backend: str = "auto") -> Group:
    """Join torchrun's process group (see :func:`init_from_env`) and describe it."""
    init_from_env(backend)
    rank, ws = world()
    return Group(rank, ws)
