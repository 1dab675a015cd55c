"""Hugging Face weight files: read safetensors shards tensor by tensor, write sharded ones.

Only safetensors are read (no pickle). The reader checks the index and every shard before
any tensor is used, so a missing or truncated shard or a corrupt index is one clear error,
not a half-converted checkpoint. The writer streams each tensor to disk as it is produced
(the safetensors header is computed from the shapes up front), so exporting holds one
tensor in memory besides the model.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

INDEX_FILENAME = "model.safetensors.index.json"
SINGLE_FILENAME = "model.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json",
                   "chat_template.jinja")
_DTYPE_CODES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16"}


class HFWeights:
    """Tensors of an HF folder by name, validated up front and read one at a time."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.weight_map = self._weight_map()
        self._shapes: dict[str, tuple[int, ...]] = {}
        for shard in sorted(set(self.weight_map.values())):
            self._check_shard(shard)

    def _weight_map(self) -> dict[str, str]:
        index = self.folder / INDEX_FILENAME
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
                assert isinstance(weight_map, dict) and weight_map
            except (json.JSONDecodeError, KeyError, TypeError, AssertionError):
                raise ValueError(f"{index} is corrupt (no valid weight_map): re-download the "
                                 "model or delete the index of a single-file model") from None
            return {str(k): str(v) for k, v in weight_map.items()}
        if (self.folder / SINGLE_FILENAME).is_file():
            with self._open(SINGLE_FILENAME) as f:
                return dict.fromkeys(f.keys(), SINGLE_FILENAME)
        found = sorted(p.name for p in self.folder.glob("*.bin"))
        raise ValueError(f"{self.folder} has no {SINGLE_FILENAME} nor {INDEX_FILENAME}"
                         + (f" (found {', '.join(found)}: pickle files are not read; save the "
                            "model with safe_serialization=True)" if found else ""))

    def _open(self, shard: str):  # noqa: ANN202 - safetensors' handle type is private
        path = self.folder / shard
        if not path.is_file():
            raise ValueError(f"shard {path} is missing (named by {INDEX_FILENAME}): "
                             "re-download the model")
        try:
            return safe_open(str(path), framework="pt")
        except (SafetensorError, OSError) as err:
            raise ValueError(f"shard {path} is unreadable or truncated ({err}): "
                             "re-download it") from None

    def _check_shard(self, shard: str) -> None:
        path = self.folder / shard
        with self._open(shard) as f:
            names = set(f.keys())
            end = 0
            for name in names:
                piece = f.get_slice(name)
                shape = tuple(piece.get_shape())
                self._shapes[name] = shape
                end += math.prod(shape) * _itemsize(piece.get_dtype())
        listed = {n for n, s in self.weight_map.items() if s == shard}
        if listed - names:
            raise ValueError(f"{INDEX_FILENAME} places {sorted(listed - names)[:3]} in {shard}, "
                             "which does not hold them: the index is corrupt")
        if path.stat().st_size < end:
            raise ValueError(f"shard {path} is truncated ({path.stat().st_size} bytes, its "
                             f"tensors need more than {end}): re-download it")

    def shape(self, name: str) -> tuple[int, ...]:
        """Shape of tensor ``name`` (read from the header, no data)."""
        return self._shapes[name]

    def get(self, name: str) -> torch.Tensor:
        """Tensor ``name`` read from its shard."""
        if name not in self.weight_map:
            raise ValueError(f"{self.folder}: tensor {name} is missing from the weights")
        with self._open(self.weight_map[name]) as f:
            return f.get_tensor(name)


def _itemsize(code: str) -> int:
    return {"F64": 8, "F32": 4, "I64": 8, "I32": 4, "BF16": 2, "F16": 2, "I16": 2,
            "U8": 1, "I8": 1, "BOOL": 1}.get(code, 1)


def _header(specs: list[tuple[str, tuple[int, ...], torch.dtype]]) -> bytes:
    """A safetensors header for tensors written back to back in ``specs`` order."""
    entries, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape, dtype in specs:
        size = math.prod(shape) * dtype.itemsize
        entries[name] = {"dtype": _DTYPE_CODES[dtype], "shape": list(shape),
                         "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(entries, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # data starts 8-byte aligned
    return len(raw).to_bytes(8, "little") + raw


def plan_shards(specs: list[tuple[str, tuple[int, ...], torch.dtype]],
                max_shard_bytes: int) -> list[list[tuple[str, tuple[int, ...], torch.dtype]]]:
    """Consecutive tensors grouped into shards of at most ``max_shard_bytes`` (one tensor min)."""
    shards: list[list] = [[]]
    size = 0
    for spec in specs:
        nbytes = math.prod(spec[1]) * spec[2].itemsize
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(spec)
        size += nbytes
    return shards


def write_sharded(folder: Path, specs: list[tuple[str, tuple[int, ...], torch.dtype]],
                  produce: Callable[[str], torch.Tensor], max_shard_bytes: int) -> None:
    """Write ``model-0000i-of-0000n.safetensors`` + index, asking ``produce`` for each tensor."""
    shards = plan_shards(specs, max_shard_bytes)
    weight_map, total = {}, 0
    for number, shard in enumerate(shards, start=1):
        filename = (SINGLE_FILENAME if len(shards) == 1
                    else f"model-{number:05d}-of-{len(shards):05d}.safetensors")
        with open(folder / filename, "wb") as out:
            out.write(_header(shard))
            for name, shape, dtype in shard:
                tensor = produce(name)
                assert tuple(tensor.shape) == shape and tensor.dtype == dtype, name
                out.write(tensor.contiguous().view(torch.uint8).numpy())  # no extra copy
                weight_map[name] = filename
                total += tensor.numel() * dtype.itemsize
    if len(shards) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (folder / INDEX_FILENAME).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")


def copy_tokenizer_files(source: Path, target: Path, names: Iterable[str] = TOKENIZER_FILES
                         ) -> list[str]:
    """Copy the tokenizer files present in ``source`` into ``target``; the names copied."""
    copied = []
    for name in names:
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)
            copied.append(name)
    return copied
