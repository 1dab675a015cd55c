"""models/checkpoint_format.py: the args record of a checkpoint, written and read back typed."""

from __future__ import annotations

import argparse

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
