"""3GPP specifications in text or Markdown form (TSpec-LLM, pandoc, .docx conversions): recognise
them by their cover line, drop the editorial front and back matter, repair the headings.

Observed forms: Markdown `#` headings whose clause number runs into the title (`## 4.2MAC
architecture`, TSpec-LLM), pandoc Markdown (setext `===`/`---` headings, `{#id .TT}` attributes,
annex headings with 8 `#`), plain text with `number<TAB>title` heading lines, the cover as one
heading line (`# 3GPP TS 38.201 V19.0.0 (2025-06) Technical Specification ... (Release 19)`), and
annex headings as plain lines run together with their title (`Annex N (informative):Change history`),
a title heading as the cover (`# 3GPP TS 33.501 — Title`, `V20.0.0` on a line below), multi-part
numbers (`TR 38.716-01-01`), and conversions that start at the Foreword heading. All become ATX
headings `#`*depth + `number title`, the depth taken from the clause number, so the clause
splitter (clauses.py) sees one form. The front matter is removed up to the first clause after the
Foreword; each removed character is attributed to a reason (cover, disclaimer, address, copyright,
trademarks, contents, foreword, change_history) so the report can say what went.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Multi-part numbers run to several parts: 'TR 38.716-01-01'.
COVER_LINE = re.compile(
    r"^[\s>*#|]*3GPP\s+(?P<kind>TS|TR)\s+(?P<spec>\d{2}\.\d{3}(?:-\d+)*)\s*V(?P<version>\d+\.\d+\.\d+)",
    re.M,
)
# A cover given as a title heading, the version on a line of its own below it:
# '# 3GPP TS 33.501 — Security architecture ...' then '**Version:** V20.0.0 (2026-01) | **Release:** 20'.
COVER_TITLE_LINE = re.compile(
    r"^[\s>*#|]*3GPP\s+(?P<kind>TS|TR)\s+(?P<spec>\d{2}\.\d{3}(?:-\d+)*)\s*[\u2014\u2013:]\s*(?P<title>\S[^\n]*?)\s*$",
    re.M,
)
_TITLE_COVER_VERSION = re.compile(r"\bV(?P<version>\d+\.\d+\.\d+)\b")
_TITLE_COVER_RELEASE = re.compile(r"\bRelease\W{0,4}(\d+)", re.I)
_TITLE_COVER_SPAN = 400  # characters after the title line searched for its version and release
_RELEASE = re.compile(r"\(\s*Release\s+(\d+)\s*\)", re.I)
_ATX = re.compile(r"^\s{0,3}(#{1,9})[ \t]*(.*?)[ \t]*#*[ \t]*$")
_SETEXT = re.compile(r"^(=+|-+)\s*$")  # pandoc: underline at column 0, tables' rules indented
_PLAIN_HEADING = re.compile(r"^((?:Annex\s+[A-Z]+\b.*)|(?:[A-Z]?\d+(?:\.\d+)*[a-zA-Z]?|[A-Z](?:\.\d+)+[a-zA-Z]?)\t[^\t]+)$")
_ATTRIBUTES = re.compile(r"\s*\{[#.][^}]*\}\s*$")
_EMPHASIS = re.compile(r"^\*+|\*+$")
_NUMBER = re.compile(r"^(?P<num>(?:[A-Z]\.)?\d+(?:\.\d+)*[a-zA-Z]?|[A-Z](?:\.\d+)+[a-zA-Z]?)(?P<rest>.*)$", re.S)
_ANNEX = re.compile(r"^Annex\s+(?P<letter>[A-Z]{1,2})\b\s*(?P<kind>\((?:normative|informative)\))?\s*:?\s*(?P<title>.*)$", re.I)
_CHANGE_HISTORY = re.compile(r"change\s+history", re.I)
_FRONT_TITLES = re.compile(r"^(?:contents|table of contents|foreword)$", re.I)
_RULE = re.compile(r"^[\s+|:=-]*[-=]{3}[\s+|:=-]*$")  # table borders: pandoc puts covers in tables
_FRONT_MATTER = re.compile(r"\A\ufeff?---\n.*?\n---\n", re.S)
# An annex heading written as a plain line in Markdown (its Word style was not mapped to a heading),
# title run together: 'Annex N (informative):Change history'.
_PLAIN_ANNEX = re.compile(r"^\**Annex\s+[A-Z]{1,2}\s*\((?:normative|informative)\)\s*:[^|]{0,150}$", re.I)

_DISCLAIMER = re.compile(
    r"present document has been developed within|has not been subject to any approval process"
    r"|provided for future development work|Specifications and Reports for implementation"
    r"|Organizational Partners accept no liability", re.I)
_ADDRESS = re.compile(
    r"^(?:3GPP|Postal address|Internet)$|support office address|Route des Lucioles|Valbonne"
    r"|Tel\.?\s*:|Fax\s*:|^https?://www\.3gpp\.org/?$", re.I)
_COPYRIGHT = re.compile(
    r"Copyright Notification|No part may be reproduced|foregoing restriction extend"
    r"|^©|\(c\)\s*\d{4}|Organizational Partners \(ARIB|All rights reserved", re.I)
_TRADEMARK = re.compile(r"Trade\s*Mark|registered and owned by|™|®")


@dataclass(kw_only=True)
class Heading:
    """A clause heading: its number ('4.2', 'A.1', 'Annex B'), title and depth in the clause tree."""

    number: str
    title: str
    depth: int

    @property
    def text(self) -> str:
        return f"{self.number} {self.title}".strip()

    @property
    def markdown(self) -> str:
        return f"{'#' * min(self.depth, 6)} {self.text}"


@dataclass(kw_only=True)
class CleanedSpec:
    """The spec's body as normalised Markdown, and the characters removed per reason."""

    text: str
    removed: dict[str, int] = field(default_factory=dict)


