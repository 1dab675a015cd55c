"""lm-evaluation-harness ``process_results`` of the open-ended tasks: our per-sample metrics of the
first generation against the record's references, and (references, prediction) items for lm-eval's
own corpus ``bleu`` and ``chrf`` aggregations."""

from megatron_telecom.evaluation.generation_metrics import sample_metrics

MAX_REFERENCES = 16
"""lm-eval's BLEU/chrF aggregation zips the reference lists, so each is padded to this many with
None, which sacrebleu skips (as ``generation_metrics.corpus_metrics`` does)."""


def process_results(doc: dict, results: list[str]) -> dict:
    """Per-sample metrics, and the items of the corpus metrics."""
    references = [doc["references"]] if isinstance(doc["references"], str) else list(doc["references"])
    references = [r.strip() for r in references]
    padded = (references + [None] * MAX_REFERENCES)[:MAX_REFERENCES]
    return {**sample_metrics(results[0], references), "bleu": (padded, results[0]), "chrf": (padded, results[0])}
