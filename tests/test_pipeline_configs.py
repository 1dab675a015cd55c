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


def test_quickstart_stages_chain_each_from_the_last_checkpoint_on_the_data_they_preprocess():
    """examples/quickstart.sh: SFT loads the CPT config's checkpoint and DPO the SFT one (weights
    only); each reads the data the script preprocesses, at the length it was preprocessed to; DPO
    computes its reference log-probs with its own config first; every checkpoint is exported and
    compared."""
    script = (REPO / "examples" / "quickstart.sh").read_text()
    out = re.search(r'^out="([^"]+)"', script, re.M).group(1)
    script = script.replace("$out", out)
    for switch, default in (("${lora}", ""), ("${run}", ""), ('"$export"', "mcore-to-hf")):  # LORA unset
        script = script.replace(switch, default)
    cpt = parse_config(["--config", str(CONFIGS / "smollm2_cpu.yaml")])
    sft = parse_config(["--config", str(CONFIGS / "smollm2_sft_cpu.yaml")])
    dpo = parse_config(["--config", str(CONFIGS / "smollm2_dpo_cpu.yaml")])
    assert (cpt.training.stage, sft.training.stage, dpo.training.stage) == ("pretrain", "sft", "dpo")
    assert sft.checkpoint.load == cpt.checkpoint.save and sft.checkpoint.finetune
    assert dpo.checkpoint.load == sft.checkpoint.save and dpo.checkpoint.finetune
    saves = {cpt.checkpoint.load, cpt.checkpoint.save, sft.checkpoint.save, dpo.checkpoint.save}
    assert len(saves) == 4
    assert sft.tokenizer == cpt.tokenizer == dpo.tokenizer
    assert sft.tokenizer.tokenizer_model == "bundled:smollm2-135m"
    for tool, prefix, stage in (("preprocess_sft", sft.data.sft_data_path, sft),
                                ("preprocess_dpo", dpo.data.dpo_data_path, dpo)):
        preprocess = re.search(rf"tools/{tool}\.py .*?(?<!\\)\n", script, re.S).group(0)
        assert f'--output-prefix "{prefix}"' in preprocess
        assert f"--seq-length {stage.model.seq_length}" in preprocess
        assert "--tokenizer-model bundled:smollm2-135m" in preprocess
    reference = script.index("--config examples/configs/smollm2_dpo_cpu.yaml --compute-reference-logprobs")
    training = re.search(r"pretrain [^\n]*--config examples/configs/smollm2_dpo_cpu\.yaml --train-iters", script)
    assert training and reference < training.start()
    for label, stage in (("cpt", cpt), ("sft", sft), ("dpo", dpo)):  # exported, then compared
        export = re.search(rf'mcore-to-hf --load "{re.escape(stage.checkpoint.save)}" --save "([^"]+)"', script)
        assert export and f'add_model {label} "{export.group(1)}"' in script
    assert re.search(r"pretrain .*--config examples/configs/smollm2_sft_cpu\.yaml", script)


def test_lora_quickstart_configs_chain_adapters_on_the_cpt_checkpoint():
    """LORA=1: SFT adapters on the CPT checkpoint, DPO continuing them; their own --save folders."""
    cpt = parse_config(["--config", str(CONFIGS / "smollm2_cpu.yaml")])
    sft = parse_config(["--config", str(CONFIGS / "smollm2_lora_sft_cpu.yaml")])
    dpo = parse_config(["--config", str(CONFIGS / "smollm2_lora_dpo_cpu.yaml")])
    full_sft = parse_config(["--config", str(CONFIGS / "smollm2_sft_cpu.yaml")])
    assert sft.checkpoint.load == cpt.checkpoint.save and dpo.checkpoint.load == sft.checkpoint.save
    assert sft.model.lora == dpo.model.lora and sft.model.lora.lora_rank == 16
    assert sft.checkpoint.save != full_sft.checkpoint.save
    assert (sft.data, sft.training.train_iters) == (full_sft.data, full_sft.training.train_iters)
    script = (REPO / "examples" / "quickstart.sh").read_text()
    assert 'if [ "${LORA:-0}" = 1 ]; then lora=lora_ run=lora- export=lora-merge' in script
