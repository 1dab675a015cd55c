"""Tokenizers with Megatron-LM's `--tokenizer-type` names, matching megatron-core 0.16.1's ids.

Megatron-LM 0.16.1's `tools/preprocess_data.py` builds its tokenizer with
`megatron.core.tokenizers` (not the legacy `megatron.training.tokenizer`). There,
`SentencePieceTokenizer`, `GPTSentencePieceTokenizer` and `Llama2Tokenizer` all map to the same
SentencePiece wrapper: ids are `encode_as_ids(text)` with no BOS/EOS added, EOD is the model's
`</s>` (eos) id and the vocabulary is the model's piece count. `HuggingFaceTokenizer` tokenizes
without special tokens and uses the tokenizer's eos token as EOD. We reproduce exactly that
(tests compare against sentencepiece, `tokenizers` and megatron-core's own classes), but faster:
both families encode text word by word through a cache where that provably gives the same ids
(`word_cache`); `fast_path_note` says why a tokenizer cannot use it (it then encodes whole texts).

`--tokenizer-model bundled:NAME` needs no path: `bundled:mistral-v1` / `bundled:mistral-v3` are the
SentencePiece models shipped in the mistral-common wheel, `bundled:smollm2-135m` the built-in base
model's Hugging Face tokenizer (one registry: `megatron_telecom.bundled`).
"""

from __future__ import annotations

import hashlib
import re
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from megatron_telecom.bundled import BUNDLED_PREFIX, builtin_model, resolve_bundled
from megatron_telecom.data.indexed import optimal_dtype
from megatron_telecom.data.word_cache import HuggingFaceWordSplitter, encode_with_cache

TokenizerType = Literal["SentencePieceTokenizer", "GPTSentencePieceTokenizer", "Llama2Tokenizer",
                        "HuggingFaceTokenizer", "NullTokenizer"]
TOKENIZER_TYPES: tuple[str, ...] = get_args(TokenizerType)
SENTENCEPIECE_TYPES = TOKENIZER_TYPES[:3]
HUGGINGFACE_TYPES = ("HuggingFaceTokenizer",)


@dataclass(kw_only=True)
class TokenizerConfig:
    """The tokenizer flags every entry point shares (Megatron-LM's names)."""

    tokenizer_type: TokenizerType | None = None
    """Tokenizer family (SentencePiece variants are the same wrapper, as in megatron-core)."""
    tokenizer_model: str | None = None
    """SentencePiece .model file, a folder with tokenizer.json, or bundled:NAME (mistral-v1, mistral-v3, smollm2-135m)."""
    vocab_size: int | None = None
    """NullTokenizer only: vocabulary size (EOD = vocab_size)."""


_META_SPACE = "\u2581"  # SentencePiece's whitespace symbol
# A space after a character that is neither a space nor '▁', and not at the very end (an empty last
# chunk would lose the trailing '▁'). The space comes first and the lookbehind after it, so `re`
# jumps from space to space instead of trying the lookbehind at every position (2x faster).
_CHUNK_BOUNDARY = re.compile(" (?<=[^ \u2581] )(?=.)", re.DOTALL)


def token_typecode(vocab_size: int) -> str:
    """The `array` typecode of the dataset's token dtype for a vocabulary (uint16 or int32)."""
    return np.dtype(optimal_dtype(vocab_size)).char


def bundled_tokenizer_model(name: str = "mistral-v1") -> Path:
    """Path of a built-in SentencePiece model, e.g. mistral-v1 (no download needed)."""
    return resolve_bundled(BUNDLED_PREFIX + name)


@dataclass(frozen=True, kw_only=True)
class TokenizerIdentity:
    """What identifies a tokenizer in provenance files: type, model file(s) and their hash."""

    tokenizer_type: str
    tokenizer_model: str
    sha256: str
    vocab_size: int
    eod: int


