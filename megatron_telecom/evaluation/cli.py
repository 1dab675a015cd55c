"""Commands of ``tools/evaluate.py`` (perplexity, teleqna, merge, compare) and ``tools/generate.py``.

One config dataclass per command is its flag surface (``megatron_telecom.arguments`` fills it);
the model to run is one section, ``ModelSourceConfig`` (``--model``, ``--dtype``), shared by every
command that loads a model. The runs import torch and transformers only when called, so a bad
flag fails before either is loaded. Values that depend on the device (``--dtype``, TeleQnA's
``--tokens-per-batch``) stay None until the model's device is known; so does ``--data``, whose
default lies beside the checkout (a path that differs per machine is no flag default).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from megatron_telecom.arguments import positional
from megatron_telecom.atomic import atomic_write_text
from megatron_telecom.evaluation.multiple_choice import TeleQnAConfig
from megatron_telecom.evaluation.teleqna import DEFAULT_DATA
from megatron_telecom.models.options import DType


@dataclass(kw_only=True)
class ModelSourceConfig:
    """The model to run."""

    model: str
    """HF model folder, bundled:smollm2-135m, or a megatron checkpoint folder (any TP/PP)."""
    dtype: DType | None = None
    """Weights format (None: float32 on CPU, bfloat16 on GPU)."""


@dataclass(kw_only=True)
class PerplexityConfig:
    """Held-out perplexity and bits per byte."""

    source: ModelSourceConfig
    input: list[str]
    """JSONL files (--json-key), .txt files (one document each) or indexed dataset prefixes."""
    json_key: str = "text"
    """Key of the text in each JSONL record."""
    seq_length: int = 2048
    """Tokens per window."""
    stride: int | None = None
    """Tokens a window moves by (None: --seq-length, disjoint windows)."""
    tokens_per_batch: int = 8192
    """Tokens per forward (windows are batched up to this)."""
    output: str
    """Results JSON (created, or updated for the same model)."""

    def __post_init__(self) -> None:
        if not self.input:
            raise ValueError("--input: give at least one file or dataset prefix")


@dataclass(kw_only=True)
class TeleQnARunConfig:
    """TeleQnA multiple-choice accuracy."""

    source: ModelSourceConfig
    data: str | None = None
    """TeleQnA zip (the authors' encrypted one) or a JSON in the same format (None: the zip in
    ../shared/data/teleqna beside the repository)."""
    scoring: TeleQnAConfig = field(default_factory=TeleQnAConfig)
    log_samples: str | None = None
    """JSONL of per-question log-likelihoods (None: not written)."""
    output: str
    """Results JSON (created, or updated for the same model)."""


@dataclass(kw_only=True)
class MergeConfig:
    """Merge TeleQnA shard results into one results file."""

    shards: list[str] = positional()
    """Results files of the shards (--num-shards N, every --shard-index once)."""
    output: str
    """Results JSON (created, or updated for the same model)."""


@dataclass(kw_only=True)
class CompareConfig:
    """Side-by-side table and PNG of results files."""

    results: list[str] = positional()
    """Results files; differences are taken to the first."""
    labels: list[str] | None = None
    """One label per results file (None: the file names)."""
    output_dir: str
    """Folder for comparison.txt and comparison.png."""


@dataclass(kw_only=True)
class GenerateConfig:
    """Complete a prompt, streamed."""

    source: ModelSourceConfig
    prompt: str = positional()
    """The text to complete."""
    max_new_tokens: int = 64
    """Tokens to generate at most."""
    temperature: float = 0.0
    """Sampling temperature (0: greedy)."""
    top_p: float = 1.0
    """Nucleus sampling: smallest set of tokens with this total probability."""
    seed: int | None = None
    """Sampling seed (None: not seeded)."""


def run_perplexity(config: PerplexityConfig) -> None:
    """Perplexity and bits per byte per input, into the results file and a table."""
    from megatron_telecom.evaluation.model_source import load_model
    from megatron_telecom.evaluation.perplexity import perplexity, read_documents
    from megatron_telecom.evaluation.results import perplexity_table, update_results

    model = load_model(config.source.model, config.source.dtype)
    section = {}
    for name in config.input:
        docs = read_documents(name, model.tokenizer, config.json_key)
        section[name] = perplexity(model, docs, config.seq_length, config.stride, config.tokens_per_batch,
                                   desc=name)
    update_results(config.output, config.source.model, "perplexity", section)
    print(perplexity_table(section))


def run_teleqna(config: TeleQnARunConfig) -> None:
    """Score a TeleQnA sample, write results (and per-question samples), print the table."""
    from megatron_telecom.evaluation.model_source import load_model
    from megatron_telecom.evaluation.multiple_choice import evaluate_teleqna
    from megatron_telecom.evaluation.results import teleqna_table, update_results
    from megatron_telecom.evaluation.teleqna import read_teleqna, stratified_sample

    path = config.data or DEFAULT_DATA
    data = read_teleqna(path)
    if data.malformed:
        print(f"teleqna: skipped malformed records {data.malformed} (e.g. {data.malformed_examples})",
              file=sys.stderr)
    sample = stratified_sample(data.questions, config.scoring.limit)
    model = load_model(config.source.model, config.source.dtype)
    result, records = evaluate_teleqna(model, data.questions, sample, config.scoring)
    result.update(data=str(path), malformed=data.malformed, malformed_examples=data.malformed_examples)
    if config.log_samples:
        atomic_write_text(config.log_samples, "".join(json.dumps(r) + "\n" for r in records))
    update_results(config.output, config.source.model, "teleqna", {config.scoring.name: result})
    print(teleqna_table(result))


def run_merge(config: MergeConfig) -> None:
    """Merge shard results (one results file per shard) into one results file."""
    from megatron_telecom.evaluation.multiple_choice import merge_shards
    from megatron_telecom.evaluation.results import read_results, teleqna_table, update_results

    shards = [read_results(p) for p in config.shards]
    models = {s["model"] for s in shards}
    if len(models) != 1:
        raise ValueError(f"shards come from different models {sorted(models)}")
    names = sorted({n for s in shards for n in s.get("teleqna", {})})
    merged = {}
    for name in names:
        merged[name] = merge_shards([s["teleqna"][name] for s in shards if name in s.get("teleqna", {})])
        for key in ("data", "malformed", "malformed_examples"):
            merged[name][key] = shards[0]["teleqna"][name].get(key)
        print(f"{name}:\n{teleqna_table(merged[name])}")
    update_results(config.output, models.pop(), "teleqna", merged)


def run_compare(config: CompareConfig) -> None:
    """Print and write the side-by-side table and PNG."""
    from megatron_telecom.evaluation.compare import compare

    print(compare(config.results, config.labels, config.output_dir))
    output_dir = Path(config.output_dir)
    print(f"wrote {output_dir / 'comparison.txt'} and {output_dir / 'comparison.png'}")


def run_generate(config: GenerateConfig) -> None:
    """Stream the prompt, then its completion, to stdout."""
    from megatron_telecom.evaluation.generation import generate
    from megatron_telecom.evaluation.model_source import load_model

    model = load_model(config.source.model, config.source.dtype)
    sys.stdout.write(config.prompt)
    generate(model, config.prompt, config.max_new_tokens, config.temperature, config.top_p, config.seed,
             sys.stdout)


EVALUATE_COMMANDS = {"perplexity": PerplexityConfig, "teleqna": TeleQnARunConfig, "merge": MergeConfig,
                     "compare": CompareConfig}
"""Command name -> its config: the flag surface of tools/evaluate.py."""
EVALUATE_RUNS = {"perplexity": run_perplexity, "teleqna": run_teleqna, "merge": run_merge,
                 "compare": run_compare}
"""Command name -> the function that runs it."""
