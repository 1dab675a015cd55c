"""LoRA on megatron-core equals PEFT + TRL on SmolLM2-135M, fp32 (issue 28).

One module fixture trains once each side, on the same 3 prompt/completion rows as one batch: our
trainer (``--stage sft --lora-rank 8``, canonical adapters on all seven projections, started with
``--lora-init-adapter`` from a PEFT adapter that ``peft.get_peft_model`` initialised) and TRL
``SFTTrainer`` with ``peft_config=LoraConfig(...)`` whose adapter weights are set to that same
adapter before training. AdamW, constant LR, no weight decay, no clipping. The losses of the 5
steps agree within 1e-4. Our trained checkpoint's adapters, exported with ``lora-to-peft``, load
with ``PeftModel.from_pretrained`` on the HF base and give our model's logits within 1e-5; the
``lora-merge`` export equals PEFT's ``merge_and_unload`` of that adapter, weight for weight, and is as
close to our live adapters as PEFT's merge is to PEFT's live model (measured in the test). The fused
variant (one adapter on linear_qkv and one on linear_fc1) exports exactly in canonical form.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from _dist_helpers import (
    REPO,
    read_jsonl,
    run_subprocess,
    run_torchrun,
    subprocess_env,
    train_losses,
)
from _trl_helpers import recording

from megatron_telecom.data.sft import SFTPreprocessConfig, preprocess_sft
from megatron_telecom.data.tokenizers import TokenizerConfig

pytestmark = [pytest.mark.real_model, pytest.mark.torchrun, pytest.mark.slow]

SAMPLE = REPO / "examples" / "data" / "telecom_sft_sample.jsonl"
# The rows hold at most 87 (SFT) and 176 (DPO pairs) tokens: each SEQ fits the longest (preprocessing
# refuses a longer row, never cuts it) and no more, as our side computes every padded position.
STEPS, LR, SEQ, ROWS, RANK, ALPHA = 5, 1e-3, 96, 3, 8, 16.0
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _flags(smol: dict, data: Path, steps: int, **extra: object) -> list[str]:
    flags = {"stage": "sft", "sft-data-path": data, "load": smol["mcore"], "finetune": None,
             "tokenizer-type": "HuggingFaceTokenizer", "tokenizer-model": smol["hf"],
             "seq-length": SEQ, "micro-batch-size": 1, "global-batch-size": ROWS,
             "train-iters": steps, "lr": LR, "lr-decay-style": "constant", "weight-decay": 0.0,
             "clip-grad": 0.0, "eval-interval": 0, "log-interval": 1,
             "lora-rank": RANK, "lora-alpha": ALPHA, **extra}
    return [part for key, value in flags.items()
            for part in ([f"--{key}"] + ([] if value is None else str(value).split()))]


def _lora_config():  # noqa: ANN202
    from peft import LoraConfig

    return LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=TARGETS,
                      task_type="CAUSAL_LM")


def _trl(smol: dict, rows: list[dict], init: Path, root: Path) -> list[float]:
    import torch
    from datasets import Dataset
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    recorded: list[dict] = []
    Recording = recording(SFTTrainer, recorded)  # noqa: N806 - TRL's own loss of each step, unrounded

    tokenizer = AutoTokenizer.from_pretrained(str(smol["hf"]))
    model = AutoModelForCausalLM.from_pretrained(str(smol["hf"]), dtype=torch.float32)
    args = SFTConfig(output_dir=str(root / "trl"), report_to="none", use_cpu=True, max_length=None,
                     per_device_train_batch_size=len(rows), max_steps=STEPS, learning_rate=LR,
                     lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=0.0,
                     optim="adamw_torch", adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8,
                     save_strategy="no", logging_steps=1, packing=False, dataloader_drop_last=False,
                     bf16=False, fp16=False, completion_only_loss=True)
    trainer = Recording(model=model, args=args, train_dataset=Dataset.from_list(rows),
                        processing_class=tokenizer, peft_config=_lora_config())
    result = set_peft_model_state_dict(trainer.model, load_file(str(init / "adapter_model.safetensors")))
    assert not result.unexpected_keys
    trainer.train()
    return [step["lm_loss"] for step in recorded]


@pytest.fixture(scope="module")
def lora_sft(stage2_smollm2, tmp_path_factory) -> dict:
    """Ours and TRL's LoRA SFT from the same initial adapter; our checkpoint and its exports."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    smol, root = stage2_smollm2, tmp_path_factory.mktemp("lora_sft")
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if "prompt" in r and not isinstance(r["prompt"], str)][:ROWS]
    (root / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tokenizer = TokenizerConfig(tokenizer_type="HuggingFaceTokenizer", tokenizer_model=str(smol["hf"]))
    preprocess_sft(SFTPreprocessConfig(input=[str(root / "rows.jsonl")], output_prefix=str(root / "sft"),
                                       seq_length=SEQ, packing="none", tokenizer=tokenizer))
    torch.manual_seed(0)  # PEFT's own initialisation; B is zero, so step 0 is the base model
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(smol["hf"]), dtype=torch.float32),
                                _lora_config())
    peft_model.save_pretrained(str(root / "init"))
    del peft_model
    run_torchrun(1, [*_flags(smol, root / "sft", STEPS, **{"lora-init-adapter": root / "init"}),
                     "--save", str(root / "ours"), "--log-metrics-file", str(root / "ours.jsonl")], timeout=900)
    losses = train_losses(root / "ours.jsonl")
    return {"root": root, "rows": rows, "ours": [losses[i] for i in range(1, STEPS + 1)],
            "trl": _trl(smol, rows, root / "init", root), "checkpoint": root / "ours"}


