"""Metrics of generated answers against one or more references: EM, token F1, ROUGE, BLEU, chrF.

- ``exact_match`` and ``f1``: SQuAD v1.1's official definitions (lower case, punctuation and the
  articles a/an/the removed, whitespace collapsed; F1 over the bags of the normalised tokens), the
  best over a sample's references, as the SQuAD script takes it. (``torchmetrics``' ``squad``
  computes the same; the tests check it. Importing torchmetrics costs seconds, so it is not used here.)
- ``rouge1``, ``rouge2``, ``rougeL``: ``rouge-score``'s F-measure (Porter stemmer on), the best over
  the references.
- ``bleu`` and ``chrf``: ``sacrebleu``'s corpus-level BLEU and chrF (default settings, every
  reference of every sample; a sample with fewer references leaves the others None, which sacrebleu
  skips), over a category or the whole set.

Per-sample metrics are averaged; every value is in [0, 1] except BLEU and chrF, which sacrebleu
reports on 0-100 and are divided by 100 here, so every metric of a results file reads the same way.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from functools import lru_cache

SAMPLE_METRICS = ("exact_match", "f1", "rouge1", "rouge2", "rougeL")
"""Computed per sample (best over its references), then averaged."""
CORPUS_METRICS = ("bleu", "chrf")
"""Computed over a set of samples at once (sacrebleu's corpus statistics)."""
METRICS = SAMPLE_METRICS + CORPUS_METRICS

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD v1.1's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _token_f1(prediction: str, reference: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


@lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)


def sample_metrics(prediction: str, references: list[str]) -> dict[str, float]:
    """The per-sample metrics of one answer: each the best over ``references``."""
    scores = {"exact_match": max(float(normalize_answer(prediction) == normalize_answer(r)) for r in references),
              "f1": max(_token_f1(prediction, r) for r in references)}
    rouge = [_rouge_scorer().score(r, prediction) for r in references]
    for key in ("rouge1", "rouge2", "rougeL"):
        scores[key] = max(s[key].fmeasure for s in rouge)
    return scores


def corpus_metrics(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    """sacrebleu's corpus BLEU and chrF (divided by 100) of ``predictions`` against their references."""
    import sacrebleu

    streams = [[refs[i] if i < len(refs) else None for refs in references] for i in range(max(map(len, references)))]
    return {"bleu": sacrebleu.corpus_bleu(predictions, streams).score / 100,
            "chrf": sacrebleu.corpus_chrf(predictions, streams).score / 100}


def aggregate(samples: list[dict]) -> dict[str, float]:
    """Every metric of a set of sample records (``prediction``, ``references`` and the per-sample metrics)."""
    if not samples:
        return {"n": 0}
    means = {key: sum(s[key] for s in samples) / len(samples) for key in SAMPLE_METRICS}
    corpus = corpus_metrics([s["prediction"] for s in samples], [s["references"] for s in samples])
    return {"n": len(samples), **means, **corpus}
