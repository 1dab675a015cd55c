"""torch_dist checkpoints written and read tensor by tensor, so conversion holds a layer, not a model.

A torch_dist folder is PyTorch DCP's format plus megatron's ``common.pt`` and ``metadata.json``:
``__0_0.distcp`` holds each stored chunk as a ``torch.save`` blob, and the pickled ``.metadata``
gives every key's global shape, dtype and chunks, and each chunk's file, offset and length.
megatron's writer copies every tensor before writing (PyTorch's keeps one written tensor per
key) and its reader fills a whole model. Here each chunk is produced just before it is written
and dropped after, and a read fetches one global region from the stored chunks that overlap it,
whatever TP/PP wrote them. What is stored where (keys, global shapes, chunk offsets, the
``_extra_state`` objects) is megatron's own sharded state dict of the unsplit model built on the
meta device, so the layout is megatron's by construction. Imports megatron: call inside
``single_process_megatron()``.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from megatron.core.dist_checkpointing.dict_utils import nested_values
from megatron.core.dist_checkpointing.mapping import (
    ShardedObject,
    ShardedTensor,
    apply_factories,
    is_main_replica,
)
from megatron.core.dist_checkpointing.strategies.base import SaveShardedStrategy
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.filesystem import CURRENT_DCP_VERSION, _StorageInfo
from torch.distributed.checkpoint.metadata import (
    BytesStorageMetadata,
    ChunkStorageMetadata,
    Metadata,
    MetadataIndex,
    StorageMeta,
    TensorProperties,
    TensorStorageMetadata,
)
from torch.distributed.checkpoint.planner import ReadItem
from torch.distributed.checkpoint.planner_helpers import create_read_items_for_chunk_list

from megatron_telecom.atomic import atomic_file
from megatron_telecom.convert.megatron_model import build_unsplit_model
from megatron_telecom.models.presets import ModelPreset

TORCH_DIST = ("torch_dist", 1)
"""megatron's name and version of the format (metadata.json), so its loader picks its reader."""
DATA_FILENAME = "__0_0.distcp"  # DCP's name for rank 0's first file
METADATA_FILENAME = ".metadata"


def meta_sharded_state(preset: ModelPreset, padded_vocab_size: int) -> dict[str, Any]:
    """The unsplit model's sharded state dict (factories applied) on the meta device: what a
    checkpoint of the model holds and where, without a byte of weights."""
    with torch.device("meta"):
        model = build_unsplit_model(preset, padded_vocab_size)
    state = model.sharded_state_dict()
    apply_factories(state)
    return state


def stored_chunk(sharded: ShardedTensor) -> ChunkStorageMetadata:
    """Where ``sharded`` lies in its global tensor, its prepended (layer) axes included."""
    assert sharded.flattened_range is None, f"{sharded.key}: flattened shards are optimizer state"
    return ChunkStorageMetadata(
        offsets=torch.Size(sharded.global_offset),
        sizes=torch.Size((1,) * sharded.prepend_axis_num + tuple(sharded.local_shape)))


def _tensor_metadata(tensors: list[ShardedTensor]) -> dict[str, TensorStorageMetadata]:
    """DCP's description of the stored tensors: per key its global shape, dtype and chunks."""
    stored: dict[str, TensorStorageMetadata] = {}
    for sharded in tensors:
        entry = stored.setdefault(sharded.key, TensorStorageMetadata(
            properties=TensorProperties(dtype=sharded.dtype),
            size=torch.Size(sharded.global_shape), chunks=[]))
        entry.chunks.append(stored_chunk(sharded))
    return stored


class StreamingSaveStrategy(SaveShardedStrategy):
    """megatron's torch_dist format, each tensor made by ``produce(sharded_tensor)`` just before
    it is written, then dropped. Use as ``dist_checkpointing.save(state, folder,
    StreamingSaveStrategy(produce))``: megatron still validates the sharding and writes
    ``common.pt`` and ``metadata.json``."""

    def __init__(self, produce: Callable[[ShardedTensor], torch.Tensor]) -> None:
        super().__init__(*TORCH_DIST)
        self.produce = produce

    @property
    def can_handle_sharded_objects(self) -> bool:
        return True

    def save(self, sharded_state_dict: dict[str, Any], checkpoint_dir: str | Path) -> None:
        tensors: list[ShardedTensor] = []
        objects: dict[str, list[Any]] = {}  # megatron stores a key's objects as one saved list
        for value in nested_values(sharded_state_dict):
            if not is_main_replica(value.replica_id):
                continue  # written by its main replica (TP/DP copies)
            if isinstance(value, ShardedObject):
                objects.setdefault(value.unique_key, []).append(value.data)
            else:
                tensors.append(value)
        folder = Path(checkpoint_dir)
        storage: dict[MetadataIndex, _StorageInfo] = {}
        with open(folder / DATA_FILENAME, "wb") as out:
            for key, values in objects.items():
                start = out.tell()
                torch.save(values, out)
                storage[MetadataIndex(key)] = _StorageInfo(DATA_FILENAME, start, out.tell() - start)
            for sharded in tensors:
                tensor = self.produce(sharded)
                assert tensor.shape == sharded.local_shape and tensor.dtype == sharded.dtype, \
                    (sharded.key, tensor.shape, sharded.local_shape)
                start = out.tell()
                torch.save(tensor.contiguous().view(stored_chunk(sharded).sizes), out)
                index = MetadataIndex(sharded.key, torch.Size(sharded.global_offset))
                storage[index] = _StorageInfo(DATA_FILENAME, start, out.tell() - start)
                del tensor
            out.flush()
            os.fsync(out.fileno())
        metadata = Metadata(
            state_dict_metadata={**_tensor_metadata(tensors),
                                 **dict.fromkeys(objects, BytesStorageMetadata())},
            storage_data=storage, version=CURRENT_DCP_VERSION,
            storage_meta=StorageMeta(checkpoint_id=str(folder), save_id=uuid.uuid4().hex))
        with atomic_file(folder / METADATA_FILENAME, "wb") as f:
            pickle.dump(metadata, f)


