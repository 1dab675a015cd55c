"""Continual pretraining entry point.

    torchrun --nproc_per_node N -m megatron_telecom.pretrain --config X.yaml [--flag value ...]
    srun python -m megatron_telecom.pretrain --config X.yaml ...      (one task per GPU)

Flags are Megatron-LM's (``--help`` lists them); they override the YAML file's keys.
Exit codes: 0 finished or stopped cleanly on SIGTERM/SIGUSR1/time limit (checkpoint saved;
under SLURM a signal stop requeues the job, see training/requeue.py), 1 NaN/Inf loss,
2 bad configuration, or a checkpoint save that found the disk full.
"""

from __future__ import annotations

import sys
import time

_START_TIME = time.time()  # --exit-duration-in-mins counts from here, as in Megatron-LM

from megatron_telecom.arguments import HelpRequested  # noqa: E402
from megatron_telecom.training.arguments import help_text, parse_config  # noqa: E402
from megatron_telecom.training.config import PretrainConfig  # noqa: E402

CONFIG = PretrainConfig  # the flag surface (tests/golden/flags/pretrain.txt)


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, train, and return the process exit code."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        cfg = parse_config(argv)
    except HelpRequested:
        print(help_text())
        return 0
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from megatron_telecom.runtime.distributed import destroy_distributed
    from megatron_telecom.training.data import shutdown_workers
    from megatron_telecom.training.requeue import FAILED, RunHistory, SlurmJob, after_stop
    from megatron_telecom.training.trainer import NonFiniteLossError, setup, train

    history = RunHistory(cfg.checkpoint.save, job=SlurmJob.from_environ())
    run = None

    def stopped(reason: str) -> None:  # rank 0: requeue (SLURM) or say why not; record it
        after_stop(reason, iteration=run.state.iteration if run else None,
                   save=cfg.checkpoint.save, max_requeues=cfg.training.max_requeues,
                   history=history)

    try:
        run = setup(cfg, start_time=_START_TIME)
        if run.stage.one_off_pass(run):  # e.g. DPO's reference log-probs: all this process does
            return 0
        history.record("start", run.state.iteration)
        stopped(train(run))
        return 0
    except (ValueError, NonFiniteLossError) as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        stopped(f"{FAILED}{err}")
        return 2 if isinstance(err, ValueError) else 1
    except Exception as err:
        stopped(f"{FAILED}{type(err).__name__}: {err}")
        raise
    finally:
        if run is not None:
            shutdown_workers(run.train_data)
            run.writer.close()
        destroy_distributed()


if __name__ == "__main__":
    sys.exit(main())
