"""Commands of ``tools/evaluate.py`` (perplexity, teleqna, oranbench, exam, teleqna-open, open,
questions, merge, compare) and ``tools/generate.py``.

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
from typing import Literal

from megatron_telecom.arguments import positional
from megatron_telecom.atomic import atomic_write_text
from megatron_telecom.evaluation.accuracy import ChoiceScoringConfig
from megatron_telecom.evaluation.benchmarks import read_benchmark
from megatron_telecom.evaluation.open_generation import GenerationConfig
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
    output: str | None = None
    """Results JSON (created, or updated for the same model; None: the table is only printed)."""

    def __post_init__(self) -> None:
        if not self.input:
            raise ValueError("--input: give at least one file or dataset prefix")


@dataclass(kw_only=True)
class ChoiceOutputConfig:
    """Where a multiple-choice or open-ended run writes."""

    log_samples: str | None = None
    """JSONL of per-question records: log-likelihoods, or generated answers and metrics (None: not written)."""
    output: str | None = None
    """Results JSON (created, or updated for the same model; None: the table is only printed)."""


@dataclass(kw_only=True)
class BenchmarkRunConfig:
    """A built-in benchmark's multiple-choice accuracy (TeleQnA, or ORAN-Bench-13K per difficulty)."""

    source: ModelSourceConfig
    data: str | None = None
    """TeleQnA: the authors' encrypted zip or a JSON in its format; ORAN-Bench: the folder with
    fin_E/M/H.json (None: the benchmark's folder in ../shared/data beside the repository)."""
    scoring: ChoiceScoringConfig = field(default_factory=ChoiceScoringConfig)
    out: ChoiceOutputConfig


@dataclass(kw_only=True)
class ExamRunConfig:
    """Your own multiple-choice exam: generic JSONL of question, choices, answer (0-based), category."""

    source: ModelSourceConfig
    data: str
    """The exam's JSONL file."""
    name: str | None = None
    """Key of the exam in the results file (None: the file name without extension)."""
    scoring: ChoiceScoringConfig = field(default_factory=ChoiceScoringConfig)
    out: ChoiceOutputConfig


@dataclass(kw_only=True)
class OpenRunConfig:
    """Open-ended answers generated greedily and scored against references (EM, F1, ROUGE, BLEU, chrF)."""

    source: ModelSourceConfig
    data: str | None = None
    """open: the generic open-ended JSONL; teleqna-open: TeleQnA's zip or JSON (None: ../shared/data)."""
    name: str | None = None
    """Key of the benchmark in the results file (None: teleqna_open, or the file name without extension)."""
    limit: int | None = None
    """Size of the category-stratified sample (None: every question)."""
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    out: ChoiceOutputConfig


@dataclass(kw_only=True)
class QuestionsConfig:
    """Write a benchmark's scorable questions in the generic JSONL format (teleqna_open: open-ended)."""

    benchmark: Literal["teleqna", "oranbench", "3gpp_tsg", "teleqna_open"]
    """Which benchmark to read (3gpp_tsg: GSMA Open Telco's Tdoc working-group task, --data its JSON)."""
    data: str | None = None
    """The benchmark's file or folder (None: its default under ../shared/data; 3gpp_tsg has none)."""
    output: str
    """JSONL to write."""


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
    chat: bool = False
    """PROMPT is a user message: render it with the tokenizer's chat template and print the answer."""


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
    if config.output:
        update_results(config.output, config.source.model, "perplexity", section)
    print(perplexity_table(section))


def _run_choice(benchmark: str, data: str | None, source: ModelSourceConfig, scoring: ChoiceScoringConfig,
                out: ChoiceOutputConfig, section: str) -> None:
    """Score a stratified sample, write results (and per-question samples), print the table."""
    from megatron_telecom.evaluation.accuracy import evaluate_questions
    from megatron_telecom.evaluation.loglikelihood import HFScorer
    from megatron_telecom.evaluation.model_source import default_tokens_per_batch, load_model
    from megatron_telecom.evaluation.questions import stratified_sample
    from megatron_telecom.evaluation.results import accuracy_table, update_results

    questions = read_benchmark(benchmark, data)
    if questions.malformed:
        print(f"{section}: skipped malformed records {questions.malformed} (e.g. {questions.malformed_examples})",
              file=sys.stderr)
    sample = stratified_sample(questions.questions, scoring.limit)
    model = load_model(source.model, source.dtype)
    tokens_per_batch = scoring.tokens_per_batch or default_tokens_per_batch(model.device)
    result, records = evaluate_questions(HFScorer(model.model), model.tokenizer, questions.questions, sample,
                                         scoring, tokens_per_batch, desc=section)
    result.update(data=str(data or "default"), malformed=questions.malformed,
                  malformed_examples=questions.malformed_examples)
    if out.log_samples:
        atomic_write_text(out.log_samples, "".join(json.dumps(r) + "\n" for r in records))
    if out.output:
        update_results(out.output, source.model, section, {scoring.name: result})
    print(accuracy_table(result))


def run_teleqna(config: BenchmarkRunConfig) -> None:
    """Score a TeleQnA sample."""
    _run_choice("teleqna", config.data, config.source, config.scoring, config.out, "teleqna")


def run_oranbench(config: BenchmarkRunConfig) -> None:
    """Score an ORAN-Bench-13K sample (categories: easy, medium, hard)."""
    _run_choice("oranbench", config.data, config.source, config.scoring, config.out, "oranbench")


