"""What a tokenizer can make one token of: its pre-tokens, seen per tokenizer family.

Vocabulary extension extends the tokenizer's *model* (BPE merges, SentencePiece pieces) and keeps
its pre-tokenisation, so a new token can only ever stand for a string the pre-tokenisation hands
to the model whole. A `TokenUnits` view gives, for one base tokenizer:
- `units(text)`: the strings of a text that the model sees whole (Hugging Face byte-level BPE: the
  pre-tokens, leading space included, e.g. `" PDCCH"`; SentencePiece: whitespace-delimited words
  with their surrounding punctuation removed, e.g. `"gNB-CU-CP"`, which the model sees as
  `"▁gNB-CU-CP"` since SentencePiece does not pre-split at punctuation);
- `token_string(unit)`: the unit as a vocabulary entry (`"ĠPDCCH"`, `"▁gNB-CU-CP"`);
- `pieces(unit)`: the ids the base tokenizer gives the unit (what `tokenize(detokenize([id]))`
  gives for the new token `id`);
- `unit_of_word(word)`: the unit a whitespace-delimited word would be after a space, or None when
  the pre-tokenisation cuts it (Llama-3/GPT-2 regexes cut `gNB-CU-CP` at `-`), so no token can
  ever stand for it.
A unit's text is what the new token decodes to, so `unit == detokenize([new_id])`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from megatron_telecom.data.tokenizers import HuggingFaceTokenizer, SentencePieceTokenizer, Tokenizer
from megatron_telecom.data.word_cache import HuggingFaceWordSplitter

META_SPACE = "\u2581"  # SentencePiece's whitespace symbol


class TokenUnits(Protocol):
    """The producible strings of one base tokenizer (see the module docstring)."""

    family: str
    cuts_words: bool
    """Whether the pre-tokenisation can cut a whitespace-delimited word (then such words are counted)."""

    def units(self, text: str) -> list[str]: ...

    def token_string(self, unit: str) -> str: ...

    def pieces(self, unit: str) -> list[int]: ...

    def unit_of_word(self, word: str) -> str | None: ...

    def in_vocabulary(self, token_string: str) -> bool: ...


class ByteLevelUnits:
    """Pre-tokens of a byte-level BPE `tokenizer.json` (SmolLM2, Llama-3, Qwen2), split exactly as
    the library does (`HuggingFaceWordSplitter`, the preprocessing word cache's splitter)."""

    family = "huggingface"
    cuts_words = True

    def __init__(self, folder: Path) -> None:
        from tokenizers import Tokenizer as Backend
        from tokenizers import decoders, pre_tokenizers

        self.backend = Backend.from_file(str(folder / "tokenizer.json"))
        self.splitter = HuggingFaceWordSplitter(self.backend)
        if self.splitter.note is not None:
            raise ValueError(f"{folder}: {self.splitter.note}; vocabulary extension supports byte-level BPE "
                             "tokenizers whose pre-tokenisation the word cache reproduces")
        self._byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        self._decoder = decoders.ByteLevel()

    def units(self, text: str) -> list[str]:
        words = self.splitter.split(text)
        if words is None:  # text with an added token or an unverified character: the library splits it
            words = [self._decoder.decode([w]) for w, _ in self.backend.pre_tokenizer.pre_tokenize_str(text)]
        return words

    def token_string(self, unit: str) -> str:
        return self._byte_level.pre_tokenize_str(unit)[0][0]

    def pieces(self, unit: str) -> list[int]:
        return [t.id for t in self.backend.model.tokenize(self.token_string(unit))]

    def unit_of_word(self, word: str) -> str | None:
        unit = " " + word
        return unit if len(self.backend.pre_tokenizer.pre_tokenize_str(unit)) == 1 else None

    def in_vocabulary(self, token_string: str) -> bool:
        return self.backend.token_to_id(token_string) is not None


class SentencePieceUnits:
    """Whitespace-delimited words of a SentencePiece BPE model (Llama-2, Mistral), each seen by the
    model as `▁word` (the dummy prefix or the space before it)."""

    family = "sentencepiece"
    cuts_words = False

    def __init__(self, model_file: Path) -> None:
        import sentencepiece

        self.processor = sentencepiece.SentencePieceProcessor(model_file=str(model_file))

    def units(self, text: str) -> list[str]:
        return [w for w in map(strip_punctuation, text.split()) if w]

    def token_string(self, unit: str) -> str:
        return META_SPACE + unit

    def pieces(self, unit: str) -> list[int]:
        return self.processor.encode(unit)

    def unit_of_word(self, word: str) -> str | None:
        return word

    def in_vocabulary(self, token_string: str) -> bool:
        return self.processor.piece_to_id(token_string) != self.processor.unk_id() or token_string == "<unk>"


PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~“”‘’«»…–—•·"


def strip_punctuation(word: str) -> str:
    """A whitespace-delimited word without the punctuation around it (`"(PDCCH),"` -> `"PDCCH"`)."""
    return word.strip(PUNCTUATION)


def token_units(tokenizer: Tokenizer) -> TokenUnits:
    """The `TokenUnits` view of a base tokenizer; ValueError for a family we cannot extend."""
    if isinstance(tokenizer, HuggingFaceTokenizer):
        return ByteLevelUnits(Path(tokenizer.model_path))
    if isinstance(tokenizer, SentencePieceTokenizer):
        return SentencePieceUnits(Path(tokenizer.model_path))
    raise ValueError(f"--tokenizer-type {tokenizer.tokenizer_type} has no vocabulary to extend; use "
                     "HuggingFaceTokenizer or SentencePieceTokenizer")
