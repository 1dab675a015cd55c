"""Multiple-choice accuracy runs (any benchmark): per-question log-likelihoods, metrics, baselines, shards.

Metrics follow lm-evaluation-harness's ``multiple_choice`` output type: ``acc`` is 1 when the
option with the highest summed log-likelihood is the gold one (first on ties, as ``np.argmax``),
``acc_norm`` the same after dividing each log-likelihood by the character length of its choice
text (without the leading space). ``random`` is the expected accuracy of a uniform guess,
the mean of 1/number-of-options; ``majority`` is the accuracy of always answering the choice
position that is most often right in the scored sample (ORAN-Bench's key is skewed: 35% of
``fin_E``'s answers are option 1), so a model that only learnt the key's bias shows up. Every figure is computed from the per-question records by
``summarize``, for one process and for merged shards alike, so both give the same result.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from tqdm import tqdm

from megatron_telecom.evaluation.questions import (
    PROMPT_TEMPLATES,
    Question,
    build_prompt,
    shot_pool,
    shots_for,
)

if TYPE_CHECKING:  # torch is imported when scoring starts, not when the config is parsed
    from megatron_telecom.evaluation.loglikelihood import ContinuationScore, TokenScorer

QUESTIONS_PER_STEP = 64  # questions handed to the scorer at once (batched by length; progress step)
Mode = Literal["options", "letter"]
"""Prompt formats: the keys of ``questions.PROMPT_TEMPLATES``."""


@dataclass(frozen=True, kw_only=True)
class ChoiceScoringConfig:
    """What a multiple-choice run scores and how."""

    mode: Mode = "options"
    """options: option texts as continuations; letter: option labels, MMLU-style."""
    shots: int = 0
    """Few-shot examples from the fixed per-category pool."""
    limit: int | None = None
    """Size of the category-stratified sample (None: every question)."""
    num_shards: int = 1
    """Processes sharing the sample; shard i takes questions i, i + n, ..."""
    shard_index: int = 0
    """Which shard this process scores."""
    tokens_per_batch: int | None = None
    """Padded tokens per forward, questions batched up to it (None: 2048 on CPU, 32768 on GPU)."""

    def __post_init__(self) -> None:
        if self.shots < 0:
            raise ValueError(f"--shots {self.shots}: give 0 or more")
        if not 0 <= self.shard_index < self.num_shards:
            raise ValueError(f"--shard-index {self.shard_index}: must be in [0, --num-shards={self.num_shards})")
        if self.tokens_per_batch is not None and self.tokens_per_batch < 1:
            raise ValueError(f"--tokens-per-batch {self.tokens_per_batch}: give at least 1")

    @property
    def name(self) -> str:
        """Key of this run in a results file, e.g. ``options-0shot``."""
        return f"{self.mode}-{self.shots}shot"


def _record(question: Question, choices: list[str], scores: list[ContinuationScore]) -> dict:
    """Per-question record: id, category, gold, and each option's log-likelihood, tokens, chars."""
    return {
        "id": question.id,
        "category": question.category,
        "gold": question.gold + 1,
        "loglik": [s.loglik for s in scores],
        "num_tokens": [s.num_tokens for s in scores],
        "num_chars": [len(c) for c in choices],
    }


def score_batch(scorer: TokenScorer, tokenizer, questions: list[Question], mode: str,
                examples: list[list[Question]], tokens_per_batch: int) -> list[dict]:
    """Records of ``questions`` (``examples``: each question's shots), scored together.

    The one path from questions to per-option log-likelihoods: ``tools/evaluate.py`` passes an
    ``HFScorer``, the trainer its megatron scorer; prompts, tokens and sums are the same.
    """
    from megatron_telecom.evaluation.loglikelihood import encode_pair, score_requests

    prompts = [build_prompt(q, mode, shots) for q, shots in zip(questions, examples)]
    requests = []
    for context, continuations, _ in prompts:
        pairs = [encode_pair(tokenizer, context, c) for c in continuations]
        assert all(p[0] == pairs[0][0] for p in pairs), "context ids depend only on the context"
        requests.append((pairs[0][0], [p[1] for p in pairs]))
    scores = score_requests(scorer, requests, tokens_per_batch)
    return [_record(q, choices, s) for q, (_, _, choices), s in zip(questions, prompts, scores)]


def score_questions(scorer: TokenScorer, tokenizer, questions: list[Question], sample: list[Question],
                    config: ChoiceScoringConfig, tokens_per_batch: int, desc: str = "questions",
                    progress: bool = True) -> list[dict]:
    """Records of this shard's part of ``sample`` (shots drawn from ``questions``), with progress."""
    pool = shot_pool(questions, config.shots)
    mine = list(enumerate(sample))[config.shard_index::config.num_shards]
    records = []
    with tqdm(total=len(mine), desc=f"{desc} {config.name}", unit="q", mininterval=2.0,
              disable=not progress) as bar:
        for lo in range(0, len(mine), QUESTIONS_PER_STEP):
            orders, chunk = zip(*mine[lo:lo + QUESTIONS_PER_STEP])
            shots = [shots_for(q, pool, config.shots) for q in chunk]
            for order, record in zip(orders, score_batch(scorer, tokenizer, list(chunk), config.mode,
                                                         shots, tokens_per_batch)):
                records.append({"order": order, **record})
            bar.update(len(chunk))
    return records


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))


def _metrics(records: list[dict]) -> dict:
    n = len(records)
    if not n:
        return {"n": 0}
    acc = sum(_argmax(r["loglik"]) == r["gold"] - 1 for r in records)
    norm = sum(_argmax([ll / c for ll, c in zip(r["loglik"], r["num_chars"])]) == r["gold"] - 1 for r in records)
    random = sum(1 / len(r["loglik"]) for r in records)
    majority = max(Counter(r["gold"] for r in records).values())
    return {"n": n, "acc": acc / n, "acc_norm": norm / n, "random": random / n, "majority": majority / n}


def summarize(records: list[dict]) -> dict:
    """Overall and per-category acc, acc_norm, random and majority baselines of per-question records."""
    records = sorted(records, key=lambda r: r["order"])
    groups: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        groups[record["category"]].append(record)
    return {"overall": _metrics(records), "categories": {c: _metrics(g) for c, g in sorted(groups.items())}}


def evaluate_questions(scorer: TokenScorer, tokenizer, questions: list[Question], sample: list[Question],
                       config: ChoiceScoringConfig, tokens_per_batch: int,
                       desc: str = "questions") -> tuple[dict, list[dict]]:
    """Score this shard and return (result section, per-question records)."""
    start = time.perf_counter()
    records = score_questions(scorer, tokenizer, questions, sample, config, tokens_per_batch, desc)
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
