"""Knowledge that a curated document already states with its answer: the abbreviation and definition
lists of 3GPP clause 3 (and TR 21.905), RFC terminology / acronym sections, titles, scopes and abstracts.

A curated record (tools/curate_corpus.py) is a 3GPP clause document (Markdown, ATX headings
``### 3.3 Abbreviations``) or an RFC (plain text, headings at column 0, body indented). Its sections
are found by heading; a *vocabulary section* is one whose title starts with Definitions, Terms,
Terminology, Abbreviations, Acronyms, Glossary or Vocabulary (or ends with one of the last four;
for 3GPP also any sub-clause of clause 3). Inside it, an entry is one of the forms seen in real text:

- ``AMF<TAB or 2+ spaces>Access and Mobility Management Function`` (continuation lines indented
  further, RFC 3031), ``ABBR - Expansion``, or in an abbreviation clause ``AMF Access and ...``
  (one space) and ``AMFAccess and ...`` (separator lost in conversion: `split_abbreviation`);
- a pipe-table row ``| AMF | Access ... |`` or ``| AMF Access ... |`` (TSpec-LLM);
- ``term: definition`` (``**term**:``, bullets and quotes allowed; the paragraph is the definition);
- a term alone on a line (``o "DHCP client"``) with its definition indented below or in the next
  paragraph (RFC 2131, RFC 2328).

Every answer is a span of the record's text with its runs of whitespace collapsed to one space
(`found_verbatim` checks this); nothing is rewritten. Candidates that fail a check are returned
as `Rejected` with a reason, so the builder can count them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from megatron_telecom.data.curation.clauses import _sections as markdown_sections

MAX_ABBREVIATION_CHARS = 20
MAX_EXPANSION_WORDS = 16
MIN_DEFINITION_WORDS = 3
MAX_DEFINITION_WORDS = 150
MAX_TERM_WORDS = 8

_VOCAB_START = re.compile(r"^(definitions?|terms|terminology|abbreviations?|acronyms?|glossary|vocabulary)\b", re.I)
_VOCAB_END = re.compile(r"\b(terminology|abbreviations|acronyms|glossary)$", re.I)
_ABBREVIATION_TITLE = re.compile(r"\b(abbreviations?|acronyms?)\b", re.I)
_DEFINITION_TITLE = re.compile(r"\b(definitions?|terms|terminology|glossary|vocabulary)\b", re.I)
_NUMBER = re.compile(r"^(?:Annex\s+[A-Z]+[^ ]*|(?:[A-Z]\.)?\d+(?:\.\d+)*\.?|[A-Z](?:\.\d+)+\.?)\s+")
_RFC_HEADING = re.compile(r"^(?:(?:Appendix\s+)?[A-Z]\.(?:\d+\.?)*|\d+(?:\.\d+)*\.?)\s+[A-Za-z].*$")
_BOILERPLATE = re.compile(
    r"^\W*(for the purposes|the following|the key words|this (section|document|memo|specification)|"
    r"in this (document|memo|specification)|a term defined|an abbreviation defined|terms (used|defined)|"
    r"abbreviations (used|defined)|void\b|editor'?s note|note\s*\d*[a-z]?\b|example\b|figure\b|table\b)", re.I)
_SPACED = re.compile(r"^(?P<indent>[ \t]*)(?P<term>\S(?:.*?\S)??)(?:[ \t]+[-\u2013][ \t]+|\t+| {2,})(?P<text>\S.*)$")
_COLON = re.compile(r"^(?P<indent>[ \t]*)(?:[o\-*\u2022]\s+)?\**\"?(?P<term>[^:\"*|\n]{1,100}?)\"?\**\s*:(?:\*\*)?\s+"
                    r"(?P<text>\S.*)$")
_ALONE = re.compile(r"^(?P<indent>[ \t]*)(?:[o\-*\u2022]\s+)?\**\"?(?P<term>[^:\".\n]{1,80}?)\"?\**$")
_TABLE_RULE = re.compile(r"^\|?[ :\-|+=]+\|?$")
_BULLETS = ("o", "-", "*", "\u2022")
_MAY_HOLD = re.compile(r"^#{1,6} +(?:1 +Scope|3[ .]|\S+ +(?:Definitions|Terms|Terminology|Abbreviations|Acronyms|Glossary"
                       r"|Vocabulary))", re.M | re.I)
_GLUED = re.compile(r".[A-Z][a-z]{2,}")
_CAPITALISED_WORD = re.compile(r"^[A-Z][a-z]{2,}$")
_WS = re.compile(r"\s+")
# a definition that only points elsewhere ('as defined in TS 38.300 [2].', 'See clause 5.')
_REFERENCE_ONLY = re.compile(r"^(?:as )?(?:defined|specified|described) in\b.{0,60}$|^see\b.{0,60}$", re.I)
# the common beginning of 3GPP titles, left out of the title a row asks about
_TITLE_PREFIX = re.compile(r"^3rd Generation Partnership Project;\s*(?:Technical Specification Group [^;]*;\s*)?", re.I)


def collapse(text: str) -> str:
    """Runs of whitespace as one space, ends stripped: the form answers are compared in."""
    return _WS.sub(" ", text).strip()


@dataclass(frozen=True)
class Entry:
    """One question the document answers: its task, the term asked about, the answer and clause."""

    task: str
    """abbreviation, definition or spec_identification."""
    term: str
    """The abbreviation or term asked about (identification: the title or scope text)."""
    answer: str
    clause: str
    variant: str = ""
    """spec_identification: title_to_spec, spec_to_title, scope_to_spec or spec_to_scope."""


@dataclass(frozen=True)
class Rejected:
    """A candidate entry that failed a check, and why (counted by the builder)."""

    reason: str
    clause: str
    detail: str


@dataclass(frozen=True)
class Section:
    """A headed part of a record: its clause number, title (without the number) and body lines."""

    clause: str
    title: str
    lines: list[str]


def document_name(record: dict) -> str | None:
    """'3GPP TS 38.201' or 'RFC 3031' from a curated record's metadata, None for other sources."""
    if record.get("source") == "3gpp" and record.get("spec_number"):
        return f"3GPP {record.get('spec_type') or 'TS'} {record['spec_number']}"
    doc_id = str(record.get("doc_id") or "")
    if record.get("source") == "rfc" and doc_id.lower().startswith("rfc") and doc_id[3:].isdigit():
        return f"RFC {int(doc_id[3:])}"
    return None


