"""training/arguments.py: YAML + Megatron-LM flags parsed in one place, errors that say what to do."""

from __future__ import annotations

import pytest

from megatron_telecom.training.arguments import (
    help_text,
    parse_config,
)

REQUIRED = ["--train-iters", "10", "--lr", "3e-4", "--tokenizer-type", "NullTokenizer",
            "--vocab-size", "512", "--data-path", "/data/a"]


def test_megatron_flags_fill_the_tree():
    cfg = parse_config([*REQUIRED, "--tensor-model-parallel-size", "2",
                        "--pipeline_model_parallel_size", "2", "--bf16",
                        "--data-path", "0.7", "/d/telecom", "0.3", "/d/general",
                        "--lr-decay-style", "WSD", "--lr-wsd-decay-iters", "3",
                        "--override-opt_param-scheduler", "--no-exit-signal-handler",
                        "--min-lr=1e-5"])
    assert cfg.parallel.tensor_model_parallel_size == 2
    assert cfg.parallel.pipeline_model_parallel_size == 2
    assert cfg.model.bf16 is True
    assert cfg.data.data_path == ["0.7", "/d/telecom", "0.3", "/d/general"]
    assert cfg.optimizer.lr == 3e-4 and cfg.optimizer.min_lr == 1e-5
    assert cfg.scheduler.override_opt_param_scheduler is True
    assert cfg.training.exit_signal_handler is False
    assert cfg.to_flat_dict()["lr_wsd_decay_iters"] == 3


def test_cli_overrides_yaml(tmp_path):
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("train-iters: 100\nlr: 3.0e-4\nmicro_batch_size: 4\n"
                         "tokenizer_type: NullTokenizer\nvocab_size: 512\n"
                         "data_path: 1.0 /data/a\nsave: /ckpt\n")
    cfg = parse_config(["--config", str(yaml_file), "--micro-batch-size", "2", "--lr", "1e-4"])
    assert cfg.training.train_iters == 100
    assert cfg.training.micro_batch_size == 2
    assert cfg.optimizer.lr == 1e-4
    assert cfg.data.data_path == ["1.0", "/data/a"]
    assert cfg.checkpoint.save == "/ckpt"


@pytest.mark.parametrize("argv, message", [
    (["--train-iters", "10"], "--lr"),
    ([*REQUIRED, "--tensor-parallel", "2"], "unknown flag --tensor-parallel"),
    ([*REQUIRED, "--micro-batch-size", "two"], "--micro-batch-size"),
    ([*REQUIRED, "--lr-decay-style", "exp"],
     "--lr-decay-style 'exp': choose one of constant, linear, cosine, inverse-square-root, WSD"),
    ([*REQUIRED, "--lr-decay-style", "WSD"], "--lr-wsd-decay-iters"),
    ([*REQUIRED, "--data-recipe", "r.yaml"], "exactly one of --data-path and --data-recipe"),
    ([*REQUIRED, "--save-interval", "0"], "--save-interval"),
    ([*REQUIRED, "--lr-warmup-iters", "10"], "--lr-warmup-iters"),
    ([*REQUIRED, "--override-opt_param-scheduler", "--use-checkpoint-opt_param-scheduler"],
     "only one"),
    ([*REQUIRED, "--overlap-param-gather"], "needs --use-distributed-optimizer"),
    ([*REQUIRED, "--split", "100,0,0"], "--eval-interval 0"),
])
def test_bad_settings_say_what_to_change(argv, message):
    with pytest.raises(ValueError, match=message):
        parse_config(argv)


def test_settings_without_save_warn(capsys):
    parse_config([*REQUIRED, "--save-interval", "5", "--exit-duration-in-mins", "10"])
    assert "--save-interval and --exit-duration-in-mins without --save" in capsys.readouterr().err
    parse_config([*REQUIRED, "--split", "100,0,0", "--eval-interval", "0"])  # nothing to evaluate


def test_yaml_unknown_key(tmp_path):
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("train_itters: 10\n")
    with pytest.raises(ValueError, match="unknown key 'train_itters'"):
        parse_config(["--config", str(yaml_file)])


def test_help_lists_megatron_flags():
    text = help_text()
    for flag in ("--tensor-model-parallel-size", "--data-path", "--lr-decay-style",
                 "--exit-duration-in-mins", "--fp8-format", "--recompute-granularity"):
        assert flag in text
