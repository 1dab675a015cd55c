"""Split a specification's Markdown into clause-level documents of at most about `max_chars`.

Filters and deduplication then judge a clause, not a 1 MB file: one repetitive table or ASN.1
module can go without taking the whole specification with it. Consecutive clauses are packed
together up to the size (a piece under 1/8 of the size, such as a heading before a long table or
'5.6 Void', joins its neighbour even past the size, so it is never judged alone); a clause
longer than the size is cut between paragraphs, and a paragraph (a long table) between lines,
with a pipe table's header row repeated in every piece. ASN.1 (`-- ASN1START` ... `-- ASN1STOP`)
is never packed with prose: it becomes documents of its own, `clause_kind: asn1`; so do pieces
of at least half the size that are mostly table lines (`clause_kind: table`). Both are kept, and near-deduplication leaves
them to exact dedup (pipeline.py): pieces of one long table resemble each other by construction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEADING = re.compile(r"^(#{1,6}) +(.+)$")
_ASN1 = re.compile(r"^[ \t]*\\?-- ?ASN1START.*?^[ \t]*\\?-- ?ASN1STOP[^\n]*$", re.M | re.S)


@dataclass(kw_only=True)
class Clause:
    """One piece of a specification and where it sits in the clause tree."""

    text: str
    clause: str
    """Number (or title) of the first clause in the piece: '5.1.4', 'Annex B (normative)'."""
    clause_path: str
    """Headings from the top of the tree to the first clause, ' > '-separated."""
    clause_end: str
    """Number (or title) of the last clause in the piece."""
    kind: str = "text"
    """'text' (prose, short tables), 'table' (mostly table lines) or 'asn1'."""


_TABLE_RULE = re.compile(r"^\|?[ :\-|]+\|?$")
# pipe, grid, pandoc simple and HTML tables (pandoc writes complex tables as HTML)
_TABLE_LINE = re.compile(r"^(?:\||\+[-=+:]|  |[ \t]*-{3,}|\s*</?(?:table|thead|tbody|tr|td|th|col)\b)")


def _clause_id(heading_text: str) -> str:
    first = heading_text.split(" ", 1)[0]
    if heading_text.startswith("Annex "):
        return heading_text.split(":", 1)[0] if ":" in heading_text else heading_text
    return first if any(ch.isdigit() for ch in first) else heading_text


def _sections(text: str) -> list[tuple[str, str, str]]:
    """(clause id, clause path, text) per heading, the text running to the next heading."""
    out: list[tuple[str, str, str]] = []
    stack: list[str] = []
    current: list[str] = []
    clause, path = "", ""
    for line in text.split("\n"):
        match = _HEADING.match(line)
        if match:
            if "\n".join(current).strip():
                out.append((clause, path, "\n".join(current).strip("\n")))
            level, title = len(match.group(1)), match.group(2).strip()
            stack = [*stack[: level - 1], title]
            clause, path, current = _clause_id(title), " > ".join(stack), [line]
        else:
            current.append(line)
    if "\n".join(current).strip():
        out.append((clause, path, "\n".join(current).strip("\n")))
    return out


def _cut_lines(block: str, max_chars: int) -> list[str]:
    """A block too long for one piece, cut between lines; a pipe table repeats its header."""
    lines = block.split("\n")
    header: list[str] = []
    if len(lines) > 2 and lines[0].lstrip().startswith("|") and _TABLE_RULE.match(lines[1].strip()):
        header = lines[:2]
    pieces, current, size = [], [], 0
    for line in lines:
        if current and size + len(line) + 1 > max_chars and len(current) > len(header):
            pieces.append("\n".join(current))
            current, size = list(header), sum(len(h) + 1 for h in header)
        current.append(line)
        size += len(line) + 1
    if current:
        pieces.append("\n".join(current))
    return pieces


def _cut(text: str, max_chars: int) -> list[str]:
    """Cut a long section between paragraphs, and a long paragraph between lines."""
    if len(text) <= max_chars:
        return [text]
    pieces: list[str] = []
    current = ""
    for paragraph in text.split("\n\n"):
        parts = _cut_lines(paragraph, max_chars) if len(paragraph) > max_chars else [paragraph]
        for part in parts:
            if current and len(current) + 2 + len(part) > max_chars:
                pieces.append(current)
                current = ""
            current = f"{current}\n\n{part}" if current else part
    if current:
        pieces.append(current)
    return pieces


def _mostly_table(piece: str) -> bool:
    lines = [line for line in piece.split("\n") if line.strip()]
    return sum(bool(_TABLE_LINE.match(line)) for line in lines) > 0.6 * len(lines)


def _units(text: str, max_chars: int) -> list[Clause]:
    """Sections -> pieces no longer than max_chars (except one over-long line), ASN.1 apart."""
    units: list[Clause] = []
    for clause, path, section in _sections(text):
        start = 0
        spans = [(m.start(), m.end()) for m in _ASN1.finditer(section)]
        for begin, end in [*spans, (len(section), len(section))]:
            for asn1, chunk in ((False, section[start:begin]), (True, section[begin:end])):
                for piece in _cut(chunk.strip("\n"), max_chars) if chunk.strip() else []:
                    big = len(piece) >= max_chars // 2  # small tables stay with their prose
                    kind = "asn1" if asn1 else "table" if big and _mostly_table(piece) else "text"
                    units.append(Clause(text=piece, clause=clause, clause_path=path,
                                        clause_end=clause, kind=kind))
            start = end
    return units


def split_clauses(text: str, max_chars: int) -> list[Clause]:
    """The spec as pieces of at most about max_chars, consecutive clauses packed together."""
    units = _units(text, max_chars) if max_chars > 0 and len(text) > max_chars else []
    if not units:
        sections = _sections(text)
        first = sections[0] if sections else ("", "", text)
        return [Clause(text=text, clause=first[0], clause_path=first[1],
                       clause_end=sections[-1][0] if sections else "")]
    packed: list[Clause] = []
    small = max_chars // 8  # a heading alone, a 'Void' clause: joins its neighbour, whatever kind
    for unit in units:
        last = packed[-1] if packed else None
        size = len(last.text) + 2 + len(unit.text) if last else 0
        tiny = last is not None and min(len(last.text), len(unit.text)) < small
        if last and (size <= max_chars and last.kind == unit.kind or tiny and size <= max_chars + small):
            if len(unit.text) > len(last.text):
                last.kind = unit.kind
            last.text = f"{last.text}\n\n{unit.text}"
            last.clause_end = unit.clause_end
        else:
            packed.append(unit)
    return packed
