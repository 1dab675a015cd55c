"""TeleQnA scoring run: per-question log-likelihoods, lm-evaluation-harness metrics, shard merging.

Metrics follow lm-evaluation-harness's ``multiple_choice`` output type: ``acc`` is 1 when the
option with the highest summed log-likelihood is the gold one (first on ties, as ``np.argmax``),
``acc_norm`` the same after dividing each log-likelihood by the character length of its choice
text (without the leading space). ``random`` is the expected accuracy of a uniform guess,
the mean of 1/number-of-options. Every figure is computed from the per-question records by
``summarize``, for one process and for merged shards alike, so both give the same result.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

from tqdm import tqdm

from megatron_telecom.evaluation.loglikelihood import encode_pair, score_continuations
from megatron_telecom.evaluation.model_source import LoadedModel
from megatron_telecom.evaluation.teleqna import (
    PROMPT_TEMPLATES,
    Question,
    build_prompt,
    shot_pool,
    shots_for,
)


@dataclass(frozen=True)
class TeleQnAConfig:
    """What a TeleQnA run scores and how."""

    mode: str = "options"
    """``options`` (option texts as continuations) or ``letter`` (option labels, MMLU-style)."""
    shots: int = 0
    """Few-shot examples from the fixed per-category pool."""
    limit: int | None = None
    """Size of the category-stratified sample (None: every question)."""
    num_shards: int = 1
    """Processes sharing the sample; shard i takes questions i, i + n, ..."""
    shard_index: int = 0
    """Which shard this process scores."""

    def validate(self) -> None:
        """Raise ValueError naming the flag to change."""
        if self.mode not in PROMPT_TEMPLATES:
            raise ValueError(f"--mode {self.mode}: choose one of {', '.join(PROMPT_TEMPLATES)}")
        if self.shots < 0:
            raise ValueError(f"--shots {self.shots}: give 0 or more")
        if not 0 <= self.shard_index < self.num_shards:
            raise ValueError(f"--shard-index {self.shard_index}: must be in [0, --num-shards={self.num_shards})")

    @property
    def name(self) -> str:
        """Key of this run in a results file, e.g. ``options-0shot``."""
        return f"{self.mode}-{self.shots}shot"


def score_question(model: LoadedModel, question: Question, mode: str, examples: list[Question]) -> dict:
    """Per-question record: id, category, gold, and each option's log-likelihood, tokens, chars."""
    context, continuations, choices = build_prompt(question, mode, examples)
    pairs = [encode_pair(model.tokenizer, context, c) for c in continuations]
    assert all(p[0] == pairs[0][0] for p in pairs), "context ids depend only on the context"
    scores = score_continuations(model.model, pairs[0][0], [p[1] for p in pairs])
    return {
        "id": question.id,
        "category": question.category,
        "gold": question.gold + 1,
        "loglik": [s.loglik for s in scores],
        "num_tokens": [s.num_tokens for s in scores],
        "num_chars": [len(c) for c in choices],
    }


def score_questions(model: LoadedModel, questions: list[Question], sample: list[Question],
                    config: TeleQnAConfig) -> list[dict]:
    """Records of this shard's part of ``sample`` (shots drawn from ``questions``), with progress."""
    pool = shot_pool(questions, config.shots)
    mine = list(enumerate(sample))[config.shard_index::config.num_shards]
    records = []
    for order, question in tqdm(mine, desc=f"teleqna {config.name}", unit="q", mininterval=2.0):
        record = score_question(model, question, config.mode, shots_for(question, pool, config.shots))
        records.append({"order": order, **record})
    return records


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))


def _metrics(records: list[dict]) -> dict:
    n = len(records)
    acc = sum(_argmax(r["loglik"]) == r["gold"] - 1 for r in records)
    norm = sum(_argmax([ll / c for ll, c in zip(r["loglik"], r["num_chars"])]) == r["gold"] - 1 for r in records)
    random = sum(1 / len(r["loglik"]) for r in records)
    return {"n": n, "acc": acc / n, "acc_norm": norm / n, "random": random / n} if n else {"n": 0}


def summarize(records: list[dict]) -> dict:
    """Overall and per-category acc, acc_norm and random baseline of per-question records."""
    records = sorted(records, key=lambda r: r["order"])
    groups: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        groups[record["category"]].append(record)
    return {"overall": _metrics(records), "categories": {c: _metrics(g) for c, g in sorted(groups.items())}}


def run_teleqna(model: LoadedModel, questions: list[Question], sample: list[Question],
                config: TeleQnAConfig) -> tuple[dict, list[dict]]:
    """Score this shard and return (result section, per-question records)."""
    config.validate()
    start = time.perf_counter()
    records = score_questions(model, questions, sample, config)
    seconds = time.perf_counter() - start
    result = {
        "mode": config.mode,
        "shots": config.shots,
        "limit": config.limit,
        "sample_size": len(sample),
        "prompt_template": PROMPT_TEMPLATES[config.mode],
        **summarize(records),
        "seconds": round(seconds, 3),
        "questions_per_second": round(len(records) / seconds, 3) if seconds else None,
    }
    if config.num_shards > 1:
        result["shard"] = {"index": config.shard_index, "num_shards": config.num_shards}
        result["records"] = records
    return result, records


def merge_shards(results: list[dict]) -> dict:
    """One result from the shard results of one run (every shard index exactly once)."""
    first = results[0]
    num_shards = first.get("shard", {}).get("num_shards")
    if num_shards is None:
        raise ValueError("merge takes shard results (written with --num-shards > 1)")
    indexes = sorted(r.get("shard", {}).get("index", -1) for r in results)
    if indexes != list(range(num_shards)):
        raise ValueError(f"merge needs shards 0..{num_shards - 1} once each, got {indexes}")
    for key in ("mode", "shots", "limit", "sample_size", "prompt_template"):
        if any(r[key] != first[key] for r in results):
            raise ValueError(f"shards disagree on {key}: they come from different runs")
    records = [rec for r in results for rec in r["records"]]
    seconds = max(r["seconds"] for r in results)
    merged = {k: first[k] for k in ("mode", "shots", "limit", "sample_size", "prompt_template")}
    merged.update(summarize(records), seconds=seconds, num_shards=num_shards,
                  questions_per_second=round(len(records) / seconds, 3) if seconds else None)
    return merged