def document_family(record: dict) -> str:
    """The pool hard negatives are drawn from after the document itself: a 3GPP series, or 'rfc'."""
    if record.get("source") == "3gpp":
        return f"3gpp-{record.get('spec_series') or str(record.get('spec_number', ''))[:2]}"
    return str(record.get("source") or "other")


def _split_title(heading: str) -> tuple[str, str]:
    match = _NUMBER.match(heading)
    return (match.group(0).strip().rstrip("."), heading[match.end():].strip()) if match else ("", heading.strip())


def markdown_record_sections(record: dict) -> list[Section]:
    """Sections of a 3GPP clause document; text before its first heading continues the clause the
    record starts in (``clause_path``'s last heading)."""
    out = []
    for clause, _path, text in markdown_sections(record.get("text", "")):
        lines = text.split("\n")
        if lines and lines[0].startswith("#"):
            number, title = _split_title(lines[0].lstrip("#").strip())
            lines = lines[1:]
        else:
            number, title = _split_title(str(record.get("clause_path", "")).split(" > ")[-1])
        out.append(Section(number or clause, title, lines))
    return out


def rfc_sections(text: str) -> list[Section]:
    """Sections of an RFC's text: a numbered line at column 0, or a short unpunctuated line at
    column 0 between blank lines ('Abstract', 'Terminology'), starts one."""
    lines = text.split("\n")
    out: list[Section] = []
    current = Section("", "", [])
    for i, line in enumerate(lines):
        alone = (line[:1].isupper() and len(line.split()) <= 8 and not line.rstrip().endswith((".", ",", ";", ":"))
                 and (i == 0 or not lines[i - 1].strip()) and (i + 1 == len(lines) or not lines[i + 1].strip()))
        if line[:1].strip() and (_RFC_HEADING.match(line) or alone):
            out.append(current)
            current = Section(*_split_title(line.strip()), [])
        else:
            current.lines.append(line)
    out.append(current)
    return [s for s in out if s.title or any(x.strip() for x in s.lines)]


