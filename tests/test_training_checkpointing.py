"""training/checkpointing.py: the args read back from a checkpoint."""

from __future__ import annotations

import argparse

from megatron_telecom.training.checkpointing import _checkpoint_args


def test_checkpoint_args_from_megatron_namespace_default_to_saved_parts():
    """Megatron-LM stores args as a Namespace; absent no_save_* keys mean the part was saved."""
    args = _checkpoint_args({"args": argparse.Namespace(tensor_model_parallel_size=2)})
    assert args == {"no_save_optim": False, "no_save_rng": False, "tensor_model_parallel_size": 2}
    assert _checkpoint_args({})["no_save_optim"] is False
    assert _checkpoint_args({"args": {"no_save_rng": True}})["no_save_rng"] is True
