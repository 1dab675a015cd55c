"""Checkpoints in Megatron-LM's layout, written with megatron-core dist_checkpointing (torch_dist).

Layout (``models/checkpoint_format.py``): ``<save>/iter_0000100/`` (torch_dist shards +
common.pt + metadata.json) and ``<save>/latest_checkpointed_iteration.txt``. A checkpoint is first written to
``iter_0000100.tmp``; only when every rank has finished is it renamed, and only then is the
tracker replaced (``atomic.py``). A crash or SIGKILL at any point therefore leaves the
previous checkpoint as "latest", loadable. Model and optimizer state are sharded tensors, so a
checkpoint saved at one TP/PP loads at another.

A save that fails because the disk is full removes its partial folder, leaves the tracker on the
previous checkpoint and ends the run with one ``error:`` line naming the path and the free space
(``CheckpointSaveError``). With ``--most-recent-k K`` older checkpoints are deleted once the new one
is complete and tracked (``training/retention.py``).
"""

from __future__ import annotations

import errno
import multiprocessing
import random
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from megatron.core import dist_checkpointing, parallel_state, tensor_parallel
from megatron.core.dist_checkpointing.mapping import ShardedObject
from megatron.core.dist_checkpointing.serialization import get_default_save_sharded_strategy
from megatron.core.dist_checkpointing.strategies import filesystem_async
from megatron.core.dist_checkpointing.strategies.fully_parallel import (
    FullyParallelSaveStrategyWrapper,
)
from megatron.core.distributed import DistributedDataParallel
from megatron.core.optimizer.distrib_optimizer import HAVE_APEX_OR_TE
from megatron.core.transformer.module import Float16Module
from torch.distributed.checkpoint.api import CheckpointException

from megatron_telecom.atomic import publish_folder
from megatron_telecom.models.checkpoint_format import (
    TRACKER_FILENAME,
    CheckpointArgs,
    StoredCheckpoint,
    checkpoint_dir,
    common_state,
    read_tracker,
    write_tracker,
)
from megatron_telecom.models.presets import ModelPreset
from megatron_telecom.models.sharded_state import check_shapes
from megatron_telecom.training.config import CheckpointConfig
from megatron_telecom.training.model_preparation import LORA_KEY, FullParameters
from megatron_telecom.training.retention import remove_old_checkpoints
from megatron_telecom.training.signals import exit_signals_blocked
from megatron_telecom.training.state import TrainState
from megatron_telecom.training.utils import print_rank_0

# The distributed optimizer's state is saved in the layout any DP/TP/PP can reload.
DIST_OPT_METADATA = {"distrib_optim_sharding_type": "fully_reshardable"}
FULL_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
FULL_DISK_MESSAGES = ("No space left on device", "Disk quota exceeded")


class CheckpointSaveError(ValueError):
    """A save failed for lack of disk space; a ValueError, so the run ends with its one ``error:`` line."""


@dataclass(frozen=True, kw_only=True)
class CheckpointSource:
    """The checkpoint folder a run starts from, and whether it takes the weights only."""

    path: str
    finetune: bool


def _rng_state() -> ShardedObject:
    """Python/NumPy/torch/megatron-tracker RNG states, one per (PP, TP) rank like Megatron-LM."""
    state = {
        "random_rng_state": random.getstate(),
        "np_rng_state": np.random.get_state(),
        "torch_rng_state": torch.get_rng_state(),
        "cuda_rng_state": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
        "rng_tracker_states": tensor_parallel.get_cuda_rng_tracker().get_states(),
    }
    return ShardedObject(
        "rng_state", [state],
        (parallel_state.get_pipeline_model_parallel_world_size(),
         parallel_state.get_tensor_model_parallel_world_size()),
        (parallel_state.get_pipeline_model_parallel_rank(),
         parallel_state.get_tensor_model_parallel_rank()),
        replica_id=parallel_state.get_data_parallel_rank(with_context_parallel=True),
    )


