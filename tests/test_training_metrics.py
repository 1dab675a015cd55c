"""training/metrics.py: the Megatron-format log line (TFLOP/s keeps its digits on small models),
TensorBoard records across a resume, and no rerun-state-machine chatter on the console."""

from __future__ import annotations

import re

import pytest
from _dist_helpers import run_torchrun, tiny_train_args, write_token_dataset

from megatron_telecom.training.metrics import (
    IterationStats,
    LogInterval,
    format_log_line,
    format_throughput,
)


@pytest.mark.parametrize(("tflops", "shown"), [
    (312.456, "312.5"), (12.34, "12.3"), (1.5, "1.5"), (0.00312, "0.00312"),
    (0.0004567, "0.000457")])
def test_throughput_keeps_significant_digits(tflops, shown):
    assert format_throughput(tflops) == shown


def test_log_line_shows_gflops_of_a_cpu_model():
    stats = IterationStats(
        iteration=1, train_iters=2, consumed_samples=8, elapsed_ms_per_iteration=50.0,
        tflops_per_device=0.0042, tokens_per_second=1000.0, learning_rate=1e-3,
        global_batch_size=8, lm_loss=6.2, loss_scale=1.0, grad_norm=None, skipped_iterations=0)
    assert "throughput per GPU (TFLOP/s/GPU): 0.0042 |" in format_log_line(stats)


def test_log_interval_sums_and_counts_skips():
    interval = LogInterval()
    interval.add(loss=2.0, elapsed=0.5, skipped=False)
    interval.add(loss=4.0, elapsed=1.5, skipped=True)
    assert (interval.loss, interval.time, interval.iterations, interval.skipped) == (6.0, 2.0, 2, 1)


@pytest.fixture(scope="module")
def pretrain_output(tmp_path_factory) -> str:
    """stdout + stderr of a 2-iteration single-process tiny pretrain."""
    tmp = tmp_path_factory.mktemp("metrics")
    prefix = write_token_dataset(tmp / "tokens", num_docs=60)
    proc = run_torchrun(1, tiny_train_args(prefix, cache=tmp / "cache", train_iters=2,
                                           global_batch_size=2), timeout=240)
    return proc.stdout + proc.stderr


@pytest.mark.torchrun
def test_pretrain_log_has_nonzero_throughput(pretrain_output):
    shown = re.findall(r"throughput per GPU \(TFLOP/s/GPU\): ([^ |]+) \|", pretrain_output)
    assert len(shown) == 2, pretrain_output[-3000:]
    assert all(float(value) > 0 for value in shown), shown


@pytest.mark.torchrun
def test_pretrain_output_has_no_rerun_state_machine_lines(pretrain_output):
    assert "iteration        2/       2" in pretrain_output
    assert "Rerun State Machine" not in pretrain_output
    assert "RerunStateMachine" not in pretrain_output


def test_log_line_has_megatron_format():
    line = format_log_line(IterationStats(
        iteration=10, train_iters=100, consumed_samples=320, elapsed_ms_per_iteration=1234.56,
        tflops_per_device=12.34, tokens_per_second=5000.0, learning_rate=1e-4,
        global_batch_size=32, lm_loss=1.5, loss_scale=1.0, grad_norm=0.5,
        skipped_iterations=0))
    assert line.startswith(" iteration       10/     100 | consumed samples:          320 |")
    for part in ("elapsed time per iteration (ms): 1234.6 |",
                 "throughput per GPU (TFLOP/s/GPU): 12.3 |", "learning rate: 1.000000E-04 |",
                 "global batch size:    32 |", "lm loss: 1.500000E+00 |", "loss scale: 1.0 |",
                 "grad norm: 0.500 |", "number of skipped iterations:   0 |",
                 "tokens per second: 5000.0 |"):
        assert part in line
    assert "nan iterations" not in line  # a NaN/Inf loss stops training instead


def test_resumed_run_replaces_tensorboard_records_after_its_checkpoint(tmp_path):
    """A crash at 5 and a resume from 2: TensorBoard keeps 1-2 and the rerun's 3-4 only."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from megatron_telecom.training.config import LoggingConfig
    from megatron_telecom.training.metrics import MetricsWriter

    cfg = LoggingConfig(tensorboard_dir=str(tmp_path / "tb"))
    for start, steps, value in ((0, range(1, 6), 1.0), (2, range(3, 5), 2.0)):
        writer = MetricsWriter(cfg, default_dir=None, run_config={}, enabled=True,
                               start_iteration=start)
        for step in steps:
            writer.scalars({"lm loss": value * step}, step)
        writer.close()
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("lm loss")] == [
        (1, 1.0), (2, 2.0), (3, 6.0), (4, 8.0)]
