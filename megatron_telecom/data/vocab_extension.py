"""Extending a tokenizer's model with mined terms, so that old text keeps its old ids.

We extend the *model*, not Hugging Face "added tokens". Added tokens are matched in the raw text
before the pre-tokenizer, inside other words too (`PDCCH` in `xPDCCHs`), and a text holding one
is encoded whole by the preprocessing word cache (`word_cache`), which would make every telecom
document slow. A model extension keeps the pre-tokeniser, the word cache and the old ids:

- **Byte-level BPE** (`tokenizer.json`: SmolLM2, Llama-3): each term is appended to the vocabulary
  and built from its old pieces by new merges ranked after every existing merge. HF's BPE applies
  the lowest-ranked applicable merge first, so a word runs all old merges first and reaches its old
  pieces; a new merge then only fires on two adjacent pieces whose concatenation is a new token's
  string. A pre-token that contains no new token's string therefore keeps exactly its old ids.
- **SentencePiece BPE** (`.model`: Llama-2, Mistral): each term is a NORMAL piece with a score
  below every existing piece; SentencePiece merges the highest-scoring pair first, so the same
  argument holds. The model stays one whose pieces never span a space (the word cache's condition).

A BPE merge joins two tokens, so a term of k pieces needs k - 1 merges and k - 2 intermediate
tokens. We build each term left to right, from the pieces the extended tokenizer gives it so far:
the intermediates are the term's prefixes (`ĠRRCRe` on the way to `ĠRRCReconfiguration`). A
prefix starts where the term starts (with its leading space), so it only fires at the start of a
word, and it is often a prefix of other terms, which then share it. Intermediates count towards
the N new ids (N is what the embedding grows by); a term whose chain no longer fits in N is passed
over for the next. Each term is checked, as it is added, to become exactly one token.

The extended tokenizer is a folder loaded with the base's `--tokenizer-type`; ids 0..V_old-1 are
the old ones, new ids V_old..V_new-1 follow in the order added. `vocab_extension.json` beside it
records both identities and, per new id, its vocabulary string, text (`detokenize([id])`), pieces
(`old.tokenize(text)`: what its embedding is initialised from), count, saving and role
(`term` or `intermediate`, with the count and saving of the candidate list; 0 for an intermediate
that is no candidate).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from megatron_telecom.atomic import atomic_write_json, staged_folder
from megatron_telecom.data.tokenizers import (
    HuggingFaceTokenizer,
    SentencePieceTokenizer,
    Tokenizer,
    TokenizerConfig,
    build_tokenizer,
    tokenizer_identity,
)
from megatron_telecom.data.vocab_mining import CANDIDATES_JSON

SIDECAR = "vocab_extension.json"
SENTENCEPIECE_MODEL = "tokenizer.model"
# Files of a Hugging Face tokenizer folder copied unchanged (tokenizer.json is rewritten). A slow
# tokenizer's vocab.json / merges.txt are not: they would hold the old vocabulary.
# A space the base model keeps apart from the next character (Mistral's digits: '▁', '3'): a term
# starting so would add '▁3', which then fires before every such number.
BARE_SPACES = ("\u0120", "\u2581")  # 'Ġ' (byte-level), '▁' (SentencePiece)
TOKENIZER_FILES = ("tokenizer_config", "special_tokens", "chat_template", "added_tokens")


@dataclass(kw_only=True)
class ExtendTokenizerConfig:
    """Flags of `tools/extend_tokenizer.py`: candidate list, base tokenizer, N and output folder."""

    candidates: str
    """candidates.json of tools/mine_vocabulary.py (or the folder holding it)."""
    num_tokens: int
    """New ids to add (terms and their intermediate tokens): the embedding grows by this many."""
    output: str
    """New tokenizer folder (HF: tokenizer files; SentencePiece: tokenizer.model) + vocab_extension.json."""
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)

    def __post_init__(self) -> None:
        if self.num_tokens < 1:
            raise ValueError(f"--num-tokens {self.num_tokens} must be >= 1")


def load_candidates(path: str | Path) -> dict:
    """The candidate list of `mine_vocabulary` (a file or the folder holding candidates.json)."""
    path = Path(path)
    if path.is_dir():
        path = path / CANDIDATES_JSON
    if not path.is_file():
        raise ValueError(f"--candidates {path} does not exist: give the output of tools/mine_vocabulary.py")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"--candidates {path} is not a candidate list ({exc})") from None
    if not isinstance(payload, dict) or "candidates" not in payload or "base" not in payload:
        raise ValueError(f"--candidates {path} is not a candidate list of tools/mine_vocabulary.py")
    return payload


@dataclass(kw_only=True)
class Growth:
    """What `grow_chains` added: new vocabulary strings (in id order), merges, terms, passed over."""

    new_strings: list[str] = field(default_factory=list)
    merges: list[tuple[str, str]] = field(default_factory=list)
    terms: list[str] = field(default_factory=list)
    passed_over: dict[str, int] = field(default_factory=dict)

    def pass_over(self, reason: str) -> None:
        self.passed_over[reason] = self.passed_over.get(reason, 0) + 1


class GrowingModel(Protocol):
    """A tokenizer model that new strings are added to, and that encodes a word's old pieces."""

    def apply(self, pieces: list[str]) -> list[str]:
        """The pieces the model (as extended so far) ends with, from a word's old pieces."""

    def known(self, string: str) -> bool:
        """Whether `string` is a vocabulary entry (old or added)."""

    def add(self, strings: list[str], merges: list[tuple[str, str]]) -> None:
        """Append new vocabulary strings and merges (at the lowest priority)."""

    def undo(self, strings: list[str], merges: list[tuple[str, str]]) -> None:
        """Remove what the last `add` appended."""


