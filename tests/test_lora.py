"""LoRA on the tiny preset (issue 28): frozen base, adapter-only checkpoints, parallel layouts, refusals.

One base checkpoint (2 full-parameter iterations) serves the module. A LoRA run (rank 4, canonical,
every linear) trains from it with ``--load BASE --finetune``; the same run SIGKILLed after its
checkpoint of iteration 2 resumes bitwise; at TP=2 and at PP=2 (torchrun, gloo) its losses equal
TP=1's within 1e-5, and so do the fused variant's at TP=2. Its checkpoints hold the adapters and their Adam state only, and name their base;
an adapter checkpoint on another base, and a merged export whose base is gone, are refused in one line.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from _dist_helpers import (
    checkpoint_tensors,
    kill_and_resume,
    run_subprocess,
    run_torchrun,
    subprocess_env,
    tiny_train_args,
    train_losses,
    write_token_dataset,
)

from megatron_telecom.training.arguments import parse_config

ITERS = 4
LORA = {"lora_rank": 4, "lora_alpha": 8, "lr": 1e-2, "lr_warmup_iters": 0, "lr_decay_style": "constant"}


@pytest.fixture(scope="module")
def tiny_lora(tmp_path_factory) -> dict:
    """The base checkpoint and the flags of a LoRA run on it."""
    root = tmp_path_factory.mktemp("lora")
    data = write_token_dataset(root / "data" / "tokens")
    run_torchrun(1, [*tiny_train_args(data, cache=root / "cache", train_iters=2), "--save", str(root / "base")])

    def args(name: str, **flags: object) -> list[str]:
        return [*tiny_train_args(data, cache=root / "cache", train_iters=ITERS, load=root / "base", finetune=True,
                                 save=root / name, save_interval=2, log_metrics_file=root / f"{name}.jsonl",
                                 **{**LORA, **flags})]

    return {"root": root, "args": args}


@pytest.mark.torchrun
def test_lora_resumes_bitwise_after_sigkill_and_holds_adapters_only(tiny_lora):
    root, args = tiny_lora["root"], tiny_lora["args"]
    losses_a, losses_b = kill_and_resume(1, args, root, iters=ITERS, first_save=2)
    for iteration, loss in losses_b.items():
        assert loss == losses_a[iteration], (iteration, losses_a, losses_b)
    tensors = checkpoint_tensors(root / "a" / f"iter_{ITERS:07d}")
    model = [k for k in tensors if not k.startswith("optimizer.")]
    assert len(model) == 14 and all("_lora.lora_" in k for k in model), model  # 7 (A, B) pairs, layers stacked
    assert all(tensors[k].abs().max() > 0 for k in model)  # B trained away from zero
    adapters = sum(tensors[k].numel() for k in model)
    state = sum(t.numel() for k, t in tensors.items() if k.startswith("optimizer.") and "exp_avg" in k)
    assert state == 2 * adapters  # Adam's two moments, of the adapters alone
    common = torch.load(root / "a" / f"iter_{ITERS:07d}" / "common.pt", weights_only=False)
    assert common["lora"]["base"]["root"] == str((root / "base").resolve())


@pytest.mark.torchrun
@pytest.mark.parametrize("layout", [{"tensor_model_parallel_size": 2}, {"pipeline_model_parallel_size": 2},
                                    {"tensor_model_parallel_size": 2, "lora_variant": "fused"}],
                         ids=["tp2", "pp2", "tp2-fused"])
def test_lora_losses_at_tp2_and_pp2_equal_tp1(tiny_lora, layout):
    """Canonical at TP=2 and PP=2, fused (one adapter on linear_qkv and on linear_fc1, B sharded by
    query groups and as [gate_i; up_i]) at TP=2: the losses of TP=1 with the same variant."""
    root, args = tiny_lora["root"], tiny_lora["args"]
    variant = layout.get("lora_variant", "canonical")
    reference = "a" if variant == "canonical" else variant
    if not (root / f"{reference}.jsonl").is_file():
        run_torchrun(1, args(reference, lora_variant=variant))
    name = "-".join(["tp2" if "tensor_model_parallel_size" in layout else "pp2", variant])
    run_torchrun(2, args(name, **layout))
    ours, reference = train_losses(root / f"{name}.jsonl"), train_losses(root / f"{reference}.jsonl")
    assert sorted(ours) == list(range(1, ITERS + 1))
    for iteration, loss in ours.items():
        assert abs(loss - reference[iteration]) <= 1e-5, (iteration, ours, reference)


@pytest.mark.torchrun
def test_wrong_base_and_merged_export_without_base_are_refused(tiny_lora):
    root, args = tiny_lora["root"], tiny_lora["args"]
    if not (root / "a" / "latest_checkpointed_iteration.txt").is_file():
        run_torchrun(1, args("a"))
    other = root / "other_base"  # another checkpoint: the base's iteration 2 relabelled as 3
    shutil.copytree(root / "base", other)
    (other / "iter_0000002").rename(other / "iter_0000003")
    common = torch.load(other / "iter_0000003" / "common.pt", weights_only=False)
    torch.save({**common, "iteration": 3}, other / "iter_0000003" / "common.pt")
    (other / "latest_checkpointed_iteration.txt").write_text("3\n")
    resumed = root / "wrong"
    shutil.copytree(root / "a", resumed)
    proc = run_torchrun(1, [*args("wrong"), "--load", str(other)], check=False)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0 and len(errors) == 1 and "wrong base" in errors[0], proc.stderr[-2000:]

    gone = root / "moved_base"  # the adapters of "a", their base moved away
    convert = [*map(str, ("tools/convert_checkpoint.py", "lora-merge", "--load", root / "a", "--save", root / "m"))]
    (root / "base").rename(gone)
    try:
        proc = run_subprocess(["python", *convert], env=subprocess_env(), timeout=120, cwd=Path(__file__).parents[1])
    finally:
        gone.rename(root / "base")
    assert proc.returncode == 2 and "give the base checkpoint" in proc.stderr.splitlines()[-1], proc.stderr[-2000:]
    proc = run_subprocess(["python", *convert, "--base", str(other)], env=subprocess_env(), timeout=120,
                          cwd=Path(__file__).parents[1])
    assert proc.returncode == 2 and "wrong base" in proc.stderr.splitlines()[-1], proc.stderr[-2000:]


@pytest.mark.parametrize("flags, message", [
    (["--lora-rank", "0"], "--lora-rank 0: give a positive rank"),
    (["--lora-rank", "4", "--lora-target-modules", "linear_qkv", "qkv_proj"], "'qkv_proj': no such module"),
    (["--lora-rank", "4", "--lora-variant", "fused", "--lora-target-modules", "q_proj"], "fused variant adapts"),
    (["--lora-alpha", "8", "--lora-init-adapter", "x"], "needs --lora-rank"),
    (["--lora-base-bits", "4"], "--lora-base-bits needs --lora-rank"),
    (["--lora-rank", "4", "--lora-base-bits", "8"], "--lora-base-bits '8': choose one of 4"),
    (["--lora-rank", "4", "--lora-base-bits", "4"], r"--lora-base-bits 4 \(QLoRA\)"),
])
def test_bad_lora_flags_are_refused_in_one_line(flags, message):
    base = ["--train-iters", "1", "--lr", "1e-3", "--tokenizer-type", "NullTokenizer", "--vocab-size", "511",
            "--data-path", "x", "--eval-interval", "0"]
    with pytest.raises(ValueError, match=message) as err:
        parse_config([*base, *flags])
    assert "\n" not in str(err.value)


def test_qlora_yaml_key_is_read_and_refused_without_a_4bit_kernel(tmp_path):
    """``lora_base_bits`` in a YAML config is the flag's key; with no bitsandbytes (no 4-bit kernel,
    as on CPU) the refusal says so, and a run without it keeps the full-precision base."""
    import importlib.util

    from megatron_telecom.models.options import LoraOptions

    config = tmp_path / "qlora.yaml"
    config.write_text("train_iters: 1\nlr: 1.0e-3\ntokenizer_type: NullTokenizer\nvocab_size: 511\n"
                      "data_path: [x]\neval_interval: 0\nlora_rank: 4\n")
    assert parse_config(["--config", str(config)]).model.lora == LoraOptions(lora_rank=4)
    config.write_text(config.read_text() + "lora_base_bits: 4\n")
    with pytest.raises(ValueError) as err:
        parse_config(["--config", str(config)])
    kernel = importlib.util.find_spec("bitsandbytes") is not None
    assert "\n" not in str(err.value) and ("not built yet" if kernel else "no 4-bit kernel") in str(err.value)
