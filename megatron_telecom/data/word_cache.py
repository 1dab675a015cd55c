r"""Exact word-by-word encoding with a cache: the trick that makes preprocessing beat Megatron-LM.

A corpus repeats the same words over and over, yet a tokenizer library encodes every occurrence
again. Both tokenizer families we accelerate apply their subword model to each word separately
(SentencePiece between the spaces we split at, Hugging Face's BPE to each pre-token), so a word's
ids can be computed once and reused; the ids of a text are the concatenation of its words' ids.

For Hugging Face `tokenizer.json` files, `HuggingFaceWordSplitter` reproduces the pipeline that
`Tokenizer.encode(text, add_special_tokens=False)` runs in Rust, and only where it provably can:
- the added (special) tokens are split out first: a text containing any of them is encoded whole;
- no normalizer, no truncation or padding, a BPE model without dropout;
- the pre-tokenizer is a sequence of splits we know (ByteLevel's GPT-2 regex, a `Split` with the
  Llama-3/cl100k or Qwen2 regex, `Digits`) ending in the ByteLevel byte-to-character mapping.
  Python's `regex` runs the same patterns as the library's Oniguruma; the patterns are built from
  character classes (letters, numbers, whitespace, newlines, case-insensitive contractions), so
  two engines split alike when they classify every character alike. Each character is checked
  once, the first time it is seen, by splitting it in probe contexts with the library's own
  pre-tokenizer; a text with a character the engines disagree on is encoded whole. A text the
  pattern does not cover end to end (a gap would be a pre-token of its own) is encoded whole too.
  ASCII-only text is split by Python's faster `re` with the classes spelled out in ASCII
  (`\p{L}` is `[a-zA-Z]`, `\p{N}` is `[0-9]`), checked the same way for all 128 characters.
Words are then encoded by the tokenizer's own BPE model, so merges, `ignore_merges` and unknown
bytes behave as in the library. Any other `tokenizer.json` takes the plain encoder, with a note.
"""

from __future__ import annotations

import json
import re
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain

import regex

CACHE_LIMIT = 300_000  # cached words per tokenizer (bounded memory)

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
LLAMA3_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"""
                  r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
QWEN2_PATTERN = LLAMA3_PATTERN.replace(r"\p{N}{1,3}", r"\p{N}")
KNOWN_SPLIT_PATTERNS = (GPT2_PATTERN, LLAMA3_PATTERN, QWEN2_PATTERN)
# Digits pre-tokenizer: digits isolated one by one (individual_digits) or as runs, the rest kept.
_DIGITS_PATTERNS = {True: r"\p{N}|\P{N}+", False: r"\p{N}+|\P{N}+"}

# Neighbourhoods in which each newly seen character is split by both engines ('{c}' is replaced).
_PROBE_CONTEXTS = (
    "{c}", "a{c}", "{c}a", "a{c}b", "1{c}", "{c}1", "1{c}2", "12{c}345", " {c}", "{c} ", " {c} ", "  {c}  x",
    "{c}{c}", "{c}{c}{c} {c}", "'{c}", "'{c}x", "x'{c}", "{c}'s", "{c}'LL", "\n{c}", "{c}\n", "\r\n{c}\r\n",
    " \n{c}", "!{c}", "{c}!", " !{c}?", "A{c}B", "é{c}ü", "{c}\u00a0", "\t{c}\t", "{c}\u3000z", "中{c}文",
)


def encode_with_cache(cache: dict[str, bytes], words_per_text: Sequence[list[str] | None],
                      encode_words: Callable[[list[str]], Iterable[Sequence[int]]],
                      typecode: str) -> list[bytes | None]:
    """Ids of each text as the concatenation of its words' ids, encoding each new word once.

    Ids are raw machine bytes of `array(typecode)` (the dataset's token dtype), so a text that
    hits the cache costs one `bytes.join`, no Python int per token. New words of the whole batch
    go to `encode_words` in one call. `None` (a text the caller encodes whole) stays `None`. The
    cache is emptied when it would exceed CACHE_LIMIT words.
    """
    join, get = b"".join, cache.get
    out: list[bytes | None] = []
    retry = []  # texts with a word not cached yet
    for words in words_per_text:
        try:
            out.append(None if words is None else join(map(get, words)))
        except TypeError:  # a word missing from the cache (join met None)
            retry.append(len(out))
            out.append(None)
    if not retry:
        return out
    missing = set().union(*(words_per_text[i] for i in retry)).difference(cache)
    if len(cache) + len(missing) > CACHE_LIMIT:
        cache.clear()
        missing = set().union(*(words_per_text[i] for i in retry))
    ordered = list(missing)
    cache.update(zip(ordered, (array(typecode, ids).tobytes() for ids in encode_words(ordered))))
    lookup = cache.__getitem__
    for i in retry:
        out[i] = join(map(lookup, words_per_text[i]))
    return out


def _byte_to_unicode() -> dict[int, str]:
    """The ByteLevel pre-tokenizer's byte -> printable character table (GPT-2's)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    extra = (b for b in range(256) if b not in table)
    table.update((b, chr(256 + n)) for n, b in enumerate(extra))
    return table


