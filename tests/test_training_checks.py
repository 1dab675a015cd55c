"""Small in-process checks of the trainer's pieces: exit conditions, checkpoint args."""

from __future__ import annotations

import argparse
import signal
import time

import torch

from megatron_telecom.training.checkpointing import _checkpoint_args
from megatron_telecom.training.data import batch_iterator
from megatron_telecom.training.signals import PROCESS_START_TIME, ExitConditions


def test_time_limit_counts_from_process_start():
    """Not from the end of setup: a run whose setup ate the budget stops after one iteration."""
    assert ExitConditions(handle_signals=False, exit_duration_in_mins=1).start_time \
        == PROCESS_START_TIME <= time.time()
    late = ExitConditions(handle_signals=False, exit_duration_in_mins=1,
                          start_time=time.time() - 61)
    assert late.check() == "time limit (--exit-duration-in-mins 1)"
    assert ExitConditions(handle_signals=False, exit_duration_in_mins=1,
                          start_time=time.time()).check() is None


def test_exit_signal_is_recorded():
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGUSR1)}
    try:
        exits = ExitConditions(handle_signals=True, exit_duration_in_mins=None)
        signal.raise_signal(signal.SIGUSR1)
        assert exits.check() == "signal SIGUSR1"
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def test_checkpoint_args_from_megatron_namespace_default_to_saved_parts():
    """Megatron-LM stores args as a Namespace; absent no_save_* keys mean the part was saved."""
    args = _checkpoint_args({"args": argparse.Namespace(tensor_model_parallel_size=2)})
    assert args == {"no_save_optim": False, "no_save_rng": False, "tensor_model_parallel_size": 2}
    assert _checkpoint_args({})["no_save_optim"] is False
    assert _checkpoint_args({"args": {"no_save_rng": True}})["no_save_rng"] is True


class _Pids(torch.utils.data.Dataset):
    """Each sample reports whether its worker ignores SIGTERM."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        ignored = signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
        return {"ignored": torch.tensor([int(ignored)])}


def test_dataloader_workers_ignore_exit_signals():
    batches = batch_iterator(_Pids(), consumed_samples=0, micro_batch_size=2,
                             data_parallel_rank=0, data_parallel_size=1, num_workers=1,
                             persistent_workers=False)
    assert [int(b["ignored"].sum()) for b in batches] == [2, 2]


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
