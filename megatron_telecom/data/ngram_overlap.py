"""Long word n-gram overlap between texts, as GPT-3 and lm-eval's decontamination measure it, at
tens of MB/s per core: texts are hashed in batches with numpy, never one Python object per n-gram.

Normalisation is lm-eval's (``decontamination/janitor.py``): ASCII letters lower-cased, ASCII
punctuation deleted (``UE's`` -> ``ues``, ``gNB-CU`` -> ``gnbcu``), words split at ASCII whitespace
and no-break spaces; other characters are kept as they are. An n-gram is ``n`` consecutive words of one text (never
across two texts of a batch). Hashing: each word's UTF-8 bytes, read 8 at a time from the
batch's buffer -> a mixed 64-bit hash; an n-gram -> a polynomial (modulo 2^64) of its words' hashes,
mixed again. Two different n-grams share a hash with probability ~2^-64 per pair.

``NgramIndex`` holds the n-grams of reference texts (a benchmark's questions) as a sorted uint64
array with a bitmap in front of it, so looking up millions of n-grams costs a few numpy passes.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_N = 13
NORMALISATION = ("lm-eval's: ASCII letters lower-cased, ASCII punctuation deleted, words split at "
                 "ASCII whitespace and no-break spaces")
_WHITESPACE = bytes(range(0, 33)) + b"\x7f"  # control characters too: never part of a word
_TABLE = bytes.maketrans(string.ascii_uppercase.encode() + _WHITESPACE,
                         string.ascii_lowercase.encode() + b" " * len(_WHITESPACE))
_DELETE = string.punctuation.encode()
_NO_BREAK_SPACE = "\u00a0".encode()  # a space to str.split, as lm-eval splits
_SEPARATOR = b"\x00"  # between the texts of a batch (the table maps every \x00 inside a text to a space)
_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd: invertible modulo 2^64
_BASE_INVERSE = np.uint64(pow(0x9E3779B97F4A7C15, -1, 1 << 64))
_LOW_BYTES = np.array([(1 << (8 * i)) - 1 for i in range(8)] + [(1 << 64) - 1], np.uint64)


def normalize(text: str) -> bytes:
    """The UTF-8 bytes of ``text`` as n-grams see them (lower-cased, no punctuation, spaces)."""
    return text.encode("utf-8", "replace").replace(_NO_BREAK_SPACE, b" ").translate(_TABLE, _DELETE)


class _Powers:
    """base^j and base^-j modulo 2^64 for j < length, grown on demand (shared by every batch)."""

    def __init__(self) -> None:
        self.up = np.ones(1, np.uint64)
        self.down = np.ones(1, np.uint64)

    def get(self, length: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self.up) < length:
            self._grow(length)
        return self.up, self.down

    def _grow(self, length: int) -> None:
        size = max(length, 2 * len(self.up))
        self.up, self.down = np.ones(size, np.uint64), np.ones(size, np.uint64)
        with np.errstate(over="ignore"):  # products wrap modulo 2^64, as intended
            np.cumprod(np.full(size - 1, _BASE, np.uint64), out=self.up[1:])
            np.cumprod(np.full(size - 1, _BASE_INVERSE, np.uint64), out=self.down[1:])


_POWERS = _Powers()


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place: every output bit depends on every input bit."""
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


@dataclass(frozen=True)
class BatchNgrams:
    """The n-grams of a batch of texts: hash, text index and first word of each, and the words."""

    hashes: np.ndarray
    """uint64 hash of each n-gram, in text order."""
    text_index: np.ndarray
    """Which text of the batch each n-gram lies in."""
    first_word: np.ndarray
    """Index (into ``word_starts``) of each n-gram's first word."""
    word_starts: np.ndarray
    word_ends: np.ndarray
    buffer: bytes
    """The normalised texts joined by \\x00; words are byte ranges of it."""

    def text_of(self, k: int, n: int) -> str:
        """The normalised words of n-gram ``k`` (for reports)."""
        first = int(self.first_word[k])
        start, end = int(self.word_starts[first]), int(self.word_ends[first + n - 1])
        return " ".join(self.buffer[start:end].decode("utf-8", "replace").split())


