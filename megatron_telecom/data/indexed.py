"""Megatron's indexed dataset format (.bin tokens + .idx index), written atomically.

Byte layout of `.idx` (megatron.core.datasets.indexed_dataset, version 1):
  b"MMIDIDX\\x00\\x00" | <Q 1 | <B dtype code | <Q sequence count | <Q document count
  | int32 sequence lengths | int64 byte pointers | int64 document indices (starting at 0)
`.bin` is the concatenated token ids in the index dtype. We write the same bytes as megatron-core's
`IndexedDatasetBuilder`, but accumulate the index in numpy arrays and never leave a half-written
dataset: files are written under temporary names and renamed once complete.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from megatron_telecom import atomic
from megatron_telecom.atomic import atomic_write_json, temporary_path

INDEX_HEADER = b"MMIDIDX\x00\x00"
_DTYPE_CODES = {
    np.uint8: 1,
    np.int8: 2,
    np.int16: 3,
    np.int32: 4,
    np.int64: 5,
    np.float64: 6,
    np.float32: 7,
    np.uint16: 8,
}
_CODE_DTYPES = {code: dtype for dtype, code in _DTYPE_CODES.items()}


def optimal_dtype(vocab_size: int) -> type[np.number]:
    """Token dtype Megatron picks for a vocabulary: uint16 below 65,500 ids, else int32."""
    return np.uint16 if vocab_size is not None and vocab_size < 65500 else np.int32


def bin_path(prefix: str | Path) -> Path:
    return Path(f"{prefix}.bin")


def idx_path(prefix: str | Path) -> Path:
    return Path(f"{prefix}.idx")


class _GrowableArray:
    """An append-only numpy array (amortised doubling) for index columns of any length."""

    def __init__(self, dtype: type[np.number]) -> None:
        self._data = np.empty(1024, dtype=dtype)
        self._size = 0

    def extend(self, values: np.ndarray) -> None:
        need = self._size + len(values)
        if need > len(self._data):
            grown = np.empty(max(need, 2 * len(self._data)), dtype=self._data.dtype)
            grown[: self._size] = self._data[: self._size]
            self._data = grown
        self._data[self._size : need] = values
        self._size = need

    def view(self) -> np.ndarray:
        return self._data[: self._size]


class IndexedDatasetWriter:
    """Append documents (token arrays + sequence lengths) and finalize into prefix.bin/.idx."""

    def __init__(self, prefix: str | Path, dtype: type[np.number]) -> None:
        self.prefix = Path(prefix)
        self.dtype = np.dtype(dtype).type
        if self.dtype not in _DTYPE_CODES:
            raise ValueError(f"unsupported token dtype {dtype}")
        self.prefix.parent.mkdir(parents=True, exist_ok=True)
        self._tmp_bin = temporary_path(bin_path(self.prefix))
        self._tmp_idx = temporary_path(idx_path(self.prefix))
        self._bin = open(self._tmp_bin, "wb")  # noqa: SIM115 - closed in finalize/abort
        self._sequence_lengths = _GrowableArray(np.int32)
        self._document_indices = _GrowableArray(np.int64)
        self._document_indices.extend(np.zeros(1, dtype=np.int64))
        self.num_tokens = 0

    @property
    def num_documents(self) -> int:
        return len(self._document_indices.view()) - 1

    def add_documents(self, tokens: np.ndarray, sequence_lengths: np.ndarray, sequences_per_document: np.ndarray) -> None:
        """Append several documents at once: their tokens, each sequence's length, sequences per doc."""
        assert tokens.dtype == self.dtype, (tokens.dtype, self.dtype)
        assert int(sequence_lengths.sum()) == len(tokens)
        self._bin.write(memoryview(np.ascontiguousarray(tokens)).cast("B"))
        start = len(self._sequence_lengths.view())
        self._sequence_lengths.extend(sequence_lengths.astype(np.int32, copy=False))
        self._document_indices.extend(start + np.cumsum(sequences_per_document, dtype=np.int64))
        self.num_tokens += len(tokens)

    def add_document(self, tokens: np.ndarray, sequence_lengths: list[int] | np.ndarray) -> None:
        """Append one document made of one or more sequences (sentences)."""
        lengths = np.asarray(sequence_lengths, dtype=np.int32)
        self.add_documents(np.asarray(tokens, dtype=self.dtype), lengths, np.array([len(lengths)]))

    def append_dataset(self, prefix: str | Path) -> None:
        """Append a whole existing dataset (what Megatron's `add_index` does for merges)."""
        index = read_index(prefix)
        if index.dtype != self.dtype:
            raise ValueError(f"{prefix} holds {index.dtype.__name__} tokens, the output {self.dtype.__name__}")
        with open(bin_path(prefix), "rb") as src:
            shutil.copyfileobj(src, self._bin, length=16 << 20)
        start = len(self._sequence_lengths.view())
        self._sequence_lengths.extend(index.sequence_lengths)
        self._document_indices.extend(start + index.document_indices[1:])
        self.num_tokens += int(index.sequence_lengths.sum(dtype=np.int64))

    def finalize(self) -> tuple[Path, Path]:
        """Write the index and move both files to their final names (the previous ones replaced)."""
        self.write_index()
        return self.publish()

    def write_index(self) -> None:
        """Flush the tokens and write the index, both still under temporary names."""
        self._bin.flush()
        os.fsync(self._bin.fileno())
        self._bin.close()
        lengths = self._sequence_lengths.view()
        pointers = np.zeros(len(lengths), dtype=np.int64)
        np.cumsum(lengths[:-1], dtype=np.int64, out=pointers[1:])
        pointers *= np.dtype(self.dtype).itemsize
        documents = self._document_indices.view()
        with open(self._tmp_idx, "wb") as f:
            f.write(INDEX_HEADER)
            f.write(struct.pack("<Q", 1))
            f.write(struct.pack("<B", _DTYPE_CODES[self.dtype]))
            f.write(struct.pack("<Q", len(lengths)))
            f.write(struct.pack("<Q", len(documents)))
            f.write(lengths.tobytes(order="C"))
            f.write(pointers.tobytes(order="C"))
            f.write(documents.tobytes(order="C"))
            f.flush()
            os.fsync(f.fileno())

    def publish(self) -> tuple[Path, Path]:
        """Rename the finished temp files into place (after `write_index`)."""
        return publish(self._tmp_bin, self._tmp_idx, self.prefix)

    def abort(self) -> None:
        """Drop everything written so far (nothing appears under the final names)."""
        self._bin.close()
        for tmp in (self._tmp_bin, self._tmp_idx):
            tmp.unlink(missing_ok=True)


