"""The config tree: YAML + Megatron-LM flags parsed in one place, errors that say what to do."""

from __future__ import annotations

import json

import pytest

from megatron_telecom.training.arguments import (
    batch_layout,
    help_text,
    parse_config,
    virtual_pipeline_size,
)
from megatron_telecom.training.data import microbatch_indices, parse_data_path
from megatron_telecom.training.metrics import IterationStats, format_log_line

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
    ([*REQUIRED, "--lr-decay-style", "exp"], "--lr-decay-style"),
    ([*REQUIRED, "--lr-decay-style", "WSD"], "--lr-wsd-decay-iters"),
    ([*REQUIRED, "--data-recipe", "r.yaml"], "exactly one of --data-path and --data-recipe"),
    ([*REQUIRED, "--save-interval", "0"], "--save-interval"),
    ([*REQUIRED, "--lr-warmup-iters", "10"], "--lr-warmup-iters"),
    ([*REQUIRED, "--override-opt_param-scheduler", "--use-checkpoint-opt_param-scheduler"],
     "only one"),
    ([*REQUIRED, "--overlap-param-gather"], "needs --use-distributed-optimizer"),
    ([*REQUIRED, "--micro-batch-size", "0"], "must be > 0"),
    ([*REQUIRED, "--global-batch-size", "-8"], "must be > 0"),
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


def test_batch_layout_and_virtual_pipeline():
    cfg = parse_config([*REQUIRED, "--tensor-model-parallel-size", "2", "--micro-batch-size", "2",
                        "--global-batch-size", "16", "--pipeline-model-parallel-size", "2",
                        "--num-layers-per-virtual-pipeline-stage", "1"])
    layout = batch_layout(cfg, world_size=8)
    assert (layout.data_parallel_size, layout.num_microbatches) == (2, 4)
    assert virtual_pipeline_size(cfg, num_layers=4) == 2
    with pytest.raises(ValueError, match="not divisible by TP x PP"):
        batch_layout(cfg, world_size=6)
    with pytest.raises(ValueError, match="multiple of --micro-batch-size"):
        batch_layout(parse_config([*REQUIRED, "--global-batch-size", "3",
                                   "--micro-batch-size", "2"]), world_size=1)
    with pytest.raises(ValueError, match="do not split"):
        virtual_pipeline_size(cfg, num_layers=5)


def test_sampler_order_resumes_exactly():
    """Megatron's MegatronPretrainingSampler: DP rank r takes slice r of each global microbatch."""
    kwargs = dict(total=20, micro_batch_size=2, data_parallel_size=2)
    rank0 = list(microbatch_indices(consumed_samples=0, data_parallel_rank=0, **kwargs))
    rank1 = list(microbatch_indices(consumed_samples=0, data_parallel_rank=1, **kwargs))
    assert rank0[:2] == [[0, 1], [4, 5]] and rank1[:2] == [[2, 3], [6, 7]]
    resumed = list(microbatch_indices(consumed_samples=8, data_parallel_rank=0, **kwargs))
    assert resumed == rank0[2:]


def test_data_path_forms(tmp_path):
    for name in ("a", "b"):
        (tmp_path / f"{name}.bin").write_bytes(b"")
        (tmp_path / f"{name}.idx").write_bytes(b"")
    blend = parse_data_path(["0.7", str(tmp_path / "a"), "0.3", str(tmp_path / "b")])
    assert blend.weights == [0.7, 0.3] and blend.names == ["a", "b"]
    assert parse_data_path([str(tmp_path / "a")]).weights is None
    with pytest.raises(ValueError, match="not found"):
        parse_data_path([str(tmp_path / "missing")])
    with pytest.raises(ValueError, match="pairs"):
        parse_data_path(["0.7", str(tmp_path / "a"), "0.3"])


def test_same_file_name_in_two_folders_gets_distinct_names(tmp_path):
    for folder in ("telecom", "general", "x/telecom"):
        (tmp_path / folder).mkdir(parents=True)
        for ext in (".bin", ".idx"):
            (tmp_path / folder / f"text{ext}").write_bytes(b"")
    blend = parse_data_path([str(tmp_path / "telecom/text"), str(tmp_path / "general/text")])
    assert blend.names == ["telecom/text", "general/text"]
    with pytest.raises(ValueError, match="more than once"):
        parse_data_path([str(tmp_path / "telecom/text"), str(tmp_path / "x/telecom/text")])
    with pytest.raises(ValueError, match="more than once"):
        parse_data_path([str(tmp_path / "telecom/text")] * 2)


def test_dataset_cache_key_changes_when_an_index_is_rewritten(tmp_path):
    """megatron's GPTDataset cache key ignores file contents: the .idx stamp must be in it."""
    from megatron_telecom.training.config import TokenizerConfig
    from megatron_telecom.training.data import DatasetTokenizer

    prefix = str(tmp_path / "d")
    (tmp_path / "d.idx").write_bytes(b"x" * 10)

    class Tok:
        vocab_size, eod = 512, 511

    def key():
        tok = DatasetTokenizer(Tok(), TokenizerConfig(tokenizer_type="NullTokenizer"), [prefix])
        # serialised as megatron's MegatronDataset does for its cache key
        return json.dumps({"tokenizer": tok}, default=lambda obj: obj.unique_identifiers)

    before = key()
    (tmp_path / "d.idx").write_bytes(b"y" * 12)  # rebuilt under the same prefix
    assert key() != before


def test_log_line_has_megatron_format():
    line = format_log_line(IterationStats(
        iteration=10, train_iters=100, consumed_samples=320, elapsed_ms_per_iteration=1234.56,
        tflops_per_device=12.34, tokens_per_second=5000.0, learning_rate=1e-4,
        global_batch_size=32, lm_loss=1.5, loss_scale=1.0, grad_norm=0.5,
        skipped_iterations=0))
    assert line.startswith(" iteration       10/     100 | consumed samples:          320 |")
    for part in ("elapsed time per iteration (ms): 1234.6 |",
                 "throughput per GPU (TFLOP/s/GPU): 12.3 |", "learning rate: 1.000000E-04 |",
                 "global batch size:    32 |", "lm loss: 1.500000E+00 |", "loss scale: 1.0 |",
                 "grad norm: 0.500 |", "number of skipped iterations:   0 |",
                 "tokens per second: 5000.0 |"):
        assert part in line
    assert "nan iterations" not in line  # a NaN/Inf loss stops training instead


def test_help_lists_megatron_flags():
    text = help_text()
    for flag in ("--tensor-model-parallel-size", "--data-path", "--lr-decay-style",
                 "--exit-duration-in-mins", "--fp8-format", "--recompute-granularity"):
        assert flag in text


def test_data_recipe_gives_named_weighted_blend(tmp_path):
    from _dist_helpers import write_token_dataset

    from megatron_telecom.training.config import DataConfig
    from megatron_telecom.training.data import resolve_blend

    write_token_dataset(tmp_path / "rfc", num_docs=20)
    write_token_dataset(tmp_path / "wiki", num_docs=20, seed=1)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("datasets:\n  - {name: rfc, prefix: rfc, weight: 1}\n"
                      "replay:\n  share: 0.25\n  datasets:\n    - {name: wiki, prefix: wiki}\n")
    blend = resolve_blend(DataConfig(data_recipe=str(recipe)))
    assert blend.names == ["rfc", "wiki"]
    assert blend.prefixes == [str(tmp_path / "rfc"), str(tmp_path / "wiki")]
    assert blend.weights == pytest.approx([0.75, 0.25])
