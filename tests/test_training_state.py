"""TrainState as one resumable object, where checkpoints keep it, and which folder a run
resumes from (--save holding a checkpoint vs --load)."""

from __future__ import annotations

import pytest

from megatron_telecom.models.checkpoint_format import (
    CHECKPOINT_VERSION,
    CheckpointArgs,
    write_tracker,
)
from megatron_telecom.training.checkpointing import (
    CheckpointSource,
    _common_train_state,
    _train_state_from_common,
    checkpoint_to_load,
)
from megatron_telecom.training.config import CheckpointConfig
from megatron_telecom.training.state import TrainState


def test_state_dict_round_trip():
    state = TrainState(iteration=7, consumed_train_samples=56,
                       num_floating_point_operations_so_far=1.5e12)
    assert state.state_dict() == {"iteration": 7, "consumed_train_samples": 56,
                                  "num_floating_point_operations_so_far": 1.5e12}
    restored = TrainState()
    restored.load_state_dict(state.state_dict())
    assert restored == state


def test_checkpoint_keeps_megatron_lm_keys():
    """Iteration and FLOPs at the top of common.pt, consumed samples in its args."""
    state = TrainState(iteration=3, consumed_train_samples=24,
                       num_floating_point_operations_so_far=9.0)
    common = _common_train_state(state, {"lr": 0.1}, save_optim=True, save_rng=False,
                                 model_config=None)
    assert common == {"checkpoint_version": CHECKPOINT_VERSION, "iteration": 3,
                      "num_floating_point_operations_so_far": 9.0,
                      "args": {"lr": 0.1, "consumed_train_samples": 24, "no_save_optim": False,
                               "no_save_rng": True, "tensor_model_parallel_size": 1,
                               "pipeline_model_parallel_size": 1, "finetune": False,
                               "stage": "pretrain"}}
    assert _train_state_from_common(common, CheckpointArgs.from_record(common["args"])) == state


def test_old_checkpoint_without_counters_starts_them_at_zero():
    assert _train_state_from_common({"iteration": 5}, CheckpointArgs()) == TrainState(iteration=5)


def _checkpoint(folder) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    write_tracker(folder, 10)
    return str(folder)


def test_save_holding_a_checkpoint_wins_over_load(tmp_path, capsys):
    save, load = _checkpoint(tmp_path / "save"), _checkpoint(tmp_path / "base")
    source = checkpoint_to_load(CheckpointConfig(save=save, load=load, finetune=True))
    assert source == CheckpointSource(path=save, finetune=False)  # a requeued job resumes
    assert f"--save {save} holds a checkpoint: resuming from it, not --load {load}" in (
        capsys.readouterr().out)


def test_empty_save_as_load_is_a_fresh_start(tmp_path, capsys):
    save = str(tmp_path / "save")
    assert checkpoint_to_load(CheckpointConfig(save=save, load=save)) is None
    assert "starting from random initialisation" in capsys.readouterr().out


@pytest.mark.parametrize("finetune", [True, False])
def test_load_elsewhere_keeps_finetune(tmp_path, finetune):
    load = _checkpoint(tmp_path / "base")
    config = CheckpointConfig(save=str(tmp_path / "empty"), load=load, finetune=finetune)
    assert checkpoint_to_load(config) == CheckpointSource(path=load, finetune=finetune)
    assert checkpoint_to_load(CheckpointConfig(save=str(tmp_path / "empty"))) is None
