"""Held-out split by document: text that evaluation measures and training never sees.

A document goes to the held-out side when a hash of its id (SHA-256 of `seed` + id, read as a
number in [0, 1)) falls below the held-out fraction. The decision depends on the document alone,
so it is deterministic, needs one pass and no memory, and stays put when the corpus grows or is
re-sharded: a document held out once is held out in every later version of the corpus.
Documents without the id key are identified by the SHA-256 of their text. Every document lands on
exactly one side; records with the same id land on the same side. Splitting by document (not by
sample, as `--split` does inside one dataset) keeps every sentence of a held-out document out of
training. Both sides are written atomically, with a `split.json` summary beside them, and
optionally a sample of the held-out side (the head of each document) for cheaper evaluation.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

from megatron_telecom.atomic import atomic_file, atomic_write_json
from megatron_telecom.data.jsonl_input import resolve_inputs
from megatron_telecom.jsonl import read_jsonl, write_jsonl

DEFAULT_SEED = "megatron-telecom-heldout"


@dataclass(kw_only=True)
class SplitHeldoutConfig:
    """Flags of `tools/split_heldout.py`: which documents, where to, and the rule's parameters."""

    input: list[str]
    """JSONL(.gz) files or globs."""
    output_dir: str
    """Gets train.jsonl, heldout.jsonl, split.json."""
    heldout_fraction: float = 0.1
    """Expected share of documents held out."""
    id_key: str = "id"
    """Key of the document id (without it: the text's SHA-256)."""
    seed: str = DEFAULT_SEED
    """Salt of the hash (changes the split)."""
    sample_chars: int | None = None
    """Also write heldout_sample.jsonl: each held-out document's first paragraphs up to this many characters (cheaper evaluation)."""

    def __post_init__(self) -> None:
        if not 0 < self.heldout_fraction < 1:
            raise ValueError(f"--heldout-fraction {self.heldout_fraction} must be between 0 and 1")


@dataclass(kw_only=True)
class SplitReport:
    """What a split wrote: documents and characters per side, the rule's parameters."""

    inputs: list[str]
    heldout_fraction: float
    seed: str
    id_key: str
    documents: dict[str, int] = field(default_factory=lambda: {"train": 0, "heldout": 0})
    characters: dict[str, int] = field(default_factory=lambda: {"train": 0, "heldout": 0})


def document_id(record: dict, id_key: str) -> str:
    """The record's id under `id_key`, else the SHA-256 of its text."""
    if record.get(id_key) is not None:
        return str(record[id_key])
    return "sha256:" + hashlib.sha256(str(record.get("text", "")).encode("utf-8")).hexdigest()


def is_heldout(doc_id: str, fraction: float, seed: str = DEFAULT_SEED) -> bool:
    """Whether the document with this id belongs to the held-out side."""
    digest = hashlib.sha256(f"{seed}\0{doc_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def head_of_document(record: dict, max_chars: int) -> dict:
    """The record with its text cut to the paragraphs within the first `max_chars` characters
    (at least the first paragraph's first `max_chars`): bounds the cost of evaluating long documents."""
    text = str(record.get("text", ""))
    if len(text) <= max_chars:
        return record
    cut = text.rfind("\n\n", 0, max_chars + 1)
    return {**record, "text": text[:cut if cut > 0 else max_chars]}


def split_heldout(config: SplitHeldoutConfig) -> SplitReport:
    """Split JSONL documents into `output_dir/train.jsonl` and `output_dir/heldout.jsonl`.

    With `sample_chars`, also `heldout_sample.jsonl`: the head of each held-out document.
    """
    fraction, id_key, seed = config.heldout_fraction, config.id_key, config.seed
    files = [str(f.path) for f in resolve_inputs(config.input)]
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    report = SplitReport(inputs=files, heldout_fraction=fraction, seed=seed, id_key=id_key)
    paths = {side: output_dir / f"{side}.jsonl" for side in ("train", "heldout")}
    with ExitStack() as stack:  # both files appear, or neither
        out = {side: stack.enter_context(atomic_file(path)) for side, path in paths.items()}
        for record in (r for name in files for r in read_jsonl(name)):
            side = "heldout" if is_heldout(document_id(record, id_key), fraction, seed) else "train"
            out[side].write(json.dumps(record, ensure_ascii=False) + "\n")
            report.documents[side] += 1
            report.characters[side] += len(str(record.get("text", "")))
        empty = [side for side, n in report.documents.items() if n == 0]
        if empty:
            raise ValueError(f"the split leaves no {' and no '.join(empty)} documents "
                             f"({sum(report.documents.values())} in all): change --heldout-fraction "
                             "or give more documents")
    if config.sample_chars:
        write_jsonl(output_dir / "heldout_sample.jsonl", (head_of_document(r, config.sample_chars)
                                                          for r in read_jsonl(paths["heldout"])))
    atomic_write_json(output_dir / "split.json", asdict(report))
    return report


def run_split(config: SplitHeldoutConfig) -> int:
    """`tools/split_heldout.py`: split and print documents and characters per side."""
    try:
        report = split_heldout(config)
    except OSError as exc:
        raise ValueError(str(exc)) from exc
    for side in ("train", "heldout"):
        print(f"{side:<8} {report.documents[side]:>7,} documents {report.characters[side]:>13,} characters"
              f" -> {config.output_dir}/{side}.jsonl")
    return 0
