"""SDPA core attention vs megatron-core's DotProductAttention, on real megatron-core modules.

The module runs itself as a script in a fresh process (``python tests/test_models_attention.py
OUT.json``): the child installs the CPU shim, brings megatron up on one gloo process and records
fp32 forward/backward differences between the two core attentions (GQA and MHA, several
lengths, an explicit document mask) and between whole tiny GPT models built through the layer
spec with each backend. TP=2 runs of the SDPA default are covered by the bit-identical TP/PP
parity tests in test_training_parallel.py.
"""

from __future__ import annotations

import sys

import pytest
import torch
from _dist_helpers import run_script_for_record

TOLERANCE = 1e-5
CASES = [  # (heads, query groups, head dim, sequence length, batch)
    (4, 2, 16, 1, 2),
    (4, 2, 16, 7, 2),
    (4, 2, 16, 64, 2),
    (8, 2, 32, 129, 1),
    (4, 4, 16, 33, 3),  # plain multi-head attention
    (6, 1, 8, 50, 2),  # multi-query attention
]


# --------------------------------------------------------------------------- child process
def _config(heads: int, groups: int, head_dim: int):
    from megatron.core.transformer.transformer_config import TransformerConfig

    return TransformerConfig(num_layers=1, hidden_size=heads * head_dim, num_attention_heads=heads,
                             num_query_groups=groups, kv_channels=head_dim,
                             use_cpu_initialization=True, masked_softmax_fusion=False,
                             attention_dropout=0.0, hidden_dropout=0.0)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def _core_attention_case(heads: int, groups: int, head_dim: int, seq: int, batch: int,
                         document_mask: bool) -> dict:
    """Max |difference| of outputs and input gradients, SDPA vs DotProductAttention."""
    from megatron.core.transformer.dot_product_attention import DotProductAttention
    from megatron.core.transformer.enums import AttnMaskType

    from megatron_telecom.models.attention import SDPADotProductAttention

    config = _config(heads, groups, head_dim)
    generator = torch.Generator().manual_seed(seq * 31 + heads)
    shapes = [(seq, batch, heads, head_dim), (seq, batch, groups, head_dim),
              (seq, batch, groups, head_dim)]
    inputs = [torch.randn(shape, generator=generator) for shape in shapes]
    grad_out = torch.randn(seq, batch, heads * head_dim, generator=generator)
    mask = None
    if document_mask:  # causal within two documents split at seq // 2: True = masked
        position = torch.arange(seq)
        doc = position >= seq // 2
        allowed = (position[None, :] <= position[:, None]) & (doc[None, :] == doc[:, None])
        mask = (~allowed)[None, None].expand(batch, 1, seq, seq)
    results = []
    for cls in (DotProductAttention, SDPADotProductAttention):
        module = cls(config, layer_number=1, attn_mask_type=AttnMaskType.causal,
                     attention_type="self")
        leaves = [t.clone().requires_grad_() for t in inputs]
        out = module(*leaves, attention_mask=mask)
        out.backward(grad_out)
        results.append((out.detach(), [t.grad for t in leaves]))
    (ref_out, ref_grads), (out, grads) = results
    return {"case": [heads, groups, head_dim, seq, batch, document_mask],
            "shape": list(out.shape), "ref_shape": list(ref_out.shape),
            "forward": _max_diff(out, ref_out),
            "backward": max(_max_diff(g, r) for g, r in zip(grads, ref_grads)),
            "scale": float(ref_out.abs().max())}


def _model_case(backend: str) -> dict:
    """Loss and gradients of a tiny GPT model (same seed) built with ``backend``."""
    from megatron.core import tensor_parallel

    from megatron_telecom.models.backends import choose_backends, get_layer_spec
    from megatron_telecom.models.gpt import build_gpt_model
    from megatron_telecom.models.presets import get_preset
    from megatron_telecom.models.transformer_config import build_transformer_config

    preset = get_preset("tiny")
    torch.manual_seed(7)
    tensor_parallel.model_parallel_cuda_manual_seed(7)
    config = build_transformer_config(preset, backends=choose_backends())
    model = build_gpt_model(preset, config, padded_vocab_size=512, seq_length=96,
                            layer_spec=get_layer_spec(config, choose_backends(attention_backend=backend)))
    core = type(model.decoder.layers[0].self_attention.core_attention).__name__
    tokens = torch.randint(0, 512, (2, 96), generator=torch.Generator().manual_seed(3))
    position_ids = torch.arange(96).expand(2, 96)
    loss = model(tokens, position_ids, None, labels=tokens).mean()
    loss.backward()
    grads = {n: p.main_grad if hasattr(p, "main_grad") else p.grad
             for n, p in model.named_parameters()}
    return {"core": core, "loss": float(loss), "grads": grads}


