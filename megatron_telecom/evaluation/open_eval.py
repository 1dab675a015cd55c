"""Open-ended (generative) evaluation runs: generate every answer, score it, summarise per category.

A run's result holds the metrics of ``generation_metrics`` per category and overall, the
generation settings and how answers ended (eos, stop, length); its per-sample records (prompt,
references, prediction, tokens, metrics) go beside it (``--log-samples``).
"""

from __future__ import annotations

import time
from collections import Counter

from tqdm import tqdm

from megatron_telecom.evaluation.generation_metrics import aggregate, sample_metrics
from megatron_telecom.evaluation.model_source import LoadedModel
from megatron_telecom.evaluation.open_generation import (
    GenerationConfig,
    encode_prompt,
    greedy_generate,
)
from megatron_telecom.evaluation.open_questions import OpenQuestion
from megatron_telecom.evaluation.results import format_table

KIND = "generative"
"""``kind`` of a generative run in a results file (multiple-choice runs have none)."""
TABLE_METRICS = ("exact_match", "f1", "rouge1", "rouge2", "rougeL", "bleu", "chrf")


def run_name(config: GenerationConfig) -> str:
    """The run's key in its benchmark's section: greedy, or greedy-chat through the chat template."""
    return "greedy-chat" if config.chat else "greedy"


def summarize(records: list[dict]) -> dict:
    """Metrics per category (sorted) and overall, from the per-sample records."""
    categories = sorted({r["category"] for r in records})
    return {"categories": {c: aggregate([r for r in records if r["category"] == c]) for c in categories},
            "overall": aggregate(records)}


def evaluate_open(model: LoadedModel, questions: list[OpenQuestion], config: GenerationConfig,
                  desc: str = "generating") -> tuple[dict, list[dict]]:
    """The result and per-sample records of ``questions`` answered greedily by ``model``."""
    start = time.perf_counter()
    prompts = [encode_prompt(model.tokenizer, q, config.chat) for q in questions]
    with tqdm(total=len(prompts), desc=desc, unit="q") as bar:
        completions = greedy_generate(model, prompts, config, bar.update)
    records = []
    for question, completion in zip(questions, completions, strict=True):
        records.append({"id": question.id, "category": question.category, "prompt": question.prompt,
                        "references": list(question.references), "prediction": completion.text,
                        "finish": completion.finish, "generated_tokens": len(completion.ids),
                        **sample_metrics(completion.text, list(question.references))})
    result = {"kind": KIND, **summarize(records), "max_new_tokens": config.max_new_tokens,
              "until": list(config.until), "chat": config.chat, "batch_size": config.batch_size,
              "finish": dict(Counter(r["finish"] for r in records)), "seconds": time.perf_counter() - start}
    return result, records


def generative_table(result: dict) -> str:
    """Table of one generative run: every metric (in %) overall and per category."""
    def row(name: str, m: dict) -> list[str]:
        return [name, str(m["n"]), *(f"{100 * m[k]:.2f}" if k in m else "-" for k in TABLE_METRICS)]

    rows = [row(c, m) for c, m in result["categories"].items()] + [row("overall", result["overall"])]
    return format_table(["category", "n", "EM %", "F1 %", "ROUGE-1 %", "ROUGE-2 %", "ROUGE-L %", "BLEU", "chrF"],
                        rows)