def _convert(*args: object):  # noqa: ANN202
    return run_subprocess([sys.executable, str(REPO / "tools" / "convert_checkpoint.py"), *map(str, args)],
                          env=subprocess_env(), timeout=600, cwd=REPO)


def _logits_match(smol: dict, checkpoint: Path, root: Path) -> dict[str, float]:
    """max |logit difference| of the PEFT export (on the HF base) and of the merged export vs our model;
    max |weight difference| of the merged export vs PEFT's ``merge_and_unload`` of that adapter, and
    max |logit difference| of the merged export vs that PEFT-merged model; PEFT's own merge gap (the
    live PEFT model vs the same model after ``merge_and_unload``, same tokens)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for command in ("lora-to-peft", "lora-merge"):
        proc = _convert(command, "--load", checkpoint, "--save", root / command)
        assert proc.returncode == 0, proc.stderr[-3000:]
    tokenizer = AutoTokenizer.from_pretrained(str(smol["hf"]))
    text = "The AMF handles registration and mobility management in the 5G core network."
    tokens = [tokenizer(text)["input_ids"][:16]] * 2
    (root / "tokens.json").write_text(json.dumps(tokens))
    proc = run_subprocess([sys.executable, str(REPO / "tests" / "_lora_probe.py"), str(root / "ours.pt"),
                           str(checkpoint), str(root / "tokens.json")], env=subprocess_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours = torch.load(root / "ours.pt")
    ids = torch.tensor(tokens)
    base = AutoModelForCausalLM.from_pretrained(str(smol["hf"]), dtype=torch.float32)
    with torch.no_grad():
        peft = PeftModel.from_pretrained(base, str(root / "lora-to-peft")).eval()
        peft_logits = peft(ids).logits
        peft_merged = peft.merge_and_unload()  # PEFT's own fp32 merge of our exported adapter
        peft_merged_logits = peft_merged(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(str(root / "lora-merge"), dtype=torch.float32).eval()
        merged_logits = merged(ids).logits
        theirs = peft_merged.state_dict()
        weights = max(float((theirs[k] - v).abs().max()) for k, v in merged.state_dict().items())
    assert "LoRA" in (root / "lora-to-peft" / "README.md").read_text(encoding="utf-8")
    assert "Training stages" in (root / "lora-merge" / "README.md").read_text(encoding="utf-8")
    return {"peft": float((peft_logits - ours).abs().max()), "merged": float((merged_logits - ours).abs().max()),
            "merged_weights_vs_peft_merge": weights,
            "merged_vs_peft_merged": float((merged_logits - peft_merged_logits).abs().max()),
            "peft_merge_gap": float((peft_logits - peft_merged_logits).abs().max()),
            "largest_logit": float(ours.abs().max())}


@pytest.mark.timeout(1800)
def test_lora_sft_losses_equal_trl_with_peft(lora_sft):
    ours, trl = lora_sft["ours"], lora_sft["trl"]
    print(f"ours {ours}\nTRL  {trl}")
    assert len(trl) == STEPS
    assert max(abs(a - b) for a, b in zip(ours, trl, strict=True)) <= 1e-4, (ours, trl)
    assert ours[-1] < ours[0] - 1e-2  # the adapters did learn


@pytest.mark.timeout(1200)
def test_exported_peft_adapter_and_merged_model_give_our_logits(stage2_smollm2, lora_sft):
    diffs = _logits_match(stage2_smollm2, lora_sft["checkpoint"], lora_sft["root"] / "canonical")
    print(diffs)
    _check(diffs)


def _check(diffs: dict[str, float]) -> None:
    """Live adapters: HF + peft gives our logits within 1e-5 absolute (measured 0).

    Merged export: its weights are PEFT's own ``merge_and_unload`` of the same adapter, bitwise, so
    HF runs it to PEFT's merged logits (1e-6; measured 0). Against the live adapters it cannot be
    closer than PEFT's merge is to PEFT's live model: ``W + s B A`` rounded to fp32 is not ``W x +
    s B (A x)``, and the rounding of every merged weight (half an ulp) moves logits of ~30 by ~1e-4
    after 30 layers, beyond an absolute 1e-5 (5 ulps at 30). So the bound is PEFT's own gap,
    measured here on the same tokens (with the triangle's two other sides), and the issue's 1e-5
    relative to the largest logit: |diff| <= 1e-5 * max|logit| (measured 2.4e-6 of it). Measured: our
    merged export 7.8e-5 from our live model, PEFT's merge 7.8e-5 from PEFT's live model, identical."""
    assert diffs["peft"] <= 1e-5, diffs
    assert diffs["merged_weights_vs_peft_merge"] == 0.0, diffs
    assert diffs["merged_vs_peft_merged"] <= 1e-6, diffs
    assert diffs["merged"] <= diffs["peft_merge_gap"] + diffs["peft"] + diffs["merged_vs_peft_merged"], diffs
    assert diffs["merged"] <= 1e-5 * diffs["largest_logit"], diffs


@pytest.mark.timeout(1200)
def test_fused_variant_exports_exactly_in_canonical_form(stage2_smollm2, lora_sft, tmp_path):
    smol, data = stage2_smollm2, lora_sft["root"] / "sft"
    run_torchrun(1, [*_flags(smol, data, 2, **{"lora-variant": "fused", "lora-target-modules": "linear_qkv linear_fc1"}),
                     "--lr", "1e-2", "--save", str(tmp_path / "fused")], timeout=900)
    diffs = _logits_match(smol, tmp_path / "fused", tmp_path)
    config = json.loads((tmp_path / "lora-to-peft" / "adapter_config.json").read_text())
    print(diffs, config["target_modules"])
    assert config["target_modules"] == ["gate_proj", "k_proj", "q_proj", "up_proj", "v_proj"]
    _check(diffs)


DPO_SAMPLE = REPO / "examples" / "data" / "telecom_dpo_sample.jsonl"
DPO_STEPS, DPO_LR, BETA, DPO_SEQ = 3, 1e-3, 0.1, 176
REWARDS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins")


def _dpo_trl(smol: dict, rows: list[dict], init: Path, root: Path) -> list[dict]:
    import torch
    from datasets import Dataset
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    recorded: list[dict] = []
    Recording = recording(DPOTrainer, recorded, REWARDS)  # noqa: N806 - TRL's own loss and rewards, unrounded

    tokenizer = AutoTokenizer.from_pretrained(str(smol["hf"]))
    model = AutoModelForCausalLM.from_pretrained(str(smol["hf"]), dtype=torch.float32)
    args = DPOConfig(output_dir=str(root / "trl"), report_to="none", use_cpu=True, max_length=None, beta=BETA,
                     loss_type=["sigmoid"], per_device_train_batch_size=len(rows), max_steps=DPO_STEPS,
                     learning_rate=DPO_LR, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
                     max_grad_norm=0.0, optim="adamw_torch", adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8,
                     save_strategy="no", logging_steps=1, bf16=False, fp16=False)
    trainer = Recording(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                        peft_config=_lora_config())  # the reference: this model with its adapters disabled
    result = set_peft_model_state_dict(trainer.model, load_file(str(init / "adapter_model.safetensors")))
    assert not result.unexpected_keys
    trainer.train()
    return recorded


@pytest.mark.timeout(1800)
def test_lora_dpo_equals_trl_dpo_trainer_with_peft_config(stage2_smollm2, lora_sft, tmp_path):
    """Reference log-probs stored once from the base (adapters start at B = 0, so the reference pass
    with adapters is the base's, bitwise), then DPO on the adapters; TRL's reference is the same
    model with its adapters disabled."""
    from megatron_telecom.data.preference import DPOPreprocessConfig, preprocess_dpo

    smol = stage2_smollm2
    rows = [json.loads(line) for line in DPO_SAMPLE.read_text(encoding="utf-8").splitlines()][:2]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tokenizer = TokenizerConfig(tokenizer_type="HuggingFaceTokenizer", tokenizer_model=str(smol["hf"]))
    preprocess_dpo(DPOPreprocessConfig(input=[str(tmp_path / "rows.jsonl")], output_prefix=str(tmp_path / "dpo"),
                                       seq_length=DPO_SEQ, tokenizer=tokenizer))
    flags = _flags(smol, tmp_path / "dpo", DPO_STEPS, **{"lora-init-adapter": lora_sft["root"] / "init"})
    flags[flags.index("--stage") + 1] = "dpo"
    flags[flags.index("--sft-data-path")] = "--dpo-data-path"
    flags[flags.index("--global-batch-size") + 1] = str(len(rows))
    flags[flags.index("--lr") + 1] = str(DPO_LR)
    flags[flags.index("--seq-length") + 1] = str(DPO_SEQ)
    run_torchrun(1, [*flags, "--compute-reference-logprobs"], timeout=900)
    run_torchrun(1, [*flags, "--dpo-beta", str(BETA), "--log-metrics-file", str(tmp_path / "ours.jsonl")],
                 timeout=900)
    records = {r["iteration"]: r for r in read_jsonl(tmp_path / "ours.jsonl")}
    ours = [records[i] for i in range(1, DPO_STEPS + 1)]
    trl = _dpo_trl(smol, rows, lora_sft["root"] / "init", tmp_path)
    print(f"ours {ours}\nTRL  {trl}")
    assert len(trl) == DPO_STEPS and ours[0]["lm_loss"] == pytest.approx(0.6931471805599453, abs=1e-7)
    for step, (a, b) in enumerate(zip(ours, trl, strict=True)):
        for name in ("lm_loss", *REWARDS):
            assert abs(a[name] - b[name]) <= 1e-4, (step, name, ours, trl)
    assert ours[-1]["lm_loss"] < ours[0]["lm_loss"] - 1e-3
