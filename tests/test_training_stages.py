"""training/stages: one interface, picked once; no core file names a stage; each stage's flags checked by it.

The stages' numerics are held bit for bit by tests/test_training_golden_loss.py; here, in one
process and without training, the registry, the trainer's ignorance of stage names, and the
flag checks each stage owns.
"""

from __future__ import annotations

import ast
import typing

import pytest
from _dist_helpers import REPO

from megatron_telecom.training.arguments import parse_config
from megatron_telecom.training.config import TrainingConfig
from megatron_telecom.training.stages import STAGE_NAMES, STAGES, Stage, build_stage, stage_class

COMMON = ["--train-iters", "4", "--lr", "1e-4", "--tokenizer-type", "NullTokenizer",
          "--vocab-size", "512", "--eval-interval", "0"]
DATA = {"pretrain": ["--data-path", "/d/a"], "sft": ["--stage", "sft", "--sft-data-path", "/d/s"],
        "dpo": ["--stage", "dpo", "--dpo-data-path", "/d/p"]}


def test_every_registered_stage_is_a_stage_of_that_name():
    assert STAGE_NAMES == ("pretrain", "sft", "dpo")
    for name in STAGES:
        cls = stage_class(name)
        assert issubclass(cls, Stage) and cls.name == name
        assert callable(cls.validate) and isinstance(cls.metric_names, tuple) and cls.metric_names[0] == "lm loss"
    with pytest.raises(ValueError, match="choose one of pretrain, sft, dpo"):
        stage_class("rlhf")


def test_the_stage_flag_takes_its_choices_from_the_registry():
    hints = typing.get_type_hints(TrainingConfig)
    assert typing.get_args(hints["stage"]) == STAGE_NAMES


@pytest.mark.parametrize("path", ["megatron_telecom/training/trainer.py", "megatron_telecom/pretrain.py"])
def test_core_files_name_no_stage(path):
    """The loop and the entry point ask the stage; they never compare --stage with a name."""
    tree = ast.parse((REPO / path).read_text())
    literals = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)}
    assert not literals & {"sft", "dpo", "pretrain"}, path
    attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert not attributes & {"dpo", "sft", "compute_reference_logprobs", "sft_data_path", "dpo_data_path"}


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_each_stage_validates_its_own_flags_and_refuses_the_others(stage):
    cfg = parse_config([*COMMON, *DATA[stage]])
    built = build_stage(cfg)
    assert built.name == stage and built.cfg is cfg
    others = {"pretrain": ["--sft-data-path", "/d/s"], "sft": ["--compute-reference-logprobs"],
              "dpo": ["--sft-data-path", "/d/s"]}[stage]
    with pytest.raises(ValueError, match=r"is read by --stage (sft|dpo) only"):
        parse_config([*COMMON, *DATA[stage], *others])


@pytest.mark.parametrize(("flags", "message"), [
    (["--stage", "sft"], "--stage sft reads --sft-data-path PREFIX"),
    (["--stage", "dpo", "--dpo-data-path", "/d/p", "--data-path", "/d/a"], "drop --data-path"),
    (["--stage", "dpo", "--dpo-data-path", "/d/p", "--dpo-beta", "0"], "give a positive beta"),
    (["--stage", "sft", "--sft-data-path", "/d/s", "--eval-interval", "5"], "no validation split yet"),
    (["--stage", "pretrain"], "exactly one of --data-path and --data-recipe"),
])
def test_stage_refusals_say_what_to_change(flags, message):
    with pytest.raises(ValueError, match=message):
        parse_config([*COMMON, *flags])


def test_only_the_packed_stages_need_document_positions_and_per_token_loss():
    needs = {name: stage_class(name).needs for name in STAGE_NAMES}
    assert not needs["pretrain"].packed_documents and not needs["pretrain"].per_token_loss
    assert needs["sft"].packed_documents and needs["sft"].per_token_loss
    assert needs["dpo"].packed_documents and needs["dpo"].per_token_loss