def grow_chains(candidates: list[dict], num_tokens: int, model: GrowingModel,
                old_pieces: Callable[[dict], list[str]]) -> Growth:
    """Add terms in candidate order, each built left to right by merges, until `num_tokens` new strings.

    A term whose chain does not fit in the remaining ids is passed over for the next one; each added
    term must encode to itself alone, or it is taken back ("merge conflict").
    """
    growth = Growth()
    for cand in candidates:
        if len(growth.new_strings) == num_tokens:
            break
        start = old_pieces(cand)
        if "".join(start) != cand["token"]:
            growth.pass_over("pieces are not its text (byte fallback)")
            continue
        if start[0] in BARE_SPACES:
            growth.pass_over("starts with a bare space piece")
            continue
        pieces = model.apply(start)
        if len(pieces) == 1:
            growth.pass_over("formed by earlier merges")
            continue
        prefixes = ["".join(pieces[:k]) for k in range(2, len(pieces) + 1)]
        new = [s for s in dict.fromkeys(prefixes) if not model.known(s)]
        if len(growth.new_strings) + len(new) > num_tokens:
            growth.pass_over("chain does not fit in N")
            continue
        merges = list(zip([pieces[0], *prefixes[:-1]], pieces[1:]))
        model.add(new, merges)
        if model.apply(start) != [cand["token"]]:
            model.undo(new, merges)
            growth.pass_over("merge conflict")
            continue
        growth.new_strings.extend(new)
        growth.merges.extend(merges)
        growth.terms.append(cand["token"])
    if len(growth.new_strings) < num_tokens:
        raise ValueError(f"--num-tokens {num_tokens} is more than the {len(candidates)} candidates give "
                         f"({len(growth.new_strings)} new tokens); mine with a larger --top or a lower --min-count")
    return growth


# --- byte-level BPE (tokenizer.json) -------------------------------------------------------------


def apply_bpe(pieces: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """HF BPE on a piece sequence: merge the lowest-ranked adjacent pair (leftmost first) until none."""
    pieces = list(pieces)
    while len(pieces) > 1:
        best = min(((ranks[pair], i) for i, pair in enumerate(zip(pieces, pieces[1:])) if pair in ranks),
                   default=None)
        if best is None:
            break
        i = best[1]
        pieces[i:i + 2] = [pieces[i] + pieces[i + 1]]
    return pieces


class GrowingBpe:
    """A `tokenizer.json` BPE model: vocabulary and ranked merges; new merges rank after all others."""

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]]) -> None:
        self.vocab = vocab
        self.ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.added: set[str] = set()

    def apply(self, pieces: list[str]) -> list[str]:
        return apply_bpe(pieces, self.ranks)

    def known(self, string: str) -> bool:
        return string in self.vocab or string in self.added

    def add(self, strings: list[str], merges: list[tuple[str, str]]) -> None:
        self.added.update(strings)
        for pair in merges:
            assert pair not in self.ranks, pair  # its pieces were adjacent after every merge applied
            self.ranks[pair] = len(self.ranks)

    def undo(self, strings: list[str], merges: list[tuple[str, str]]) -> None:
        self.added.difference_update(strings)
        for pair in merges:
            del self.ranks[pair]


