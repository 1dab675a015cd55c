"""3GPP working-group classification built from curated 3GPP clause documents.

TelecomGPT's yardstick asks which working group wrote a 3GPP text (16 classes, labelled Tdocs). We
build it from any corpus of specifications instead, and label spec text by its spec's primary
responsible group (``working_groups.py``, a versioned map):

- snippets of ``snippet_words`` words are cut from normative clauses only (no Foreword, Scope,
  References, Definitions/abbreviations, informative annex, NOTE or Editor's note, heading, table
  row or ASN.1), over the curated documents of each spec in clause order;
- label leakage: the spec's own number is rewritten to "the present document" (3GPP's own idiom);
  a snippet that names any working group (RAN1, SA WG2, CT4, a Tdoc number such as R2-...) is dropped;
- train and test are disjoint by specification: per class, a seeded share of its specs is test;
- classes are balanced up to what the corpus holds: each takes at most ``test_per_class`` /
  ``train_per_class`` snippets, round-robin over its specs (seeded), so no one spec dominates;
- deterministic: every choice is a sha256 of (seed, name), no clock, no set order, so the same
  corpus and seed give byte-identical files.

Outputs: the test split in the generic multiple-choice JSONL (``questions.py``: choices = the
working groups present), the train split as SFT JSONL (chat ``messages``, or ``prompt``/``completion``
in the options prompt that scoring uses), and a sidecar of counts per class and per reason.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from megatron_telecom.atomic import atomic_write_json
from megatron_telecom.data.working_groups import (
    MAP_VERSION,
    WORKING_GROUPS,
    spec_type,
    working_group,
)
from megatron_telecom.evaluation.questions import Question, build_prompt, question_record
from megatron_telecom.jsonl import read_jsonl, write_jsonl

QUESTION_TEMPLATE = "Text from a 3GPP specification:\n{text}\nWhich 3GPP working group is responsible for it?"
"""The question of every item (test and train, ours and GSMA's 3gpp_tsg): the snippet, then the ask."""
TASK = "working_group"
"""The ``task`` recorded on every train row (the SFT builder's task name)."""
PRESENT_DOCUMENT = "the present document"

_HEADING = re.compile(r"^#{1,9}\s+(.*)$")
_SKIPPED_LINE = re.compile(r"^\s*(?:\||\+[-=+:]|</?\w+[ >]|NOTE\b|Editor.s [Nn]ote|(?:Figure|Table)\s+[\dA-Z][\w.-]*:|-- ?ASN1)")
_NON_NORMATIVE_TOP = {"1", "2", "3"}  # Scope, References, Definitions/symbols/abbreviations
_MARKUP = re.compile(r"\*\*|__|\\(?=[^\w\s])")
WORKING_GROUP_MENTION = re.compile(
    r"\b(?:TSG[\s_-]*)?(?:RAN|SA|CT|GERAN)[\s_-]*(?:WG[\s_-]*)?[1-6]\b|\bRAN_AH1\b|\b[RSC][1-6P]-\d{5,}"
    r"|\b(?:RAN|SA|CT)\s+[Ww]orking\s+[Gg]roup\b")
"""A working group named in text: RAN1, SA WG2, TSG CT WG4, CT 1, RAN_AH1, a Tdoc number (R2-2301234)."""
ANY_SPEC_NUMBER = re.compile(r"(?:\b3GPP\s+)?(?:\bT[SR]\s*)?(?<![\d.])(?:2[1-9]|3[0-8]|4[1-9]|5[0-5])\.\d{3}(?:-\d+)?"
                             r"(?![\d.]|\s*(?:[kMG]?Hz|dB|ms|%))")
"""A 3GPP spec number (series 21-38, 41-55) as text cites it; not a decimal such as 30.720 MHz."""


@dataclass(frozen=True, kw_only=True)
class WGBenchmarkConfig:
    """Flags of ``tools/build_wg_benchmark.py``."""

    input: list[str]
    """Curated 3GPP JSONL: files, globs or folders (their *.jsonl, *.jsonl.gz), as tools/curate_corpus.py writes."""
    output_dir: str
    """Folder for test.jsonl, train.jsonl and wg_benchmark.json."""
    seed: int = 1234
    """Seeds which specs are test and which snippets are taken (same corpus + seed = same files)."""
    snippet_words: int = 80
    """Words per snippet (whitespace-separated; a fixed length, tokenizer-free)."""
    test_per_class: int = 100
    """Test snippets per working group at most (fewer where the class's test specs hold fewer)."""
    train_per_class: int = 400
    """Train snippets per working group at most."""
    test_spec_fraction: float = 0.3
    """Share of each class's specs that are test (at least one, and at least one left for train)."""
    min_specs_per_class: int = 2
    """A class with fewer specs is left out (a spec-disjoint split needs one spec per side)."""
    spec_types: tuple[str, ...] = ("TS",)
    """Document types used (TS: normative specifications; add TR for technical reports)."""
    clause_kinds: tuple[str, ...] = ("text",)
    """Curated clause kinds used (text; table and asn1 hold few words of prose)."""
    mask_all_spec_numbers: bool = False
    """Also rewrite every other spec number to '[spec]' (a 38.3xx citation hints RAN2 by the numbering)."""
    train_format: Literal["chat", "completion"] = "chat"
    """chat: {"messages": user question, assistant WG}; completion: the options prompt and ' WG' (as scored)."""

    def __post_init__(self) -> None:
        for flag, value in (("--snippet-words", self.snippet_words), ("--test-per-class", self.test_per_class),
                            ("--min-specs-per-class", self.min_specs_per_class)):
            if value < 1:
                raise ValueError(f"{flag} must be >= 1, got {value}")
        if self.train_per_class < 0:
            raise ValueError(f"--train-per-class must be >= 0, got {self.train_per_class}")
        if not 0 < self.test_spec_fraction < 1:
            raise ValueError(f"--test-spec-fraction must be in (0, 1), got {self.test_spec_fraction}")
        if self.min_specs_per_class < 2:
            raise ValueError("--min-specs-per-class must be >= 2: a spec-disjoint split needs a spec on each side")


@dataclass(frozen=True)
class Snippet:
    """One labelled snippet and where it comes from."""

    id: str
    text: str
    spec: str
    working_group: str
    doc_id: str
    clause: str


@dataclass
class WGBenchmark:
    """The two splits, the class names (choice order) and the sidecar's figures."""

    classes: list[str]
    test: list[Snippet]
    train: list[Snippet]
    report: dict = field(default_factory=dict)


def _key(seed: int, name: str) -> str:
    return hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()


def _flat(record: dict) -> dict:
    """Curated records carry metadata top-level; datatrove's intermediate shards nest it."""
    return {**record.get("metadata", {}), **record} if isinstance(record.get("metadata"), dict) else record


def _top_normative(title: str, state: bool) -> bool:
    """Whether text under the heading ``title`` is normative, given the state before it."""
    if title.startswith("Annex"):
        return "informative" not in title.lower()
    first = title.split(" ", 1)[0]
    if first[:1].isdigit():
        return first.split(".")[0] not in _NON_NORMATIVE_TOP
    if re.match(r"^[A-Z](?:\.\d+)+$", first):  # B.1: inside the annex already judged
        return state
    return False  # Foreword, Introduction, unnumbered front matter


def normative_sections(text: str, clause_path: str) -> list[tuple[str, str]]:
    """(clause, body text) of the normative sections of one clause document, headings and
    non-prose lines dropped; ``clause_path`` gives the context the document starts in."""
    path = clause_path.split(" > ") if clause_path else [""]
    state = _top_normative(path[0], False) if path[0] else False
    clause = path[-1].split(" ", 1)[0]
    sections: list[tuple[str, list[str]]] = [(clause, [])] if state else []
    for line in text.split("\n"):
        heading = _HEADING.match(line)
        if heading:
            title = heading.group(1).strip()
            state = _top_normative(title, state)
            if state:
                sections.append((title.split(" ", 1)[0], []))
        elif state and line.strip() and not _SKIPPED_LINE.match(line):
            sections[-1][1].append(line)
    return [(c, _MARKUP.sub("", "\n".join(lines))) for c, lines in sections if lines]


def own_number_pattern(spec: str) -> re.Pattern:
    """The spec's own number as text cites it: '3GPP TS 38.321', 'TS 38.321', '38.321' (not 38.3210)."""
    return re.compile(rf"(?:\b3GPP\s+)?(?:\bT[SR]\s*)?(?<![\d.]){re.escape(spec)}(?![\d]|-\d)")


def _snippets_of_spec(spec: str, label: str, documents: list[dict], words: int, mask_all: bool,
                      reasons: Counter) -> list[Snippet]:
    """Fixed-length windows over one spec's normative prose, leakage rewritten or dropped."""
    own = own_number_pattern(spec)
    out: list[Snippet] = []
    for doc in documents:
        stream: list[tuple[str, str]] = []  # (word, clause)
        for clause, body in normative_sections(doc["text"], doc.get("clause_path", "")):
            body, rewritten = own.subn(PRESENT_DOCUMENT, body)  # before cutting: snippets keep their length
            reasons["own_spec_number_rewritten"] += rewritten
            if mask_all:
                body, masked = ANY_SPEC_NUMBER.subn("[spec]", body)
                reasons["other_spec_numbers_masked"] += masked
            stream.extend((w, clause) for w in body.split())
        for start in range(0, len(stream) - words + 1, words):
            text = " ".join(w for w, _ in stream[start:start + words])
            if WORKING_GROUP_MENTION.search(text):
                reasons["names_working_group"] += 1
                continue
            reasons["snippets"] += 1
            out.append(Snippet(f"{doc['id']}:{start // words}", text, spec, label, doc["id"],
                               stream[start][1]))
    return out


def input_files(patterns: Iterable[str]) -> list[Path]:
    """Files of ``--input``: a folder gives its *.jsonl and *.jsonl.gz; a pattern matching nothing is an error."""
    files: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        found = (sorted([*path.glob("*.jsonl"), *path.glob("*.jsonl.gz")]) if path.is_dir()
                 else sorted(Path().glob(pattern)) if any(c in pattern for c in "*?[") else [path] if path.is_file()
                 else [])
        if not found:
            raise ValueError(f"--input {pattern!r}: no curated JSONL file there")
        files.extend(f for f in found if f not in files)
    return files


def read_specs(files: Iterable[Path], config: WGBenchmarkConfig, skipped: Counter) -> dict[str, list[dict]]:
    """Curated 3GPP clause documents grouped by spec number, each spec in clause order."""
    specs: dict[str, list[dict]] = defaultdict(list)
    for path in files:
        for record in map(_flat, read_jsonl(path)):
            if record.get("source") != "3gpp" or not record.get("spec_number"):
                skipped["not_3gpp"] += 1
            elif (kind := spec_type(str(record["spec_number"]), record.get("spec_type"))) not in config.spec_types:
                skipped[f"spec_type_{kind}"] += 1
            elif record.get("clause_kind", "text") not in config.clause_kinds:
                skipped[f"clause_kind_{record.get('clause_kind')}"] += 1
            elif isinstance(record.get("text"), str):
                documents = specs[str(record["spec_number"])]
                doc_id = str(record.get("id") or f"{record['spec_number']}#{len(documents):04d}")
                documents.append(record | {"spec_type": kind, "id": doc_id})
    for documents in specs.values():
        documents.sort(key=lambda d: (d.get("clause_index", 0), str(d.get("id", ""))))
    return dict(sorted(specs.items()))


def _round_robin(groups: list[list[Snippet]], limit: int) -> list[Snippet]:
    """Up to ``limit`` snippets, one from each group in turn."""
    out: list[Snippet] = []
    for depth in range(max((len(g) for g in groups), default=0)):
        out.extend(g[depth] for g in groups if depth < len(g))
        if len(out) >= limit:
            break
    return out[:limit]


def refuse_single_class(labels: dict[str, str], stage: str) -> None:
    """One line when the corpus cannot make a classification benchmark."""
    classes = Counter(labels.values())
    if len(classes) < 2:
        held = ", ".join(f"{wg}: {n} specification(s)" for wg, n in classes.items()) or "no labelled specification"
        raise ValueError(f"--input: {stage} holds one working group only ({held}); a classification "
                         "benchmark needs specifications of at least two working groups")


def build_wg_benchmark(documents_by_spec: dict[str, list[dict]], config: WGBenchmarkConfig) -> WGBenchmark:
    """Label, cut, split by spec and balance: the benchmark of one corpus."""
    reasons: Counter = Counter()
    labels: dict[str, str] = {}
    how: dict[str, str] = {}
    for spec, documents in documents_by_spec.items():
        label = working_group(spec, documents[0].get("spec_type", "TS"))
        if label is None:
            reasons["spec_without_working_group"] += 1
        else:
            labels[spec], how[spec] = label.working_group, label.how
    refuse_single_class(labels, "the corpus")
    snippets = {spec: _snippets_of_spec(spec, wg, documents_by_spec[spec], config.snippet_words,
                                        config.mask_all_spec_numbers, reasons) for spec, wg in labels.items()}
    by_class: dict[str, list[str]] = defaultdict(list)
    for spec in sorted(labels, key=lambda s: _key(config.seed, s)):
        if snippets[spec]:
            by_class[labels[spec]].append(spec)
        else:
            reasons["spec_without_normative_snippet"] += 1
    dropped = {wg: len(specs) for wg, specs in by_class.items() if len(specs) < config.min_specs_per_class}
    kept = {wg: specs for wg, specs in by_class.items() if wg not in dropped}
    refuse_single_class({s: wg for wg, specs in kept.items() for s in specs},
                        f"with at least {config.min_specs_per_class} specifications per class, the corpus")
    classes = [wg for wg in WORKING_GROUPS if wg in kept]
    test, train, per_class, splits = [], [], {}, {}
    for wg in classes:
        specs = kept[wg]
        n_test = min(max(1, round(config.test_spec_fraction * len(specs))), len(specs) - 1)
        sides = {"test": specs[:n_test], "train": specs[n_test:]}
        pools = {side: [sorted(snippets[s], key=lambda x: _key(config.seed, x.id)) for s in side_specs]
                 for side, side_specs in sides.items()}
        chosen_test = _round_robin(pools["test"], config.test_per_class)
        chosen_train = _round_robin(pools["train"], config.train_per_class)
        test += chosen_test
        train += chosen_train
        per_class[wg] = {"specs_test": len(sides["test"]), "specs_train": len(sides["train"]),
                         "available_test": sum(map(len, pools["test"])),
                         "available_train": sum(map(len, pools["train"])),
                         "test": len(chosen_test), "train": len(chosen_train)}
        splits.update({s: {"working_group": wg, "how": how[s], "split": side, "snippets": len(snippets[s])}
                       for side, side_specs in sides.items() for s in side_specs})
    report = {
        "map_version": MAP_VERSION, "specs_read": len(documents_by_spec), "classes": classes, "per_class": per_class,
        "classes_dropped": {wg: f"{n} specification(s) < --min-specs-per-class {config.min_specs_per_class}"
                            for wg, n in sorted(dropped.items())},
        "specs": dict(sorted(splits.items())), "counts": dict(sorted(reasons.items())),
        "test": len(test), "train": len(train), "config": {k: v for k, v in asdict(config).items() if k != "output_dir"},
    }
    return WGBenchmark(classes, test, train, report)


def wg_question(snippet_id: str, text: str, classes: list[str], gold: str) -> Question:
    """The multiple-choice question of a snippet: choices are the working groups (``classes``)."""
    return Question(snippet_id, QUESTION_TEMPLATE.format(text=text), tuple(classes), classes.index(gold), gold)


def test_records(benchmark: WGBenchmark) -> Iterator[dict]:
    """The test split in the generic multiple-choice JSONL (``read_questions_jsonl`` reads it)."""
    for s in benchmark.test:
        record = question_record(wg_question(s.id, s.text, benchmark.classes, s.working_group))
        yield record | {"spec": s.spec, "clause": s.clause}


def train_records(benchmark: WGBenchmark, train_format: str = "chat") -> Iterator[dict]:
    """The train split as SFT rows (``tools/preprocess_sft.py`` input), each with its provenance."""
    for s in benchmark.train:
        question = wg_question(s.id, s.text, benchmark.classes, s.working_group)
        if train_format == "chat":
            row: dict = {"messages": [{"role": "user", "content": question.question},
                                      {"role": "assistant", "content": s.working_group}]}
        else:
            context, continuations, _ = build_prompt(question, "options", [])
            row = {"prompt": context, "completion": continuations[question.gold]}
        yield row | {"task": TASK, "source": s.doc_id, "spec": s.spec, "clause": s.clause}


def corpus_wg_benchmark(config: WGBenchmarkConfig) -> WGBenchmark:
    """The benchmark of the curated files ``config.input`` (what other data builders call: e.g.
    ``train_records(corpus_wg_benchmark(config))`` are the working-group SFT rows)."""
    skipped: Counter = Counter()
    benchmark = build_wg_benchmark(read_specs(input_files(config.input), config, skipped), config)
    benchmark.report["counts"] = dict(sorted((benchmark.report["counts"] | skipped).items()))
    return benchmark


def run_build_wg_benchmark(config: WGBenchmarkConfig) -> None:
    """Read the corpus, build, write test.jsonl, train.jsonl and wg_benchmark.json; print the counts."""
    benchmark = corpus_wg_benchmark(config)
    out = Path(config.output_dir)
    write_jsonl(out / "test.jsonl", test_records(benchmark))
    write_jsonl(out / "train.jsonl", train_records(benchmark, config.train_format))
    n = benchmark.report["test"]
    largest = max((c["test"] for c in benchmark.report["per_class"].values()), default=0)
    benchmark.report["baselines"] = {"random": 1 / len(benchmark.classes), "majority": largest / n if n else 0.0}
    atomic_write_json(out / "wg_benchmark.json", benchmark.report)
    print(f"{benchmark.report['specs_read']} specifications read; {len(benchmark.classes)} working groups "
          f"({benchmark.report['map_version']})")
    print(f"{'class':<6} {'specs test':>10} {'specs train':>11} {'test':>6} {'train':>6}")
    for wg, c in benchmark.report["per_class"].items():
        print(f"{wg:<6} {c['specs_test']:>10} {c['specs_train']:>11} {c['test']:>6} {c['train']:>6}")
    print(f"wrote {n} test questions and {benchmark.report['train']} train rows to {out}; "
          f"counts {json.dumps(benchmark.report['counts'])}")