def vocabulary_kind(section: Section, source: str) -> str | None:
    """'abbreviation', 'definition' or 'mixed' for a vocabulary section, else None."""
    title = section.title.strip("*: ")
    if title.lower().startswith("void"):
        return None
    if source == "3gpp":  # clause 3 and its sub-clauses, or a top-level vocabulary clause (TR 21.905)
        top = section.clause.split(".")[0]
        if not (top == "3" and "." in section.clause or "." not in section.clause and _VOCAB_START.match(title)):
            return None
    elif not (_VOCAB_START.match(title) or _VOCAB_END.search(title)):
        return None
    abbreviations, definitions = bool(_ABBREVIATION_TITLE.search(title)), bool(_DEFINITION_TITLE.search(title))
    if abbreviations and definitions:
        return "mixed"
    return "abbreviation" if abbreviations else "definition" if definitions else None


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _paragraphs(lines: list[str]) -> list[list[str]]:
    out: list[list[str]] = []
    current: list[str] = []
    for line in lines:
        if line.strip():
            current.append(line)
        elif current:
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


def _table_cells(line: str) -> list[str] | None:
    """Cells of a pipe-table row; [] for a rule line; None when the line is no table row."""
    stripped = line.strip()
    if not stripped.startswith("|"):
        return None
    if _TABLE_RULE.match(stripped):
        return []
    return [c.strip() for c in stripped.strip("|").split("|") if c.strip()]


@dataclass
class _Candidate:
    term: str
    text: list[str]
    form: str  # spaced, first_word, cells, colon, alone
    indent: int = 0


def _line_entry(line: str, kind: str, run_together: bool = False) -> _Candidate | None:
    """The entry a single line starts, by form (see the module docstring)."""
    cells = _table_cells(line)
    if cells is not None:
        if len(cells) >= 2:
            return _Candidate(cells[0].strip("*"), [" ".join(cells[1:])], "cells")
        if not cells:
            return None
        line = cells[0]
    colon = _COLON.match(line)
    if colon and kind != "abbreviation" and len(colon.group("term").split()) <= MAX_TERM_WORDS:
        return _Candidate(colon.group("term").strip(), [colon.group("text")], "colon", _indent(line))
    spaced = _SPACED.match(line)
    if spaced and not spaced.group("term").endswith((".", ",", ";", ":")) and spaced.group("term") not in _BULLETS \
            and (kind != "definition" or len(spaced.group("term").split()) <= MAX_TERM_WORDS):
        return _Candidate(spaced.group("term").strip("*\" "), [spaced.group("text")], "spaced", _indent(line))
    if kind in ("abbreviation", "mixed"):
        split = split_abbreviation(line.strip().strip("*"), run_together)
        if split is not None:
            return _Candidate(split[0], [split[1]], "first_word", _indent(line))
        if line.strip():  # no split fits: counted as no_expansion / not_an_abbreviation
            return _Candidate(line.strip(), [], "unsplit", _indent(line))
    return None


def _initials(text: str) -> set[int]:
    """Positions in ``text`` that start a word (after a space, a hyphen or a slash)."""
    return {i for i, c in enumerate(text) if c.isalnum() and (i == 0 or text[i - 1] in " -/(")}


def _alignment(abbreviation: str, expansion: str) -> tuple[bool, int, int]:
    """How the abbreviation's letters and digits follow the expansion, in order (case ignored):
    (all found, how many at a word start, minus how many are missing)."""
    starts, lower = sorted(_initials(expansion)), expansion.lower()
    start_set = set(starts)
    position, found, at_start = 0, 0, 0
    wanted = [c.lower() for c in abbreviation if c.isalnum()]
    for c in wanted:
        initial = next((i for i in starts if i >= position and lower[i] == c), None)
        anywhere = lower.find(c, position)
        if initial is None and anywhere < 0:
            continue
        at = anywhere if initial is None else initial
        found, at_start, position = found + 1, at_start + (at in start_set), at + 1
    return found == len(wanted), at_start, found - len(wanted)


def is_run_together(lines: list[str]) -> bool:
    """Whether a section's abbreviation lines lost their separator in conversion: at least 30% of
    them have a capitalised word glued to the first token ('ADRFAnalytics', 'UEUser Equipment')."""
    firsts = [line.split()[0] for line in lines if line.strip() and not line.lstrip().startswith("|")]
    glued = sum(bool(_GLUED.search(token)) for token in firsts)
    return bool(firsts) and glued >= 0.3 * len(firsts)