def extend_byte_level(folder: Path, candidates: list[dict], num_tokens: int, first_id: int,
                      target: Path) -> Growth:
    """Write `folder`'s tokenizer files into `target` with the BPE vocabulary and merges extended."""
    spec = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    model = spec["model"]
    as_strings = bool(model["merges"]) and isinstance(model["merges"][0], str)  # "a b" (older files) or [a, b]
    merges = [tuple(m.split(" ", 1)) if as_strings else tuple(m) for m in model["merges"]]
    vocab: dict[str, int] = model["vocab"]
    by_id = {i: s for s, i in vocab.items()}
    last = max([*vocab.values(), *(t["id"] for t in spec.get("added_tokens", []))])
    if last + 1 != first_id:
        raise ValueError(f"{folder}/tokenizer.json: the tokenizer has {first_id} ids but its largest is {last}; "
                         "new ids would not follow the old ones")
    growth = grow_chains(candidates, num_tokens, GrowingBpe(vocab, merges),
                         lambda cand: [by_id[i] for i in cand["pieces"]])
    vocab.update((s, first_id + k) for k, s in enumerate(growth.new_strings))
    merges.extend(growth.merges)
    model["merges"] = [" ".join(m) if as_strings else list(m) for m in merges]
    for item in sorted(folder.iterdir()):  # tokenizer files only (a model folder holds weights too)
        if item.is_file() and item.name.startswith(TOKENIZER_FILES) and item.name != "tokenizer.json":
            shutil.copy2(item, target / item.name)
    (target / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False, indent=2), encoding="utf-8")
    return growth


# --- SentencePiece BPE (.model) ------------------------------------------------------------------


class GrowingSentencePiece:
    """A SentencePiece BPE model's NORMAL pieces and scores; new pieces score below all others."""

    def __init__(self, scores: dict[str, float], all_pieces: set[str]) -> None:
        import numpy as np

        self.scores = dict(scores)
        self.all_pieces = all_pieces
        self.floor = np.float32(min(scores.values()))
        self.step = np.float32(2 * np.spacing(np.abs(self.floor)))  # distinct in the proto's float32
        self.added: list[str] = []

    def apply(self, pieces: list[str]) -> list[str]:
        """SentencePiece BPE: merge the adjacent pair whose concatenation scores highest (leftmost first)."""
        pieces = list(pieces)
        while len(pieces) > 1:
            best = max(((self.scores[a + b], -i) for i, (a, b) in enumerate(zip(pieces, pieces[1:]))
                        if a + b in self.scores), default=None)
            if best is None:
                break
            i = -best[1]
            pieces[i:i + 2] = [pieces[i] + pieces[i + 1]]
        return pieces

    def known(self, string: str) -> bool:
        return string in self.all_pieces or string in self.scores

    def next_score(self) -> float:
        return float(self.floor - self.step * (len(self.added) + 1))

    def add(self, strings: list[str], merges: list[tuple[str, str]]) -> None:
        for s in strings:
            self.scores[s] = self.next_score()
            self.added.append(s)

    def undo(self, strings: list[str], merges: list[tuple[str, str]]) -> None:
        for s in strings:
            del self.scores[s]
            self.added.remove(s)


