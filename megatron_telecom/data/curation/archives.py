"""Safe reading of zip archives (3GPP publishes specifications as .zip holding .docx).

Members are read into memory, never extracted to disk, after every entry has been checked:
no absolute or `..` paths, no symlinks, and no zip bombs (declared sizes, compression ratio,
and actual decompressed bytes checked against the declared size while reading).
"""

from __future__ import annotations

import io
import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath
from typing import BinaryIO

_CHUNK = 1 << 20


class UnsafeArchiveError(ValueError):
    """An archive that must not be read (path traversal, symlink, zip bomb, too many members)."""


@dataclass(frozen=True, kw_only=True)
class ArchiveLimits:
    """Bounds an archive must stay within to be read."""

    max_member_bytes: int = 512 << 20
    """Largest decompressed size of one member."""
    max_total_bytes: int = 2 << 30
    """Largest decompressed size of all members together."""
    max_compression_ratio: float = 200.0
    """Largest decompressed/compressed size ratio of a member (zip bombs reach 1000s)."""
    max_members: int = 10_000
    """Most entries an archive may hold."""


def _check_name(archive: str, name: str) -> None:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive or ".." in parts:
        raise UnsafeArchiveError(
            f"{archive}: entry {name!r} has an absolute or '..' path (path traversal); "
            "refusing to read this archive"
        )


def check_member(archive: str, info: zipfile.ZipInfo, limits: ArchiveLimits) -> None:
    """Raise UnsafeArchiveError if one entry is a traversal path, a symlink or a bomb."""
    _check_name(archive, info.filename)
    if stat.S_ISLNK(info.external_attr >> 16):
        raise UnsafeArchiveError(
            f"{archive}: entry {info.filename!r} is a symbolic link; refusing to read this archive"
        )
    if info.file_size > limits.max_member_bytes:
        raise UnsafeArchiveError(
            f"{archive}: entry {info.filename!r} declares {info.file_size} bytes, over the "
            f"{limits.max_member_bytes}-byte limit (zip bomb?); raise max_member_bytes if genuine"
        )
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > _CHUNK and ratio > limits.max_compression_ratio:
        raise UnsafeArchiveError(
            f"{archive}: entry {info.filename!r} compresses {ratio:.0f}:1, over the "
            f"{limits.max_compression_ratio:.0f}:1 limit (zip bomb?)"
        )


def check_archive(archive: str, zf: zipfile.ZipFile, limits: ArchiveLimits) -> None:
    """Check every entry and the declared total before anything is decompressed."""
    infos = zf.infolist()
    if len(infos) > limits.max_members:
        raise UnsafeArchiveError(
            f"{archive}: {len(infos)} entries, over the {limits.max_members}-entry limit"
        )
    for info in infos:
        check_member(archive, info, limits)
    total = sum(info.file_size for info in infos)
    if total > limits.max_total_bytes:
        raise UnsafeArchiveError(
            f"{archive}: declares {total} bytes in all, over the {limits.max_total_bytes}-byte limit"
        )


def _read_member(archive: str, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """Decompress one entry, stopping as soon as it yields more than it declared."""
    out = io.BytesIO()
    try:
        with zf.open(info) as member:
            while chunk := member.read(_CHUNK):
                out.write(chunk)
                if out.tell() > info.file_size:
                    break
    except (zipfile.BadZipFile, EOFError) as err:  # zipfile stops at the declared size: bad CRC
        raise UnsafeArchiveError(
            f"{archive}: entry {info.filename!r} does not match its declared size/CRC ({err}); "
            "forged header or corrupt archive"
        ) from err
    if out.tell() != info.file_size:
        raise UnsafeArchiveError(
            f"{archive}: entry {info.filename!r} decompresses to {out.tell()} bytes, not the "
            f"declared {info.file_size} (forged header / zip bomb)"
        )
    return out.getvalue()


def read_archive_members(
    archive: str,
    source: BinaryIO | bytes,
    *,
    suffixes: tuple[str, ...],
    limits: ArchiveLimits | None = None,
) -> Iterator[tuple[str, bytes]]:
    """Yield (name, bytes) of the members ending in `suffixes`, after checking the whole archive."""
    limits = limits or ArchiveLimits()
    fileobj = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        zf = zipfile.ZipFile(fileobj)
    except zipfile.BadZipFile as err:
        raise ValueError(f"{archive}: not a valid zip archive ({err})") from err
    with zf:
        check_archive(archive, zf, limits)
        for info in zf.infolist():
            if not info.is_dir() and info.filename.lower().endswith(suffixes):
                yield info.filename, _read_member(archive, zf, info)