def _set_rng_state(states: list[dict[str, Any]]) -> None:
    state = states[0]
    random.setstate(state["random_rng_state"])
    np.random.set_state(state["np_rng_state"])
    torch.set_rng_state(state["torch_rng_state"])
    if state["cuda_rng_state"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda_rng_state"])
    tensor_parallel.get_cuda_rng_tracker().set_states(state["rng_tracker_states"])


def unwrap_model(chunk: Any) -> Any:
    """The GPTModel inside DDP / Float16Module wrappers (checkpoint keys carry no 'module.')."""
    while isinstance(chunk, (DistributedDataParallel, Float16Module)):
        chunk = chunk.module
    return chunk


def _model_keys(model: list) -> list[str]:
    return ["model"] if len(model) == 1 else [f"model{i}" for i in range(len(model))]


def _sharded_state(model: list, optimizer: Any, *, with_optim: bool, with_rng: bool,
                   is_loading: bool, dist_opt: bool,
                   keep: Callable[[str], bool] = lambda key: True) -> dict[str, Any]:
    """The sharded state to save or load; ``keep(name)``: which model entries take part."""
    state: dict[str, Any] = {}
    for key, chunk in zip(_model_keys(model), model, strict=True):
        state[key] = {k: v for k, v in unwrap_model(chunk).sharded_state_dict().items() if keep(k)}
    if with_optim:
        metadata = DIST_OPT_METADATA if dist_opt else None
        state["optimizer"] = optimizer.sharded_state_dict(state, is_loading=is_loading,
                                                          metadata=metadata)
    if with_rng:
        state["rng_state"] = _rng_state()
    return state


def start_write_results_queue() -> None:
    """Serve megatron-core's write-results queue from a process forked now, not spawned at the first save.

    torch_dist's writer (``filesystem_async``) collects its results through one module-global
    multiprocessing queue, whose Manager it *spawns* at the first save: a new interpreter that
    imports torch when the first result reaches it, ~2.5 CPU-seconds and a few hundred MB on every
    rank of every run. Forked instead, it has those modules already. Call it while the process is
    still single-threaded and without a CUDA context (before ``initialize_distributed``). Like the
    helpers of a save (``exit_signals_blocked``), it starts with SIGTERM/SIGUSR1 blocked, so it
    outlives SLURM's signals and the save that follows one still works.
    """
    if getattr(filesystem_async, "_results_queue", False) is None:  # unset, in this megatron-core
        with exit_signals_blocked():
            filesystem_async._results_queue = multiprocessing.get_context("fork").Manager().Queue()


def save_checkpoint(root: str | Path, state: TrainState, *, model: list, optimizer: Any,
                    scheduler: Any, args: dict[str, Any], save_optim: bool = True,
                    save_rng: bool = True, model_config: ModelPreset | None = None,
                    most_recent_k: int | None = None, preparation: FullParameters | None = None,
                    tokenizer: dict[str, Any] | None = None) -> Path:
    """Write ``root/iter_NNNNNNN`` on all ranks, then (rank 0) rename it, update the tracker and
    delete checkpoints older than the ``most_recent_k`` newest (None: keep all).

    ``state`` goes where Megatron-LM keeps it (see ``_common_train_state``); ``model_config`` is
    recorded so that loading adopts the model (see ``checkpoint_format.StoredCheckpoint``);
    ``preparation`` says which model entries are saved (LoRA: the adapters) and what it records;
    ``tokenizer`` is the run's tokenizer record (``models/tokenizer_record.py``).
    """
    preparation = preparation or FullParameters()
    iteration = state.iteration
    final = checkpoint_dir(root, iteration)
    tmp = final.with_name(final.name + ".tmp")
    rank = dist.get_rank()
    if rank == 0:
        final.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)  # left by a run killed mid-save
        tmp.mkdir()
    dist.barrier()
    dist_opt = bool(args.get("use_distributed_optimizer"))
    sharded = _sharded_state(model, optimizer, with_optim=save_optim, with_rng=save_rng,
                             is_loading=False, dist_opt=dist_opt, keep=preparation.saved)
    sharded.update(_common_train_state(state, args, save_optim=save_optim, save_rng=save_rng,
                                       model_config=model_config, tokenizer=tokenizer))
    if preparation.record() is not None:
        sharded[LORA_KEY] = preparation.record()
    if save_optim:
        sharded["opt_param_scheduler"] = scheduler.state_dict()
    strategy = FullyParallelSaveStrategyWrapper(
        get_default_save_sharded_strategy("torch_dist"),
        parallel_state.get_data_parallel_group(with_context_parallel=True))
    failure: BaseException | None = None
    try:
        with exit_signals_blocked():  # helper processes the save starts must outlive SLURM's signals
            dist_checkpointing.save(sharded, str(tmp), strategy)
    except (Exception, CheckpointException) as err:  # the latter is a BaseException
        failure = err
    if failure is None:
        dist.barrier()
        if rank == 0:
            try:
                publish_folder(tmp, final)  # replaces a complete but untracked save of this iteration
                write_tracker(root, iteration)
            except OSError as err:
                failure = err
    _stop_on_failure(root, iteration, failure)
    if rank == 0 and most_recent_k:
        deleted = remove_old_checkpoints(root, iteration, most_recent_k)
        if deleted:
            print_rank_0(f"--most-recent-k {most_recent_k}: deleted the checkpoints of iterations "
                         f"{', '.join(map(str, deleted))}")
    dist.barrier()
    print_rank_0(f"saved checkpoint at iteration {iteration:8d} to {final}")
    return final


