"""JSON lines, the one way every tool reads and writes them: blank lines skipped, a bad line is a
one-line ``file:line`` error, output written atomically (``atomic.py``)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from megatron_telecom.atomic import atomic_file

try:
    import orjson

    fast_loads = orjson.loads
    """JSON text or UTF-8 bytes -> value: orjson where installed, else json (slower, same records)."""
except ImportError:  # orjson is optional
    fast_loads = json.loads


def jsonl_records(lines: Iterable[str], where: str | Path) -> Iterator[tuple[int, dict]]:
    """(1-based line number, record) of each non-blank line; ValueError naming ``where:line``
    for a line that is not a JSON object."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}:{number}: not valid JSON ({exc.msg}); fix or remove "
                             "the line") from None
        if not isinstance(record, dict):
            raise ValueError(f"{where}:{number}: a JSON object per line is needed")
        yield number, record


def read_jsonl(path: str | Path) -> Iterator[dict]:
    """Records of a JSONL file (gzip-compressed when it ends in .gz), in order."""
    path = str(path)
    with (gzip.open if path.endswith(".gz") else open)(path, "rt", encoding="utf-8") as f:
        for _, record in jsonl_records(f, path):
            yield record


def write_jsonl(path: str | Path, records: Iterable[dict]) -> int:
    """Write records as UTF-8 JSON lines atomically; returns how many."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with atomic_file(path) as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count
