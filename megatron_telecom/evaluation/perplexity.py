"""Held-out perplexity and bits per byte with a sliding window.

Each document is scored on its own, after one prefix token (the tokenizer's BOS, else its EOS, as
lm-evaluation-harness's rolling log-likelihood does), so every token of the document is predicted
and its UTF-8 bytes are all counted. Windows hold at most ``seq_length`` tokens and move by
``stride``: each token is scored exactly once, with at least ``seq_length - stride`` tokens of
context when the document is long enough (stride == seq_length: disjoint windows).

Perplexity = exp(summed NLL / predicted tokens); bits per byte = summed NLL / (ln 2 x UTF-8 bytes),
which does not depend on the tokenizer, so models with different vocabularies compare fairly.
Inputs are JSONL files (``--json-key``, default ``text``), ``.txt`` files (one document) or a Megatron indexed dataset prefix
(``.bin``/``.idx``), whose token ids must come from the evaluated model's tokenizer; its bytes are
those of the decoded documents.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from megatron_telecom.evaluation.loglikelihood import HFScorer, TokenScorer, score_requests
from megatron_telecom.evaluation.model_source import LoadedModel
from megatron_telecom.jsonl import jsonl_records


@dataclass(frozen=True)
class Window:
    """Model input ids and which of its positions predict scored tokens (from ``first`` on)."""

    input_ids: list[int]
    targets: list[int]
    first: int


@dataclass(frozen=True)
class Document:
    """Token ids (without the prefix token) and UTF-8 size of one document."""

    ids: list[int]
    num_bytes: int


def windows(ids: list[int], seq_length: int, stride: int) -> Iterator[Window]:
    """Sliding windows over ``ids`` (prefix token first) scoring ids[1:] once each."""
    if not 1 <= stride <= seq_length:
        raise ValueError(f"--stride {stride}: must be between 1 and --seq-length ({seq_length})")
    for begin in range(1, len(ids), stride):
        end = min(begin + stride, len(ids))  # targets ids[begin:end]
        start = max(0, end - 1 - seq_length)
        yield Window(ids[start:end - 1], ids[begin:end], begin - 1 - start)


def _document(text: str, tokenizer) -> Document:
    return Document(tokenizer(text, add_special_tokens=False)["input_ids"], len(text.encode("utf-8")))


def read_documents(path: str, tokenizer, json_key: str = "text") -> list[Document]:
    """Documents of a JSONL file, a ``.txt`` file (one document) or a Megatron indexed dataset prefix."""
    if path.endswith(".txt") and Path(path).is_file():
        return [_document(Path(path).read_text(encoding="utf-8"), tokenizer)]
    if Path(path + ".idx").is_file() and Path(path + ".bin").is_file():
        from megatron.core.datasets.indexed_dataset import IndexedDataset

        dataset = IndexedDataset(path)
        docs = [[int(t) for t in dataset[i]] for i in range(len(dataset))]
        if docs and max(max(d, default=0) for d in docs) >= len(tokenizer):
            raise ValueError(f"{path}: token ids beyond the model's vocabulary: the dataset was made "
                             f"with another tokenizer; give the JSONL text instead")
        return [Document(d, len(tokenizer.decode(d).encode("utf-8"))) for d in docs]
    if not Path(path).is_file():
        raise ValueError(f"--input {path}: neither a file nor a dataset prefix with .bin/.idx")
    documents = []
    with open(path, encoding="utf-8") as f:
        for number, record in jsonl_records(f, path):
            if json_key not in record:
                raise ValueError(f"{path}:{number}: expected a JSON object with a string "
                                 f"'{json_key}' (--json-key)")
            if record[json_key]:
                documents.append(_document(record[json_key], tokenizer))
    return documents


def prefix_token(tokenizer) -> int:
    """The token every document is scored after: BOS when the tokenizer has one, else EOS."""
    token = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if token is None:
        raise ValueError("the tokenizer has neither a BOS nor an EOS token to start documents with")
    return token


def window_requests(documents: list[Document], prefix: int, seq_length: int,
                    stride: int) -> list[tuple[list[int], list[list[int]]]]:
    """Every window as a (context ids, [scored ids]) request of ``loglikelihood.score_requests``."""
    requests = []
    for document in documents:
        ids = [prefix, *document.ids]
        for w in windows(ids, seq_length, stride):
            requests.append((w.input_ids[: w.first + 1], [w.targets]))
    return requests


def perplexity_figures(nll: float, documents: list[Document], seq_length: int, stride: int) -> dict:
    """Perplexity, bits per byte and counts from the summed NLL of ``documents``."""
    tokens = sum(len(d.ids) for d in documents)
    num_bytes = sum(d.num_bytes for d in documents)
    return {
        "documents": len(documents), "tokens": tokens, "bytes": num_bytes, "nll": nll,
        "loss": nll / tokens, "perplexity": math.exp(nll / tokens),
        "bits_per_byte": nll / (math.log(2) * num_bytes), "seq_length": seq_length, "stride": stride,
    }


def perplexity(model: LoadedModel | TokenScorer, documents: list[Document], seq_length: int,
               stride: int | None = None, tokens_per_batch: int = 8192, desc: str = "perplexity",
               prefix: int | None = None) -> dict:
    """Token-weighted perplexity and bits per byte of ``documents``.

    ``model`` is a loaded HF model, or any ``TokenScorer`` (the megatron model during training)
    with ``prefix`` its tokenizer's prefix token; the windows and the NLL sum are the same.
    """
    stride = stride or seq_length
    if isinstance(model, LoadedModel):
        prefix, scorer = prefix_token(model.tokenizer), HFScorer(model.model)
    else:
        assert prefix is not None, "a bare scorer needs the prefix token"
        scorer = model
    if not sum(len(d.ids) for d in documents):
        raise ValueError(f"{desc}: no text to score")
    requests = window_requests(documents, prefix, seq_length, stride)
    with tqdm(total=sum(len(c[0]) for _, c in requests), desc=desc, unit="tok", mininterval=2.0) as bar:
        scores = score_requests(scorer, requests, max(tokens_per_batch, seq_length), progress=bar.update)
    nll = -sum(s[0].loglik for s in scores)
    return perplexity_figures(nll, documents, seq_length, stride)