class SentencePieceTokenizer:
    """SentencePiece model (Llama-2, Mistral); ids exactly as megatron-core's default wrapper."""

    def __init__(self, model_path: Path, tokenizer_type: str = "SentencePieceTokenizer") -> None:
        import sentencepiece

        self.tokenizer_type = tokenizer_type
        self.model_path = model_path
        self._sp = sentencepiece.SentencePieceProcessor(model_file=str(model_path))
        self.vocab_size: int = self._sp.get_piece_size()
        self.eod: int = self._sp.eos_id()
        self.bos: int | None = self._sp.bos_id() if self._sp.bos_id() >= 0 else None
        self.typecode = token_typecode(self.vocab_size)
        blocker = self._word_cache_blocker()
        self.fast_path_note: str | None = None if blocker is None else (
            f"{model_path}: {blocker}, so the word cache is off (whole texts are encoded)")
        self._cache: dict[str, bytes] = {}

    def _word_cache_blocker(self) -> str | None:
        """Why encoding chunk by chunk could differ from `encode(text)`, or None when it cannot.

        Exact when (1) the normalizer provably turns every text into '▁' + text with spaces as '▁'
        (identity rules, no character map, dummy prefix, whitespace kept and not a suffix), so no
        text needs a check of its own, and (2) no piece holds '▁' after a character other than '▁'
        (Llama-2 and Mistral models): BPE then never merges across a space that follows another
        character, so the text splits there into chunks whose encodings concatenate to the whole's.
        """
        from sentencepiece import sentencepiece_model_pb2

        proto = sentencepiece_model_pb2.ModelProto.FromString(self._sp.serialized_model_proto())
        spec = proto.normalizer_spec
        if (spec.precompiled_charsmap or not spec.add_dummy_prefix or spec.remove_extra_whitespaces
                or not spec.escape_whitespaces or proto.trainer_spec.treat_whitespace_as_suffix):
            return f"the normalizer {spec.name!r} may change the text beyond spaces"
        spanning = re.compile(f"[^{_META_SPACE}]{_META_SPACE}")
        if any(map(spanning.search, self._sp.id_to_piece(list(range(self.vocab_size))))):
            return "a piece spans a space"
        return None

    def tokenize(self, text: str) -> list[int]:
        return self.tokenize_batch([text])[0]

    def tokenize_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [array(self.typecode, ids).tolist() for ids in self.tokenize_batch_bytes(texts)]

    def tokenize_batch_bytes(self, texts: Sequence[str]) -> list[bytes]:
        """Same ids as `encode(text)` for each text (as `array(self.typecode)` bytes), computed chunk
        by chunk with a cache: texts are cut at the spaces `_word_cache_blocker` proves to be
        boundaries, and each later chunk's dummy prefix stands for the space it was cut at. Models
        the cache cannot reproduce take the plain `encode` path.
        """
        if self.fast_path_note is not None:
            return [array(self.typecode, ids).tobytes() for ids in self._sp.encode(list(texts), out_type=int)]
        chunked = list(map(_CHUNK_BOUNDARY.split, texts))
        return encode_with_cache(self._cache, chunked, lambda chunks: self._sp.encode(chunks, out_type=int),
                                 self.typecode)

    def detokenize(self, ids: Sequence[int]) -> str:
        return self._sp.decode_ids([int(i) for i in ids])

    def model_files(self) -> list[Path]:
        return [self.model_path]


class HuggingFaceTokenizer:
    """Hugging Face tokenizer (tokenizer.json, e.g. Llama-3); ids without special tokens."""

    def __init__(self, model_path: Path) -> None:
        from transformers import AutoTokenizer

        self.tokenizer_type = "HuggingFaceTokenizer"
        self.model_path = model_path
        try:
            self._hf = AutoTokenizer.from_pretrained(str(model_path))
        except Exception as exc:  # transformers raises many types for a bad folder
            raise ValueError(
                f"cannot load a Hugging Face tokenizer from {model_path}: {exc}. "
                "Point --tokenizer-model at a folder holding tokenizer.json (+ tokenizer_config.json)."
            ) from exc
        self._backend = getattr(self._hf, "backend_tokenizer", None)
        self.vocab_size: int = len(self._hf)
        if self._hf.eos_token is None:
            raise ValueError(f"the tokenizer in {model_path} has no eos_token, so no EOD id")
        self.eod: int = self._hf.convert_tokens_to_ids(self._hf.eos_token)
        self.bos: int | None = self._hf.bos_token_id
        self.typecode = token_typecode(self.vocab_size)
        self._cache: dict[str, bytes] = {}
        self._splitter = HuggingFaceWordSplitter(self._backend) if self._backend is not None else None
        self.fast_path_note: str | None = (
            f"{model_path}: not a fast (tokenizer.json) tokenizer, so the word cache is off" if self._splitter is None
            else None if self._splitter.note is None
            else f"{model_path}: {self._splitter.note}, so the word cache is off (whole texts are encoded)")

    def tokenize(self, text: str) -> list[int]:
        return self.tokenize_batch([text])[0]

    def tokenize_batch(self, texts: Sequence[str]) -> list[list[int]]:
        if self._backend is None:  # slow (Python) tokenizer: megatron-core's exact path
            return [self._hf.convert_tokens_to_ids(self._hf.tokenize(t)) for t in texts]
        return [array(self.typecode, ids).tolist() for ids in self.tokenize_batch_bytes(texts)]

    def tokenize_batch_bytes(self, texts: Sequence[str]) -> list[bytes]:
        """Same ids as the library's `encode(text, add_special_tokens=False)` (as
        `array(self.typecode)` bytes), via the word cache where `HuggingFaceWordSplitter` can
        reproduce the pre-tokenization, whole texts otherwise."""
        if self._backend is None:
            return [array(self.typecode, ids).tobytes() for ids in self.tokenize_batch(texts)]
        splitter = self._splitter
        words = [splitter.split(t) for t in texts] if splitter.note is None else [None] * len(texts)
        ids = encode_with_cache(self._cache, words, splitter.encode_words, self.typecode)
        whole = [t for t, i in zip(texts, ids) if i is None]
        encoded = iter(self._backend.encode_batch(whole, add_special_tokens=False) if whole else ())
        return [array(self.typecode, next(encoded).ids).tobytes() if i is None else i for i in ids]

    def detokenize(self, ids: Sequence[int]) -> str:
        return self._hf.decode([int(i) for i in ids])

    def model_files(self) -> list[Path]:
        folder = self.model_path if self.model_path.is_dir() else self.model_path.parent
        return sorted(p for p in folder.iterdir() if p.name.startswith(("tokenizer", "special_tokens")))