def _word_hashes(buffer: bytes, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """A mixed 64-bit hash of each word's bytes, read 8 at a time (``buffer`` ends in 8 spare bytes)."""
    eight = np.ndarray(shape=(len(buffer) - 7,), dtype="<u8", buffer=buffer, strides=(1,))  # bytes i..i+7
    lengths = ends - starts
    with np.errstate(over="ignore"):  # arithmetic modulo 2^64, as intended
        hashes = eight[starts] & _LOW_BYTES[np.minimum(lengths, 8)]
        longer, offset = np.flatnonzero(lengths > 8), 8
        while len(longer):  # words of more than 8 bytes: fold in the next 8
            chunk = eight[starts[longer] + offset] & _LOW_BYTES[np.minimum(lengths[longer] - offset, 8)]
            hashes[longer] = _mix(hashes[longer]) ^ chunk
            offset += 8
            longer = longer[lengths[longer] > offset]
        hashes ^= lengths.astype(np.uint64) * _BASE
        return _mix(hashes)


def batch_ngrams(texts: Sequence[str], n: int = DEFAULT_N) -> BatchNgrams:
    """Hashes of every n-word window inside each text (texts with fewer than ``n`` words give none)."""
    if n < 1:
        raise ValueError(f"--ngram {n}: an n-gram has at least one word")
    normalised = [normalize(t) for t in texts]
    buffer = _SEPARATOR + _SEPARATOR.join(normalised) + bytes(8)
    data = np.frombuffer(buffer, np.uint8)
    in_word = data > 32
    edges = np.flatnonzero(in_word[1:] != in_word[:-1]) + 1  # alternately a word's first byte and the byte after it
    starts, ends = edges[0::2], edges[1::2]
    count = len(starts) - n + 1
    if count <= 0:
        empty = np.zeros(0, np.int64)
        return BatchNgrams(np.zeros(0, np.uint64), empty, empty, starts, ends, buffer)
    words = _word_hashes(buffer, starts, ends)
    up, down = _POWERS.get(len(words) + 1)
    with np.errstate(over="ignore"):  # a polynomial in the word hashes, modulo 2^64
        np.multiply(words, down[: len(words)], out=words)
        prefix = np.zeros(len(words) + 1, np.uint64)
        np.cumsum(words, out=prefix[1:])
        hashes = _mix((prefix[n:] - prefix[:-n]) * up[n - 1 : n - 1 + count])
    separators = np.cumsum([len(t) + 1 for t in normalised[:-1]], dtype=np.int64)  # \x00 between texts
    words_before = np.searchsorted(starts, separators)  # first word of each text but the first
    text_of_word = np.repeat(np.arange(len(texts)), np.diff(words_before, prepend=0, append=len(starts)))
    first = np.flatnonzero(text_of_word[:count] == text_of_word[n - 1 :])
    return BatchNgrams(hashes[first], text_of_word[first], first, starts, ends, buffer)


class NgramIndex:
    """The n-grams of reference texts, each with the id of the (first) text it came from."""

    def __init__(self, hashes: np.ndarray, owners: np.ndarray, n: int) -> None:
        self.n = n
        self.keys, first = np.unique(hashes, return_index=True)
        self.owners = owners[first]
        self.bits = max(16, min(28, int(np.ceil(np.log2(max(len(self.keys), 1) * 32)))))
        self.bitmap = np.zeros(1 << (self.bits - 3), np.uint8)
        slots = (self.keys >> np.uint64(64 - self.bits)).astype(np.int64)
        np.bitwise_or.at(self.bitmap, slots >> 3, (1 << (slots & 7)).astype(np.uint8))

    @classmethod
    def build(cls, texts: Sequence[str], owners: Sequence[int], n: int = DEFAULT_N,
              batch: int = 20000) -> NgramIndex:
        """Index the n-grams of ``texts``; ``owners[i]`` is what a hit in ``texts[i]`` reports."""
        owner_array = np.asarray(owners, np.int64)
        hashes, hit_owners = [], []
        for at in range(0, len(texts), batch):
            found = batch_ngrams(texts[at : at + batch], n)
            hashes.append(found.hashes)
            hit_owners.append(owner_array[at + found.text_index])
        if not hashes:
            return cls(np.zeros(0, np.uint64), np.zeros(0, np.int64), n)
        return cls(np.concatenate(hashes), np.concatenate(hit_owners), n)

    def __len__(self) -> int:
        return len(self.keys)

    def lookup(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions in ``hashes`` found in the index, the owner of each)."""
        if not len(self.keys) or not len(hashes):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        slots = (hashes >> np.uint64(64 - self.bits)).astype(np.int64)
        maybe = np.flatnonzero((self.bitmap[slots >> 3] >> (slots & 7).astype(np.uint8)) & 1)
        where = np.minimum(np.searchsorted(self.keys, hashes[maybe]), len(self.keys) - 1)
        found = self.keys[where] == hashes[maybe]
        return maybe[found], self.owners[where[found]]