def run_exam(config: ExamRunConfig) -> None:
    """Score a generic multiple-choice JSONL exam."""
    _run_choice("jsonl", config.data, config.source, config.scoring, config.out,
                config.name or Path(config.data).stem)


def _read_open(benchmark: str, data: str | None):
    """The QuestionSet of OpenQuestions of TeleQnA-open (from TeleQnA) or of a generic open-ended JSONL."""
    from megatron_telecom.evaluation.open_questions import read_open_jsonl, teleqna_open

    if benchmark == "teleqna_open":
        return teleqna_open(read_benchmark("teleqna", data))
    if data is None:
        raise ValueError("--data: give the open-ended JSONL file")
    return read_open_jsonl(data)


def _run_open(benchmark: str, config: OpenRunConfig, section: str) -> None:
    """Generate and score a stratified sample, write results (and per-sample outputs), print the table."""
    from megatron_telecom.evaluation.model_source import load_model
    from megatron_telecom.evaluation.open_eval import evaluate_open, generative_table, run_name
    from megatron_telecom.evaluation.questions import stratified_sample
    from megatron_telecom.evaluation.results import update_results

    questions = _read_open(benchmark, config.data)
    if questions.malformed:
        print(f"{section}: skipped malformed records {questions.malformed} (e.g. {questions.malformed_examples})",
              file=sys.stderr)
    sample = stratified_sample(questions.questions, config.limit)
    if config.generation.chat:  # a template-less model is refused before its weights load
        from transformers import AutoTokenizer

        from megatron_telecom.evaluation.generation import chat_prompt
        from megatron_telecom.evaluation.model_source import resolve_model_path

        chat_prompt(AutoTokenizer.from_pretrained(resolve_model_path(config.source.model)), "")
    model = load_model(config.source.model, config.source.dtype)
    result, records = evaluate_open(model, sample, config.generation, desc=section)
    result.update(data=str(config.data or "default"), malformed=questions.malformed,
                  malformed_examples=questions.malformed_examples)
    if config.out.log_samples:
        atomic_write_text(config.out.log_samples, "".join(json.dumps(r) + "\n" for r in records))
    if config.out.output:
        update_results(config.out.output, config.source.model, section, {run_name(config.generation): result})
    print(generative_table(result))


def run_teleqna_open(config: OpenRunConfig) -> None:
    """Generate answers to TeleQnA-open (TeleQnA without options) and score them."""
    _run_open("teleqna_open", config, config.name or "teleqna_open")


def run_open(config: OpenRunConfig) -> None:
    """Generate answers to a generic open-ended JSONL and score them."""
    _run_open("jsonl", config, config.name or Path(config.data or "").stem)


def run_questions(config: QuestionsConfig) -> None:
    """Write the benchmark's questions as generic JSONL; say what was skipped."""
    from megatron_telecom.evaluation.open_questions import open_record
    from megatron_telecom.evaluation.questions import category_counts, question_record

    if config.benchmark == "teleqna_open":
        questions, record = _read_open("teleqna_open", config.data), open_record
    else:
        questions, record = read_benchmark(config.benchmark, config.data), question_record
    atomic_write_text(config.output, "".join(json.dumps(record(q)) + "\n" for q in questions.questions))
    print(f"wrote {len(questions.questions)} questions {category_counts(questions.questions)} to {config.output}; "
          f"skipped {questions.malformed or 'none'}")


def run_merge(config: MergeConfig) -> None:
    """Merge shard results (one results file per shard) into one results file."""
    from megatron_telecom.evaluation.accuracy import merge_shards
    from megatron_telecom.evaluation.results import (
        accuracy_table,
        benchmark_sections,
        read_results,
        update_results,
    )

    shards = [read_results(p) for p in config.shards]
    models = {s["model"] for s in shards}
    if len(models) != 1:
        raise ValueError(f"shards come from different models {sorted(models)}")
    model = models.pop()
    for benchmark in sorted({b for s in shards for b in benchmark_sections(s)}):
        runs = [{n: r for n, r in benchmark_sections(s).get(benchmark, {}).items() if r.get("kind") != "generative"}
                for s in shards]  # generative runs are not sharded
        merged = {}
        for name in sorted({n for r in runs for n in r}):
            parts = [r[name] for r in runs if name in r]
            merged[name] = merge_shards(parts)
            for key in ("data", "malformed", "malformed_examples"):
                merged[name][key] = parts[0].get(key)
            print(f"{benchmark} {name}:\n{accuracy_table(merged[name])}")
        update_results(config.output, model, benchmark, merged)


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
    sys.stdout.write(f"user: {config.prompt}\nassistant: " if config.chat else config.prompt)
    generate(model, config.prompt, config.max_new_tokens, config.temperature, config.top_p, config.seed,
             sys.stdout, chat=config.chat)


EVALUATE_COMMANDS = {"perplexity": PerplexityConfig, "teleqna": BenchmarkRunConfig,
                     "oranbench": BenchmarkRunConfig, "exam": ExamRunConfig, "teleqna-open": OpenRunConfig,
                     "open": OpenRunConfig, "questions": QuestionsConfig, "merge": MergeConfig,
                     "compare": CompareConfig}
"""Command name -> its config: the flag surface of tools/evaluate.py."""
EVALUATE_RUNS = {"perplexity": run_perplexity, "teleqna": run_teleqna, "oranbench": run_oranbench,
                 "exam": run_exam, "teleqna-open": run_teleqna_open, "open": run_open, "questions": run_questions,
                 "merge": run_merge, "compare": run_compare}
"""Command name -> the function that runs it."""
