"""3GPP .docx conversion, .zip archives read safely, malicious archives refused."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest

from megatron_telecom.data.curation.archives import (
    ArchiveLimits,
    UnsafeArchiveError,
    read_archive_members,
)
from megatron_telecom.data.curation.readers import TelecomDocumentReader
from megatron_telecom.data.curation.threegpp import convert_docx, version_from_code

TITLE = (
    "3rd Generation Partnership Project; Technical Specification Group Services and System "
    "Aspects; System architecture for the 5G System (5GS); Stage 2"
)


def _zip(path: Path, members: dict[str, bytes], *, symlinks: tuple[str, ...] = ()) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if name in symlinks:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, data)
    return path


def _read_folder(folder: Path) -> tuple[list, TelecomDocumentReader]:
    reader = TelecomDocumentReader(str(folder))
    return list(reader.run()), reader


def test_docx_converts_to_markdown(curation_spec_docx: bytes, curation_spec_markdown: str) -> None:
    spec = convert_docx(curation_spec_docx, name="specs/23501-i50.docx")
    assert spec.text == curation_spec_markdown
    for dropped in ("Foreword", "Contents", "Postal address", "Change history", "CR", "Editorial"):
        assert dropped not in spec.text
    assert spec.metadata == {
        "spec_number": "23.501",
        "spec_version": "18.5.0",
        "spec_type": "TS",
        "spec_release": "18",  # no '(Release N)' on this cover: the major version
        "spec_series": "23",
        "title": TITLE,
    }


def test_spec_version_from_file_name_when_cover_lacks_it() -> None:
    assert version_from_code("i50") == "18.5.0"
    assert version_from_code("f30") == "15.3.0"


def test_docx_and_zip_through_the_reader(
    tmp_path: Path, curation_spec_docx: bytes, curation_spec_markdown: str
) -> None:
    (tmp_path / "23501-i50.docx").write_bytes(curation_spec_docx)
    _zip(tmp_path / "23501-i50.zip", {"23501-i50.docx": curation_spec_docx, "readme.txt": b"x"})
    docs, _ = _read_folder(tmp_path)
    assert len(docs) == 2
    for doc in docs:
        assert doc.text == curation_spec_markdown
        assert doc.metadata["source"] == "3gpp"
        assert doc.metadata["doc_id"] == "23501-i50"
        assert doc.metadata["spec_number"] == "23.501"
        assert doc.metadata["spec_version"] == "18.5.0"
        assert doc.metadata["title"] == TITLE
    assert any(d.metadata["file_path"].endswith("23501-i50.zip!23501-i50.docx") for d in docs)


def _bomb(tmp_path: Path) -> Path:
    return _zip(tmp_path / "bomb.zip", {"spec.docx": b"\0" * (64 << 20)})


def _forged(tmp_path: Path, spec: bytes) -> Path:
    """A member whose headers declare fewer bytes than it holds."""
    path = _zip(tmp_path / "forged.zip", {"spec.docx": spec})
    raw = bytearray(path.read_bytes())
    size = len(spec).to_bytes(4, "little")
    small = (100).to_bytes(4, "little")
    raw = raw.replace(size, small)  # local and central header 'uncompressed size' fields
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d, s: _zip(d / "trav.zip", {"../../evil.docx": s}), "path traversal"),
        (lambda d, s: _zip(d / "abs.zip", {"/tmp/evil.docx": s}), "absolute"),
        (lambda d, s: _zip(d / "link.zip", {"spec.docx": b"/etc/passwd"}, symlinks=("spec.docx",)),
         "symbolic link"),
        (lambda d, s: _bomb(d), "zip bomb"),
        (lambda d, s: _forged(d, s), "declared"),
    ],
    ids=["traversal", "absolute", "symlink", "bomb", "forged-size"],
)
def test_malicious_zip_is_refused(
    tmp_path: Path, curation_spec_docx: bytes, make, message: str
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    archive = make(inbox, curation_spec_docx)
    with pytest.raises(UnsafeArchiveError, match=message):
        list(read_archive_members(str(archive), archive.read_bytes(), suffixes=(".docx",)))
    docs, reader = _read_folder(inbox)  # the pipeline reader skips it and counts why
    assert docs == []
    assert reader.stats["rejected_unsafe_archive"].total == 1
    assert not (tmp_path / "evil.docx").exists() and not Path("/tmp/evil.docx").exists()
    assert sorted(p.name for p in inbox.iterdir()) == [archive.name]  # nothing extracted


def test_member_and_ratio_limits_are_configurable(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "big.zip", {"a.docx": b"a" * (3 << 20)})
    limits = ArchiveLimits(max_member_bytes=1 << 20)
    with pytest.raises(UnsafeArchiveError, match="max_member_bytes"):
        list(read_archive_members(str(archive), archive.read_bytes(), suffixes=(".docx",),
                                  limits=limits))
    with pytest.raises(ValueError, match="not a valid zip"):
        list(read_archive_members("x.zip", io.BytesIO(b"not a zip").getvalue(), suffixes=(".docx",)))
