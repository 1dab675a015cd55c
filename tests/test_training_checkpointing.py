"""models/checkpoint_format.py: the args record of a checkpoint, written and read back typed;
training/checkpointing.py: the helper process of megatron-core's writer."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from _dist_helpers import run_script_for_record

from megatron_telecom.models.checkpoint_format import ARGS_KEY, CheckpointArgs, common_state
from megatron_telecom.models.presets import get_preset


def test_checkpoint_args_from_megatron_namespace_default_to_saved_parts():
    """Megatron-LM stores args as a Namespace; absent no_save_* keys mean the part was saved."""
    args = CheckpointArgs.from_record(argparse.Namespace(tensor_model_parallel_size=2, lr=0.1))
    assert args == CheckpointArgs(tensor_model_parallel_size=2)
    assert CheckpointArgs.from_record(None).no_save_optim is False
    assert CheckpointArgs.from_record({"no_save_rng": True}).no_save_rng is True


def test_common_state_round_trips_the_typed_record_beside_the_run_flags():
    """The writer keeps every run flag and puts the typed record on top; unset fields stay out."""
    typed = CheckpointArgs(tensor_model_parallel_size=2, padded_vocab_size=512,
                           consumed_train_samples=24)
    common = common_state(args=typed, run_flags={"lr": 0.1, "padded_vocab_size": 1},
                          iteration=3, model_config=get_preset("tiny"))
    assert common[ARGS_KEY]["lr"] == 0.1 and common[ARGS_KEY]["padded_vocab_size"] == 512
    assert "data_path" not in common[ARGS_KEY]
    assert CheckpointArgs.from_record(common[ARGS_KEY]) == typed
    assert common["iteration"] == 3 and common["model_config"]["name"] == "tiny"


def _write_queue_child(out_path: str) -> None:
    """Child process: a real torch_dist save after ``start_write_results_queue``; what it started."""
    import psutil
    import torch
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.mapping import ShardedTensor
    from megatron.core.dist_checkpointing.strategies import filesystem_async

    from megatron_telecom.atomic import atomic_write_json
    from megatron_telecom.runtime.distributed import destroy_distributed, initialize_distributed
    from megatron_telecom.training.checkpointing import start_write_results_queue

    me = psutil.Process()
    start_write_results_queue()
    queue = filesystem_async._results_queue
    (server,) = [p for p in me.children() if p.cmdline() == me.cmdline()]  # forked, not spawned
    blocked = int(next(line for line in open(f"/proc/{server.pid}/status") if line.startswith("SigBlk:")).split()[1], 16)
    initialize_distributed()
    folder = Path(out_path).parent / "ckpt"
    folder.mkdir()
    weight = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    dist_checkpointing.save({"w": ShardedTensor.from_rank_offsets("w", weight)}, str(folder))
    loaded = dist_checkpointing.load({"w": ShardedTensor.from_rank_offsets("w", torch.empty(3, 4))}, str(folder))
    atomic_write_json(out_path, {
        "same_queue": filesystem_async._get_write_results_queue() is queue,
        "blocked": [sig for sig in ("SIGTERM", "SIGUSR1") if blocked >> (getattr(signal, sig) - 1) & 1],
        "spawned": [" ".join(p.cmdline()) for p in me.children(recursive=True) if "spawn_main" in " ".join(p.cmdline())],
        "loaded": bool(torch.equal(loaded["w"], weight))})
    destroy_distributed()


def test_checkpoint_writer_queue_is_served_by_a_forked_process_that_outlives_exit_signals(tmp_path):
    """megatron-core would spawn a new interpreter (which imports torch) for its write-results queue
    at the first save; the trainer forks it up front, with SIGTERM/SIGUSR1 blocked, and the save
    uses it: no spawned process, and the checkpoint loads."""
    record = run_script_for_record(__file__, tmp_path / "queue.json")
    assert record == {"same_queue": True, "blocked": ["SIGTERM", "SIGUSR1"], "spawned": [], "loaded": True}


if __name__ == "__main__":
    _write_queue_child(sys.argv[1])