def publish(tmp_bin: Path, tmp_idx: Path, prefix: Path) -> tuple[Path, Path]:
    """Rename finished temp files into place; an old .idx goes first so no mixed pair can exist."""
    final_bin, final_idx = bin_path(prefix), idx_path(prefix)
    final_idx.unlink(missing_ok=True)
    atomic.publish((tmp_bin, final_bin), (tmp_idx, final_idx))
    return final_bin, final_idx


@dataclass(frozen=True)
class IndexedDatasetIndex:
    """The parsed `.idx` of a dataset."""

    dtype: type[np.number]
    sequence_lengths: np.ndarray  # int32 [num_sequences]
    sequence_pointers: np.ndarray  # int64 [num_sequences], byte offsets into .bin
    document_indices: np.ndarray  # int64 [num_documents + 1]

    @property
    def num_documents(self) -> int:
        return len(self.document_indices) - 1

    @property
    def num_tokens(self) -> int:
        return int(self.sequence_lengths.sum(dtype=np.int64))

    def document_lengths(self) -> np.ndarray:
        """Tokens per document (int64)."""
        ends = np.concatenate([[0], np.cumsum(self.sequence_lengths, dtype=np.int64)])
        return ends[self.document_indices[1:]] - ends[self.document_indices[:-1]]


def read_index(prefix: str | Path) -> IndexedDatasetIndex:
    """Parse prefix.idx, with clear errors for a missing or foreign file."""
    path = idx_path(prefix)
    if not path.is_file() or not bin_path(prefix).is_file():
        raise ValueError(f"no indexed dataset at {prefix} (need {path.name} and {bin_path(prefix).name})")
    raw = np.memmap(path, mode="r", dtype=np.uint8)
    if bytes(raw[:9]) != INDEX_HEADER:
        raise ValueError(f"{path} is not a Megatron indexed-dataset index (bad header)")
    (version,) = struct.unpack("<Q", bytes(raw[9:17]))
    if version != 1:
        raise ValueError(f"{path}: unsupported index version {version}")
    dtype = _CODE_DTYPES[raw[17]]
    num_sequences, num_documents = struct.unpack("<QQ", bytes(raw[18:34]))
    offset = 34
    lengths = np.frombuffer(raw, dtype=np.int32, count=num_sequences, offset=offset)
    offset += lengths.nbytes
    pointers = np.frombuffer(raw, dtype=np.int64, count=num_sequences, offset=offset)
    offset += pointers.nbytes
    documents = np.frombuffer(raw, dtype=np.int64, count=num_documents, offset=offset)
    return IndexedDatasetIndex(dtype, lengths, pointers, documents)


