"""Atomic output, the one way every tool writes: build under a temporary name in the same folder,
fsync, rename into place, fsync the folder. Readers see the old result or the whole new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def temporary_path(path: Path) -> Path:
    """Name a file is written under before it is complete (same folder, so rename is atomic)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def fsync_dir(path: str | Path) -> None:
    """Make the renames inside folder ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(*renames: tuple[Path, Path]) -> None:
    """Rename finished (temporary, final) pairs into place, in order, then fsync their folders."""
    for tmp, final in renames:
        os.replace(tmp, final)
    for folder in {Path(final).parent for _, final in renames}:
        fsync_dir(folder)


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """An open temporary file that becomes ``path`` when the block succeeds (dropped on error)."""
    path = Path(path)
    tmp = temporary_path(path)
    try:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        publish((tmp, path))
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write text so that readers see either the old file or the complete new one."""
    with atomic_file(path) as f:
        f.write(text)


def atomic_write_json(path: str | Path, payload: object) -> None:
    """`atomic_write_text` of indented UTF-8 JSON."""
    atomic_write_text(path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


def publish_folder(tmp: Path, final: Path) -> None:
    """Rename finished folder ``tmp`` to ``final``, replacing a previous ``final``."""
    if final.exists():
        shutil.rmtree(final)
    publish((tmp, final))


@contextlib.contextmanager
def staged_folder(target: str | Path, *, replace: bool = False) -> Iterator[Path]:
    """A temporary folder beside ``target`` that becomes ``target`` when the block succeeds.

    Without ``replace``, ``target`` must not exist yet (or be empty): nothing of a previous
    result is overwritten. On any error the temporary folder is removed, ``target`` untouched.
    """
    target = Path(target)
    if not replace and target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ValueError(f"{target} already exists and is not empty: choose a new --save folder "
                         "or remove it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        publish_folder(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
