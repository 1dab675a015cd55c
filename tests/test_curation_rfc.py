"""RFC cleaning on the 80 real RFCs: page furniture gone, body intact, boilerplate optional.

The checks here are computed from the raw files independently of the cleaner's own rules:
page-break neighbourhoods come from the form feeds, words are whitespace-separated tokens.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from megatron_telecom.data.curation.readers import decode_text
from megatron_telecom.data.curation.rfc import clean_rfc, rfc_metadata
from megatron_telecom.data.curation.text import clean_text

PAGE_FOOTER = re.compile(r"\[\s*page\s+[0-9ivxlcdm]+\s*\]", re.I)
RUNNING_HEADER = re.compile(
    r"^RFC\s*\d+\s{2,}.*\b(?:January|February|March|April|May|June|July|August|September"
    r"|October|November|December|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)\s+\d{4}\s*$"
)
WORDS = re.compile(r"\S+")
BOILERPLATE = ("Status of This Memo", "Copyright Notice", "Table of Contents", "Authors' Addresses")


@pytest.fixture(scope="module")
def rfcs(curation_rfc_dir: Path) -> dict[str, str]:
    return {p.stem: decode_text(p.read_bytes()) for p in sorted(curation_rfc_dir.glob("rfc*.txt"))}


@pytest.fixture(scope="module")
def cleaned_bodies(rfcs: dict[str, str]) -> dict[str, str]:
    """Page furniture removed, boilerplate kept (so every body word can be accounted for)."""
    return {name: clean_text(clean_rfc(raw, remove_boilerplate=False)) for name, raw in rfcs.items()}


def _nonblank(page: str) -> list[str]:
    return [line for line in page.split("\n") if line.strip()]


def _looks_like_header(line: str) -> bool:
    """Running-header lines start in column 0 and name the RFC or end in a year."""
    unindented = line[:1].strip() != ""
    return bool(RUNNING_HEADER.match(line)) or (
        unindented and ("RFC" in line or re.search(r"\d{4}\s*$", line) is not None)
    )


def test_all_80_rfcs_present(rfcs: dict[str, str]) -> None:
    assert len(rfcs) == 80
    assert sum("\f" in raw for raw in rfcs.values()) >= 60  # most are paginated
    assert sum(raw.startswith("\ufeff") or "\f" not in raw for raw in rfcs.values()) >= 14


def test_no_page_header_footer_or_form_feed_survives(cleaned_bodies: dict[str, str]) -> None:
    for name, text in cleaned_bodies.items():
        assert "\f" not in text, name
        assert "\ufeff" not in text, name
        for line in text.split("\n"):
            assert not PAGE_FOOTER.search(line), f"{name}: footer left: {line!r}"
            assert not RUNNING_HEADER.match(line), f"{name}: running header left: {line!r}"


def test_sentences_across_page_breaks_are_contiguous(
    rfcs: dict[str, str], cleaned_bodies: dict[str, str]
) -> None:
    checked = 0
    for name, raw in rfcs.items():
        flat = " ".join(cleaned_bodies[name].split())
        pages = raw.split("\f")
        for before, after in zip(pages, pages[1:]):
            last_lines, next_lines = _nonblank(before), _nonblank(after)
            if len(last_lines) < 2 or len(next_lines) < 2:
                continue
            last_body = last_lines[-2]  # the last line is the page footer
            while next_lines and _looks_like_header(next_lines[0]):
                next_lines = next_lines[1:]
            if not next_lines or last_body.rstrip().endswith((".", ":", ";")):
                continue
            first_body = next_lines[0]
            if not first_body.strip()[:1].islower():
                continue  # only sentences that clearly continue on the next page
            joined = " ".join(f"{last_body} {first_body}".split())
            assert joined in flat, f"{name}: sentence split by a page break: {joined[-120:]!r}"
            checked += 1
    assert checked > 500, checked  # the corpus has hundreds of such breaks


def test_no_body_words_lost_or_added(rfcs: dict[str, str], cleaned_bodies: dict[str, str]) -> None:
    for name, raw in rfcs.items():
        raw_words = Counter(WORDS.findall(raw.replace("\ufeff", "")))
        out_words = Counter(WORDS.findall(cleaned_bodies[name]))
        assert not out_words - raw_words, f"{name}: words appeared from nowhere"
        pages = raw.split("\f")
        furniture = Counter()  # words on the lines around each page break
        for index, page in enumerate(pages):
            lines = _nonblank(page)
            if index > 0:
                furniture.update(WORDS.findall("\n".join(lines[:2])))
            if index < len(pages) - 1:
                furniture.update(WORDS.findall(lines[-1] if lines else ""))
        lost = raw_words - out_words
        assert not lost - furniture, f"{name}: body words lost: {dict(lost - furniture)}"
        assert sum(lost.values()) <= 25 * len(pages), name  # a header + a footer per page


def test_boilerplate_sections_removed_and_rest_kept(
    rfcs: dict[str, str], cleaned_bodies: dict[str, str]
) -> None:
    for name in ("rfc3261", "rfc9000", "rfc8446", "rfc4271"):
        full = cleaned_bodies[name]
        trimmed = clean_text(clean_rfc(rfcs[name], remove_boilerplate=True))
        headings = {line.strip() for line in trimmed.split("\n") if line[:1].strip()}
        for title in BOILERPLATE:
            assert not any(h.lower() == title.lower() for h in headings), (name, title)
        assert "Abstract" in headings, name
        assert "Request for Comments:" not in trimmed, name
        assert not Counter(WORDS.findall(trimmed)) - Counter(WORDS.findall(full)), name
        assert len(trimmed) > 0.8 * len(full), name


def test_metadata_for_every_rfc(rfcs: dict[str, str]) -> None:
    for name, raw in rfcs.items():
        meta = rfc_metadata(raw, name)
        assert meta["doc_id"] == name
    assert rfc_metadata(rfcs["rfc9000"], "x")["title"] == (
        "QUIC: A UDP-Based Multiplexed and Secure Transport"
    )
    assert rfc_metadata(rfcs["rfc3261"], "x")["title"] == "SIP: Session Initiation Protocol"


def test_unicode_repair_and_whitespace() -> None:
    assert clean_text("\ufeffcaf\u00c3\u00a9  \t\n\n\n\nnext\x07 line  \r\n") == "café\n\nnext line"
    assert clean_text("  indented\n    diagram +--+  \n") == "  indented\n    diagram +--+"
