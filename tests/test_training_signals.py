"""training/signals.py: exit conditions (time limit from process start, exit signals)."""

from __future__ import annotations

import signal
import time

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
