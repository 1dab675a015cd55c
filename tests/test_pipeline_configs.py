"""The example 8B configs are the whole stage-1 recipe: base model loaded, re-warm + cosine to 10%,
FP8, ~2M-token batches, ~5% general replay."""

from __future__ import annotations

import pytest
import yaml
from _dist_helpers import REPO

from megatron_telecom.training.arguments import parse_config

CONFIGS = REPO / "examples" / "configs"


@pytest.mark.parametrize("name", ["llama3_8b_telecom", "mistral_7b_telecom", "llama2_7b_telecom"])
def test_8b_configs_continue_from_the_converted_base_model(name):
    cfg = parse_config(["--config", str(CONFIGS / f"{name}.yaml")])
    assert cfg.checkpoint.load and cfg.checkpoint.load.endswith("-mcore") and cfg.checkpoint.finetune
    assert cfg.checkpoint.save != cfg.checkpoint.load
    text = (CONFIGS / f"{name}.yaml").read_text()
    assert "hf-to-mcore --hf-path" in text and f"--save {cfg.checkpoint.load}" in text
    assert "slurm/evaluate.sh teleqna" in text and "mcore-to-hf" in text
    raw = yaml.safe_load(text)
    assert raw["min_lr"] == pytest.approx(0.1 * raw["lr"]) and raw["lr_decay_style"] == "cosine"
    assert raw["lr_warmup_iters"] > 0 and raw["fp8_format"] == "hybrid" and raw["bf16"]
    assert 2e6 <= raw["global_batch_size"] * raw["seq_length"] <= 2.2e6  # ~2M tokens per step
    recipe = yaml.safe_load((REPO / raw["data_recipe"]).read_text())
    assert recipe["replay"]["share"] == 0.05
