"""A datatrove reader for raw telecom documents: RFC .txt, 3GPP .docx/.zip/.txt/.md, PDF, JSONL.

A text or Markdown file whose first lines hold a 3GPP cover line (`3GPP TS 38.321 V19.2.0`) is a
3GPP specification whatever its extension (`source: 3gpp`, `spec_format: text`).

Each document carries `source`, `doc_id`, `title` and `file_path` metadata. Files it cannot
read safely (unsafe archives, broken files) are skipped with a warning and counted by reason
in the reader's stats, so one bad file never stops a large run.
"""

from __future__ import annotations

import gzip
import io
import re
from collections.abc import Iterator
from pathlib import PurePosixPath

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.readers.base import BaseDiskReader
from loguru import logger

from megatron_telecom.data.curation.archives import (
    ArchiveLimits,
    UnsafeArchiveError,
    read_archive_members,
)
from megatron_telecom.data.curation.rfc import rfc_metadata
from megatron_telecom.data.curation.threegpp import convert_docx, spec_metadata
from megatron_telecom.data.curation.threegpp_text import is_3gpp_file, text_spec_metadata
from megatron_telecom.jsonl import jsonl_records

TEXT_SUFFIXES = (".txt", ".md", ".markdown")
SUPPORTED_SUFFIXES = (*TEXT_SUFFIXES, ".docx", ".zip", ".pdf", ".jsonl", ".jsonl.gz", ".json.gz")
_LOOKS_LIKE_RFC = re.compile(r"Request for Comments:|^\s*RFC:?\s+\d+|\[Page \d+\]", re.M | re.I)


def decode_text(data: bytes) -> str:
    """UTF-8 (BOM dropped), falling back to Windows-1252 for old 8-bit files."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _stem(path: str) -> str:
    name = PurePosixPath(path).name
    for suffix in SUPPORTED_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return PurePosixPath(name).stem


def _pdf_text(data: bytes, path: str) -> tuple[str, str]:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    pages = [page.extract_text() or "" for page in reader.pages]
    title = str((reader.metadata or {}).get("/Title", "") or "")
    return "\n\n".join(page.strip() for page in pages if page.strip()), title


class TelecomDocumentReader(BaseDiskReader):
    """Reads every supported file under `data_folder`; files are sharded across tasks by rank."""

    name = "📡 Telecom documents"

    def __init__(
        self,
        data_folder: str,
        *,
        glob_pattern: str | None = None,
        text_key: str = "text",
        id_key: str = "id",
        archive_limits: ArchiveLimits | None = None,
        limit: int = -1,
    ):
        super().__init__(
            data_folder,
            limit=limit,
            text_key=text_key,
            id_key=id_key,
            glob_pattern=glob_pattern,
            recursive=True,
        )
        self.archive_limits = archive_limits or ArchiveLimits()

    def _doc(self, text: str, doc_id: str, path: str, metadata: dict) -> Document | None:
        meta = {"doc_id": doc_id, "title": "", **metadata}
        meta["file_path"] = self.data_folder.resolve_paths(path)
        record = {self.text_key: text, self.id_key: doc_id, "metadata": meta}
        return self.get_document_from_dict(record, path, 0)

    def _read_txt(self, path: str, data: bytes) -> Iterator[Document | None]:
        text = decode_text(data)
        if is_3gpp_file(text, _stem(path)):
            spec = text_spec_metadata(text) or spec_metadata("", _stem(path))
            meta = {"source": "3gpp", "spec_format": "text", **spec}
            yield self._doc(text, _stem(path), path, meta)
        elif _LOOKS_LIKE_RFC.search(text[:5000]):
            meta = rfc_metadata(text, _stem(path))
            yield self._doc(text, meta["doc_id"], path, {"source": "rfc", **meta})
        else:
            yield self._doc(text, _stem(path), path, {"source": "text"})

    def _read_docx(self, path: str, data: bytes, doc_id: str) -> Document | None:
        spec = convert_docx(data, name=path, limits=self.archive_limits)
        return self._doc(spec.text, doc_id, path,
                         {"source": "3gpp", "spec_format": "docx", **spec.metadata})

    def _read_zip(self, path: str, data: bytes) -> Iterator[Document | None]:
        members = read_archive_members(
            path, data, suffixes=(".docx",), limits=self.archive_limits
        )
        for name, member in members:
            yield self._read_docx(f"{path}!{name}", member, _stem(name))

    def _read_jsonl(self, path: str, data: bytes) -> Iterator[Document | None]:
        if path.lower().endswith(".gz"):
            data = gzip.decompress(data)
        lines = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8")
        for number, record in jsonl_records(lines, path):
            lineno = number - 1
            record.setdefault("source", "jsonl")
            record.setdefault("doc_id", str(record.get(self.id_key, f"{_stem(path)}/{lineno}")))
            record.setdefault("title", "")
            record.setdefault("file_path", self.data_folder.resolve_paths(path))
            yield self.get_document_from_dict(record, path, lineno)

    def _documents(self, path: str, data: bytes) -> Iterator[Document | None]:
        lower = path.lower()
        if lower.endswith(TEXT_SUFFIXES):
            yield from self._read_txt(path, data)
        elif lower.endswith(".docx"):
            yield self._read_docx(path, data, _stem(path))
        elif lower.endswith(".zip"):
            yield from self._read_zip(path, data)
        elif lower.endswith(".pdf"):
            text, title = _pdf_text(data, path)
            yield self._doc(text, _stem(path), path, {"source": "pdf", "title": title})
        else:
            yield from self._read_jsonl(path, data)

    def read_file(self, filepath: str) -> DocumentsPipeline:
        if not filepath.lower().endswith(SUPPORTED_SUFFIXES):
            self.stat_update("skipped_unsupported_file")
            return
        with self.data_folder.open(filepath, "rb") as f:
            data = f.read()
        try:
            for document in self._documents(filepath, data):
                if document is not None:
                    yield document
        except UnsafeArchiveError as err:
            logger.warning(f"Refused unsafe archive: {err}")
            self.stat_update("rejected_unsafe_archive")
        except Exception as err:  # a broken file must not stop a corpus-wide run
            logger.warning(f"Could not read {filepath}: {type(err).__name__}: {err}")
            self.stat_update("rejected_unreadable_file")