class _FileSlice(io.RawIOBase):
    """``length`` bytes of an open file from ``offset``: one stored chunk, for ``torch.load``."""

    def __init__(self, file: io.BufferedReader, offset: int, length: int) -> None:
        super().__init__()
        self.file, self.start, self.length, self.position = file, offset, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.length}[whence]
        self.position = min(max(base + offset, 0), self.length)
        return self.position

    def readinto(self, buffer: Any) -> int:
        size = min(len(buffer), self.length - self.position)
        self.file.seek(self.start + self.position)
        read = self.file.readinto(memoryview(buffer).cast("B")[:size])
        self.position += read
        return read


def _narrow(tensor: torch.Tensor, offsets: Sequence[int], lengths: Sequence[int]) -> torch.Tensor:
    """The box of ``tensor`` at ``offsets`` with ``lengths`` (a view)."""
    for dim, (start, length) in enumerate(zip(offsets, lengths, strict=True)):
        tensor = tensor.narrow(dim, start, length)
    return tensor


class DistCheckpointReader:
    """Global regions of a torch_dist checkpoint's tensors, each read from the stored chunks that
    overlap it (so any TP/PP layout reads back), one region in memory at a time."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.metadata = FileSystemReader(str(folder)).read_metadata()

    def read(self, sharded: ShardedTensor, *, rows: int | None = None) -> torch.Tensor:
        """The tensor megatron's ``sharded`` holds (its local shape and dtype: stored values are
        cast as megatron's load casts them), or only its first ``rows`` rows (the vocabulary
        without its padding)."""
        stored = self.metadata.state_dict_metadata.get(sharded.key)
        if not isinstance(stored, TensorStorageMetadata):
            raise ValueError(f"{self.folder}: no tensor {sharded.key} in the checkpoint")
        chunk = stored_chunk(sharded)
        sizes = list(chunk.sizes)
        if rows is not None:  # the first axis after the prepended ones
            sizes[sharded.prepend_axis_num] = rows
        region = ChunkStorageMetadata(offsets=chunk.offsets, sizes=torch.Size(sizes))
        items = create_read_items_for_chunk_list(sharded.key, stored, [region])
        if sum(math.prod(item.lengths) for item in items) != math.prod(sizes):
            raise ValueError(f"{self.folder}: tensor {sharded.key} (global shape "
                             f"{tuple(stored.size)}) does not hold the region at "
                             f"{tuple(region.offsets)} of size {tuple(sizes)}")
        if len(items) == 1:  # one stored chunk covers it (a converted checkpoint): no copy
            out = _narrow(self._load(items[0]), items[0].storage_offsets, items[0].lengths)
            out = out.to(sharded.dtype)
        else:  # pieces saved by several TP/PP ranks, gathered
            out = torch.empty(sizes, dtype=sharded.dtype)
            for item in items:
                piece = _narrow(self._load(item), item.storage_offsets, item.lengths)
                _narrow(out, item.dest_offsets, item.lengths).copy_(piece)
                del piece
        return out.reshape(sizes[sharded.prepend_axis_num:])

    def _load(self, item: ReadItem) -> torch.Tensor:
        """The stored chunk ``item`` reads from (a torch.save blob inside a .distcp file)."""
        info = self.metadata.storage_data[item.storage_index]
        if info.transform_descriptors:
            raise ValueError(f"{self.folder}: chunks written with DCP transforms "
                             f"{info.transform_descriptors} are not read here")
        with open(self.folder / info.relative_path, "rb") as f:
            return torch.load(_FileSlice(f, info.offset, info.length), map_location="cpu",
                              weights_only=True)