def is_3gpp_text(text: str) -> bool:
    """Whether a text/Markdown file is a 3GPP specification: its cover line comes first (after
    YAML front matter and a title line, as some Markdown collections add)."""
    head = _FRONT_MATTER.sub("", text[:4000], count=1)
    lines = [line for line in head.split("\n") if line.strip() and not _RULE.match(line)][:2]
    if len(lines) == 2 and lines[0].startswith("# ") and not COVER_LINE.match(lines[0]):
        lines = lines[1:]  # a title line a collection added; '# 3GPP TS ...' is the cover itself
    return bool(lines) and (bool(COVER_LINE.match(lines[0])) or _title_cover(head) is not None)


def _title_cover(head: str) -> dict[str, str] | None:
    """Metadata of a title-heading cover ('# 3GPP TS 33.501 — Title', version and release on the
    next lines), or None where the head does not start with one."""
    match = COVER_TITLE_LINE.match(head.lstrip())
    if not match:
        return None
    below = head.lstrip()[match.end(): match.end() + _TITLE_COVER_SPAN]
    version = _TITLE_COVER_VERSION.search(below)
    if not version:
        return None
    meta = {"spec_number": match.group("spec"), "spec_version": version.group("version"),
            "spec_type": match.group("kind")}
    release = _TITLE_COVER_RELEASE.search(below)
    meta["spec_release"] = release.group(1) if release else meta["spec_version"].split(".")[0]
    meta["spec_series"] = meta["spec_number"].split(".")[0]
    return {**meta, "title": " ".join(match.group("title").replace("*", "").split())}


_SCOPE_HEADING = re.compile(r"^[#\s]*1\s*Scope\s*(?:\{[^}]*\})?\s*$", re.M)
# A Markdown 'Foreword' heading followed (later) by a numbered clause heading.
_FOREWORD_THEN_CLAUSE = re.compile(r"^#{1,6}[ \t]*Foreword[ \t]*$.*?^#{1,9}[ \t]*\d+(?:\.\d+)*[A-Za-z]?\s", re.M | re.S)
_SPEC_FILE_NAME = re.compile(r"^\d{5}(?:-\d+)*-[0-9a-z]{3}(?:_|$)")


