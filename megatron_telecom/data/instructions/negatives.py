"""Hard negatives for preference pairs: the answer of another term that looks alike.

For a row (term, answer) of a task, the rejected answer is the answer of another row of the same
task (and identification direction), drawn first from the same document, then from the same
family (a 3GPP series such as 38, or all RFCs). Among the allowed candidates the one that looks
most like the row wins: the longest common beginning of the terms (same letters: AMF / AUSF), then
the same first word of the answers, then the longest common beginning of the answers; ties go to
the earliest candidate, so the choice is deterministic.

A candidate is never allowed when it would not be wrong or would hold the truth:
- its term is the row's term (another document's expansion of the same abbreviation may be right);
- its answer equals the row's answer, or contains it (case and whitespace ignored).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from megatron_telecom.data.instructions.vocabulary import collapse

FAMILY_CANDIDATES = 500
"""Family candidates scored per row at most (those sharing the term's first character, in order)."""


@dataclass(frozen=True)
class Choice:
    """The rejected answer chosen for a row: the index of the row it comes from, and the pool."""

    index: int
    pool: str
    """same_document or same_family."""


def _key(text: str) -> str:
    return collapse(text).lower()


@dataclass(frozen=True)
class Candidate:
    """A row as the negative search compares it: term and answer, and their normalised forms."""

    term: str
    answer: str
    term_key: str
    answer_key: str
    first_word: str

    @classmethod
    def of(cls, term: str, answer: str) -> Candidate:
        answer_key = _key(answer)
        return cls(term, answer, _key(term), answer_key, answer_key.split(" ", 1)[0])


def allowed(term: str, answer: str, other_term: str, other_answer: str) -> bool:
    """Whether ``other_answer`` may be the rejected answer of (term, answer)."""
    return _allowed(Candidate.of(term, answer), Candidate.of(other_term, other_answer))


def _allowed(row: Candidate, other: Candidate) -> bool:
    return other.term_key != row.term_key and row.answer_key not in other.answer_key


def _likeness(row: Candidate, other: Candidate) -> tuple[int, int, int]:
    return (len(os.path.commonprefix([row.term_key, other.term_key])), int(row.first_word == other.first_word),
            len(os.path.commonprefix([row.answer_key, other.answer_key])))


def best_negative(row: Candidate, rows: Sequence[Candidate], candidates: Sequence[int]) -> int | None:
    """Index (into ``rows``) of the most alike allowed candidate for ``row``, or None."""
    best, best_score = None, None
    for i in candidates:
        other = rows[i]
        if not _allowed(row, other):
            continue
        score = _likeness(row, other)
        if best_score is None or score > best_score:
            best, best_score = i, score
    return best


class NegativePools:
    """Rows grouped by (pool key, document) and by (pool key, family, first character of the term)."""

    def __init__(self) -> None:
        self.rows: list[Candidate] = []
        self.by_document: dict[tuple[str, str], list[int]] = {}
        self.by_family: dict[tuple[str, str, str], list[int]] = {}

    def add(self, key: str, document: str, family: str, term: str, answer: str) -> int:
        """Register a row; returns its index."""
        index = len(self.rows)
        self.rows.append(Candidate.of(term, answer))
        self.by_document.setdefault((key, document), []).append(index)
        self.by_family.setdefault((key, family, term[:1].lower()), []).append(index)
        return index

    def choose(self, index: int, key: str, document: str, family: str) -> Choice | None:
        """The hard negative of row ``index``: same document first, then the same family."""
        row = self.rows[index]
        for pool, candidates in (("same_document", self.by_document.get((key, document), [])),
                                 ("same_family", self.by_family.get((key, family, row.term[:1].lower()), [])
                                  [:FAMILY_CANDIDATES])):
            found = best_negative(row, self.rows, [i for i in candidates if i != index])
            if found is not None:
                return Choice(found, pool)
        return None
