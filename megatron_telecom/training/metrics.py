"""Training reports: Megatron-LM's log line, TensorBoard scalars, optional W&B and JSONL.

Only global rank 0 writes: the trainer reduces losses to every rank before reporting.
After a resume, iterations past the checkpoint are reported again: TensorBoard drops its older
records of them (purge_step); the JSONL file is append-only, so there the last record of an
iteration wins.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from megatron_telecom.training.config import LoggingConfig


@dataclass(frozen=True, kw_only=True)
class IterationStats:
    """One log interval's figures (times and losses averaged over the interval)."""

    iteration: int
    train_iters: int
    consumed_samples: int
    elapsed_ms_per_iteration: float
    tflops_per_device: float
    tokens_per_second: float
    learning_rate: float
    global_batch_size: int
    lm_loss: float
    loss_scale: float
    grad_norm: float | None
    skipped_iterations: int
    stage_metrics: dict[str, float] = field(default_factory=dict)
    """The stage's own figures, e.g. DPO's rewards/chosen (logged after the lm loss)."""


@dataclass(kw_only=True)
class LogInterval:
    """Sums over the iterations since the last log line (reporting state, not resumable)."""

    loss: float = 0.0
    time: float = 0.0
    iterations: int = 0
    skipped: int = 0
    metrics: dict[str, float] = field(default_factory=dict)

    def add(self, *, loss: float, elapsed: float, skipped: bool, metrics: dict[str, float] | None = None) -> None:
        """Count one iteration's loss, seconds, stage metrics and whether its update was skipped."""
        for name, value in (metrics or {}).items():
            self.metrics[name] = self.metrics.get(name, 0.0) + value
        self.loss += loss
        self.time += elapsed
        self.iterations += 1
        self.skipped += int(skipped)


def format_throughput(tflops: float) -> str:
    """TFLOP/s with one decimal, or three significant digits below 10 (a CPU run does a few
    GFLOP/s, which one decimal would show as 0.0)."""
    return f"{tflops:.1f}" if tflops >= 10 else f"{tflops:.3g}"


def format_log_line(s: IterationStats) -> str:
    """The training line as Megatron-LM prints it, plus tokens/s.

    Megatron-LM's "number of nan iterations" is left out: a NaN/Inf loss stops this trainer.
    As in Megatron-LM, skipped iterations are counted per log interval.
    """
    line = f" iteration {s.iteration:8d}/{s.train_iters:8d} |"
    line += f" consumed samples: {s.consumed_samples:12d} |"
    line += f" elapsed time per iteration (ms): {s.elapsed_ms_per_iteration:.1f} |"
    line += f" throughput per GPU (TFLOP/s/GPU): {format_throughput(s.tflops_per_device)} |"
    line += f" tokens per second: {s.tokens_per_second:.1f} |"
    line += f" learning rate: {s.learning_rate:.6E} |"
    line += f" global batch size: {s.global_batch_size:5d} |"
    line += f" lm loss: {s.lm_loss:.6E} |"
    line += "".join(f" {name}: {value:.6E} |" for name, value in s.stage_metrics.items())
    line += f" loss scale: {s.loss_scale:.1f} |"
    if s.grad_norm is not None:
        line += f" grad norm: {s.grad_norm:.3f} |"
    line += f" number of skipped iterations: {s.skipped_iterations:3d} |"
    return line


def format_validation_line(label: str, losses: dict[str, float]) -> str:
    """Megatron-LM's validation line, one ``<name> lm loss`` entry per dataset of the blend."""
    line = f" validation loss at {label} | "
    for name, loss in losses.items():
        line += f"{name} lm loss value: {loss:.6E} | {name} lm loss PPL: {math.exp(min(20, loss)):.6E} | "
    return line


class MetricsWriter:
    """TensorBoard (always, when a folder is known), W&B (only if a project is set), JSONL."""

    def __init__(self, cfg: LoggingConfig, *, default_dir: str | None, run_config: dict[str, Any],
                 enabled: bool, start_iteration: int = 0) -> None:
        self.tensorboard = self.wandb = None
        self.jsonl = None
        if not enabled:
            return
        tb_dir = cfg.tensorboard_dir or (str(Path(default_dir) / "tensorboard") if default_dir else None)
        if tb_dir:
            from torch.utils.tensorboard import SummaryWriter

            # a resumed run repeats the iterations after its checkpoint: drop their old records
            self.tensorboard = SummaryWriter(log_dir=tb_dir, max_queue=100,
                                             purge_step=start_iteration + 1)
        if cfg.wandb_project:
            import wandb  # optional dependency: pip install 'megatron-telecom[wandb]'

            self.wandb = wandb.init(project=cfg.wandb_project, name=cfg.wandb_exp_name,
                                    dir=cfg.wandb_save_dir, config=run_config)
        if cfg.log_metrics_file:
            Path(cfg.log_metrics_file).parent.mkdir(parents=True, exist_ok=True)
            self.jsonl = open(cfg.log_metrics_file, "a", encoding="utf-8")

    def scalars(self, values: dict[str, float], step: int) -> None:
        """Record named scalars at ``step`` (iteration)."""
        if self.tensorboard is not None:
            for key, value in values.items():
                self.tensorboard.add_scalar(key, value, step)
        if self.wandb is not None:
            self.wandb.log(values, step=step)

    def iteration(self, record: dict[str, Any]) -> None:
        """Append one iteration's exact figures (full float precision) to the JSONL file.

        Append-only: after a crash-resume an iteration may appear twice; the last record wins.
        """
        if self.jsonl is not None:
            self.jsonl.write(json.dumps(record) + "\n")
            self.jsonl.flush()

    def interval(self, stats: IterationStats) -> None:
        """TensorBoard/W&B scalars for a log interval, with Megatron-LM's names."""
        values = {"lm loss": stats.lm_loss, "learning-rate": stats.learning_rate,
                  "batch-size": float(stats.global_batch_size),
                  "iteration-time": stats.elapsed_ms_per_iteration / 1000.0,
                  "throughput": stats.tflops_per_device,
                  "tokens-per-second": stats.tokens_per_second}
        if stats.grad_norm is not None:
            values["grad-norm"] = stats.grad_norm
        self.scalars({**values, **stats.stage_metrics}, stats.iteration)
        if self.tensorboard is not None:
            self.tensorboard.add_scalar("lm loss vs samples", stats.lm_loss, stats.consumed_samples)

    def close(self) -> None:
        """Flush and close every sink."""
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.wandb is not None:
            self.wandb.finish()
        if self.jsonl is not None:
            self.jsonl.close()
