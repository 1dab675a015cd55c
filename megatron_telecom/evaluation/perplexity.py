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

import torch
from tqdm import tqdm

from megatron_telecom.evaluation.model_source import LoadedModel
from megatron_telecom.jsonl import jsonl_records

LOGIT_CHUNK = 512  # positions per LM-head call: bounds the [positions, vocab] float32 buffer


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


@torch.inference_mode()
def _batch_nll(model, batch: list[Window]) -> float:
    """Summed NLL of the scored targets of a batch of windows (right-padded, no mask needed)."""
    device = next(model.parameters()).device
    width = max(len(w.input_ids) for w in batch)
    inputs = torch.zeros(len(batch), width, dtype=torch.long, device=device)  # [b, s]
    for row, window in enumerate(batch):
        inputs[row, : len(window.input_ids)] = torch.tensor(window.input_ids, device=device)
    hidden = model.get_decoder()(input_ids=inputs).last_hidden_state  # [b, s, h]
    rows = torch.cat([torch.full((len(w.targets),), r, device=device) for r, w in enumerate(batch)])
    cols = torch.cat([torch.arange(w.first, w.first + len(w.targets), device=device) for w in batch])
    targets = torch.tensor([t for w in batch for t in w.targets], device=device)
    head = model.get_output_embeddings()
    total = 0.0
    for lo in range(0, len(targets), LOGIT_CHUNK):
        logits = head(hidden[rows[lo:lo + LOGIT_CHUNK], cols[lo:lo + LOGIT_CHUNK]]).float()  # [p, vocab]
        total -= float(torch.log_softmax(logits, -1).gather(1, targets[lo:lo + LOGIT_CHUNK, None]).sum())
    return total


def _batches(items: list[Window], tokens_per_batch: int) -> Iterator[list[Window]]:
    """Windows grouped longest first so that a batch holds at most ``tokens_per_batch`` tokens."""
    items = sorted(items, key=lambda w: -len(w.input_ids))
    batch: list[Window] = []
    for window in items:
        if batch and (len(batch) + 1) * len(batch[0].input_ids) > tokens_per_batch:
            yield batch
            batch = []
        batch.append(window)
    if batch:
        yield batch


def perplexity(model: LoadedModel, documents: list[Document], seq_length: int, stride: int | None = None,
               tokens_per_batch: int = 8192, desc: str = "perplexity") -> dict:
    """Token-weighted perplexity and bits per byte of ``documents``."""
    stride = stride or seq_length
    prefix = prefix_token(model.tokenizer)
    all_windows = [w for d in documents for w in windows([prefix, *d.ids], seq_length, stride)]
    nll = 0.0
    with tqdm(total=sum(len(w.targets) for w in all_windows), desc=desc, unit="tok", mininterval=2.0) as bar:
        for batch in _batches(all_windows, max(tokens_per_batch, seq_length)):
            nll += _batch_nll(model.model, batch)
            bar.update(sum(len(w.targets) for w in batch))
    tokens = sum(len(d.ids) for d in documents)
    num_bytes = sum(d.num_bytes for d in documents)
    if not tokens:
        raise ValueError(f"{desc}: no text to score")
    return {
        "documents": len(documents), "tokens": tokens, "bytes": num_bytes, "nll": nll,
        "loss": nll / tokens, "perplexity": math.exp(nll / tokens),
        "bits_per_byte": nll / (math.log(2) * num_bytes), "seq_length": seq_length, "stride": stride,
    }