def is_3gpp_file(text: str, stem: str) -> bool:
    """A 3GPP spec by its cover line, or by a 3GPP file name ('38201-i00') and a '1 Scope' clause
    (some conversions render the cover as an image) or a Foreword heading before numbered clauses
    (some drop the cover and the first clauses)."""
    if is_3gpp_text(text):
        return True
    head = text[:200000]
    return bool(_SPEC_FILE_NAME.match(stem)) and bool(
        _SCOPE_HEADING.search(head) or _FOREWORD_THEN_CLAUSE.search(head))


def text_spec_metadata(text: str) -> dict[str, str]:
    """spec_number/version/type/release/series (and title) from the cover of a text spec."""
    head = text[:4000]
    match = COVER_LINE.search(head)
    if not match:
        return _title_cover(_FRONT_MATTER.sub("", head, count=1)) or {}
    meta = {"spec_number": match.group("spec"), "spec_version": match.group("version"),
            "spec_type": match.group("kind")}
    meta.update(release_and_series(meta, head[match.end():]))
    rest_of_line = head[match.end():].split("\n", 1)[0]
    if _RELEASE.search(rest_of_line):  # the whole cover on one line: '# 3GPP TS ... (Release 19)'
        return {**meta, **_one_line_title(rest_of_line)}
    cells = [ln.strip(" >*#\\|").split("|")[0] for ln in head[match.end():].split("\n")[1:]
             if not _RULE.match(ln)]
    lines = [" ".join(cell.replace("*", "").split()) for cell in cells]
    lines = [ln for ln in lines if ln and not re.fullmatch(r"\(\d{4}-\d{2}\)", ln)]
    release_at = next((i for i, ln in enumerate(lines) if _RELEASE.search(ln)), None)
    if release_at is not None:  # the title may run into '(Release N)' in the same table cell
        ahead = lines[release_at][: _RELEASE.search(lines[release_at]).start()].strip()
        title = [ln for ln in [*lines[:release_at], ahead]
                 if ln and ln not in ("Technical Specification", "Technical Report")]
        meta["title"] = " ".join(title)
    return meta


def _one_line_title(cover_rest: str) -> dict[str, str]:
    """The title of a cover on one line: what follows the date and 'Technical Specification', up to
    '(Release N)'."""
    text = cover_rest[: _RELEASE.search(cover_rest).start()]
    text = re.sub(r"^\s*\(\d{4}-\d{2}\)\s*", "", text.replace("*", ""))
    text = re.sub(r"^(?:Technical (?:Specification|Report))\s+", "", text)
    return {"title": " ".join(text.split())} if text.strip() else {}


def release_and_series(meta: dict[str, str], cover_text: str) -> dict[str, str]:
    """`spec_release` from '(Release 19)' on the cover, else the major version; `spec_series`."""
    out: dict[str, str] = {}
    match = _RELEASE.search(cover_text)
    if match:
        out["spec_release"] = match.group(1)
    elif meta.get("spec_version"):
        out["spec_release"] = meta["spec_version"].split(".")[0]
    if meta.get("spec_number"):
        out["spec_series"] = meta["spec_number"].split(".")[0]
    return out


def _number_candidates(raw: str) -> list[tuple[str, str]]:
    """Ways to split a run-together '5.1.416QAM' into (number, title), longest number first."""
    match = _NUMBER.match(raw)
    if not match:
        return []
    num, rest = match.group("num"), match.group("rest")
    out = []
    if num[-1].isalpha():  # '5.2aMaintenance' or '4.2MAC': the letter may be a suffix
        out.append((num, rest))
        num, rest = num[:-1], num[-1] + rest
    stem = num.rstrip("0123456789")
    last = num[len(stem):]
    out += [(stem + last[:keep], last[keep:] + rest) for keep in range(len(last), 0, -1)]
    return out


def _depth(number: str) -> int:
    return 1 if number.startswith("Annex") else number.count(".") + 1


