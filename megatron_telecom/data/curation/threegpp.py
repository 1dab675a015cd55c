"""3GPP specifications (.docx) -> Markdown text with the editorial front and back matter dropped.

Headings keep their level as Markdown `#`, tables become pipe tables. Everything before the
first real clause (cover page, copyright page, Contents, Foreword) and the change-history
annex are dropped; the spec number, version and title go to metadata.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field

import docx
from docx.table import Table
from docx.text.paragraph import Paragraph

from megatron_telecom.data.curation.archives import ArchiveLimits, check_archive
from megatron_telecom.data.curation.threegpp_text import release_and_series

_SPEC_ON_COVER = re.compile(
    r"3GPP\s+(?P<kind>TS|TR)\s+(?P<spec>\d{2}\.\d{3}(?:-\d+)*)\s*V(?P<version>\d+\.\d+\.\d+)"
)
# 3GPP file names: 23501-i50.docx = TS 23.501 V18.5.0 (letters a..z stand for 10..35);
# 38101-1-ia0 = TS 38.101-1, 38716-01-01-g00 = TR 38.716-01-01.
_SPEC_IN_NAME = re.compile(r"(?P<series>\d{2})(?P<number>\d{3})(?P<part>(?:-\d+)*)-(?P<version>[0-9a-z]{3})(?![0-9a-z])")
_SKIPPED_HEADINGS = re.compile(r"^(?:foreword|contents|table of contents)$|change\s+history", re.I)
_BULLET_STYLE = re.compile(r"^(?:B\d|List Bullet|List Number)", re.I)


@dataclass(kw_only=True)
class SpecDocument:
    """A converted specification: Markdown text plus what was learned about it."""

    text: str
    metadata: dict[str, str] = field(default_factory=dict)


def heading_level(style_name: str) -> int:
    """Markdown level of a Word heading style; 3GPP annex headings (Heading 8/9) are level 1."""
    match = re.fullmatch(r"heading\s*(\d)", style_name.strip(), re.I)
    if not match:
        return 0
    level = int(match.group(1))
    return 1 if level >= 8 else level


def _one_line(text: str) -> str:
    return " ".join(text.replace("\t", " ").split())


def table_to_markdown(table: Table) -> str:
    """A Word table as a Markdown pipe table (first row is the header; merged cells repeat)."""
    rows = [
        [_one_line(cell.text).replace("|", "\\|") for cell in row.cells] for row in table.rows
    ]
    rows = [row for row in rows if any(row)]
    if not rows:
        return ""
    width = max(len(row) for row in rows)
    rows = [row + [""] * (width - len(row)) for row in rows]
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    lines.insert(1, "|" + "---|" * width)
    return "\n".join(lines)


def version_from_code(code: str) -> str:
    """3GPP three-character version code -> dotted version ('i50' -> '18.5.0')."""
    return ".".join(str(int(ch, 36)) for ch in code)


def spec_metadata(cover_text: str, file_name: str) -> dict[str, str]:
    """Spec number/version/kind from the cover ('3GPP TS 23.501 V18.5.0'), else the file name;
    release ('(Release 18)' on the cover, else the major version) and series ('23')."""
    match = _SPEC_ON_COVER.search(cover_text)
    meta: dict[str, str] = {}
    if match:
        meta = {
            "spec_number": match.group("spec"),
            "spec_version": match.group("version"),
            "spec_type": match.group("kind"),
        }
    elif match := _SPEC_IN_NAME.search(file_name.rsplit("/", 1)[-1]):
        meta = {
            "spec_number": f"{match.group('series')}.{match.group('number')}{match.group('part')}",
            "spec_version": version_from_code(match.group("version")),
        }
    return {**meta, **release_and_series(meta, cover_text)}


def _is_contents_style(style: str) -> bool:
    """Table-of-contents entries ('TOC 1'...) and the 3GPP contents title style ('TT')."""
    return style.lower().startswith("toc") or style.upper() == "TT"


class _Converter:
    """Walks the body in order, keeping the clauses and dropping skipped sections."""

    def __init__(self) -> None:
        self.blocks: list[str] = []
        self.cover: list[str] = []
        self.title: list[str] = []
        self.started = False
        self.skip_level: int | None = None

    def paragraph(self, para: Paragraph) -> None:
        style = para.style.name if para.style is not None else ""
        text = para.text.strip()
        level = heading_level(style)
        if level:
            self._heading(level, _one_line(text))
            return
        if not self.started:
            self.cover.append(text)
            if style.upper() == "ZT" and text:
                self.title.append(_one_line(text))
            return
        if self.skip_level is not None or not text or _is_contents_style(style):
            return
        self.blocks.append(f"- {text}" if _BULLET_STYLE.match(style) else text)

    def _heading(self, level: int, title: str) -> None:
        if self.skip_level is not None and level <= self.skip_level:
            self.skip_level = None
        if _SKIPPED_HEADINGS.search(title):
            self.skip_level = level
            return
        if title and self.skip_level is None:
            self.started = True
            self.blocks.append(f"{'#' * level} {title}")

    def table(self, table: Table) -> None:
        if self.started and self.skip_level is None:
            markdown = table_to_markdown(table)
            if markdown:
                self.blocks.append(markdown)
        elif not self.started:
            self.cover.extend(cell.text for row in table.rows for cell in row.cells)


def convert_docx(
    data: bytes, *, name: str = "spec.docx", limits: ArchiveLimits | None = None
) -> SpecDocument:
    """Convert a 3GPP .docx (bytes) to Markdown; the .docx zip itself is bomb-checked first."""
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            check_archive(name, zf, limits or ArchiveLimits())
    except zipfile.BadZipFile as err:
        raise ValueError(f"{name}: not a .docx (zip) file ({err})") from err
    document = docx.Document(io.BytesIO(data))
    converter = _Converter()
    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            converter.paragraph(block)
        else:
            converter.table(block)
    metadata = spec_metadata("\n".join(converter.cover), name)
    title = "; ".join(converter.title) or (document.core_properties.title or "")
    if title:
        metadata["title"] = title
    return SpecDocument(text="\n\n".join(converter.blocks), metadata=metadata)
