"""IETF RFC plain text: metadata, page-furniture removal and boilerplate sections.

Classic RFCs are paginated: each page ends with a footer (`Author   Category   [Page N]`), a
form feed, then a running header (`RFC NNNN   Title   Month YYYY`). Removing those and
re-joining the body across the break gives the text the authors wrote. v3 RFCs (UTF-8 BOM,
RFC 8650+) are unpaginated and only need the boilerplate removal.
"""

from __future__ import annotations

import re
from collections import Counter

_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
    r"|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
)
_DATE = rf"(?:\d{{1,2}}\s+)?{_MONTH}\s+\d{{4}}"
_FOOTER = re.compile(r"(?:^\s*\[\s*page\s+[0-9ivxlcdm]+\s*\]|\[\s*page\s+[0-9ivxlcdm]+\s*\]\s*$)", re.I)
_HEADER_PATTERNS = (
    re.compile(rf"^RFC\s*\d+\s{{2,}}.*{_DATE}\s*$"),  # RFC 3261   SIP: ...   June 2002
    re.compile(r"^RFC\s*\d+(?:\s{2,}\S.*)?$"),  # RFC 768                    User Datagram Protocol
    re.compile(r"^\S.*\s{2,}RFC\s*\d+\s*$"),  # User Datagram Protocol          RFC 768
    re.compile(rf"^\s*{_DATE}\s*$"),  # September 1981 (on a line of its own)
)
_RFC_NUMBER = re.compile(r"Request for Comments:\s*(\d+)", re.I)
_OLD_RFC_NUMBER = re.compile(r"^\s*RFC:?\s+(\d+)\b", re.M)  # RFC 768 / "RFC:  791" openings
_BOILERPLATE_HEADING = re.compile(
    r"^(?:\d+\.?\s+)?(?:Status of this Memo|Copyright Notice|Table of Contents"
    r"|Authors?'? Address(?:es)?|Full Copyright Statement)\s*$"
    r"|^(?:Intellectual Property|Acknowledgement)\s*$",  # RFC-Editor notices, never numbered
    re.I,
)
_SENTENCE_END = (".", ":", ";", "!", "?")


def _is_header_line(line: str, frequent: set[str]) -> bool:
    key = " ".join(line.split())
    return key in frequent or any(p.match(line) for p in _HEADER_PATTERNS)


def _top_lines(page: list[str], count: int = 2) -> list[str]:
    return [" ".join(ln.split()) for ln in page if ln.strip()][:count]


def _frequent_top_lines(pages: list[list[str]]) -> set[str]:
    """Lines at the top of many pages are running headers, whatever their format."""
    counts = Counter(line for page in pages[1:] for line in set(_top_lines(page)))
    floor = max(2, int(0.3 * (len(pages) - 1)))
    return {line for line, n in counts.items() if n >= floor}


def _strip_page(lines: list[str], frequent: set[str], first: bool) -> list[str]:
    """Drop one page's leading header lines, trailing footer line and surrounding blanks."""
    start, end = 0, len(lines)
    while end > start and not lines[end - 1].strip():
        end -= 1
    if end > start and _FOOTER.search(lines[end - 1]):
        end -= 1
    if not first:
        dropped = 0
        while start < end and dropped < 3:
            if not lines[start].strip():
                start += 1
            elif _is_header_line(lines[start], frequent):
                start, dropped = start + 1, dropped + 1
            else:
                break
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end]


def _continues(prev: str, nxt: str) -> bool:
    """Whether the body line after a page break continues the paragraph before it."""
    prev, nxt_stripped = prev.rstrip(), nxt.lstrip()
    if not prev or not nxt_stripped:
        return False
    same_indent = len(prev) - len(prev.lstrip()) == len(nxt) - len(nxt_stripped)
    return same_indent and (not prev.endswith(_SENTENCE_END) or nxt_stripped[0].islower())


def remove_page_furniture(text: str) -> str:
    """Remove page headers, footers and form feeds; re-join paragraphs split by a page break."""
    if "\f" not in text and not _FOOTER.search(text):
        return text
    pages = [page.split("\n") for page in text.split("\f")]
    frequent = _frequent_top_lines(pages)
    body: list[str] = []
    for index, page in enumerate(pages):
        lines = _strip_page(page, frequent, first=index == 0)
        if not lines:
            continue
        if body:
            body.extend([] if _continues(body[-1], lines[0]) else [""])
        body.extend(lines)
    return "\n".join(body)


def remove_boilerplate_sections(text: str) -> str:
    """Drop Status of This Memo, Copyright, Contents, Authors' Addresses and RFC-Editor notices.

    A section starts at its unindented heading and runs to the next unindented line.
    """
    kept: list[str] = []
    skipping = False
    for line in text.split("\n"):
        if line[:1].strip():  # an unindented line: a heading (or the title block)
            skipping = bool(_BOILERPLATE_HEADING.match(line.strip()))
        if not skipping:
            kept.append(line)
    return "\n".join(kept)


def split_front_matter(text: str) -> tuple[str, str]:
    """Split the RFC's opening author/category block (with "Request for Comments:") from the rest."""
    stripped = text.lstrip("\ufeff\n")
    block, sep, rest = stripped.partition("\n\n")
    if sep and _RFC_NUMBER.search(block):
        return block, rest
    return "", text


def rfc_metadata(text: str, file_stem: str) -> dict[str, str]:
    """`doc_id` (rfcNNNN) and `title` from the front matter, falling back to the file name."""
    front, rest = split_front_matter(text)
    number = _RFC_NUMBER.search(front or text[:3000]) or _OLD_RFC_NUMBER.search(text[:500])
    doc_id = f"rfc{number.group(1)}" if number else file_stem.lower()
    title = ""
    for line in rest.strip("\n").split("\n"):
        if not line.strip():
            if title:
                break
            continue
        title = f"{title} {line.strip()}".strip()
    return {"doc_id": doc_id, "title": title if front else ""}


def clean_rfc(text: str, *, remove_boilerplate: bool = True) -> str:
    """RFC-specific cleaning: page furniture always; front matter and boilerplate if asked."""
    text = remove_page_furniture(text.replace("\r\n", "\n").lstrip("\ufeff"))
    if remove_boilerplate:
        front, rest = split_front_matter(text)
        text = remove_boilerplate_sections(rest if front else text)
    return text