def _follows(number: str, previous: list[str]) -> bool:
    """Whether `number` can come after the headings seen so far (successor, child, or '5.2a')."""
    if not previous:
        return number in ("0", "1") or number.startswith(("A", "B"))
    last = previous[-1]
    if number[-1].isalpha() and number[:-1] in previous:
        return True
    parts, last_parts = number.split("."), last.rstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ").split(".")
    if parts[:-1] == last.split(".") and parts[-1] in ("0", "1"):
        return True  # first child
    for cut in range(len(last_parts), 0, -1):  # successor at some level
        if parts[:-1] == last_parts[: cut - 1] and len(parts) == cut:
            try:
                return int(parts[-1]) == int(last_parts[cut - 1]) + 1
            except ValueError:
                return False
    return False


def parse_heading(raw: str, previous: list[str]) -> Heading:
    """A heading line's text -> number, title, depth; run-together numbers split by context."""
    raw = _EMPHASIS.sub("", _ATTRIBUTES.sub("", raw.replace("\\", ""))).strip()
    raw = " ".join(raw.replace("\t", " ").split())
    annex = _ANNEX.match(raw)
    if annex:
        kind = f" {annex.group('kind').lower()}" if annex.group("kind") else ""
        return Heading(number=f"Annex {annex.group('letter')}{kind}:", title=annex.group("title"), depth=1)
    candidates = [(n, t) for n, t in _number_candidates(raw)  # '1Scope' is not clause '1S'
                  if not n[-1].isalpha() or not t[:1].islower()]
    chosen = next((c for c in candidates if c[1][:1] in ("", " ")), None)  # already spaced
    chosen = chosen or next((c for c in candidates if _follows(c[0], previous)), None)
    if chosen is None:  # no context: no letter suffix, short last part, title not a digit
        plain = [c for c in candidates if not c[0][-1].isalpha()]
        chosen = next((c for c in plain if len(c[0].rsplit(".", 1)[-1]) <= 2
                       and not c[1][:1].isdigit()), None)
        chosen = chosen or (plain or candidates or [("", raw)])[0]
    number, title = chosen
    return Heading(number=number, title=title.strip(), depth=_depth(number) if number else 1)


def _heading_lines(lines: list[str]) -> dict[int, tuple[str, int]]:
    """Line index -> (heading text, lines it spans) for ATX, setext and plain-text headings."""
    found: dict[int, tuple[str, int]] = {}
    markdown = any(_ATX.match(ln) and ln.lstrip().startswith("#") for ln in lines[:4000])
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        atx = _ATX.match(line)
        if COVER_LINE.match(line) or COVER_TITLE_LINE.match(line):
            continue  # '# 3GPP TS 38.201 V19.0.0 ...' is the cover, not a clause
        if atx and line.lstrip().startswith("#"):
            found[i] = (atx.group(2), 1)
        elif (i + 1 < len(lines) and _SETEXT.match(lines[i + 1]) and len(lines[i + 1].strip()) >= 3
              and (i == 0 or not lines[i - 1].strip()) and not line.startswith("  ")
              and not line.lstrip().startswith(("|", "+", ">"))):
            found[i] = (line.strip(), 2)
        elif not markdown and _PLAIN_HEADING.match(line):
            found[i] = (line, 1)
        elif _PLAIN_ANNEX.match(line.strip()) and (i == 0 or not lines[i - 1].strip()):
            found[i] = (line.strip(), 1)
    return found


def _classify_front(paragraph: str) -> str:
    for reason, pattern in (("disclaimer", _DISCLAIMER), ("copyright", _COPYRIGHT),
                            ("trademarks", _TRADEMARK)):
        if pattern.search(paragraph):
            return reason
    if all(_ADDRESS.search(ln.strip(" >*\\")) for ln in paragraph.split("\n") if ln.strip(" >*\\")):
        return "address"
    return "cover"


