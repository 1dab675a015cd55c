"""The tokenizer a checkpoint was written for, recorded in its ``common.pt`` and checked on load.

Row ``i`` of the embedding means token ``i`` of one vocabulary: a checkpoint whose vocabulary was
extended (``convert/resize_vocab.py``) must never train or export with the old tokenizer, whose
ids stop short and whose sizes may pad alike. The record is ``tokenizer_identity`` (type, model
path, sha256 of the files, size, EOD) plus ``vocabulary_sha256``, a hash of the id -> token list
only, so a copied folder or an edited chat template is the same tokenizer and another vocabulary
is not. A checkpoint without a record (older ones, Megatron-LM's) loads as before.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from megatron_telecom.models.checkpoint_format import TOKENIZER_KEY


def vocabulary(tokenizer: Any) -> list[str] | None:
    """The token of every id, in id order (None for NullTokenizer, whose ids are numbers)."""
    if tokenizer.tokenizer_type == "NullTokenizer":
        return None
    path = Path(tokenizer.model_path)
    if path.is_file():  # a SentencePiece model
        import sentencepiece

        sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
        return [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    if (path / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        by_token = Tokenizer.from_file(str(path / "tokenizer.json")).get_vocab(with_added_tokens=True)
    else:  # a slow (Python) tokenizer
        from transformers import AutoTokenizer

        by_token = AutoTokenizer.from_pretrained(str(path)).get_vocab()
    tokens = [""] * (max(by_token.values(), default=-1) + 1)
    for token, index in by_token.items():
        tokens[index] = token
    return tokens


def vocabulary_sha256(tokenizer: Any) -> str:
    """sha256 of the id -> token list (NullTokenizer: of its size)."""
    tokens = vocabulary(tokenizer)
    text = json.dumps(tokens if tokens is not None else ["NullTokenizer", tokenizer.vocab_size])
    return hashlib.sha256(text.encode()).hexdigest()


def tokenizer_record(tokenizer: Any) -> dict[str, Any]:
    """What a checkpoint records of ``tokenizer``: its identity and its vocabulary's hash."""
    from megatron_telecom.data.tokenizers import tokenizer_identity

    return {**asdict(tokenizer_identity(tokenizer)), "vocabulary_sha256": vocabulary_sha256(tokenizer)}


def check_tokenizer(common: dict[str, Any], tokenizer: Any, *, where: str) -> None:
    """Refuse, in one line naming both, a tokenizer other than the one ``common`` records."""
    recorded = common.get(TOKENIZER_KEY)
    if not recorded:
        return  # an older checkpoint (or Megatron-LM's): nothing to check against
    mine = tokenizer_record(tokenizer)
    if recorded.get("vocabulary_sha256") == mine["vocabulary_sha256"] and \
            recorded.get("vocab_size") == mine["vocab_size"]:
        return
    raise ValueError(
        f"{where} was written for tokenizer {recorded.get('tokenizer_model')} "
        f"({recorded.get('vocab_size')} ids, vocabulary sha256 {str(recorded.get('vocabulary_sha256'))[:12]}), "
        f"not {mine['tokenizer_model']} ({mine['vocab_size']} ids, vocabulary sha256 "
        f"{mine['vocabulary_sha256'][:12]}): use the checkpoint's tokenizer (its tokenizer/ folder "
        "or the one it was resized for)")


def check_tokenizer_folder(common: dict[str, Any], folder: Path, *, where: str) -> None:
    """``check_tokenizer`` for the tokenizer files in ``folder`` (an export's or HF model's), read
    as the recorded type; nothing to check without a record or without tokenizer files."""
    recorded = common.get(TOKENIZER_KEY)
    if not recorded or recorded.get("tokenizer_type") == "NullTokenizer":
        return
    from megatron_telecom.data.tokenizers import HUGGINGFACE_TYPES, build_tokenizer

    if recorded["tokenizer_type"] in HUGGINGFACE_TYPES:
        if not (folder / "tokenizer.json").is_file() and not (folder / "tokenizer_config.json").is_file():
            return
        model = folder
    else:
        model = folder / Path(recorded.get("tokenizer_model", "tokenizer.model")).name
        if not model.is_file():
            return
    check_tokenizer(common, build_tokenizer(recorded["tokenizer_type"], model), where=where)
