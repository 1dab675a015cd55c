"""Telecom benchmarks and held-out perplexity scored during training, from the in-memory model.

Every ``--eval-benchmark-interval`` (default ``--eval-interval``) iterations the trainer scores the
``--eval-benchmarks`` samples and ``--eval-perplexity-inputs`` with the megatron model as it is, at
the run's TP/PP/DP: no export, no second process, every rank taking part. Each data-parallel
replica scores its share of the questions (and documents); the per-question records are gathered
over the data-parallel group, so every rank holds the same figures and rank 0 reports them.

One scoring path: prompts, tokenisation (``encode_pair``), continuation packing and the summing of
log-likelihoods are ``evaluation/accuracy.py``'s and ``evaluation/loglikelihood.py``'s, exactly what
``tools/evaluate.py`` runs; only the forward differs (``MegatronScorer``: megatron's schedule,
forward only, logits gathered over TP and cut to the real vocabulary, log-probs sent from the last
pipeline stage). The megatron model takes plain causal rows (its RoPE ignores position ids), so
each choice is its own row; the offline tool's shared-context tree predicts every token from the
same tokens, so both give the same log-likelihoods (tests: 1e-4 in fp32 at TP=1, TP=2, PP=2 and
PP=2 x VPP=2).

Prompts are tokenised by the Hugging Face tokenizer of ``--tokenizer-model`` (the one the export
copies), so ``--tokenizer-type HuggingFaceTokenizer`` is required when benchmarks are named.
"""

from __future__ import annotations

import functools
import json
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from megatron.core import parallel_state, tensor_parallel

from megatron_telecom.atomic import atomic_write_text
from megatron_telecom.data.tokenizers import resolve_tokenizer_path
from megatron_telecom.evaluation.accuracy import ChoiceScoringConfig, score_questions, summarize
from megatron_telecom.evaluation.benchmarks import benchmark_source, read_benchmark
from megatron_telecom.evaluation.loglikelihood import PackedRequest, score_requests, target_logprobs
from megatron_telecom.evaluation.perplexity import (
    Document,
    perplexity_figures,
    prefix_token,
    read_documents,
    window_requests,
)
from megatron_telecom.evaluation.questions import Question, stratified_sample
from megatron_telecom.runtime.distributed import get_device
from megatron_telecom.training.config import BenchmarkEvalConfig
from megatron_telecom.training.utils import print_rank_0


@dataclass
class Benchmark:
    """One benchmark's questions (the few-shot pool) and its fixed stratified sample."""

    name: str
    questions: list[Question]
    sample: list[Question]


def parse_benchmark(spec: str) -> tuple[str, str, str | None, int]:
    """``NAME[=DATA]:SIZE`` -> (name, reader, data, size); a ``.jsonl`` NAME is a generic exam file."""
    head, _, size = spec.rpartition(":")
    if not head or not size.isdigit() or int(size) < 1:
        raise ValueError(f"--eval-benchmarks {spec}: write NAME[=DATA]:SIZE, e.g. teleqna:200 or "
                         f"oranbench=/data/oranbench:300 or my_exam.jsonl:100")
    name, reader, data = benchmark_source(head, "--eval-benchmarks", spec)
    return name, reader, data, int(size)