def extend_sentencepiece(model_file: Path, candidates: list[dict], num_tokens: int, target: Path) -> Growth:
    """Write `model_file` with new NORMAL pieces appended to `target`/tokenizer.model."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model_file.read_bytes())
    if proto.trainer_spec.model_type != sentencepiece_model_pb2.TrainerSpec.BPE:
        raise ValueError(f"{model_file} is not a BPE SentencePiece model (model_type "
                         f"{proto.trainer_spec.model_type}); only BPE models are extended")
    normal = sentencepiece_model_pb2.ModelProto.SentencePiece.NORMAL
    scores = {p.piece: p.score for p in proto.pieces if p.type == normal}
    model = GrowingSentencePiece(scores, {p.piece for p in proto.pieces})
    by_id = [p.piece for p in proto.pieces]
    growth = grow_chains(candidates, num_tokens, model, lambda cand: [by_id[i] for i in cand["pieces"]])
    for s in growth.new_strings:
        proto.pieces.add(piece=s, score=model.scores[s], type=normal)
    (target / SENTENCEPIECE_MODEL).write_bytes(proto.SerializeToString())
    return growth


# --- the extended tokenizer and its sidecar ------------------------------------------------------


def added_tokens(old: Tokenizer, new: Tokenizer, growth: Growth, candidates: list[dict]) -> list[dict]:
    """Sidecar rows of the new ids, checked: pieces are `old.tokenize(new.detokenize([id]))`, which
    for a term are its mined pieces, and a term's text encodes to its id alone."""
    by_token = {c["token"]: c for c in candidates}
    terms = set(growth.terms)
    rows = []
    for k, string in enumerate(growth.new_strings):
        token_id = old.vocab_size + k
        text = new.detokenize([token_id])
        pieces = old.tokenize(text)
        cand = by_token.get(string, {})
        if string in terms:
            if pieces != cand["pieces"] or new.tokenize(text) != [token_id]:
                raise RuntimeError(f"term {string!r} (id {token_id}) did not extend cleanly: old pieces "
                                   f"{pieces} vs mined {cand['pieces']}, new ids {new.tokenize(text)}")
        rows.append({"id": token_id, "token": string, "text": text, "pieces": pieces,
                     "count": cand.get("count", 0), "saving": cand.get("saving", 0),
                     "role": "term" if string in by_token else "intermediate"})
    return rows


def extend_tokenizer(config: ExtendTokenizerConfig) -> dict:
    """Extend the base tokenizer with the best candidates: the new folder and its sidecar, atomically."""
    payload = load_candidates(config.candidates)
    tok = config.tokenizer
    old = build_tokenizer(tok.tokenizer_type, tok.tokenizer_model, vocab_size=tok.vocab_size)
    if not isinstance(old, HuggingFaceTokenizer | SentencePieceTokenizer):
        raise ValueError(f"--tokenizer-type {old.tokenizer_type} has no vocabulary to extend")
    base = tokenizer_identity(old)
    if payload["base"].get("sha256") != base.sha256:
        raise ValueError(f"--candidates were mined with another tokenizer ({payload['base'].get('tokenizer_model')}); "
                         f"mine again with --tokenizer-model {tok.tokenizer_model}")
    target = Path(config.output)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ValueError(f"--output {target} already exists and is not empty: choose a new folder or remove it")
    candidates = payload["candidates"]
    with staged_folder(target) as tmp:
        if isinstance(old, HuggingFaceTokenizer):
            growth = extend_byte_level(Path(old.model_path), candidates, config.num_tokens, old.vocab_size, tmp)
            new = build_tokenizer(old.tokenizer_type, tmp)
            final_model = target
        else:
            growth = extend_sentencepiece(Path(old.model_path), candidates, config.num_tokens, tmp)
            new = build_tokenizer(old.tokenizer_type, tmp / SENTENCEPIECE_MODEL)
            final_model = target / SENTENCEPIECE_MODEL
        assert new.vocab_size == old.vocab_size + config.num_tokens and new.eod == old.eod
        rows = added_tokens(old, new, growth, candidates)
        extended = {**asdict(tokenizer_identity(new)), "tokenizer_model": str(final_model.resolve())}
        sidecar = {
            "base": asdict(base), "extended": extended,
            "method": "bpe-merges" if isinstance(old, HuggingFaceTokenizer) else "sentencepiece-pieces",
            "candidates": {"path": str(Path(config.candidates).resolve()), "mined": payload.get("config", {})},
            "num_tokens": config.num_tokens, "terms": sum(r["role"] == "term" for r in rows),
            "intermediates": sum(r["role"] == "intermediate" for r in rows),
            "passed_over": growth.passed_over, "added": rows,
        }
        atomic_write_json(tmp / SIDECAR, sidecar)
    return sidecar


def run_extend(config: ExtendTokenizerConfig) -> int:
    """`tools/extend_tokenizer.py`: extend and print what was added."""
    sidecar = extend_tokenizer(config)
    base, extended = sidecar["base"], sidecar["extended"]
    print(f"{config.output}: {base['vocab_size']:,} -> {extended['vocab_size']:,} tokens "
          f"({sidecar['terms']:,} terms, {sidecar['intermediates']:,} intermediate tokens); "
          f"passed over: {sidecar['passed_over'] or 'none'}")
    print(f"sidecar: {config.output}/{SIDECAR}; use --tokenizer-type {base['tokenizer_type']} --tokenizer-model "
          f"{extended['tokenizer_model']}")
    return 0
