"""TP/PP/interleaved-PP/DP layouts train identically, and a TP=2 checkpoint reloads anywhere.

One TP=2 run saves a checkpoint at iteration 2 (the common starting point: same weights,
optimizer state and data position for every layout). From it, runs at TP=1, TP=2, PP=2,
PP=2 interleaved (2 virtual stages), DP=2 and TP=2 with full activation recompute train
iterations 3..5 on the same data; their training losses and the validation loss at iteration
4 must match the TP=1/PP=1 run's to 1e-5. Real torchrun + gloo, real megatron-core.
"""

from __future__ import annotations

import os

import pytest
import torch
from _dist_helpers import (
    checkpoint_tensors,
    read_jsonl,
    run_torchrun,
    tiny_train_args,
    train_losses,
    write_token_dataset,
)

pytestmark = pytest.mark.torchrun

TRAIN_ITERS = 5
START = 2


@pytest.fixture(scope="module")
def start_checkpoint(tmp_path_factory):
    """(data prefix, cache, folder whose tracker points at the TP=2 run's iteration 2)."""
    root = tmp_path_factory.mktemp("parallel")
    prefix = write_token_dataset(root / "data" / "tokens")
    cache = root / "cache"
    saved = root / "tp2_run"
    run_torchrun(2, tiny_train_args(
        prefix, cache=cache, train_iters=TRAIN_ITERS, tensor_model_parallel_size=2,
        save=saved, save_interval=START, log_metrics_file=root / "tp2_run.jsonl"))
    start = root / "start"
    start.mkdir()
    os.symlink(saved / f"iter_{START:07d}", start / f"iter_{START:07d}")
    (start / "latest_checkpointed_iteration.txt").write_text(f"{START}\n")
    return prefix, cache, start


def _continue(start_checkpoint, tmp_path, nproc: int, **layout) -> dict:
    prefix, cache, start = start_checkpoint
    metrics = tmp_path / "metrics.jsonl"
    run_torchrun(nproc, tiny_train_args(prefix, cache=cache, train_iters=TRAIN_ITERS, load=start,
                                        log_metrics_file=metrics, eval_interval=4, eval_iters=1,
                                        **layout))
    losses = train_losses(metrics)
    assert sorted(losses) == list(range(START + 1, TRAIN_ITERS + 1))
    valid = [r["validation"]["tokens"] for r in read_jsonl(metrics) if "validation" in r]
    assert len(valid) == 1
    return {**losses, "validation at 4": valid[0]}


@pytest.fixture(scope="module")
def reference(start_checkpoint, tmp_path_factory):
    """Losses of TP=1, PP=1, DP=1 from the TP=2 checkpoint (loads at another TP)."""
    return _continue(start_checkpoint, tmp_path_factory.mktemp("tp1"), 1)


@pytest.mark.parametrize("name, nproc, layout", [
    ("TP=2", 2, {"tensor_model_parallel_size": 2}),
    ("PP=2", 2, {"pipeline_model_parallel_size": 2}),
    ("PP=2 interleaved", 2, {"pipeline_model_parallel_size": 2,
                             "num_layers_per_virtual_pipeline_stage": 1}),
    ("DP=2", 2, {}),
    ("TP=2 + full activation recompute", 2, {
        "tensor_model_parallel_size": 2, "recompute_granularity": "full",
        "recompute_method": "uniform", "recompute_num_layers": 1}),
])
def test_layout_matches_single_process(start_checkpoint, reference, tmp_path, name, nproc, layout):
    losses = _continue(start_checkpoint, tmp_path, nproc, **layout)
    for key, loss in reference.items():
        assert abs(losses[key] - loss) < 1e-5, (name, key, losses, reference)


def test_distributed_optimizer_with_overlap_matches_plain_data_parallel(tmp_path):
    """DP=2 with the distributed optimizer and overlapped grad reduce / param gather trains,
    evaluates and saves like plain DP=2 (same init: TP=1/PP=1 with the same seed)."""
    prefix = write_token_dataset(tmp_path / "tokens")
    results = {}
    for name, flags in (("plain", {}), ("overlap", {
            "use_distributed_optimizer": True, "overlap_grad_reduce": True,
            "overlap_param_gather": True})):
        metrics = tmp_path / f"{name}.jsonl"
        run_torchrun(2, tiny_train_args(prefix, cache=tmp_path / "cache", train_iters=4,
                                        eval_interval=3, eval_iters=1, save=tmp_path / name,
                                        save_interval=2, log_metrics_file=metrics, **flags))
        results[name] = read_jsonl(metrics)
    assert len(results["plain"]) == len(results["overlap"]) == 5  # 4 iterations + 1 evaluation
    for plain, overlap in zip(results["plain"], results["overlap"], strict=True):
        for key in ("lm_loss", "validation"):
            if key in plain:
                a, b = plain[key], overlap[key]
                a, b = (a["tokens"], b["tokens"]) if key == "validation" else (a, b)
                assert abs(a - b) < 1e-5, (plain, overlap)
    saved = {name: checkpoint_tensors(tmp_path / name / "iter_0000004") for name in results}
    weights = [k for k in saved["plain"] if not k.startswith("optimizer.")]
    assert "output_layer.weight" in weights
    for key in weights:
        assert torch.allclose(saved["plain"][key], saved["overlap"][key], atol=1e-5), key
