"""The CPU shim, tested for real in a fresh process (the shim is process-global).

The module runs itself as a script (``python tests/test_runtime_shim.py OUT.json``): that child
process installs the shim, exercises it and megatron-core (a tiny GPTModel trained one step
through megatron DDP, the optimizer and get_forward_backward_func) and writes what it saw as
JSON. The tests assert on that record; one child serves the whole module.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from _dist_helpers import run_script_for_record, run_subprocess, subprocess_env

pytestmark = pytest.mark.skipif(
    torch.cuda.is_available(), reason="the CPU shim is only installed where CUDA is absent"
)


# --------------------------------------------------------------------------- child process
def _device_checks() -> dict:
    x = torch.ones(3)
    return {
        "zeros_cuda": str(torch.zeros(2, device="cuda").device),
        "empty_int": str(torch.empty(2, device=0).device),
        "arange_device": str(torch.arange(3, device=torch.device("cuda", 0)).device),
        "to_cuda": str(x.to("cuda").device),
        "to_cuda_kw": str(x.to(device="cuda:0", dtype=torch.float64).device),
        "cuda_is_self": x.cuda() is x,
        "pin_is_self": x.pin_memory() is x,
        "type_eq_cuda": x.type() == "torch.cuda.FloatTensor",
        "type_eq_cpu": x.type() == "torch.FloatTensor",
        "type_in_list": x.bfloat16().type() in ["torch.cuda.HalfTensor", "torch.cuda.BFloat16Tensor"],
        "type_str": str(x.type()),
        "type_cast": x.type(torch.float64).dtype == torch.float64,
    }


def _rng_checks() -> dict:
    from megatron.core.tensor_parallel.random import (
        get_cuda_rng_tracker,
        model_parallel_cuda_manual_seed,
    )

    model_parallel_cuda_manual_seed(123)
    torch.manual_seed(0)
    plain = torch.rand(4)
    torch.manual_seed(0)
    with get_cuda_rng_tracker().fork():
        forked_first = torch.rand(4)
    after_fork = torch.rand(4)
    with get_cuda_rng_tracker().fork():
        forked_second = torch.rand(4)
    torch.cuda.manual_seed(7)
    seeded_a = torch.rand(2)
    torch.cuda.manual_seed(7)
    seeded_b = torch.rand(2)
    return {
        "fork_differs_from_default": not torch.equal(forked_first, plain),
        "default_stream_untouched_by_fork": torch.equal(after_fork, plain),
        "fork_stream_advances": not torch.equal(forked_second, forked_first),
        "cuda_manual_seed_reseeds": torch.equal(seeded_a, seeded_b),
    }


def _thread_check() -> str:
    import threading

    result = {}
    thread = threading.Thread(target=lambda: result.update(d=str(torch.ones(1, device="cuda").device)))
    thread.start()
    thread.join()
    return result["d"]


def _train_tiny_step() -> float:
    """One training step of a tiny GPTModel through megatron DDP + optimizer + schedule."""
    from megatron.core.distributed import (
        DistributedDataParallel,
        DistributedDataParallelConfig,
        finalize_model_grads,
    )
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
    from megatron.core.pipeline_parallel import get_forward_backward_func

    from megatron_telecom.models.backends import choose_backends, get_layer_spec
    from megatron_telecom.models.gpt import build_gpt_model_chunks
    from megatron_telecom.models.presets import get_preset
    from megatron_telecom.models.transformer_config import build_transformer_config

    preset, seq, vocab = get_preset("tiny"), 16, 256
    config = build_transformer_config(preset, backends=choose_backends())
    (model,) = build_gpt_model_chunks(preset, config, padded_vocab_size=vocab, seq_length=seq,
                                      layer_spec=get_layer_spec(config, choose_backends()))
    model = DistributedDataParallel(
        config=config,
        ddp_config=DistributedDataParallelConfig(grad_reduce_in_fp32=True),
        module=model,
    )
    optimizer = get_megatron_optimizer(
        OptimizerConfig(optimizer="adam", lr=1e-3, clip_grad=1.0, params_dtype=torch.float32),
        [model],
    )
    config.finalize_model_grads_func = finalize_model_grads
    tokens = torch.randint(0, vocab, (2, seq + 1), generator=torch.Generator().manual_seed(0))
    position_ids = torch.arange(seq).unsqueeze(0).expand(2, -1)

    def forward_step(data_iterator, chunk):
        output = chunk(tokens[:, :-1], position_ids, None, labels=tokens[:, 1:])
        return output, lambda out: (out.float().mean(), {"lm loss": out.float().mean().detach()})

    model.zero_grad_buffer()
    optimizer.zero_grad()
    losses = get_forward_backward_func()(
        forward_step_func=forward_step,
        data_iterator=iter([None]),
        model=[model],
        num_microbatches=1,
        seq_length=seq,
        micro_batch_size=2,
    )
    success, grad_norm, _ = optimizer.step()
    assert success and grad_norm is not None and grad_norm > 0
    return float(losses[0]["lm loss"])


def _recompute_runs() -> dict[str, list[float]]:
    """Loss and gradient norm of one fwd/bwd with each recompute setting, from equal weights."""
    from megatron_telecom.models.backends import choose_backends, get_layer_spec
    from megatron_telecom.models.gpt import build_gpt_model_chunks
    from megatron_telecom.models.options import RecomputeOptions
    from megatron_telecom.models.presets import get_preset
    from megatron_telecom.models.transformer_config import build_transformer_config
    from megatron_telecom.runtime.distributed import set_random_seed

    settings = {
        "none": None,
        "full-uniform": RecomputeOptions(
            recompute_granularity="full", recompute_method="uniform", recompute_num_layers=1
        ),
        "full-block": RecomputeOptions(
            recompute_granularity="full", recompute_method="block", recompute_num_layers=2
        ),
        "selective": RecomputeOptions(recompute_granularity="selective"),
    }
    preset, seq = get_preset("tiny"), 16
    tokens = torch.randint(0, 256, (2, seq + 1), generator=torch.Generator().manual_seed(1))
    position_ids = torch.arange(seq).unsqueeze(0).expand(2, -1)
    results = {}
    for name, recompute in settings.items():
        set_random_seed(1234)
        config = build_transformer_config(preset, recompute=recompute, hidden_dropout=0.1,
                                          backends=choose_backends())
        (model,) = build_gpt_model_chunks(preset, config, padded_vocab_size=256, seq_length=seq,
                                          layer_spec=get_layer_spec(config, choose_backends()))
        loss = model(tokens[:, :-1], position_ids, None, labels=tokens[:, 1:]).mean()
        loss.backward()
        grad_norm = torch.sqrt(sum(p.grad.pow(2).sum() for p in model.parameters()))
        results[name] = [float(loss), float(grad_norm)]
    return results


def _fake_megatron_site() -> None:
    """A CUDA request from a source file the census attributes to megatron, at a new line."""
    source = "torch.zeros(1, device='cuda')\ntorch.cuda.get_arch_list()\n"
    code = compile(source, "/x/megatron/core/canary_probe.py", "exec")
    exec(code, {"torch": torch})


def _child_main(out_path: str) -> None:
    from megatron_telecom.runtime import cpu_shim

    record = {"installed": cpu_shim.install_cpu_shim(), "again": cpu_shim.install_cpu_shim()}
    from megatron_telecom.runtime.distributed import destroy_distributed, initialize_distributed

    initialize_distributed(seed=1234)
    record["devices"] = _device_checks()
    record["rng"] = _rng_checks()
    record["thread_device"] = _thread_check()
    cpu_shim.reset_cuda_site_census()
    record["loss"] = _train_tiny_step()
    record["recompute"] = _recompute_runs()
    record["census"] = cpu_shim.cuda_site_census()
    record["unknown"] = cpu_shim.unknown_cuda_sites()
    from megatron.core import jit

    record["jit"] = {"fuser": jit.jit_fuser.__name__, "inductor_imported": "torch._inductor.compile_fx" in sys.modules}
    _fake_megatron_site()
    record["unknown_after_fake"] = cpu_shim.unknown_cuda_sites()
    destroy_distributed()
    Path(out_path).write_text(json.dumps(record))


# --------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def record(tmp_path_factory) -> dict:
    return run_script_for_record(__file__, tmp_path_factory.mktemp("shim") / "record.json")


def test_install_is_idempotent(record):
    assert record["installed"] is True and record["again"] is True


def test_cuda_devices_are_rewritten_to_cpu(record):
    devices = record["devices"]
    for key in ("zeros_cuda", "empty_int", "arange_device", "to_cuda", "to_cuda_kw"):
        assert devices[key] == "cpu", key
    assert devices["cuda_is_self"] and devices["pin_is_self"]
    assert record["thread_device"] == "cpu"


def test_tensor_type_matches_cuda_and_cpu_names(record):
    devices = record["devices"]
    assert devices["type_eq_cuda"] and devices["type_eq_cpu"] and devices["type_in_list"]
    assert devices["type_str"] == "torch.FloatTensor"  # prints as what it is
    assert devices["type_cast"]  # type(dtype) still casts


def test_rng_tracker_fork_switches_streams(record):
    assert record["rng"] == {
        "fork_differs_from_default": True,
        "default_stream_untouched_by_fork": True,
        "fork_stream_advances": True,
        "cuda_manual_seed_reseeds": True,
    }


def test_canary_no_unknown_cuda_sites_in_a_training_step(record):
    assert record["loss"] > 0
    assert record["census"], "the census recorded nothing: is the shim wired in?"
    assert record["unknown"] == [], (
        "megatron-core hit CUDA sites the shim was not validated against; check each, then add "
        "it to megatron_telecom/runtime/_cuda_sites.py:\n" + "\n".join(record["unknown"])
    )


def test_megatron_jit_fuser_is_off_without_cuda(record):
    """runtime/jit.py: megatron-core imported and trained without torch.compile's decorators, so
    Inductor never loads (with TorchDynamo, ~2 CPU-s of every process start; the kernels are unused)."""
    assert record["jit"] == {"fuser": "noop_decorator", "inductor_imported": False}


def test_recompute_gives_the_same_loss_and_gradients(record):
    """Recompute (with dropout on) must replay the forward exactly, RNG tracker included."""
    runs = record["recompute"]
    for name in ("full-uniform", "full-block", "selective"):
        assert runs[name] == runs["none"], name


def test_canary_reports_a_new_site(record):
    assert record["unknown_after_fake"] == [
        "megatron/core/canary_probe.py:1 device='cuda' in zeros",
        "megatron/core/canary_probe.py:2 torch.cuda.get_arch_list (not shimmed)",
    ]


_IMPORTED_FIRST = """
import torch
from megatron.core.tensor_parallel import random as mrandom
from megatron_telecom.runtime.cpu_shim import install_cpu_shim
assert install_cpu_shim()
mrandom.get_cuda_rng_tracker().add("stream", 99)
torch.manual_seed(0)
plain = torch.rand(4)
torch.manual_seed(0)
with mrandom.get_cuda_rng_tracker().fork("stream"):
    forked = torch.rand(4)
assert not torch.equal(plain, forked), "fork did not switch streams"
assert torch.equal(torch.rand(4), plain), "fork leaked into the default stream"
print("ok")
"""


def test_shim_installed_after_megatron_import_still_forks_rng():
    """megatron binds torch.cuda._lazy_call at import; the shim must rebind it."""
    proc = run_subprocess([sys.executable, "-c", _IMPORTED_FIRST], env=subprocess_env(),
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


if __name__ == "__main__":
    _child_main(sys.argv[1])
