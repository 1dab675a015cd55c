"""Weighted telecom keyword lexicon and the relevance score computed from it.

The score is the summed weight of lexicon matches per 1,000 words, so long and short documents
are judged on the same scale; a floor on the word count keeps a single hit in a tiny document
from scoring as if the whole text were about telecom.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

DEFAULT_LEXICON_PATH = Path(__file__).with_name("telecom_keywords.txt")

# A word: letters/digits, possibly joined by - . / ' (keeps "S1-MME", "802.11ax", "HTTP/2").
WORD_PATTERN = re.compile(r"[A-Za-z0-9]+(?:[-./'][A-Za-z0-9]+)*'?")


def split_words(text: str) -> list[str]:
    """Words as the lexicon sees them (punctuation-only tokens are not words)."""
    return WORD_PATTERN.findall(text)


@dataclass(frozen=True, kw_only=True)
class TelecomLexicon:
    """Term -> weight tables; case-sensitive for terms with capitals or digits (acronyms)."""

    exact: dict[tuple[str, ...], float] = field(default_factory=dict)
    """Terms matched case-sensitively (any upper-case letter or digit), keyed by word tuple."""
    folded: dict[tuple[str, ...], float] = field(default_factory=dict)
    """All-lower-case terms, matched case-insensitively, keyed by lower-cased word tuple."""
    categories: dict[str, int] = field(default_factory=dict)
    """Number of terms per category (for documentation and tests)."""

    def __post_init__(self) -> None:
        # First word -> longest term starting with it, so most words cost two dict lookups.
        starts: dict[tuple[bool, str], int] = {}
        for folded, table in ((False, self.exact), (True, self.folded)):
            for key in table:
                starts[(folded, key[0])] = max(starts.get((folded, key[0]), 0), len(key))
        object.__setattr__(self, "_starts", starts)

    def longest_from(self, word: str, lowered: str) -> int:
        """Length in words of the longest term that could start at `word` (0: none)."""
        return max(self._starts.get((False, word), 0), self._starts.get((True, lowered), 0))

    def __len__(self) -> int:
        return len(self.exact) + len(self.folded)


def _parse_line(line: str, path: Path, lineno: int) -> tuple[float, str]:
    parts = line.split(None, 1)
    try:
        weight = float(parts[0])
    except (ValueError, IndexError):
        weight = float("nan")
    if len(parts) != 2 or not weight > 0:
        raise ValueError(
            f"{path}:{lineno}: expected 'WEIGHT TERM' with a positive weight, got {line!r}"
        )
    return weight, parts[1].strip()


def parse_lexicon(path: str | Path) -> TelecomLexicon:
    """Read a lexicon file: '[category]' section lines, then 'WEIGHT TERM' lines; '#' comments."""
    path = Path(path)
    exact: dict[tuple[str, ...], float] = {}
    folded: dict[tuple[str, ...], float] = {}
    categories: dict[str, int] = {}
    category = "uncategorised"
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            category = line[1:-1].strip()
            continue
        weight, term = _parse_line(line, path, lineno)
        words = tuple(split_words(term))
        if not words:
            raise ValueError(f"{path}:{lineno}: term {term!r} has no word characters")
        case_sensitive = term != term.lower() or any(ch.isdigit() for ch in term)
        table, key = (exact, words) if case_sensitive else (folded, tuple(w.lower() for w in words))
        if key in table:
            raise ValueError(f"{path}:{lineno}: duplicate term {term!r}; keep one line per term")
        table[key] = weight
        categories[category] = categories.get(category, 0) + 1
    if not exact and not folded:
        raise ValueError(f"{path}: lexicon has no terms")
    return TelecomLexicon(exact=exact, folded=folded, categories=categories)


@lru_cache(maxsize=8)
def load_lexicon(path: str | None = None) -> TelecomLexicon:
    """Load (and cache per process) the lexicon at `path`, or the project's own by default."""
    return parse_lexicon(path or DEFAULT_LEXICON_PATH)


def keyword_hits(words: list[str], lexicon: TelecomLexicon) -> dict[str, float]:
    """Matched terms -> summed weight; the longest term starting at a word wins."""
    hits: dict[str, float] = {}
    lowered = [w.lower() for w in words]
    i = 0
    while i < len(words):
        step = 1
        n_max = lexicon.longest_from(words[i], lowered[i])
        for n in range(min(n_max, len(words) - i), 0, -1):
            weight = lexicon.exact.get(tuple(words[i : i + n]))
            if weight is None:
                weight = lexicon.folded.get(tuple(lowered[i : i + n]))
            if weight is not None:
                term = " ".join(words[i : i + n])
                hits[term] = hits.get(term, 0.0) + weight
                step = n
                break
        i += step
    return hits


def relevance_score(text: str, lexicon: TelecomLexicon, min_words: int = 200) -> float:
    """Summed lexicon weight per 1,000 words (word count floored at `min_words`)."""
    words = split_words(text)
    total = sum(keyword_hits(words, lexicon).values())
    return 1000.0 * total / max(len(words), min_words)
