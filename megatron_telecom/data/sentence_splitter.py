"""Offline sentence splitting for `--split-sentences`: nltk punkt with telecom abbreviations.

Megatron-LM downloads punkt at run time; we cannot. When `$NLTK_DATA` (or nltk's search path)
holds trained punkt parameters for the language, they are used; otherwise an untrained
`PunktParameters` is used. Either way the telecom abbreviations below are added, since an
untrained (or general-English) punkt splits "TS 38.331 cl. 5.3.3" or "E.g. the timer" wrongly.
"""

from __future__ import annotations

from nltk.tokenize.punkt import PunktLanguageVars, PunktParameters, PunktSentenceTokenizer

# Lower-case, without the final period, as punkt stores abbreviations.
TELECOM_ABBREVIATIONS = frozenset(
    """
    e.g i.e cf cl fig figs rel ts tr no nos sec secs eq eqs etc vs al approx ref refs tab
    vol pp ch app para art std min max dept corp inc ltd co dr mr mrs ms prof jr sr st resp
    incl excl est ver nr rev ed eds viz
    """.split()
)

_MAX_CHARS_PER_CALL = 1_000_000  # Megatron-LM splits text in 1M-character pieces too


class _NewlinePreservingLanguageVars(PunktLanguageVars):
    """Keeps the whitespace (newlines) after a sentence end inside the sentence (`--keep-newlines`)."""

    _period_context_fmt = r"""
        \S*                          # word material before the candidate end
        %(SentEndChars)s             # a potential sentence ending
        \s*                          # whitespace kept with the sentence
        (?=(?P<after_tok>
            %(NonWord)s              # punctuation follows
            |
            (?P<next_tok>\S+)        # or the next token
        ))"""


def _trained_parameters(lang: str) -> PunktParameters | None:
    """Punkt parameters from nltk data ($NLTK_DATA first) if installed, else None."""
    try:
        from nltk.tokenize.punkt import PunktTokenizer

        return PunktTokenizer(lang)._params
    except (LookupError, OSError, ValueError):
        return None


class SentenceSplitter:
    """Splits text into sentences the way `--split-sentences` expects (one string per sentence)."""

    def __init__(
        self, *, lang: str = "english", keep_newlines: bool = False, use_nltk_data: bool = True
    ) -> None:
        params = _trained_parameters(lang) if use_nltk_data else None
        self.source = "nltk_data" if params is not None else "built-in"
        if params is None:
            params = PunktParameters()
        params.abbrev_types.update(TELECOM_ABBREVIATIONS)
        lang_vars = _NewlinePreservingLanguageVars() if keep_newlines else PunktLanguageVars()
        self._punkt = PunktSentenceTokenizer(params, lang_vars=lang_vars)

    def split(self, text: str) -> list[str]:
        sentences: list[str] = []
        for start in range(0, len(text), _MAX_CHARS_PER_CALL):
            sentences.extend(self._punkt.tokenize(text[start : start + _MAX_CHARS_PER_CALL]))
        return sentences

