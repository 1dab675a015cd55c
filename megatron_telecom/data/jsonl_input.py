"""Reading preprocess input: files and globs in sorted order, batches of raw JSON lines, and the
SHA-256 and size of every file as it is read (for the provenance sidecar).

A `.json` file that starts with '[' is one JSON array of records (one line per element); every
other file is JSON lines, gzip-compressed when it ends in `.gz`. Blank lines are not records.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class ReadPosition(Protocol):
    """Where reading stands, for progress lines (``preprocess.Progress`` is one)."""

    done_bytes: int
    """Bytes of the input files read to the end."""
    position: int
    """Bytes read so far, the current file's included."""


class _HashingFile(io.RawIOBase):
    """A raw file that hashes and counts every byte read from disk (compressed bytes for .gz)."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - closed in close()
        self.sha256 = hashlib.sha256()
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._file.readinto(buffer)
        self.sha256.update(memoryview(buffer)[:n])
        self.bytes_read += n
        return n

    def drain(self) -> None:
        while self.readinto(bytearray(1 << 20)):
            pass

    def close(self) -> None:
        self._file.close()
        super().close()


@dataclass
class InputFile:
    path: Path
    size: int
    sha256: str = ""


@dataclass(frozen=True)
class Batch:
    file_index: int
    line_numbers: list[int]
    lines: list[bytes]


def resolve_inputs(patterns: list[str]) -> list[InputFile]:
    """Expand files/globs (sorted, de-duplicated); a pattern matching nothing is an error."""
    paths: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        matches = [m for m in matches if Path(m).is_file()]
        if not matches:
            raise ValueError(f"--input {pattern!r} matches no file")
        paths.extend(Path(m) for m in matches if Path(m) not in paths)
    return [InputFile(path=p, size=p.stat().st_size) for p in paths]


def _record_lines(stream: io.BufferedIOBase, path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line) of a JSONL stream, or one line per element of a JSON array file."""
    head = stream.peek(64)[:64].lstrip() if hasattr(stream, "peek") else b""
    if path.suffix == ".json" and head.startswith(b"["):
        try:
            records = json.loads(stream.read())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not a valid JSON array file: {exc}") from exc
        for number, record in enumerate(records, start=1):
            yield number, json.dumps(record, ensure_ascii=False).encode()
        return
    for number, line in enumerate(stream, start=1):
        yield number, line


def read_batches(inputs: list[InputFile], batch_bytes: int, progress: ReadPosition) -> Iterator[Batch]:
    """Batches of non-blank input lines, about `batch_bytes` each, in input order."""
    for file_index, item in enumerate(inputs):
        raw = _HashingFile(item.path)
        buffered = io.BufferedReader(raw, 1 << 20)
        stream = gzip.GzipFile(fileobj=buffered) if item.path.suffix == ".gz" else buffered
        numbers: list[int] = []
        lines: list[bytes] = []
        size = 0
        try:
            for number, line in _record_lines(stream, item.path):
                if not line.strip():
                    continue
                numbers.append(number)
                lines.append(line)
                size += len(line)
                if size >= batch_bytes:
                    progress.position = progress.done_bytes + raw.bytes_read
                    yield Batch(file_index, numbers, lines)
                    numbers, lines, size = [], [], 0
            if lines:
                yield Batch(file_index, numbers, lines)
            raw.drain()
        except (OSError, EOFError) as exc:
            raise ValueError(f"{item.path}: cannot read: {exc}") from exc
        finally:
            stream.close()
        item.sha256 = raw.sha256.hexdigest()
        progress.done_bytes += item.size
        progress.position = progress.done_bytes