class HuggingFaceWordSplitter:
    """Splits texts into the pre-tokens a Hugging Face fast tokenizer would, when provably exact.

    `note` is None when the splitter applies; otherwise it says why every text is encoded whole.
    """

    def __init__(self, backend) -> None:
        self._backend = backend
        self._stages: list[regex.Pattern] = []
        self._ascii_stages: list[re.Pattern] = []  # the same patterns for ASCII-only text, 2x faster
        self._byte_chars = _byte_to_unicode()
        self._agreeing: set[str] = set()
        self._disagreeing: set[str] = set()
        self.note = self._check_reproducible(json.loads(backend.to_str()))
        if self.note is None:
            self._added = _added_token_finder([t.content for t in backend.get_added_tokens_decoder().values()])
            self._ascii_agree = self._verify(set(map(chr, range(128))))

    # --- which tokenizer.json files the splitter reproduces ------------------------------------

    def _check_reproducible(self, spec: dict) -> str | None:
        model = spec.get("model") or {}
        if model.get("type") != "BPE" or model.get("dropout") not in (None, 0, 0.0):
            return f"the model is {model.get('type')} (dropout {model.get('dropout')}), not a BPE without dropout"
        if spec.get("normalizer") is not None:
            return f"the normalizer {spec['normalizer'].get('type')} is not reproduced"
        if spec.get("truncation") is not None or spec.get("padding") is not None:
            return "truncation or padding is set in tokenizer.json"
        pre = spec.get("pre_tokenizer")
        steps = (pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]) if pre else []
        if not steps or steps[-1].get("type") != "ByteLevel" or steps[-1].get("add_prefix_space"):
            return "the pre-tokenizer does not end in ByteLevel without add_prefix_space"
        patterns = [self._split_pattern(step) for step in steps[:-1]]
        if steps[-1].get("use_regex", True):
            patterns.append(GPT2_PATTERN)
        if None in patterns or not patterns:
            return f"the pre-tokenizer {json.dumps(pre)[:300]} is not one the word cache reproduces"
        self._stages = [regex.compile(p) for p in patterns]
        self._ascii_stages = [re.compile(_ascii_pattern(p), re.ASCII) for p in patterns]
        return None

    @staticmethod
    def _split_pattern(step: dict) -> str | None:
        """The regex of a pre-tokenizer step that isolates its matches, or None if unsupported."""
        if step.get("type") == "Digits":
            return _DIGITS_PATTERNS[bool(step.get("individual_digits"))]
        if step.get("type") == "Split" and step.get("behavior") == "Isolated" and not step.get("invert"):
            pattern = (step.get("pattern") or {}).get("Regex")
            return pattern if pattern in KNOWN_SPLIT_PATTERNS else None
        return None

    # --- per text ------------------------------------------------------------------------------

    def split(self, text: str) -> list[str] | None:
        """The text's pre-tokens (as text, before the byte mapping), or None to encode it whole."""
        if self._added(text) or not self._characters_agree(text):
            return None
        return self._split_words(text)

    def _split_words(self, text: str) -> list[str] | None:
        stages = self._ascii_stages if text.isascii() else self._stages
        words = stages[0].findall(text)
        for stage in stages[1:]:
            words = list(chain.from_iterable(map(stage.findall, words)))
        if sum(map(len, words)) != len(text):  # a gap between matches: not what the library does
            return None
        return words

    def encode_words(self, words: list[str]) -> Iterator[list[int]]:
        """Ids of pre-tokens by the tokenizer's own model, exactly as inside `encode`."""
        tokenize = self._backend.model.tokenize
        for word in words:
            yield [token.id for token in tokenize(self._byte_level(word))]

    def _byte_level(self, word: str) -> str:
        """The word as the ByteLevel pre-tokenizer hands it to the model (one character per byte)."""
        return "".join(map(self._byte_chars.__getitem__, word.encode()))

    def _characters_agree(self, text: str) -> bool:
        if text.isascii() and self._ascii_agree:
            return True
        chars = set(text)
        new = chars - self._agreeing - self._disagreeing
        if new:
            self._verify(new)
        return self._disagreeing.isdisjoint(chars)

    def _verify(self, chars: set[str]) -> bool:
        """Split each character in probe contexts with both engines; True when all agree."""
        all_agree = True
        for char in chars:
            agree = all(self._same_split(context.replace("{c}", char)) for context in _PROBE_CONTEXTS)
            (self._agreeing if agree else self._disagreeing).add(char)
            all_agree &= agree
        return all_agree

    def _same_split(self, probe: str) -> bool:
        try:
            theirs = [piece for piece, _ in self._backend.pre_tokenizer.pre_tokenize_str(probe)]
            words = self._split_words(probe)
            ours = None if words is None else list(map(self._byte_level, words))
        except UnicodeError:  # a lone surrogate: the library cannot take it
            return False
        return ours == theirs


def _ascii_pattern(pattern: str) -> str:
    """The pattern for ASCII-only text: Unicode letter/number classes spelled out in ASCII."""
    spelled = {r"\p{L}": "a-zA-Z", r"\p{N}": "0-9"}
    out, in_class, i = [], False, 0
    while i < len(pattern):
        name = pattern[i:i + 5]
        if name in spelled:
            out.append(spelled[name] if in_class else f"[{spelled[name]}]")
            i += 5
        elif name == r"\P{N}":
            out.append("[^0-9]")
            i += 5
        elif pattern[i] == "\\":
            out.append(pattern[i:i + 2])
            i += 2
        else:
            in_class = {"[": True, "]": False}.get(pattern[i], in_class)
            out.append(pattern[i])
            i += 1
    return "".join(out)


def _added_token_finder(contents: list[str]) -> Callable[[str], bool]:
    """A test for 'this text contains an added token' (such text goes through the library whole)."""
    if not contents:
        return lambda text: False
    pattern = re.compile("|".join(map(re.escape, sorted(set(contents), key=len, reverse=True))))
    return lambda text: pattern.search(text) is not None