def _count_front(lines: list[str], removed: dict[str, int], end: int) -> None:
    """Attribute the characters of the front matter (cover up to the Contents, or up to the
    body where there is no Contents) to reasons."""
    paragraph: list[str] = []
    for line in [*lines[:end], ""]:
        if line.strip() and not _RULE.match(line):
            paragraph.append(line)
        elif paragraph:
            text = "\n".join(paragraph)
            reason = _classify_front(text)
            removed[reason] = removed.get(reason, 0) + len(text) + 2
            paragraph = []


@dataclass(kw_only=True)
class _Parsed:
    lines: list[str]
    headings: dict[int, tuple[Heading, int]]


def _parse(text: str) -> _Parsed:
    lines = text.split("\n")
    headings: dict[int, tuple[Heading, int]] = {}
    seen: list[str] = []
    for index, (raw, span) in sorted(_heading_lines(lines).items()):
        heading = parse_heading(raw, seen)
        headings[index] = (heading, span)
        if heading.number and not heading.number.startswith("Annex"):
            seen.append(heading.number)
    return _Parsed(lines=lines, headings=headings)


def _body_start(parsed: _Parsed) -> tuple[int, int | None, int | None]:
    """(first body line, Contents line, Foreword line): the body starts at the first clause
    heading after the Contents and the Foreword."""
    lines, headings = parsed.lines, parsed.headings
    contents = next((i for i, ln in enumerate(lines[:20000])
                     if re.fullmatch(r"[#\s*]*(?:Table of )?Contents(?:\s*\{[^}]*\})?[\s*]*", ln, re.I)), None)
    foreword = next((i for i, (h, _) in headings.items() if i > (contents or -1)
                     and h.text.lower() == "foreword"), None)
    after = max(x for x in (contents, foreword, -1) if x is not None)
    for index, (heading, _) in sorted(headings.items()):  # 3GPP drafting rules: 1 Scope
        if index > after and (heading.text.lower() == "introduction" or heading.number == "0"
                              or (heading.number == "1" and heading.title.lower().startswith("scope"))):
            return index, contents, foreword
    for index, (heading, _) in sorted(headings.items()):
        if index <= after or _FRONT_TITLES.match(heading.text) or not heading.text:
            continue
        if contents is None and foreword is None and heading.number not in ("0", "1") and \
                heading.title.lower() not in ("scope", "introduction"):
            continue
        return index, contents, foreword
    return 0, contents, foreword


def clean_3gpp_markdown(text: str) -> CleanedSpec:
    """Drop cover, boilerplate, Contents, Foreword and the change-history annex; repair headings."""
    parsed = _parse(text)
    start, contents, foreword = _body_start(parsed)
    removed: dict[str, int] = {}
    lines = parsed.lines
    if start:
        has_contents = contents is not None and contents < start
        has_foreword = foreword is not None and foreword < start
        _count_front(lines, removed, contents if has_contents else foreword if has_foreword else start)
        if has_contents:
            cut = foreword if has_foreword and contents < foreword else start
            removed["contents"] = sum(len(ln) + 1 for ln in lines[contents:cut])
        else:
            cut = foreword if has_foreword else start
        if cut != start:
            removed["foreword"] = sum(len(ln) + 1 for ln in lines[cut:start])
    out: list[str] = []
    skip_depth: int | None = None
    skip_reason = ""
    i = start
    while i < len(lines):
        entry = parsed.headings.get(i)
        if entry is not None:
            heading, span = entry
            if skip_depth is not None and heading.depth <= skip_depth:
                skip_depth = None
            history = _CHANGE_HISTORY.search(heading.title) and not heading.number[:1].isdigit()
            if history or heading.text.lower() == "foreword":  # an annex, never a clause
                skip_depth = heading.depth
                skip_reason = "change_history" if history else "foreword"
            if skip_depth is None:
                out.append(heading.markdown)
                i += span
                continue
        if skip_depth is not None:
            removed[skip_reason] = removed.get(skip_reason, 0) + len(lines[i]) + 1
        else:
            out.append(lines[i])
        i += 1
    return CleanedSpec(text="\n".join(out), removed=removed)
