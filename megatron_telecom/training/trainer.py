"""The training loop on megatron-core: setup, train_step, evaluate, checkpoint, report.

Every stage runs this loop; what differs (datasets, forward step and loss, metric names, what
the model needs, a one-off pass) comes from the stage picked once in ``setup``
(``training/stages/``). Forward/backward is megatron-core's own schedule (no pipelining, 1F1B or
interleaved 1F1B, picked by get_forward_backward_func from parallel_state), gradients go through
megatron DDP and finalize_model_grads, the update through get_megatron_optimizer's optimizer.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.pipeline_parallel import get_forward_backward_func

from megatron_telecom.models.backends import choose_backends
from megatron_telecom.models.checkpoint_format import StoredCheckpoint, open_checkpoint
from megatron_telecom.models.flops import num_floating_point_operations
from megatron_telecom.models.presets import ModelPreset
from megatron_telecom.models.tokenizer_record import check_tokenizer, tokenizer_record
from megatron_telecom.runtime.distributed import get_device, initialize_distributed, job_env
from megatron_telecom.runtime.parallel_layout import ParallelLayout
from megatron_telecom.training import builders, checkpointing
from megatron_telecom.training.config import PretrainConfig
from megatron_telecom.training.data import batch_iterator, build_tokenizer
from megatron_telecom.training.metrics import (
    IterationStats,
    LogInterval,
    MetricsWriter,
    format_log_line,
    format_validation_line,
)
from megatron_telecom.training.model_preparation import FullParameters, build_preparation
from megatron_telecom.training.signals import TRAINING_DONE, ExitConditions
from megatron_telecom.training.stages import Stage, build_stage
from megatron_telecom.training.state import TrainState
from megatron_telecom.training.utils import is_rank_0, print_rank_0


class NonFiniteLossError(RuntimeError):
    """The loss or gradient norm became NaN/Inf; training stops without saving."""


@dataclass(kw_only=True)
class Run:
    """Everything ``setup`` builds for the loop."""

    cfg: PretrainConfig
    layout: ParallelLayout
    preset: ModelPreset
    model: list
    optimizer: Any
    scheduler: Any
    seq_length: int
    padded_vocab_size: int
    flops_per_iteration: float
    train_data: Any
    valid_data: dict[str, Any]
    state: TrainState
    last_saved: int | None
    """Iteration of the checkpoint last written or loaded (None: none yet)."""
    writer: MetricsWriter
    exits: ExitConditions
    interval: LogInterval = field(default_factory=LogInterval)
    forward_backward: Any = field(default_factory=get_forward_backward_func)
    stage: Stage
    """--stage: datasets, forward step and loss, metric names (``training/stages/``)."""
    forward_step: Any
    """The stage's forward step (megatron's forward_step_func), built once with the backends."""
    preparation: FullParameters = field(default_factory=FullParameters)
    """What was done to the model at build time (LoRA adapters), and what its checkpoints hold."""
    benchmarks: Any = None
    """In-loop benchmark/perplexity evaluation (training/benchmark_eval.py; None: none asked)."""
    last_metrics: dict[str, float] = field(default_factory=dict)
    """The last iteration's reported metrics besides "lm loss" (DPO's rewards/*)."""
    tokenizer_record: dict[str, Any] | None = None
    """The run's tokenizer as its checkpoints record it (``models/tokenizer_record.py``)."""


def setup(cfg: PretrainConfig, *, start_time: float | None = None) -> Run:
    """Distributed bring-up, model, optimizer, schedule, checkpoint load, data, reporting.

    ``start_time`` (time.time() at process start) is where --exit-duration-in-mins counts from.
    """
    # Signal handlers first: SLURM signals every process, and DataLoader workers forked later
    # must not die of a SIGTERM that arrives while this process is still setting up.
    exits = ExitConditions(handle_signals=cfg.training.exit_signal_handler,
                           exit_duration_in_mins=cfg.training.exit_duration_in_mins,
                           start_time=start_time)
    stage = build_stage(cfg)
    preparation = build_preparation(cfg.model.lora, load=cfg.checkpoint.load)  # LoRA or full
    source = stage.checkpoint_to_load(checkpointing.checkpoint_to_load(cfg.checkpoint))
    stored = open_checkpoint(source.path) if source else None  # tracker and common.pt read once
    preset = builders.resolve_preset(cfg.model, stored.model if stored else None,
                                     where=f"checkpoint {source.path}" if source else "")
    layout = builders.parallel_layout(cfg.parallel, cfg.training, preset, job_env().world_size)
    backends = choose_backends(transformer_impl=cfg.model.transformer_impl,
                               attention_backend=cfg.model.attention_backend,
                               packed_documents=stage.needs.packed_documents)
    if cfg.checkpoint.save:
        checkpointing.start_write_results_queue()  # forked while this process is single-threaded
    initialize_distributed(layout, seed=cfg.training.seed,
                           timeout_minutes=cfg.parallel.distributed_timeout_minutes)
    exits.synchronize_start()
    tokenizer = build_tokenizer(cfg.tokenizer)
    if stored is not None:  # a resized vocabulary never trains with another tokenizer
        check_tokenizer(stored.common, tokenizer, where=f"checkpoint {source.path}")
    vocab = builders.padded_vocab(cfg.model, layout, tokenizer.vocab_size)
    seq_length = cfg.model.seq_length or preset.seq_length
    config = builders.transformer_config(cfg.model, preset, layout, backends)
    config.calculate_per_token_loss = stage.needs.per_token_loss  # loss sums / global count
    model = builders.build_model(preset, config, backends, p=cfg.parallel, padded_vocab_size=vocab,
                                 seq_length=seq_length, preparation=preparation, seed=cfg.training.seed)
    optimizer, scheduler = _optimizer_and_schedule(cfg, config, model, layout)
    state = _load(cfg, source, stored, model, optimizer, scheduler, vocab, preparation)
    train, valid_data = stage.datasets(layout=layout, tokenizer=tokenizer, seq_length=seq_length,
                                       stored=stored)
    train_data = _batches(cfg, layout, train, state.consumed_train_samples)
    _print_model_summary(preset, model, layout, tokenizer.vocab_size, vocab)
    return Run(
        cfg=cfg, layout=layout, preset=preset, model=model, optimizer=optimizer, scheduler=scheduler,
        seq_length=seq_length, padded_vocab_size=vocab, train_data=train_data,
        valid_data=valid_data, state=state, last_saved=state.iteration if source else None,
        flops_per_iteration=num_floating_point_operations(
            config, batch_size=layout.global_batch_size, seq_length=seq_length,
            padded_vocab_size=vocab),
        writer=MetricsWriter(cfg.logging, default_dir=cfg.checkpoint.save,
                             run_config=cfg.to_flat_dict(), enabled=is_rank_0(),
                             start_iteration=state.iteration),
        exits=exits,
        # --- in-loop benchmark evaluation (training/benchmark_eval.py) ---
        benchmarks=_benchmark_evaluation(cfg, seq_length), stage=stage, preparation=preparation,
        forward_step=stage.forward_step(use_transformer_engine=backends.use_transformer_engine),
        tokenizer_record=tokenizer_record(tokenizer),
    )


def _print_model_summary(preset: ModelPreset, model: list, layout: ParallelLayout, vocab_size: int,
                         padded_vocab_size: int) -> None:
    """Rank 0: parameters, layout, micro-batches and vocabulary, and a note when the tokenizer
    does not match the preset."""
    num_params = sum(param.numel() for chunk in model for param in chunk.parameters())
    trainable = sum(param.numel() for chunk in model for param in chunk.parameters() if param.requires_grad)
    print_rank_0(f"> {preset.name}: {num_params:,} parameters on rank 0"
                 + (f" ({trainable:,} trainable)" if trainable != num_params else "")
                 + f"; world {layout.world_size}"
                 f" = TP {layout.tensor_model_parallel_size} x PP "
                 f"{layout.pipeline_model_parallel_size} x DP {layout.data_parallel_size}; "
                 f"{layout.num_microbatches} microbatches of {layout.micro_batch_size}; "
                 f"vocabulary {vocab_size} padded to {padded_vocab_size}")
    if vocab_size != preset.vocab_size:
        print_rank_0(f"note: the tokenizer has {vocab_size} ids, preset {preset.name} "
                     f"{preset.vocab_size}: fine from scratch, not for the base model's weights")


def _benchmark_evaluation(cfg: PretrainConfig, seq_length: int) -> Any:
    """The in-loop benchmark evaluation when --eval-benchmarks/--eval-perplexity-inputs name any."""
    b = cfg.benchmark_eval
    if not b.eval_benchmarks and not b.eval_perplexity_inputs:
        return None
    from megatron_telecom.training.benchmark_eval import BenchmarkEvaluation

    return BenchmarkEvaluation(b, eval_interval=cfg.training.eval_interval, seq_length=seq_length,
                               tokenizer_type=cfg.tokenizer.tokenizer_type,
                               tokenizer_model=cfg.tokenizer.tokenizer_model)


def _optimizer_and_schedule(cfg: PretrainConfig, config: Any, model: list,
                            layout: ParallelLayout) -> tuple[Any, Any]:
    """megatron-core's optimizer and LR schedule, hooked into the model config's schedules."""
    p = cfg.parallel
    optimizer = builders.build_optimizer(cfg.optimizer, config, model,
                                         use_distributed_optimizer=p.use_distributed_optimizer)
    scheduler = builders.build_scheduler(cfg.scheduler, cfg.optimizer, optimizer, layout=layout,
                                         train_iters=cfg.training.train_iters)
    builders.wire_model_config(config, model, optimizer, p)
    if p.use_distributed_optimizer and cfg.checkpoint.save and not checkpointing.HAVE_APEX_OR_TE:
        print_rank_0("WARNING: without Transformer Engine/Apex megatron-core 0.16.1 cannot resume "
                     "distributed-optimizer state; these checkpoints resume with --no-load-optim "
                     "only (see docs/training.md)")
    return optimizer, scheduler


def _load(cfg: PretrainConfig, source: checkpointing.CheckpointSource | None,
          stored: StoredCheckpoint | None, model: list, optimizer: Any, scheduler: Any,
          padded_vocab_size: int, preparation: FullParameters) -> TrainState:
    """The train state after loading ``stored`` into model/optimizer/scheduler (fresh without)."""
    if source is None or stored is None:
        return TrainState()
    c = cfg.checkpoint
    return checkpointing.load_checkpoint(
        stored, model=model, optimizer=optimizer, scheduler=scheduler,
        finetune=source.finetune, load_optim=not c.no_load_optim, load_rng=not c.no_load_rng,
        use_distributed_optimizer=cfg.parallel.use_distributed_optimizer,
        padded_vocab_size=padded_vocab_size, preparation=preparation)


def _batches(cfg: PretrainConfig, layout: ParallelLayout, dataset: Any, consumed: int,
             *, persistent_workers: bool = True) -> Any:
    return batch_iterator(
        dataset, consumed_samples=consumed, micro_batch_size=layout.micro_batch_size,
        data_parallel_rank=parallel_state.get_data_parallel_rank(),
        data_parallel_size=layout.data_parallel_size, num_workers=cfg.data.num_workers,
        persistent_workers=persistent_workers)


def _forward_backward(run: Run, batches: list[dict], forward_only: bool) -> dict[str, float]:
    """Run the schedule over ``batches``; the reported metrics ("lm loss" first), identical on every rank.

    A loss function reporting one value per microbatch (pretraining) gives the mean of the
    microbatch means; one reporting [sum, count] (SFT's tokens, DPO's pairs) gives global means.
    """
    run.stage.prepare_batches(batches, global_batch_size=run.layout.global_batch_size)
    iterators = [iter(batches) for _ in run.model]
    results = run.forward_backward(
        forward_step_func=run.forward_step,
        data_iterator=iterators[0] if len(iterators) == 1 else iterators,
        model=run.model, num_microbatches=len(batches), seq_length=run.seq_length,
        micro_batch_size=run.layout.micro_batch_size, forward_only=forward_only)
    # Ranks of the last stage hold the loss; average over them (DP replicas, TP copies).
    names = run.stage.metric_names
    totals = torch.zeros(len(names), 2, dtype=torch.float64, device=get_device())
    for i, name in enumerate(names if results else ()):
        values = torch.stack([r[name] for r in results]).double()  # no per-mb sync
        if values.dim() == 2:  # [sum, tokens or pairs] per microbatch
            totals[i] += values.sum(dim=0)
        else:
            totals[i, 0], totals[i, 1] = values.mean(), 1.0
    dist.all_reduce(totals)
    return {name: float(totals[i, 0] / totals[i, 1]) for i, name in enumerate(names)}


def train_step(run: Run) -> tuple[float, float | None, bool]:
    """One iteration: forward/backward over the global batch, then the optimizer step.

    Returns (loss, grad norm, skipped). Raises NonFiniteLossError when the loss (checked before
    the update) or the gradient norm is NaN/Inf; nothing is saved after that, so the last
    checkpoint stays good.
    """
    for chunk in run.model:
        chunk.zero_grad_buffer()
    run.optimizer.zero_grad()
    batches = [next(run.train_data) for _ in range(run.layout.num_microbatches)]
    try:
        metrics = _forward_backward(run, batches, forward_only=False)
    except RuntimeError as err:  # megatron DDP's check_for_nan_in_grad, before the all-reduce
        if "in local grad norm" not in str(err):
            raise
        kind = "nan" if "found NaN" in str(err) else "inf"
        raise NonFiniteLossError(f"grad norm is {kind} at iteration {run.state.iteration + 1}: "
                                 f"stopping without applying that update ({err})") from err
    loss = metrics.pop("lm loss")
    run.last_metrics = metrics
    if not math.isfinite(loss):
        raise NonFiniteLossError(f"lm loss is {loss} at iteration {run.state.iteration + 1}: "
                                 "stopping without applying that update")
    ok, grad_norm, _ = run.optimizer.step()
    if grad_norm is not None and not math.isfinite(grad_norm):
        raise NonFiniteLossError(f"grad norm is {grad_norm} at iteration {run.state.iteration + 1}"
                                 ": stopping; nothing after the last checkpoint is saved")
    if ok:
        run.scheduler.step(increment=run.layout.global_batch_size)
    return loss, (None if grad_norm is None else float(grad_norm)), not ok


def _overlapped_param_gather(run: Run) -> bool:
    """Distributed optimizer gathering updated params lazily in forward pre-hooks."""
    p = run.cfg.parallel
    return p.use_distributed_optimizer and p.overlap_param_gather


def evaluate(run: Run) -> dict[str, float]:
    """Mean loss over the first --eval-iters global batches of each dataset's valid split."""
    if _overlapped_param_gather(run):  # gather the updated params now, as Megatron-LM does
        for chunk in run.model:
            chunk.disable_forward_pre_hook(param_sync=True)
    for chunk in run.model:
        chunk.eval()
    losses = {}
    with torch.no_grad():
        for name, dataset in run.valid_data.items():
            batches = _batches(run.cfg, run.layout, dataset, 0, persistent_workers=False)
            total = 0.0
            for _ in range(run.cfg.training.eval_iters):
                total += _forward_backward(
                    run, [next(batches) for _ in range(run.layout.num_microbatches)],
                    forward_only=True)["lm loss"]
            losses[name] = total / run.cfg.training.eval_iters
    for chunk in run.model:
        chunk.train()
        if _overlapped_param_gather(run):
            chunk.enable_forward_pre_hook()
    return losses


def save(run: Run) -> None:
    """Checkpoint the current state into --save (no-op without --save)."""
    c, s = run.cfg.checkpoint, run.state
    if not c.save or run.last_saved == s.iteration:
        return
    if _overlapped_param_gather(run):  # params updated by the last step are not gathered yet
        for chunk in run.model:
            chunk.start_param_sync(force_sync=True)
    checkpointing.save_checkpoint(
        c.save, s, model=run.model, optimizer=run.optimizer, scheduler=run.scheduler,
        args={**run.cfg.to_flat_dict(), "padded_vocab_size": run.padded_vocab_size},
        save_optim=not c.no_save_optim, save_rng=not c.no_save_rng, model_config=run.preset,
        most_recent_k=c.most_recent_k, preparation=run.preparation, tokenizer=run.tokenizer_record)
    run.last_saved = s.iteration


def report(run: Run, loss: float, grad_norm: float | None, elapsed: float, skipped: bool) -> None:
    """Accumulate the interval; print Megatron-LM's line and write scalars when it is due."""
    s, t = run.state, run.cfg.training
    run.interval.add(loss=loss, elapsed=elapsed, skipped=skipped, metrics=run.last_metrics)
    lr = run.optimizer.param_groups[0]["lr"]
    run.writer.iteration({"iteration": s.iteration, "lm_loss": loss, "grad_norm": grad_norm,
                          "learning_rate": lr, "consumed_samples": s.consumed_train_samples,
                          **run.last_metrics})
    if s.iteration % run.cfg.logging.log_interval and s.iteration != t.train_iters:
        return
    acc = run.interval
    per_iter = acc.time / acc.iterations
    stats = IterationStats(
        iteration=s.iteration, train_iters=t.train_iters,
        consumed_samples=s.consumed_train_samples, elapsed_ms_per_iteration=per_iter * 1000,
        tflops_per_device=run.flops_per_iteration / per_iter / run.layout.world_size / 1e12,
        tokens_per_second=run.layout.global_batch_size * run.seq_length / per_iter,
        learning_rate=lr, global_batch_size=run.layout.global_batch_size,
        lm_loss=acc.loss / acc.iterations, loss_scale=float(run.optimizer.get_loss_scale()),
        grad_norm=grad_norm, skipped_iterations=acc.skipped,
        stage_metrics={name: value / acc.iterations for name, value in acc.metrics.items()})
    print_rank_0(format_log_line(stats))
    run.writer.interval(stats)
    run.interval = LogInterval()


def _report_validation(run: Run) -> None:
    losses = evaluate(run)
    s = run.state
    print_rank_0(format_validation_line(f"iteration {s.iteration}", losses))
    run.writer.scalars({f"lm loss validation/{name}": v for name, v in losses.items()},
                       s.iteration)
    run.writer.iteration({"iteration": s.iteration, "validation": losses})


def train(run: Run) -> str:
    """Iterate to --train-iters (or an exit condition); returns why training stopped."""
    s, t, c = run.state, run.cfg.training, run.cfg.checkpoint
    while s.iteration < t.train_iters:
        start = time.perf_counter()
        loss, grad_norm, skipped = train_step(run)
        s.iteration += 1
        s.consumed_train_samples += run.layout.global_batch_size
        s.num_floating_point_operations_so_far += run.flops_per_iteration
        report(run, loss, grad_norm, time.perf_counter() - start, skipped)
        if t.eval_interval and run.valid_data and s.iteration % t.eval_interval == 0:
            _report_validation(run)
        if run.benchmarks is not None and run.benchmarks.due(s.iteration):  # benchmark_eval.py
            run.benchmarks.report(run)
        if c.save_interval and s.iteration % c.save_interval == 0:
            save(run)
        reason = run.exits.check()
        if reason:
            print_rank_0(f"exiting at iteration {s.iteration} on {reason}")
            save(run)
            return reason
    save(run)
    return TRAINING_DONE
