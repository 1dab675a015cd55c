"""DPO on the one trainer (issue 20), tiny preset: fixed point, fingerprint refusals, layouts, resume, export.

Reference log-probs come from ``--compute-reference-logprobs`` (the trainer's own model building,
loading and forward, forward-only through megatron-core's schedule); training reads them with
``--stage dpo``. The tiny preset serves TP=2 (SmolLM2's 9 heads / 3 groups do not split in two).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from _dist_helpers import (
    REPO,
    kill_and_resume,
    read_jsonl,
    run_subprocess,
    run_torchrun,
    subprocess_env,
    tiny_train_args,
    write_token_dataset,
)
from _dpo_helpers import dpo_train_args, synthetic_pairs, write_dpo_dataset

from megatron_telecom.training.stages import dpo

pytestmark = pytest.mark.torchrun
SEQ = 64


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return write_dpo_dataset(tmp_path_factory.mktemp("dpo") / "pairs", synthetic_pairs())


def _args(prefix, cache, *, iters: int = 3, **flags) -> list[str]:
    return tiny_train_args(prefix, cache=cache, train_iters=iters, **dpo_train_args(
        prefix, seq_length=SEQ, micro_batch_size=2, global_batch_size=4, **flags))


def _reference(nproc: int, args: list[str]) -> np.ndarray:
    run_torchrun(nproc, [*args, "--compute-reference-logprobs"])
    return np.load(dpo.reference_paths(args[args.index("--dpo-data-path") + 1])[0])


def _pretrain(args: list[str]) -> subprocess.CompletedProcess:
    """One process without torchrun (a refusal comes before any collective)."""
    return run_subprocess([sys.executable, "-m", "megatron_telecom.pretrain", *args], env=subprocess_env(),
                          timeout=240, cwd=REPO)


def test_policy_equal_to_reference_gives_exactly_ln2_and_zero_margin(pairs, tmp_path):
    args = _args(pairs, tmp_path, iters=1, log_metrics_file=tmp_path / "m.jsonl")
    logps = _reference(1, args)
    assert logps.shape == (8, 2) and logps.dtype == np.float64 and (logps < 0).all()
    run_torchrun(1, args)
    (record,) = read_jsonl(tmp_path / "m.jsonl")
    assert record["lm_loss"] == math.log(2)
    assert record["rewards/margins"] == 0.0 and record["rewards/chosen"] == 0.0


def test_missing_or_stale_fingerprint_is_refused_in_one_line(tmp_path):
    prefix = write_dpo_dataset(tmp_path / "pairs", synthetic_pairs(seed=1))
    args = _args(prefix, tmp_path)
    proc = _pretrain(args)
    assert proc.returncode == 2 and "no reference log-probs" in proc.stderr
    _reference(1, args)
    stale = _pretrain([*args, "--seq-length", "128"])
    errors = [line for line in stale.stderr.splitlines() if line.startswith("error:")]
    assert stale.returncode == 2 and len(errors) == 1 and "seq_length changed (64 -> 128)" in errors[0], stale.stderr
    write_dpo_dataset(prefix, synthetic_pairs(seed=2))  # the data changed under the log-probs
    stale = _pretrain(args)
    assert stale.returncode == 2 and "stale reference log-probs" in stale.stderr and "dataset changed" in stale.stderr


def test_reference_logprobs_at_tp2_equal_tp1(pairs, tmp_path):
    one = _reference(1, _args(pairs, tmp_path))
    for path in dpo.reference_paths(pairs):  # else TP=2 keeps TP=1's current log-probs unread
        path.unlink()
    two = _reference(2, _args(pairs, tmp_path, tensor_model_parallel_size=2))
    np.testing.assert_allclose(two, one, rtol=0, atol=1e-5)


@pytest.mark.slow  # ~1-2 min on 2 shared cores
def test_training_at_pp2_equals_pp1_from_the_same_checkpoint(pairs, tmp_path):
    start = _args(pairs, tmp_path, iters=1, save=tmp_path / "start")
    _reference(1, start)
    run_torchrun(1, start)  # a saved checkpoint both layouts load (tiny inits differ per PP)
    loaded = {"load": tmp_path / "start", "finetune": True}
    _reference(1, _args(pairs, tmp_path, **loaded))
    losses = {}
    for pp in (1, 2):
        run_torchrun(pp, _args(pairs, tmp_path, pipeline_model_parallel_size=pp,
                               log_metrics_file=tmp_path / f"pp{pp}.jsonl", **loaded))
        losses[pp] = read_jsonl(tmp_path / f"pp{pp}.jsonl")
    for a, b in zip(losses[1], losses[2], strict=True):
        for name in ("lm_loss", *dpo.METRICS[1:]):
            assert abs(a[name] - b[name]) <= 1e-5, (name, losses)


@pytest.mark.slow  # 1-2 min on 2 shared cores
def test_dpo_run_resumes_bitwise_after_sigkill(pairs, tmp_path):
    """DP=2: run B is SIGKILLed after a checkpoint and resumed; its losses equal run A's bit for bit."""
    iters = 8

    def args(name: str) -> list[str]:
        return _args(pairs, tmp_path, iters=iters, save=tmp_path / name, save_interval=2,
                     log_metrics_file=tmp_path / f"{name}.jsonl")

    _reference(2, args("a"))
    losses_a, losses_b = kill_and_resume(2, args, tmp_path, iters=iters, first_save=2)
    assert all(losses_b[i] == losses_a[i] for i in losses_b), (losses_a, losses_b)


@pytest.mark.slow  # 1-2 min on 2 shared cores
def test_export_of_a_dpo_checkpoint_lists_cpt_sft_dpo(tmp_path):
    """CPT -> SFT -> DPO (each --load --finetune) -> mcore-to-hf: the card names the three stages."""
    from _sft_helpers import sft_train_args, synthetic_conversations, write_sft_dataset

    vocab = 31999  # NullTokenizer ids + EOD = the tiny preset's 32000, so the export fits
    tokens = write_token_dataset(tmp_path / "tokens")
    sft_data = write_sft_dataset(tmp_path / "sft_data", synthetic_conversations(), seq_length=SEQ)
    pairs = write_dpo_dataset(tmp_path / "pairs", synthetic_pairs())
    run_torchrun(1, tiny_train_args(tokens, cache=tmp_path, train_iters=2, save=tmp_path / "cpt", vocab_size=vocab))
    run_torchrun(1, tiny_train_args(sft_data, cache=tmp_path, train_iters=2, **sft_train_args(
        sft_data, seq_length=SEQ, micro_batch_size=1, global_batch_size=2, load=tmp_path / "cpt", finetune=True,
        save=tmp_path / "sft", vocab_size=vocab)))
    args = _args(pairs, tmp_path, iters=2, load=tmp_path / "sft", finetune=True, save=tmp_path / "dpo",
                 vocab_size=vocab)
    _reference(1, args)
    run_torchrun(1, args)
    proc = run_subprocess([sys.executable, str(REPO / "tools" / "convert_checkpoint.py"), "mcore-to-hf",
                           "--load", str(tmp_path / "dpo"), "--save", str(tmp_path / "hf")],
                          env=subprocess_env(), timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    card = (tmp_path / "hf" / "README.md").read_text(encoding="utf-8")
    stages = card.split("## Training stages\n\n")[1].split("\n\n")[0].splitlines()
    assert [line.split(":")[0] for line in stages] == ["1. pretrain", "2. sft", "3. dpo"], card
    assert stages[2].startswith(f"3. dpo: `{pairs}`, 2 iterations"), card
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["num_hidden_layers"] == 4
