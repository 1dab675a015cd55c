"""Preemption and time limits: SIGTERM/SIGUSR1 (SLURM) and --exit-duration-in-mins.

The handler only records the signal; the trainer checks at the end of every iteration, all
ranks agree through one all-reduce, and then they save a checkpoint and exit 0 together
(under SLURM, after a signal, requeue.py has the job requeue itself first).
The time limit counts from process start (the earliest over ranks), as Megatron-LM's does.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing import resource_tracker
from types import FrameType

import torch
import torch.distributed as dist

from megatron_telecom.runtime.distributed import get_device

EXIT_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
TRAINING_DONE = "done"  # the reason train() returns when --train-iters is reached
# Wall-clock time this module was first imported; megatron_telecom.pretrain imports it first
# thing, so it stands for process start (comparable across nodes, unlike time.monotonic()).
PROCESS_START_TIME = time.time()


def ignore_exit_signals(worker_id: int | None = None) -> None:
    """DataLoader ``worker_init_fn``: workers ignore SIGTERM/SIGUSR1 (SLURM signals every
    process) and leave the stop to the main process, which saves and then ends them."""
    for sig in EXIT_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


@contextmanager
def exit_signals_blocked() -> Iterator[None]:
    """Block SIGTERM/SIGUSR1 in this thread for the ``with`` block; a signal sent meanwhile
    reaches the handler when the block ends.

    For checkpoint saves: SLURM signals every process of the step, and megatron-core's first
    save spawns helper processes that live as long as the run (its write-results queue's manager,
    and CPython's resource tracker). Spawned here, they inherit the blocked mask and survive the
    signal, so the save that follows a preemption or time-limit signal still works.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, EXIT_SIGNALS)
    try:
        # the tracker starts with our mask, then CPython unblocks SIGTERM here: block it again
        resource_tracker.ensure_running()
        signal.pthread_sigmask(signal.SIG_BLOCK, EXIT_SIGNALS)
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class ExitConditions:
    """Tracks exit signals received by this process and the run's time limit.

    Create it before anything forks (DataLoader workers) so the handlers are in place as soon
    as possible; call ``synchronize_start`` once the process group exists.
    """

    def __init__(self, *, handle_signals: bool, exit_duration_in_mins: float | None,
                 start_time: float | None = None) -> None:
        self.start_time = PROCESS_START_TIME if start_time is None else start_time
        self.exit_duration_s = None if exit_duration_in_mins is None else exit_duration_in_mins * 60
        self.received: int | None = None
        if handle_signals:
            for sig in EXIT_SIGNALS:
                signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum

    def synchronize_start(self) -> None:
        """Collective: count the time limit from the earliest start over all ranks."""
        if dist.is_initialized():
            start = torch.tensor([self.start_time], dtype=torch.float64, device=get_device())
            dist.all_reduce(start, op=dist.ReduceOp.MIN)
            self.start_time = float(start.item())

    def check(self) -> str | None:
        """Collective: the reason to stop now ("signal SIGTERM", "time limit"), or None."""
        over_time = (self.exit_duration_s is not None
                     and time.time() - self.start_time > self.exit_duration_s)
        flags = torch.tensor([self.received or 0, int(over_time)], dtype=torch.int64,
                             device=get_device())
        if dist.is_initialized():
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        if flags[0]:
            return f"signal {signal.Signals(int(flags[0])).name}"  # see is_signal_stop
        if flags[1]:
            return f"time limit (--exit-duration-in-mins {self.exit_duration_s / 60:g})"
        return None


def is_signal_stop(reason: str) -> bool:
    """Whether ``ExitConditions.check`` stopped the run on SIGTERM/SIGUSR1 (the requeue cases)."""
    return reason.startswith("signal ")