def read_document(prefix: str | Path, index: IndexedDatasetIndex, document: int) -> np.ndarray:
    """Token ids of one document."""
    first, last = index.document_indices[document], index.document_indices[document + 1]
    if first == last:
        return np.empty(0, dtype=index.dtype)
    start = int(index.sequence_pointers[first])
    count = int(index.sequence_lengths[first:last].sum(dtype=np.int64))
    return np.fromfile(bin_path(prefix), dtype=index.dtype, count=count, offset=start)


def discover_datasets(folder: Path) -> list[Path]:
    """Prefixes of every .bin/.idx pair in a folder, sorted by name (Megatron-LM's merge order)."""
    if not folder.is_dir():
        raise ValueError(f"--input {folder} is not a folder")
    bins = {p.name[:-4] for p in folder.glob("*.bin")}
    idxs = {p.name[:-4] for p in folder.glob("*.idx")}
    unpaired = sorted(bins ^ idxs)
    if unpaired:
        raise ValueError(f"{folder}: {unpaired} lack their .bin or .idx partner")
    if not bins:
        raise ValueError(f"{folder} holds no .bin/.idx datasets")
    return [folder / name for name in sorted(bins)]


def merge_datasets(prefixes: list[str | Path], output_prefix: str | Path) -> IndexedDatasetWriter:
    """Concatenate datasets (same dtype) into one, in the order given; returns the finalized writer."""
    if not prefixes:
        raise ValueError("nothing to merge: no datasets given")
    dtype = read_index(prefixes[0]).dtype
    writer = IndexedDatasetWriter(output_prefix, dtype)
    try:
        for prefix in prefixes:
            writer.append_dataset(prefix)
    except BaseException:
        writer.abort()
        raise
    writer.finalize()
    return writer


def write_merge_provenance(prefixes: list[Path], writer: IndexedDatasetWriter) -> None:
    """Sidecar {output}.json for a merge: the merged datasets and their own sidecars when present."""
    parts = []
    for prefix in prefixes:
        sidecar = Path(f"{prefix}.json")
        parts.append({"prefix": str(Path(prefix).resolve()),
                      "provenance": json.loads(sidecar.read_text()) if sidecar.is_file() else None})
    payload = {"tool": "megatron-telecom tools/merge_datasets.py", "merged": parts,
               "documents": writer.num_documents, "tokens": writer.num_tokens,
               "dtype": np.dtype(writer.dtype).name}
    atomic_write_json(Path(f"{writer.prefix}.json"), payload)


@dataclass(kw_only=True)
class MergeDatasetsConfig:
    """Flags of `tools/merge_datasets.py` (Megatron-LM's); exactly one of --input, --datasets."""

    input: str | None = None
    """Folder: every .bin/.idx pair in it is merged, sorted by name."""
    datasets: list[str] | None = None
    """Dataset prefixes to merge, in this order."""
    output_prefix: str
    """Output path without suffix."""

    def __post_init__(self) -> None:
        if (self.input is None) == (self.datasets is None):
            raise ValueError("give exactly one of --input FOLDER and --datasets PREFIX [PREFIX ...]")


def run_merge(config: MergeDatasetsConfig) -> int:
    """`tools/merge_datasets.py`: merge, write the provenance sidecar, print the counts."""
    prefixes = (discover_datasets(Path(config.input)) if config.input is not None
                else [Path(p) for p in config.datasets])
    writer = merge_datasets(prefixes, config.output_prefix)
    write_merge_provenance(prefixes, writer)
    print(f"Merged {len(prefixes)} datasets into {config.output_prefix}: "
          f"{writer.num_documents:,} documents, {writer.num_tokens:,} tokens")
    return 0
