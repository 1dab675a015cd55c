"""The example configs: the 8B ones are the whole stage-1 recipe (base model loaded, re-warm + cosine
to 10%, FP8, ~2M-token batches, ~5% general replay); the quickstart's SmolLM2 stages chain CPT into SFT."""

from __future__ import annotations

import re

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


def test_quickstart_sft_stage_continues_from_the_cpt_checkpoint_on_the_data_it_packs():
    """examples/quickstart.sh: the SFT config loads the CPT config's checkpoint (weights only), reads
    the conversations the script packs, at the length they were packed to, and is exported."""
    script = (REPO / "examples" / "quickstart.sh").read_text()
    out = re.search(r'^out="([^"]+)"', script, re.M).group(1)
    script = script.replace("$out", out)
    cpt = parse_config(["--config", str(CONFIGS / "smollm2_cpu.yaml")])
    sft = parse_config(["--config", str(CONFIGS / "smollm2_sft_cpu.yaml")])
    assert cpt.training.stage == "pretrain" and sft.training.stage == "sft"
    assert sft.checkpoint.load == cpt.checkpoint.save and sft.checkpoint.finetune
    assert len({cpt.checkpoint.load, cpt.checkpoint.save, sft.checkpoint.save}) == 3
    assert sft.tokenizer == cpt.tokenizer and sft.tokenizer.tokenizer_model == "bundled:smollm2-135m"
    packing = re.search(r"tools/preprocess_sft\.py .*?(?<!\\)\n", script, re.S).group(0)
    assert f'--output-prefix "{sft.data.sft_data_path}"' in packing
    assert f"--seq-length {sft.model.seq_length}" in packing and "--tokenizer-model bundled:smollm2-135m" in packing
    for stage in (cpt, sft):  # each trained checkpoint is exported, and the export is compared
        export = re.search(rf'mcore-to-hf --load "{re.escape(stage.checkpoint.save)}" --save "([^"]+)"', script)
        assert export and f'add_model {"cpt" if stage is cpt else "sft"} "{export.group(1)}"' in script
    assert re.search(r"pretrain .*--config examples/configs/smollm2_sft_cpu\.yaml", script)
