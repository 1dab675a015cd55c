"""Text normalisation shared by every source, and an offline word tokenizer for datatrove.

datatrove's English word tokenizer is spaCy's; this project keeps curation free of model or
word-list downloads, so the Gopher filters and MinHash get `OfflineWordTokenizer` instead.
"""

from __future__ import annotations

import re

import ftfy
from datatrove.utils.word_tokenizers import WordTokenizer

_TRAILING_SPACE = re.compile(r"[ \t]+\n")
_MANY_BLANK_LINES = re.compile(r"\n{3,}")
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # keeps \t and \n
_FTFY_CONFIG = ftfy.TextFixerConfig(uncurl_quotes=False, fix_latin_ligatures=False)


def repair_unicode(text: str) -> str:
    """Fix mojibake and odd Unicode (ftfy), normalise to NFC, drop the BOM and control chars."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\f", "\n")
    text = ftfy.fix_text(text, config=_FTFY_CONFIG)
    return _CONTROL_CHARS.sub("", text.replace("\ufeff", ""))


def normalize_whitespace(text: str) -> str:
    """Strip trailing spaces, keep indentation (diagrams, tables), collapse runs of blank lines."""
    text = _TRAILING_SPACE.sub("\n", text.replace("\u00a0", " ") + "\n")
    return _MANY_BLANK_LINES.sub("\n\n", text).strip("\n")


def clean_text(text: str) -> str:
    """Unicode repair then whitespace normalisation: the cleaning every document gets."""
    return normalize_whitespace(repair_unicode(text))


_WORD = re.compile(r"\w+(?:['’.\-]\w+)*", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])|\n{2,}")


class OfflineWordTokenizer(WordTokenizer):
    """Regex word/sentence tokenizer: no model download; punctuation-only tokens are not words."""

    def __init__(self, language: str = "en"):
        super().__init__(language)

    def word_tokenize(self, text: str) -> list[str]:
        return _WORD.findall(text)

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        spans, start = [], 0
        for match in _SENTENCE_END.finditer(text):
            if text[start : match.start()].strip():
                spans.append((start, match.start()))
            start = match.end()
        if text[start:].strip():
            spans.append((start, len(text)))
        return spans

    def sent_tokenize(self, text: str) -> list[str]:
        return [text[a:b].strip() for a, b in self.span_tokenize(text)]

    def __eq__(self, other: object) -> bool:  # one cache entry in datatrove's split_into_parts
        return isinstance(other, OfflineWordTokenizer)

    def __hash__(self) -> int:
        return hash(OfflineWordTokenizer)