def split_abbreviation(line: str, run_together: bool = False) -> tuple[str, str] | None:
    """(abbreviation, expansion) of an abbreviation line separated by one space, or whose separator
    was lost in conversion (``run_together``: 'ADRFAnalytics Data Repository Function', '5G-AN
    PDB5G Access Network Packet Delay Budget').

    Separated by a space: the first word, unless the expansion would start with another
    abbreviation-like word ('5G DDNMF 5G Direct ...'), which is searched like a run-together line.
    Search: of the splits in the first 30 characters, the one whose expansion starts with a capital
    or digit and whose initials spell the abbreviation best; None when no split fits."""
    words = line.split(None, 1)
    if not run_together and len(words) == 2 and _looks_like_abbreviation(words[0]) \
            and any(c.islower() for c in words[1].split()[0]):
        return words[0], words[1]
    best, best_score = None, None
    for k in range(1, min(len(line), 30)):
        term, text = line[:k].strip(), line[k:].strip()
        if not term or not text or not text[0].isalnum() or (line[k - 1] == " " and line[k] == " "):
            continue
        if not _looks_like_abbreviation(term.replace(" ", "")) or len(term.split()) > 3:
            continue
        complete, at_start, missing = _alignment(term, text)
        score = (text[0].isupper() or text[0].isdigit(), complete, at_start, missing, line[k - 1] == " " or line[k] == " ", k)
        if at_start and (best_score is None or score > best_score):
            best, best_score = (term, text), score
    return best


def _section_candidates(section: Section, kind: str) -> Iterator[_Candidate | Rejected]:
    """Entry candidates of a vocabulary section, in order; boilerplate paragraphs are skipped."""
    paragraphs = _paragraphs(section.lines)
    run_together = is_run_together(section.lines)
    i = 0
    while i < len(paragraphs):
        paragraph = paragraphs[i]
        i += 1
        first = paragraph[0]
        if _BOILERPLATE.match(first.strip().strip("*|")):
            continue
        alone = _ALONE.match(first) if _SPACED.match(first) is None else None
        if alone and kind == "definition" and len(alone.group("term").split()) <= MAX_TERM_WORDS \
                and _table_cells(first) is None:
            rest = paragraph[1:]
            if rest and _indent(rest[0]) > _indent(first):  # definition indented below (RFC 2328)
                yield _Candidate(alone.group("term").strip(), rest, "alone")
                continue
            if not rest and i < len(paragraphs) and _line_entry(paragraphs[i][0], kind, run_together) is None:
                yield _Candidate(alone.group("term").strip(), paragraphs[i], "alone")  # RFC 2131
                i += 1
                continue
        current: _Candidate | None = None
        started_any = False
        for line in paragraph:
            started = _line_entry(line, kind, run_together)
            continuation = current is not None and (
                _indent(line) > current.indent and current.form in ("spaced", "colon")
                or current.form == "colon" and started is None)
            if continuation:
                current.text.append(line)
                continue
            if current is not None:
                yield current
            current = started
            started_any = started_any or started is not None
        if current is not None:
            yield current
        if not started_any and any(_table_cells(line) != [] for line in paragraph):
            yield Rejected("not_an_entry", section.clause, collapse(first)[:120])


def _looks_like_abbreviation(term: str) -> bool:
    return (0 < len(term) <= MAX_ABBREVIATION_CHARS and " " not in term and any(c.isupper() or c.isdigit() for c in term)
            and not _CAPITALISED_WORD.match(term) and term[0].isalnum())


def _holds_entry(expansion: str) -> bool:
    """Whether an expansion holds a second entry ('Frequency Range IFF Indirect Far Field'): a word
    of capitals after its first word whose letters are the initials of the words that follow it."""
    words = expansion.split()
    for j, word in enumerate(words[1:], 1):
        if len(word) >= 2 and word.isalpha() and word.isupper():
            following = words[j + 1:j + 1 + len(word)]
            if len(following) == len(word) and all(w[:1].lower() == c for w, c in zip(following, word.lower())):
                return True
    return False


def _checked(candidate: _Candidate, kind: str, clause: str) -> Entry | Rejected:
    """The candidate as an Entry of its task, or why it is rejected."""
    term, text = collapse(candidate.term), collapse(" ".join(candidate.text))
    if kind == "mixed":
        kind = "definition" if candidate.form in ("colon", "alone") else "abbreviation"
    if candidate.form == "unsplit":
        return Rejected("no_expansion" if len(term.split()) == 1 else "not_an_abbreviation", clause, term[:120])
    if not text or text.lower().rstrip(".") == "void":
        return Rejected("empty_answer", clause, term)
    if kind == "abbreviation":
        if not _looks_like_abbreviation(term):
            return Rejected("not_an_abbreviation", clause, f"{term} {text}"[:120])
        if re.search(r"\S(\t| {2,})\S", " ".join(line.strip() for line in candidate.text)) or _holds_entry(text):
            return Rejected("run_together_entries", clause, f"{term} {text}"[:120])
        if len(text.split()) > MAX_EXPANSION_WORDS:
            return Rejected("expansion_too_long", clause, f"{term} {text}"[:120])
        if text.lower() == term.lower():
            return Rejected("answer_is_term", clause, term)
        return Entry("abbreviation", term, text, clause)
    if len(term.split()) > MAX_TERM_WORDS:
        return Rejected("term_too_long", clause, term[:120])
    if any(c in term for c in "[]\\") or term.startswith("#") or term.lower().startswith("note"):  # ref, escape, code
        return Rejected("malformed_term", clause, term[:120])
    if _REFERENCE_ONLY.match(text):
        return Rejected("reference_only", clause, f"{term}: {text}"[:120])
    words = len(text.split())
    if words < MIN_DEFINITION_WORDS:
        return Rejected("definition_too_short", clause, f"{term}: {text}"[:120])
    if words > MAX_DEFINITION_WORDS:
        return Rejected("definition_too_long", clause, f"{term}: {text}"[:120])
    return Entry("definition", term, text, clause)


