"""GPTModel building from presets, checked on real megatron-core models in a fresh process.

The module runs itself as a script (``python tests/test_models_gpt.py OUT.json``): the child
installs the CPU shim, brings megatron up on one gloo process, builds the tiny presets and
records what the models hold.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from _dist_helpers import run_script_for_record

VOCAB = 512


# --------------------------------------------------------------------------- child process
def _describe(name: str, bf16: bool = False) -> dict:
    from megatron_telecom.models.backends import LOCAL_BACKENDS, get_layer_spec
    from megatron_telecom.models.gpt import build_gpt_model
    from megatron_telecom.models.presets import get_preset
    from megatron_telecom.models.transformer_config import build_transformer_config

    preset = get_preset(name)
    config = build_transformer_config(preset, bf16=bf16, backends=LOCAL_BACKENDS)
    model = build_gpt_model(preset, config, padded_vocab_size=VOCAB,
                            layer_spec=get_layer_spec(config, LOCAL_BACKENDS))
    embedding = model.embedding.word_embeddings.weight
    return {
        "inv_freq": model.rotary_pos_emb.inv_freq.tolist(),
        "pre_process": model.pre_process,
        "post_process": model.post_process,
        "untied": model.output_layer.weight.data_ptr() != embedding.data_ptr(),
        "embedding_shape": list(embedding.shape),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "dtypes": sorted({str(p.dtype) for p in model.parameters()}),
        "linear_dtypes": sorted(
            {str(p.dtype) for n, p in model.named_parameters() if "norm" not in n}
        ),
        "max_sequence_length": model.max_sequence_length,
    }


def _child_main(out_path: str) -> None:
    from megatron_telecom.runtime.distributed import destroy_distributed, initialize_distributed

    initialize_distributed()
    record = {name: _describe(name) for name in ("tiny", "tiny-llama3", "tiny-mistral")}
    record["tiny-bf16"] = _describe("tiny", bf16=True)
    destroy_distributed()
    Path(out_path).write_text(json.dumps(record))


# --------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def record(tmp_path_factory) -> dict:
    if torch.cuda.is_available():
        pytest.skip("exercises the CPU path")
    return run_script_for_record(__file__, tmp_path_factory.mktemp("gpt") / "record.json")


def _inv_freq(base: float, dim: int) -> list[float]:
    return [1.0 / base ** (i / dim) for i in range(0, dim, 2)]


def _llama3_scaled(inv_freq: list[float], factor: float = 8.0) -> list[float]:
    """Meta's Llama-3.1 frequency scaling (low/high frequency factors 1 and 4, 8192 context)."""
    low_wavelen, high_wavelen = 8192 / 1.0, 8192 / 4.0
    out = []
    for freq in inv_freq:
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            out.append(freq)
        elif wavelen > low_wavelen:
            out.append(freq / factor)
        else:
            smooth = (8192 / wavelen - 1.0) / (4.0 - 1.0)
            out.append((1 - smooth) * freq / factor + smooth * freq)
    return out


@pytest.mark.parametrize(
    ("name", "base", "scaled"),
    [("tiny", 10000, False), ("tiny-llama3", 500000, True), ("tiny-mistral", 1000000, False)],
)
def test_rope_base_and_scaling_reach_the_model(record, name, base, scaled):
    expected = _inv_freq(base, 16)  # kv_channels = 64 / 4 heads
    if scaled:
        expected = _llama3_scaled(expected)
    assert record[name]["inv_freq"] == pytest.approx(expected, rel=1e-6)


def test_llama3_scaling_changes_low_frequencies(record):
    unscaled = _inv_freq(500000, 16)
    assert record["tiny-llama3"]["inv_freq"][-1] == pytest.approx(unscaled[-1] / 8, rel=1e-6)
    assert record["tiny-llama3"]["inv_freq"][0] == pytest.approx(unscaled[0], rel=1e-6)


def test_single_stage_model_is_untied_and_complete(record):
    tiny = record["tiny"]
    assert tiny["pre_process"] and tiny["post_process"] and tiny["untied"]
    assert tiny["embedding_shape"] == [VOCAB, 64]
    assert tiny["max_sequence_length"] == 128
    h, ffn, q, kv = 64, 176, 64, 32
    per_layer = h + h * (q + 2 * kv) + q * h + h + h * 2 * ffn + ffn * h
    assert tiny["num_parameters"] == 2 * VOCAB * h + 2 * per_layer + h


def test_dtypes(record):
    assert record["tiny"]["dtypes"] == ["torch.float32"]
    # GEMM weights are created in bf16; megatron's torch norms keep fp32 weights until the
    # trainer wraps the model in Float16Module (as Megatron-LM does).
    assert record["tiny-bf16"]["linear_dtypes"] == ["torch.bfloat16"]


if __name__ == "__main__":
    _child_main(sys.argv[1])
