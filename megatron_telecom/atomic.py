"""Atomic file output: write under a temporary name in the same folder, then rename into place."""

from __future__ import annotations

import json
import os
from pathlib import Path


def temporary_path(path: Path) -> Path:
    """Name a file is written under before it is complete (same folder, so rename is atomic)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write text so that readers see either the old file or the complete new one."""
    path = Path(path)
    tmp = temporary_path(path)
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: str | Path, payload: object) -> None:
    """`atomic_write_text` of indented UTF-8 JSON."""
    atomic_write_text(path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