def record_sections(record: dict) -> list[Section]:
    """Sections of a 3GPP clause document or RFC; none for a 3GPP piece that holds neither clause
    1 nor 3 nor a vocabulary heading (one regex search, so a large corpus is not parsed whole)."""
    source = record.get("source")
    if source == "rfc":
        return rfc_sections(record.get("text", ""))
    if source != "3gpp":
        return []
    text = record.get("text", "")
    if not (str(record.get("clause_path", "")).startswith("3") or _MAY_HOLD.search(text)):
        return []
    return markdown_record_sections(record)


def vocabulary_entries(record: dict, sections: list[Section] | None = None) -> Iterator[Entry | Rejected]:
    """Abbreviation and definition entries of one curated record (3GPP or RFC), in order."""
    source = record.get("source")
    for section in record_sections(record) if sections is None else sections:
        kind = vocabulary_kind(section, source)
        if kind is None:
            continue
        for candidate in _section_candidates(section, kind):
            yield candidate if isinstance(candidate, Rejected) else _checked(candidate, kind, section.clause)


def _first_paragraph(section: Section) -> str:
    for paragraph in _paragraphs(section.lines):
        text = collapse(" ".join(paragraph))
        if len(text.split()) >= MIN_DEFINITION_WORDS and not text.startswith(("|", "#")):
            return text
    return ""


def identification_entries(record: dict, sections: list[Section] | None = None) -> Iterator[Entry | Rejected]:
    """Title <-> document and scope (3GPP clause 1) / abstract (RFC) <-> document entries; the
    title comes once per document (the builder keeps the first record of each)."""
    name = document_name(record)
    if name is None:
        return
    title = _TITLE_PREFIX.sub("", collapse(str(record.get("title") or "")))
    if title and record.get("clause_index", 0) in (0, None):
        if len(title.split()) < 2:
            yield Rejected("title_too_short", "title", title)
        else:
            yield Entry("spec_identification", title, name, "title", "title_to_spec")
            yield Entry("spec_identification", name, title, "title", "spec_to_title")
    source = record.get("source")
    for section in record_sections(record) if sections is None else sections:
        wanted = section.title.lower() == ("scope" if source == "3gpp" else "abstract")
        if not wanted or (source == "3gpp" and section.clause != "1"):
            continue
        scope = _first_paragraph(section)
        if not scope:
            yield Rejected("empty_scope", section.clause or section.title, name)
        elif len(scope.split()) > MAX_DEFINITION_WORDS:
            yield Rejected("scope_too_long", section.clause or section.title, name)
        else:
            clause = section.clause or section.title
            yield Entry("spec_identification", scope, name, clause, "scope_to_spec")
            yield Entry("spec_identification", name, scope, clause, "spec_to_scope")


def record_entries(record: dict) -> Iterator[Entry | Rejected]:
    """Every entry of a record: its vocabulary, then its identification entries."""
    sections = record_sections(record)
    yield from vocabulary_entries(record, sections)
    yield from identification_entries(record, sections)


def found_verbatim(answer: str, record: dict, collapsed_text: str | None = None) -> bool:
    """Whether ``answer`` is a span of the record's text (whitespace collapsed; ``collapsed_text``:
    that text already collapsed), or of the metadata the curation read from its cover / first page
    (title, document name)."""
    needle = collapse(answer)
    text = collapse(record.get("text", "")) if collapsed_text is None else collapsed_text
    return bool(needle) and (needle in text or needle in collapse(str(record.get("title") or ""))
                             or needle == document_name(record))