class NullTokenizer:
    """Megatron-LM's NullTokenizer: text is whitespace-separated ids; EOD is `vocab_size` (for tests
    and benchmarks on synthetic token data)."""

    tokenizer_type = "NullTokenizer"
    model_path = ""
    bos = None
    fast_path_note = None

    def __init__(self, vocab_size: int) -> None:
        if vocab_size is None or vocab_size < 1:
            raise ValueError("--tokenizer-type NullTokenizer needs --vocab-size N (N >= 1)")
        self.vocab_size = vocab_size + 1
        self.eod = vocab_size

    def tokenize(self, text: str) -> list[int]:
        return [int(x) for x in text.split()]

    def tokenize_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.tokenize(t) for t in texts]

    def tokenize_batch_bytes(self, texts: Sequence[str]) -> list[bytes]:
        return [np.array(self.tokenize(t), dtype=optimal_dtype(self.vocab_size)).tobytes() for t in texts]

    def detokenize(self, ids: Sequence[int]) -> str:
        return " ".join(str(int(i)) for i in ids)

    def model_files(self) -> list[Path]:
        return []


Tokenizer = SentencePieceTokenizer | HuggingFaceTokenizer | NullTokenizer


def build_tokenizer(
    tokenizer_type: str, tokenizer_model: str | Path | None = None, *, vocab_size: int | None = None
) -> Tokenizer:
    """Build the tokenizer named by Megatron-LM's `--tokenizer-type` / `--tokenizer-model` flags.

    `--tokenizer-model bundled:NAME` selects a built-in tokenizer (see the module docstring), so
    examples and tests need no download. `vocab_size` is Megatron-LM's `--vocab-size`, used only by
    `NullTokenizer`.
    """
    if tokenizer_type == "NullTokenizer":
        return NullTokenizer(vocab_size)
    if tokenizer_model is None:
        raise ValueError("--tokenizer-model is required (a SentencePiece .model file or a HF folder)")
    if tokenizer_type not in SENTENCEPIECE_TYPES + HUGGINGFACE_TYPES:
        raise ValueError(f"unsupported --tokenizer-type {tokenizer_type!r}; choose one of {TOKENIZER_TYPES}")
    path = resolve_tokenizer_path(tokenizer_type, str(tokenizer_model))
    if not path.exists():
        raise ValueError(f"--tokenizer-model {path} does not exist")
    if tokenizer_type in SENTENCEPIECE_TYPES:
        if not path.is_file():
            raise ValueError(f"--tokenizer-type {tokenizer_type} needs a .model file, got folder {path}")
        return SentencePieceTokenizer(path, tokenizer_type)
    return HuggingFaceTokenizer(path.parent if path.name == "tokenizer.json" else path)


def resolve_tokenizer_path(tokenizer_type: str, tokenizer_model: str) -> Path:
    """The file or folder named by --tokenizer-model; `bundled:NAME` is looked up per family."""
    if not tokenizer_model.startswith(BUNDLED_PREFIX):
        return Path(tokenizer_model)
    _, entry = builtin_model(tokenizer_model)
    if entry.kind == "sentencepiece" and tokenizer_type not in SENTENCEPIECE_TYPES:
        raise ValueError(f"{tokenizer_model} is a SentencePiece model: use --tokenizer-type SentencePieceTokenizer")
    if entry.kind == "huggingface" and tokenizer_type not in HUGGINGFACE_TYPES:
        raise ValueError(f"{tokenizer_model} is a Hugging Face tokenizer: use --tokenizer-type HuggingFaceTokenizer")
    return resolve_bundled(tokenizer_model)


def tokenizer_identity(tokenizer: Tokenizer) -> TokenizerIdentity:
    """Type, path, sha256 over the model file(s), vocabulary size and EOD id of a tokenizer."""
    digest = hashlib.sha256()
    for path in tokenizer.model_files():
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return TokenizerIdentity(
        tokenizer_type=tokenizer.tokenizer_type,
        tokenizer_model=str(Path(tokenizer.model_path).resolve()) if tokenizer.model_path else "",
        sha256=digest.hexdigest(),
        vocab_size=tokenizer.vocab_size,
        eod=tokenizer.eod,
    )
