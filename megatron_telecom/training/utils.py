"""Small helpers shared by the training modules."""

from __future__ import annotations

import torch.distributed as dist


def is_rank_0() -> bool:
    """True on global rank 0 (or without a process group)."""
    return not dist.is_initialized() or dist.get_rank() == 0


def print_rank_0(message: str) -> None:
    """Print on global rank 0 only, flushed (log lines from all ranks would interleave)."""
    if is_rank_0():
        print(message, flush=True)
