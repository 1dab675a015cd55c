"""SFT on megatron-core equals TRL SFTTrainer on SmolLM2-135M (issue 19).

The same conversations (one per sequence, no packing) go through our trainer (``--stage sft``,
SmolLM2 converted to megatron-core, fp32) and through TRL 1.16 ``SFTTrainer`` with the same
hyper-parameters: AdamW, constant LR, no weight decay, no clipping, the whole set as one batch.
Multi-turn rows go through TRL's ``assistant_only_loss`` with the generation-tagged copy of the
template (ours renders the untagged one), single-turn prompt/completion rows through
``completion_only_loss``. The first-step loss agrees within 1e-4, the 5 steps within 1e-3.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _dist_helpers import REPO, run_torchrun, train_losses

from megatron_telecom.data.sft import SFTPreprocessConfig, preprocess_sft
from megatron_telecom.data.tokenizers import TokenizerConfig

pytestmark = [pytest.mark.real_model, pytest.mark.torchrun, pytest.mark.slow]

SAMPLE = REPO / "examples" / "data" / "telecom_sft_sample.jsonl"
TAGGED = (REPO / "tests" / "fixtures" / "smollm2_generation_tagged.jinja").read_text(encoding="utf-8")
STEPS, LR, ROWS = 5, 2e-5, 3
# The chosen rows hold at most 143 (multi-turn) and 87 (prompt/completion) tokens. SEQ fits the
# longest row (preprocessing refuses a longer one, never cuts it) and no more: our side computes every
# padded position, while TRL pads to the batch's longest row.
SEQ = {"multi_turn": 144, "prompt_completion": 96}


def _rows(kind: str) -> list[dict]:
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
    if kind == "multi_turn":
        return [r for r in rows if "messages" in r and len(r["messages"]) > 3][:ROWS]
    return [r for r in rows if "prompt" in r and not isinstance(r["prompt"], str)][:ROWS]


def _ours(smol: dict, rows: list[dict], root: Path, seq: int) -> list[float]:
    source = root / "rows.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tokenizer = TokenizerConfig(tokenizer_type="HuggingFaceTokenizer", tokenizer_model=str(smol["hf"]))
    preprocess_sft(SFTPreprocessConfig(input=[str(source)], output_prefix=str(root / "sft"),
                                       seq_length=seq, packing="none", tokenizer=tokenizer))
    flags = {"stage": "sft", "sft-data-path": root / "sft", "load": smol["mcore"], "finetune": None,
             "tokenizer-type": "HuggingFaceTokenizer", "tokenizer-model": smol["hf"],
             "seq-length": seq, "micro-batch-size": 1, "global-batch-size": len(rows),
             "train-iters": STEPS, "lr": LR, "lr-decay-style": "constant", "weight-decay": 0.0,
             "clip-grad": 0.0, "eval-interval": 0, "log-interval": 1,
             "log-metrics-file": root / "metrics.jsonl"}
    argv = [part for key, value in flags.items()
            for part in ([f"--{key}"] + ([] if value is None else [str(value)]))]
    run_torchrun(1, argv, timeout=900)
    losses = train_losses(root / "metrics.jsonl")
    return [losses[i] for i in range(1, STEPS + 1)]


def _trl(smol: dict, rows: list[dict], root: Path, **sft_args) -> list[float]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    class Recording(SFTTrainer):  # TRL's own loss of each step, unrounded (its log rounds)
        losses: list[float] = []

        def compute_loss(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            loss = super().compute_loss(*args, **kwargs)
            self.losses.append(float((loss[0] if isinstance(loss, tuple) else loss).detach()))
            return loss

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(smol["hf"]))
    if "assistant_only_loss" in sft_args:
        tokenizer.chat_template = TAGGED
    model = AutoModelForCausalLM.from_pretrained(str(smol["hf"]), dtype=torch.float32)
    args = SFTConfig(output_dir=str(root / "trl"), report_to="none", use_cpu=True, max_length=None,
                     per_device_train_batch_size=len(rows), max_steps=STEPS, learning_rate=LR,
                     lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
                     max_grad_norm=0.0, optim="adamw_torch", adam_beta1=0.9, adam_beta2=0.999,
                     adam_epsilon=1e-8, save_strategy="no", logging_steps=1, packing=False,
                     dataloader_drop_last=False, bf16=False, fp16=False,  # SFTConfig: bf16 by default
                     **sft_args)
    trainer = Recording(model=model, args=args, train_dataset=Dataset.from_list(rows),
                        processing_class=tokenizer)
    trainer.train()
    return trainer.losses


@pytest.mark.timeout(1800)  # TRL's 5 steps alone take minutes on 2 shared cores
@pytest.mark.parametrize("kind, trl_args", [("multi_turn", {"assistant_only_loss": True}),
                                            ("prompt_completion", {"completion_only_loss": True})])
def test_sft_losses_track_trl(stage2_smollm2, tmp_path, kind, trl_args):
    smol = stage2_smollm2
    rows = _rows(kind)
    assert len(rows) == ROWS
    ours = _ours(smol, rows, tmp_path, SEQ[kind])
    trl = _trl(smol, rows, tmp_path, **trl_args)
    print(f"{kind}: ours {ours}\n{kind}: TRL  {trl}")
    assert len(trl) == STEPS
    assert abs(ours[0] - trl[0]) <= 1e-4, (ours, trl)
    assert max(abs(a - b) for a, b in zip(ours, trl, strict=True)) <= 1e-3, (ours, trl)