class MegatronScorer:
    """``TokenScorer`` of the in-memory megatron model chunks (collective over TP and PP ranks)."""

    row_tokens = None

    def __init__(self, run: Any) -> None:
        self.run = run
        self.max_length = run.preset.max_position_embeddings
        self.vocab_size = run.preset.vocab_size

    def _collect(self, targets: list[tuple[int, int, int]], logits: torch.Tensor,
                 non_loss_data: bool = True) -> torch.Tensor:
        """On the last stage: log-probs of ``targets`` from vocab-parallel logits [b, s, v / TP]."""
        gather = tensor_parallel.gather_from_tensor_model_parallel_region
        return target_logprobs(gather, logits, targets, vocab_size=self.vocab_size)

    def _forward_step(self, data_iterator: Any, model: Any) -> tuple[torch.Tensor, Any]:
        batch = next(data_iterator)
        device = get_device()
        logits = model(batch["tokens"].to(device), batch["position_ids"].to(device), None)
        return logits, functools.partial(self._collect, batch["targets"])

    def __call__(self, rows: list[PackedRequest], targets: list[tuple[int, int, int]]) -> torch.Tensor:
        tp = self.run.layout.tensor_model_parallel_size
        width = -(-max(len(r.input_ids) for r in rows) // tp) * tp  # sequence parallel splits it by TP
        # The interleaved (VPP) schedule needs at least PP microbatches of one shape: split the
        # rows, padded with empty ones; otherwise one microbatch holds them all.
        micro = self.run.layout.pipeline_model_parallel_size if len(self.run.model) > 1 else 1
        size = -(-len(rows) // micro)
        tokens = torch.zeros(size * micro, width, dtype=torch.long)  # [b, s], right-padded causal rows
        for index, row in enumerate(rows):
            tokens[index, : len(row.input_ids)] = torch.tensor(row.input_ids)
        batches = [{"tokens": tokens[m * size:(m + 1) * size],
                    "position_ids": torch.arange(width).expand(size, width),
                    "targets": [(b - m * size, i, t) for b, i, t in targets if m * size <= b < (m + 1) * size]}
                   for m in range(micro)]
        iterators = [iter(batches) for _ in self.run.model]
        out = self.run.forward_backward(
            forward_step_func=self._forward_step,
            data_iterator=iterators[0] if len(iterators) == 1 else iterators, model=self.run.model,
            num_microbatches=micro, seq_length=width, micro_batch_size=size, forward_only=True,
            collect_non_loss_data=True)
        logprobs = torch.cat(out).to(get_device()) if out else torch.zeros(len(targets), dtype=torch.float64,
                                                                          device=get_device())
        if self.run.layout.pipeline_model_parallel_size > 1:  # only the last stage has them
            dist.all_reduce(logprobs, group=parallel_state.get_pipeline_model_parallel_group())
        return logprobs.cpu()


@contextmanager
def inference_mode(run: Any):
    """Model chunks in eval mode with up-to-date parameters; training mode again afterwards."""
    overlapped = run.cfg.parallel.use_distributed_optimizer and run.cfg.parallel.overlap_param_gather
    for chunk in run.model:
        if overlapped:  # the last step's params are gathered lazily in forward pre-hooks
            chunk.disable_forward_pre_hook(param_sync=True)
        chunk.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for chunk in run.model:
            chunk.train()
            if overlapped:
                chunk.enable_forward_pre_hook()


class BenchmarkEvaluation:
    """The run's in-loop evaluation: what it scores (read once at setup) and when."""

    def __init__(self, cfg: BenchmarkEvalConfig, *, eval_interval: int, tokenizer_type: str | None,
                 tokenizer_model: str | None, seq_length: int) -> None:
        from transformers import AutoTokenizer

        if tokenizer_type != "HuggingFaceTokenizer" or not tokenizer_model:
            raise ValueError("--eval-benchmarks/--eval-perplexity-inputs need --tokenizer-type "
                             "HuggingFaceTokenizer (prompts are tokenised as tools/evaluate.py does)")
        self.cfg = cfg
        self.interval = eval_interval if cfg.eval_benchmark_interval is None else cfg.eval_benchmark_interval
        self.tokenizer = AutoTokenizer.from_pretrained(resolve_tokenizer_path(tokenizer_type, tokenizer_model))
        self.seq_length = cfg.eval_perplexity_seq_length or seq_length
        self.scoring = ChoiceScoringConfig(mode=cfg.eval_benchmark_mode, shots=cfg.eval_benchmark_shots)
        self.benchmarks = []
        for spec in cfg.eval_benchmarks:
            name, reader, data, size = parse_benchmark(spec)
            questions = read_benchmark(reader, data).questions
            self.benchmarks.append(Benchmark(name, questions, stratified_sample(questions, size)))
        self.documents: dict[str, list[Document]] = {
            name: read_documents(name, self.tokenizer) for name in cfg.eval_perplexity_inputs}
        print_rank_0(f"> in-loop evaluation every {self.interval} iterations: "
                     + ", ".join([f"{b.name} ({len(b.sample)} questions)" for b in self.benchmarks]
                                 + [f"{n} ({len(d)} documents)" for n, d in self.documents.items()]))

    def due(self, iteration: int) -> bool:
        """Whether this iteration is scored."""
        return bool(self.interval) and iteration % self.interval == 0

    def evaluate(self, run: Any) -> dict[str, Any]:
        """Every benchmark's summary (with its records) and every input's perplexity, on every rank."""
        dp_rank = parallel_state.get_data_parallel_rank()
        dp_size = parallel_state.get_data_parallel_world_size()
        group = parallel_state.get_data_parallel_group()
        scorer = MegatronScorer(run)
        start = time.perf_counter()
        results: dict[str, Any] = {"benchmarks": {}, "perplexity": {}}
        with inference_mode(run):
            for b in self.benchmarks:
                shard = ChoiceScoringConfig(mode=self.scoring.mode, shots=self.scoring.shots,
                                            num_shards=dp_size, shard_index=dp_rank)
                mine = score_questions(scorer, self.tokenizer, b.questions, b.sample, shard,
                                       self.cfg.eval_tokens_per_batch, progress=False)
                gathered: list[Any] = [None] * dp_size
                dist.all_gather_object(gathered, mine, group=group)
                records = sorted((r for part in gathered for r in part), key=lambda r: r["order"])
                results["benchmarks"][b.name] = {**summarize(records), "records": records}
            prefix = prefix_token(self.tokenizer)
            for name, documents in self.documents.items():
                requests = window_requests(documents[dp_rank::dp_size], prefix, self.seq_length, self.seq_length)
                scores = score_requests(scorer, requests, self.cfg.eval_tokens_per_batch) if requests else []
                nll = torch.tensor([-sum(s[0].loglik for s in scores)], dtype=torch.float64)
                dist.all_reduce(nll, group=group)
                results["perplexity"][name] = perplexity_figures(float(nll), documents, self.seq_length,
                                                                 self.seq_length)
        results["seconds"] = time.perf_counter() - start
        return results

    def report(self, run: Any) -> dict[str, Any]:
        """Evaluate, then the log line, TensorBoard scalars, the metrics-file record and the samples."""
        iteration = run.state.iteration
        results = self.evaluate(run)
        print_rank_0(format_benchmark_line(iteration, results))
        run.writer.scalars(benchmark_scalars(results), iteration)
        run.writer.iteration({"iteration": iteration, **metrics_record(results)})
        if self.cfg.eval_log_samples and dist.get_rank() == 0:
            folder = Path(self.cfg.eval_log_samples) / f"iter_{iteration:07d}"
            folder.mkdir(parents=True, exist_ok=True)
            for name, summary in results["benchmarks"].items():
                atomic_write_text(folder / f"{name}.jsonl",
                                  "".join(json.dumps(r) + "\n" for r in summary["records"]))
        return results


def metrics_record(results: dict[str, Any]) -> dict[str, Any]:
    """The ``--log-metrics-file`` fields of one evaluation (records left out)."""
    return {
        "benchmarks": {name: {k: v for k, v in s.items() if k != "records"}
                       for name, s in results["benchmarks"].items()},
        "heldout_perplexity": {name: {k: p[k] for k in ("perplexity", "bits_per_byte", "tokens")}
                               for name, p in results["perplexity"].items()},
        "benchmark_seconds": results["seconds"],
    }


def benchmark_scalars(results: dict[str, Any]) -> dict[str, float]:
    """TensorBoard/W&B scalars: accuracy (overall and per category), perplexity, seconds."""
    values = {"benchmark-seconds": results["seconds"]}
    for name, summary in results["benchmarks"].items():
        groups = {"overall": summary["overall"], **summary["categories"]}
        for group, m in groups.items():
            for key in ("acc", "acc_norm"):
                if key in m:
                    values[f"benchmark/{name}/{group}/{key}"] = m[key]
    for name, p in results["perplexity"].items():
        values[f"heldout perplexity/{name}"] = p["perplexity"]
        values[f"heldout bits per byte/{name}"] = p["bits_per_byte"]
    return values


def format_benchmark_line(iteration: int, results: dict[str, Any]) -> str:
    """One log line: each benchmark's acc beside its baselines, each input's perplexity, seconds."""
    line = f" benchmarks at iteration {iteration} | "
    for name, summary in results["benchmarks"].items():
        m = summary["overall"]
        line += (f"{name} acc: {m['acc']:.4f} acc_norm: {m['acc_norm']:.4f} (random {m['random']:.4f}, "
                 f"majority {m['majority']:.4f}, n {m['n']}) | ")
    for name, p in results["perplexity"].items():
        line += f"{name} perplexity: {p['perplexity']:.4f} bits/byte: {p['bits_per_byte']:.4f} | "
    return line + f"seconds: {results['seconds']:.1f} |"
