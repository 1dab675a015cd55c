"""training/metrics.py: the Megatron-format log line and TensorBoard records across a resume."""

from __future__ import annotations

from megatron_telecom.training.metrics import IterationStats, format_log_line


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