def disk_full(err: BaseException, path: str | Path) -> bool:
    """Whether ``err`` came from a full disk: ENOSPC/EDQUOT in its chain or text (torch_dist's writer
    processes report their failure as text), or under 1% (at most 1 GiB) of ``path``'s filesystem free."""
    pending = [err]
    while pending:  # the chain, and each rank's failure a CheckpointException carries
        seen = pending.pop()
        if isinstance(seen, OSError) and seen.errno in FULL_DISK_ERRNOS:
            return True
        pending += [e for e in (seen.__cause__, seen.__context__) if e is not None]
        if isinstance(seen, CheckpointException):
            pending += [failure for failure, _ in seen.failures.values()]
    if any(message in str(err) for message in FULL_DISK_MESSAGES):
        return True
    usage = shutil.disk_usage(path)
    return usage.free < min(usage.total // 100, 2**30)


def _stop_on_failure(root: str | Path, iteration: int, failure: BaseException | None) -> None:
    """Every rank: return when the save succeeded; else end the run the same way on every rank.

    A torch_dist failure reaches every rank, but only rank 0 (the coordinator) sees each rank's error,
    and a publish failure happens on rank 0 alone: rank 0 judges, before anything is removed. On a
    full disk rank 0 removes the partial folder and raises the one-line error; the other ranks wait
    for that, then exit with the same code without a line of their own.
    """
    rank = dist.get_rank()
    verdict = [None if failure is None else disk_full(failure, root)] if rank == 0 else [None]
    dist.broadcast_object_list(verdict, src=0)
    if verdict[0] is None and failure is None:  # saved and published
        return
    if not verdict[0]:  # not a full disk (or this rank alone failed): the error as it came
        if failure is not None:
            raise failure
        raise RuntimeError(f"saving {checkpoint_dir(root, iteration)} failed on rank 0 (see its error)")
    error = _remove_partial_save(root, iteration) if rank == 0 else None
    dist.barrier()
    if error is not None:
        raise error
    sys.exit(2)  # the exit code of rank 0's ValueError


def _remove_partial_save(root: str | Path, iteration: int) -> CheckpointSaveError:
    """Remove ``iteration``'s partial (or complete but untracked) folder; the error that says so."""
    final = checkpoint_dir(root, iteration)
    at_failure = shutil.disk_usage(root)
    tracked = read_tracker(root)
    shutil.rmtree(final.with_name(final.name + ".tmp"), ignore_errors=True)
    if tracked != iteration:  # renamed into place before the tracker write failed: untracked
        shutil.rmtree(final, ignore_errors=True)
    previous = (f"still names iteration {tracked} ({_size(_folder_bytes(checkpoint_dir(root, tracked)))})"
                if isinstance(tracked, int) else "names no checkpoint yet")
    return CheckpointSaveError(
        f"disk full: saving {final} failed with {_size(at_failure.free)} free of {_size(at_failure.total)} "
        f"on {root} ({_size(shutil.disk_usage(root).free)} after removing the partial folder); "
        f"{TRACKER_FILENAME} {previous}: free space, --save elsewhere, or keep fewer checkpoints "
        "with --most-recent-k")


def _folder_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` (0 when it is missing)."""
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _size(nbytes: int) -> str:
    """Bytes as B, KiB, MiB, GiB or TiB with 1 decimal."""
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def _common_train_state(state: TrainState, args: dict[str, Any], *, save_optim: bool,
                        save_rng: bool, model_config: ModelPreset | None,
                        tokenizer: dict[str, Any] | None = None) -> dict[str, Any]:
    """Megatron-LM's places for the train state: iteration and FLOPs at the top of the common
    state, consumed samples among the ``args`` (with the run's flags)."""
    record = CheckpointArgs.from_record({
        **args, "consumed_train_samples": state.consumed_train_samples,
        "no_save_optim": not save_optim, "no_save_rng": not save_rng})
    return common_state(
        args=record, run_flags=args, iteration=state.iteration, model_config=model_config,
        tokenizer=tokenizer,
        num_floating_point_operations_so_far=state.num_floating_point_operations_so_far)


def _train_state_from_common(common: dict[str, Any], ckpt_args: CheckpointArgs) -> TrainState:
    """The inverse of ``_common_train_state`` (keys absent from old checkpoints count as 0)."""
    state = TrainState()
    state.load_state_dict({
        "iteration": common.get("iteration", 0),
        "consumed_train_samples": ckpt_args.consumed_train_samples,
        "num_floating_point_operations_so_far": common.get(
            "num_floating_point_operations_so_far", 0.0)})
    return state


def checkpoint_to_load(c: CheckpointConfig) -> CheckpointSource | None:
    """Resume from --save when it holds a checkpoint (a requeued job: no --finetune then), else
    start from --load; None means random initialisation.

    A --load that is the still-empty --save folder is a fresh start; any other --load without a
    checkpoint is refused when it is opened (``checkpoint_format.open_checkpoint``).
    """
    if c.save and read_tracker(c.save) is not None:
        if c.load and Path(c.load).resolve() != Path(c.save).resolve():
            print_rank_0(f"--save {c.save} holds a checkpoint: resuming from it, not --load {c.load}")
        return CheckpointSource(path=c.save, finetune=False)
    if c.load and c.save and Path(c.load).resolve() == Path(c.save).resolve():
        print_rank_0(f"no checkpoint in --save {c.save} yet: starting from random initialisation")
        return None
    return CheckpointSource(path=c.load, finetune=c.finetune) if c.load else None


def _check_loadable(path: Path, ckpt_args: CheckpointArgs, *, padded_vocab_size: int | None,
                    distributed_optimizer_state: bool) -> None:
    ckpt_vocab = ckpt_args.padded_vocab_size
    if padded_vocab_size is not None and ckpt_vocab not in (None, padded_vocab_size):
        raise ValueError(
            f"{path} has a padded vocabulary of {ckpt_vocab} rows, this run {padded_vocab_size}: "
            "set --make-vocab-size-divisible-by (x TP) so both pad to the same size (padded rows "
            "take part in the softmax, so they must match)")
    if distributed_optimizer_state and not HAVE_APEX_OR_TE:
        raise ValueError(
            "resuming distributed-optimizer state is broken in megatron-core 0.16.1 without "
            "Transformer Engine or Apex (e.g. on CPU): add --no-load-optim, or train without "
            "--use-distributed-optimizer here (see docs/training.md)")


def load_checkpoint(checkpoint: StoredCheckpoint, *, model: list, optimizer: Any, scheduler: Any,
                    finetune: bool = False, load_optim: bool = True, load_rng: bool = True,
                    use_distributed_optimizer: bool = False,
                    padded_vocab_size: int | None = None,
                    preparation: FullParameters | None = None) -> TrainState:
    """Restore ``checkpoint`` (``open_checkpoint`` of --load or --save); returns where training
    continues.

    ``finetune`` (and a "release" checkpoint) loads the weights only and restarts at
    iteration 0. Without the optimizer state (--no-load-optim) the LR schedule is not loaded
    either and restarts from step 0, as in Megatron-LM. RNG state is skipped when TP/PP differ
    from the checkpoint's (as Megatron-LM). ``preparation`` (LoRA) may load a base checkpoint's
    weights first and read only some model entries from ``checkpoint``.
    """
    preparation = preparation or FullParameters()
    path, ckpt_args = checkpoint.path, checkpoint.args
    weights_only = finetune or checkpoint.release
    base = preparation.base_of(checkpoint, weights_only=weights_only)
    if base is not None:  # an adapter-only checkpoint: the frozen weights come from its base
        _load_weights(base, model, keep=lambda key: not preparation.saved(key))
    run_sizes = (parallel_state.get_tensor_model_parallel_world_size(),
                 parallel_state.get_pipeline_model_parallel_world_size())
    same_layout = ckpt_args.parallel_sizes == run_sizes
    has_optim, has_rng = not ckpt_args.no_save_optim, not ckpt_args.no_save_rng
    with_optim = load_optim and not weights_only and has_optim
    with_rng = load_rng and not weights_only and same_layout and has_rng
    _check_loadable(path, ckpt_args, padded_vocab_size=padded_vocab_size,
                    distributed_optimizer_state=with_optim and use_distributed_optimizer)
    state = _sharded_state(model, optimizer, with_optim=with_optim, with_rng=with_rng,
                           is_loading=True, dist_opt=use_distributed_optimizer,
                           keep=lambda key: preparation.loaded_from(checkpoint, key))
    check_shapes(path, state)
    loaded = dist_checkpointing.load(state, str(path))
    _load_model_entries(model, loaded, keep=lambda key: preparation.loaded_from(checkpoint, key))
    preparation.after_load(model, resumed_adapters=base is not None)
    scheduler_restored = with_optim and "opt_param_scheduler" in loaded
    if with_optim:
        optimizer.load_state_dict(loaded["optimizer"])
    else:
        optimizer.reload_model_params()  # fp32 main params from the loaded bf16 weights
    if scheduler_restored:
        _load_scheduler(scheduler, loaded["opt_param_scheduler"])
    if with_rng:
        _set_rng_state(loaded["rng_state"])
    _log_loaded(path, weights_only=weights_only, parts={
        "optimizer": (with_optim, _why_not(load_optim, has_optim, "--no-load-optim")),
        "LR schedule": (scheduler_restored, "restarts at step 0 without the optimizer state"),
        "RNG state": (with_rng, _why_not(load_rng, has_rng, "--no-load-rng")
                      if same_layout else f"(TP, PP) changed from "
                      f"{ckpt_args.parallel_sizes} to {run_sizes}")})
    if weights_only:
        return TrainState()
    state = _train_state_from_common(checkpoint.common, ckpt_args)
    if state.iteration and not scheduler_restored:
        # Megatron-LM: the schedule is part of the optimizer state, so it restarts (warm-up
        # again) while the iteration count and the data position carry on.
        print_rank_0("LR schedule not loaded: it restarts at step 0 (--lr-warmup-iters of "
                     f"warm-up again) from iteration {state.iteration}")
    return state


def _load_model_entries(model: list, loaded: dict[str, Any], *, keep: Callable[[str], bool]) -> None:
    """Copy the loaded model entries into the chunks: all but those ``keep`` left out on purpose."""
    for key, chunk in zip(_model_keys(model), model, strict=True):
        missing, unexpected = unwrap_model(chunk).load_state_dict(loaded[key], strict=False)
        assert not unexpected and not any(keep(name) for name in missing), (missing, unexpected)


def _load_weights(stored: StoredCheckpoint, model: list, *, keep: Callable[[str], bool]) -> None:
    """Load the model entries ``keep`` names from ``stored`` (weights only)."""
    state = _sharded_state(model, None, with_optim=False, with_rng=False, is_loading=True,
                           dist_opt=False, keep=keep)
    check_shapes(stored.path, state)
    _load_model_entries(model, dist_checkpointing.load(state, str(stored.path)), keep=keep)
    print_rank_0(f"loaded the base weights from {stored.path}")


def _load_scheduler(scheduler: Any, state: dict[str, Any]) -> None:
    """OptimizerParamScheduler.load_state_dict, whose flag checks are assertions."""
    try:
        scheduler.load_state_dict(state)
    except AssertionError as err:
        raise ValueError(f"{err}: the checkpoint's LR schedule differs from this run's flags; "
                         "add --override-opt_param-scheduler (use the new flags) or "
                         "--use-checkpoint-opt_param-scheduler (keep the checkpoint's)") from err


def _why_not(wanted: bool, saved: bool, flag: str) -> str:
    """Why a part was skipped: not saved (--no-save-X) or not wanted (--no-load-X)."""
    if not saved:
        return f"not in the checkpoint: saved with {flag.replace('load', 'save')}"
    return flag if not wanted else ""


def _log_loaded(path: Path, *, weights_only: bool,
                parts: dict[str, tuple[bool, str]]) -> None:
    """One line saying what was restored from ``path`` and what was skipped, and why."""
    if weights_only:
        print_rank_0(f"loaded weights from {path} (finetune/release): starting at iteration 0 "
                     "with a fresh optimizer, LR schedule and RNG")
        return
    done = [name for name, (ok, _) in parts.items() if ok]
    skipped = [f"{name} ({why})" for name, (ok, why) in parts.items() if not ok]
    print_rank_0(f"loaded checkpoint {path}: weights{''.join(', ' + d for d in done)}"
                 + (f"; not loaded: {', '.join(skipped)}" if skipped else ""))
