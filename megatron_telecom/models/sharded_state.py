"""The megatron-core side of the checkpoint format: a sharded state checked against a stored one.

Imports megatron, so import it after the CPU shim (``runtime/cpu_shim.py``); the format itself
(tracker, folders, ``common.pt``) is ``models/checkpoint_format.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from megatron.core.dist_checkpointing.dict_utils import nested_values
from megatron.core.dist_checkpointing.mapping import ShardedTensor
from torch.distributed.checkpoint import FileSystemReader


def check_shapes(path: Path, state: dict[str, Any]) -> None:
    """One line naming the first tensor whose global shape differs from the checkpoint's."""
    stored = FileSystemReader(str(path)).read_metadata().state_dict_metadata
    for item in nested_values(state):
        if not isinstance(item, ShardedTensor) or item.allow_shape_mismatch:
            continue
        size = getattr(stored.get(item.key), "size", None)
        if size is not None and tuple(size) != tuple(item.global_shape):
            raise ValueError(f"{path}: tensor {item.key} has shape {tuple(size)} in the checkpoint "
                             f"but {tuple(item.global_shape)} in this run's model: the model "
                             "flags do not describe the checkpoint's model")
