"""Small helpers shared by the training modules."""

from __future__ import annotations

import torch.distributed as dist

from megatron_telecom.runtime.distributed import detect_distributed_env


def is_rank_0() -> bool:
    """True on global rank 0; before the process group starts, as the launcher says."""
    if dist.is_initialized():
        return dist.get_rank() == 0
    return detect_distributed_env().rank == 0


def print_rank_0(message: str) -> None:
    """Print on global rank 0 only, flushed (log lines from all ranks would interleave)."""
    if is_rank_0():
        print(message, flush=True)
