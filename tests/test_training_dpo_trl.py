"""DPO on megatron-core equals TRL DPOTrainer on SmolLM2-135M (issue 20).

The same pairs (the first rows of the telecom DPO sample) go through our stages (reference
log-probs computed once with ``--compute-reference-logprobs``, then ``--stage dpo``; SmolLM2
converted to megatron-core, fp32) and through TRL 1.16 ``DPOTrainer`` with
``precompute_ref_log_probs=True`` and the same hyper-parameters: sigmoid loss, beta 0.1, AdamW,
constant LR, no weight decay, no clipping, the pairs as one batch. Policy and reference start
equal, so step 0 is the fixed point (loss ln 2, rewards 0) in both; the loss and rewards of every
step after it agree within 1e-3 and the first step within 1e-4. A second, shorter case adds the
SFT term (RPO): ``--dpo-sft-loss-weight w`` against TRL's ``loss_type=["sigmoid", "sft"],
loss_weights=[1, w]`` (the mean NLL over the batch's chosen completion tokens).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from _dist_helpers import REPO, read_jsonl, run_torchrun
from _trl_helpers import recording

from megatron_telecom.data.preference import DPOPreprocessConfig, preprocess_dpo
from megatron_telecom.data.tokenizers import TokenizerConfig

pytestmark = [pytest.mark.real_model, pytest.mark.torchrun, pytest.mark.slow]

SAMPLE = REPO / "examples" / "data" / "telecom_dpo_sample.jsonl"
# The first pairs hold at most 176 tokens: SEQ fits them (preprocessing refuses a longer pair, never
# cuts it) and no more, as our side computes every padded position.
LR, BETA, SEQ, ROWS = 5e-6, 0.1, 176, 2
REWARDS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins")


@pytest.fixture(scope="module")
def reference(stage2_smollm2, tmp_path_factory) -> tuple[list[dict], list[str]]:
    """The first ROWS pairs, preprocessed, with their reference log-probs (computed once: both cases
    start from the same model on the same pairs); (pairs, training flags without step-specific ones)."""
    smol, root = stage2_smollm2, tmp_path_factory.mktemp("dpo_trl")
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()][:ROWS]
    source = root / "rows.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tokenizer = TokenizerConfig(tokenizer_type="HuggingFaceTokenizer", tokenizer_model=str(smol["hf"]))
    preprocess_dpo(DPOPreprocessConfig(input=[str(source)], output_prefix=str(root / "dpo"), seq_length=SEQ,
                                       tokenizer=tokenizer))
    flags = {"stage": "dpo", "dpo-data-path": root / "dpo", "load": smol["mcore"], "finetune": None,
             "tokenizer-type": "HuggingFaceTokenizer", "tokenizer-model": smol["hf"], "dpo-beta": BETA,
             "seq-length": SEQ, "micro-batch-size": 1, "global-batch-size": len(rows),
             "lr": LR, "lr-decay-style": "constant", "weight-decay": 0.0,
             "clip-grad": 0.0, "eval-interval": 0, "log-interval": 1}
    argv = [part for key, value in flags.items()
            for part in ([f"--{key}"] + ([] if value is None else [str(value)]))]
    run_torchrun(1, [*argv, "--train-iters", "1", "--compute-reference-logprobs"], timeout=900)
    return rows, argv


def _ours(argv: list[str], root: Path, steps: int, sft_weight: float) -> list[dict]:
    run_torchrun(1, [*argv, "--dpo-sft-loss-weight", str(sft_weight), "--train-iters", str(steps),
                     "--log-metrics-file", str(root / "metrics.jsonl")], timeout=900)
    records = {r["iteration"]: r for r in read_jsonl(root / "metrics.jsonl")}
    return [records[i] for i in range(1, steps + 1)]


def _trl(smol: dict, rows: list[dict], root: Path, steps: int, sft_weight: float) -> list[dict]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    recorded: list[dict] = []
    Recording = recording(DPOTrainer, recorded, REWARDS)  # noqa: N806 - TRL's own loss and rewards, unrounded

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(smol["hf"]))
    model = AutoModelForCausalLM.from_pretrained(str(smol["hf"]), dtype=torch.float32)
    args = DPOConfig(output_dir=str(root / "trl"), report_to="none", use_cpu=True, max_length=None,
                     precompute_ref_log_probs=True, beta=BETA,
                     **({"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, sft_weight]} if sft_weight
                        else {"loss_type": ["sigmoid"]}),
                     per_device_train_batch_size=len(rows), max_steps=steps, learning_rate=LR,
                     lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=0.0,
                     optim="adamw_torch", adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8,
                     save_strategy="no", logging_steps=1, bf16=False, fp16=False)
    trainer = Recording(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    trainer.train()
    return recorded


@pytest.mark.timeout(1800)  # TRL's steps and ours take minutes on 2 shared cores
@pytest.mark.parametrize("steps, sft_weight", [(5, 0.0), (2, 0.5)], ids=["sigmoid", "rpo"])
def test_dpo_loss_and_rewards_track_trl(stage2_smollm2, reference, tmp_path, steps, sft_weight):
    pairs, argv = reference
    ours = _ours(argv, tmp_path, steps, sft_weight)
    trl = _trl(stage2_smollm2, pairs, tmp_path, steps, sft_weight)
    print(f"ours {ours}\nTRL  {trl}")
    assert len(trl) == steps
    assert ours[0]["rewards/margins"] == 0.0  # the fixed point
    if not sft_weight:
        assert ours[0]["lm_loss"] == math.log(2)
    for step, (a, b) in enumerate(zip(ours, trl, strict=True)):
        tolerance = 1e-4 if step == 0 else 1e-3
        for name in ("lm_loss", *REWARDS):
            assert abs(a[name] - b[name]) <= tolerance, (step, name, ours, trl)
    assert ours[-1]["lm_loss"] < ours[0]["lm_loss"] - 1e-3  # it did learn something