def _layer_spec_choices() -> dict:
    from megatron_telecom.models.backends import choose_backends, get_layer_spec
    from megatron_telecom.models.presets import get_preset
    from megatron_telecom.models.transformer_config import build_transformer_config

    config = build_transformer_config(get_preset("tiny"), backends=choose_backends())
    cores = {b: get_layer_spec(config, choose_backends(attention_backend=b)).submodules.self_attention
             .submodules.core_attention.__name__ for b in ("auto", "sdpa", "local")}
    errors = {}
    for name, kwargs in {"bad": {"attention_backend": "flash2"},
                         "te_sdpa": {"attention_backend": "sdpa",
                                     "transformer_impl": "transformer_engine"},
                         "te_local": {"attention_backend": "local",
                                      "transformer_impl": "transformer_engine"}}.items():
        try:
            get_layer_spec(config, choose_backends(**kwargs))
        except ValueError as err:
            errors[name] = str(err)
    return {"cores": cores, "errors": errors}


def _child_main(out_path: str) -> None:
    from megatron_telecom.atomic import atomic_write_json
    from megatron_telecom.runtime.distributed import destroy_distributed, initialize_distributed

    initialize_distributed()
    torch.use_deterministic_algorithms(True)
    cases = [_core_attention_case(*case, document_mask=False) for case in CASES]
    cases += [_core_attention_case(4, 2, 16, 40, 2, document_mask=True),
              _core_attention_case(4, 4, 16, 40, 2, document_mask=True)]
    sdpa, local = _model_case("sdpa"), _model_case("local")
    record = {
        "cases": cases,
        "model": {
            "cores": [sdpa["core"], local["core"]],
            "loss": [sdpa["loss"], local["loss"]],
            "grad_names_equal": sorted(sdpa["grads"]) == sorted(local["grads"]),
            "grad_max_diff": max(_max_diff(sdpa["grads"][n], local["grads"][n])
                                 for n in sdpa["grads"]),
            "grad_max": max(float(g.abs().max()) for g in local["grads"].values()),
        },
        "spec": _layer_spec_choices(),
    }
    destroy_distributed()
    atomic_write_json(out_path, record)


# --------------------------------------------------------------------------- tests
pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="exercises the CPU path")


@pytest.fixture(scope="module")
def record(tmp_path_factory) -> dict:
    """The child's comparisons (one process for all tests of this module)."""
    return run_script_for_record(__file__, tmp_path_factory.mktemp("attn") / "record.json")


def test_core_attention_matches_dot_product_attention(record):
    assert len(record["cases"]) == len(CASES) + 2
    for case in record["cases"]:
        assert case["shape"] == case["ref_shape"], case
        assert case["scale"] > 0.1, case  # outputs are not trivially zero
        assert case["forward"] <= TOLERANCE, case
        assert case["backward"] <= TOLERANCE, case


def test_gpt_model_same_loss_and_gradients_with_either_backend(record):
    model = record["model"]
    assert model["cores"] == ["SDPADotProductAttention", "DotProductAttention"]
    sdpa_loss, local_loss = model["loss"]
    assert abs(sdpa_loss - local_loss) <= TOLERANCE * abs(local_loss)
    assert model["grad_names_equal"]
    assert model["grad_max"] > 0
    assert model["grad_max_diff"] <= TOLERANCE


def test_layer_spec_picks_core_attention_by_name(record):
    spec = record["spec"]
    assert spec["cores"] == {"auto": "SDPADotProductAttention", "sdpa": "SDPADotProductAttention",
                             "local": "DotProductAttention"}
    assert "choose one of ('auto', 'sdpa', 'local')" in spec["errors"]["bad"]
    for name in ("te_sdpa", "te_local"):  # explicit TE + a local-spec attention: a clear error
        assert "drop --transformer-impl transformer_engine" in spec["errors"][name]

if __name__ == "__main__":
    _child_main(sys.argv[1])
