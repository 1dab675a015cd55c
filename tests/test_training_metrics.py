"""What a pretraining run prints: the TFLOP/s column keeps its digits on small models, and
megatron-core's rerun-state-machine chatter stays off the console."""

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


def test_pretrain_log_has_nonzero_throughput(pretrain_output):
    shown = re.findall(r"throughput per GPU \(TFLOP/s/GPU\): ([^ |]+) \|", pretrain_output)
    assert len(shown) == 2, pretrain_output[-3000:]
    assert all(float(value) > 0 for value in shown), shown


def test_pretrain_output_has_no_rerun_state_machine_lines(pretrain_output):
    assert "iteration        2/       2" in pretrain_output
    assert "Rerun State Machine" not in pretrain_output
    assert "RerunStateMachine" not in pretrain_output
