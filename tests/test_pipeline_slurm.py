"""The stage scripts under slurm/ for real, on conftest's private one-node SLURM cluster
(_slurm_helpers).

`slurm/preprocess.sh` submits a job array over input files and a merge job (afterok) whose
dataset equals what one process writes.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from _dist_helpers import REPO, subprocess_env
from _slurm_helpers import job_fields, submit, wait_all, wait_done

SAMPLE = REPO / "examples" / "data" / "telecom_sample.jsonl"
HF_TOKENIZER = REPO / "tests" / "fixtures" / "hf_tokenizer"
TOKENIZER_FLAGS = ["--tokenizer-type", "HuggingFaceTokenizer", "--tokenizer-model", str(HF_TOKENIZER),
                   "--append-eod"]


def _job_ids(text: str) -> dict[str, str]:
    """{'job' | 'array' | 'merge': id} from the summary line of preprocess.sh or evaluate.sh."""
    return {kind or "job": job for kind, job in re.findall(r"(?:(array|merge) )?job (\d+)", text)}


@pytest.mark.slow
def test_sbatch_preprocess_array_then_merge_equals_one_process(slurm_cluster, tmp_path):
    lines = SAMPLE.read_text(encoding="utf-8").splitlines(keepends=True)
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(3):
        (raw / f"part{i}.jsonl").write_text("".join(lines[i::3]), encoding="utf-8")
    env = subprocess_env(SLURM_CONF=slurm_cluster["SLURM_CONF"],
                         PREPROCESS_SBATCH_ARGS="--cpus-per-task=1 --time=00:10:00")
    proc = subprocess.run(
        ["bash", str(REPO / "slurm" / "preprocess.sh"), "--input", "raw/*.jsonl",
         "--output-prefix", "data/telecom", *TOKENIZER_FLAGS],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 input file(s)" in proc.stdout
    jobs = _job_ids(proc.stdout)
    parts = tmp_path / "data" / "telecom_parts"
    assert wait_done(env, jobs["merge"], parts / "merge.out", timeout=300).get("JobState") == "COMPLETED", \
        "".join(p.read_text() for p in sorted(parts.glob("*.out")))
    assert job_fields(env, jobs["array"]).get("JobState", "GONE") in ("COMPLETED", "GONE")

    reference = tmp_path / "one" / "telecom"
    subprocess.run([sys.executable, str(REPO / "tools" / "preprocess_data.py"), "--input",
                    *sorted(str(p) for p in raw.glob("*.jsonl")), "--output-prefix", str(reference),
                    "--workers", "1", *TOKENIZER_FLAGS],
                   env=subprocess_env(), check=True, capture_output=True, timeout=120)
    for suffix in (".bin", ".idx"):
        merged = Path(f"{tmp_path}/data/telecom_text_document{suffix}").read_bytes()
        assert merged == Path(f"{reference}_text_document{suffix}").read_bytes(), suffix


def test_preprocess_sh_refuses_missing_input_before_submitting(tmp_path):
    proc = subprocess.run(
        ["bash", str(REPO / "slurm" / "preprocess.sh"), "--input", "nothing/*.jsonl",
         "--output-prefix", "data/x", *TOKENIZER_FLAGS],
        env=subprocess_env(), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "matches no file" in proc.stderr
    usage = subprocess.run(["bash", str(REPO / "slurm" / "preprocess.sh"), "--append-eod"],
                           env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "usage:" in usage.stderr


def _submit_evaluation(env: dict, *args: str) -> dict[str, str]:
    proc = subprocess.run(["bash", str(REPO / "slurm" / "evaluate.sh"), *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return _job_ids(proc.stdout)


def _chain_config(tmp_path: Path, data: Path) -> Path:
    config = tmp_path / "chain.yaml"
    config.write_text("\n".join([
        "seq_length: 64", "tokenizer_type: HuggingFaceTokenizer",
        "tokenizer_model: bundled:smollm2-135m", f"data_path: {data}", "split: 90,10,0",
        f"data_cache_path: {tmp_path / 'cache'}", "micro_batch_size: 2", "global_batch_size: 4",
        "train_iters: 3", "lr: 1.0e-4", "min_lr: 1.0e-5", "lr_warmup_iters: 1",
        "lr_decay_style: cosine", "clip_grad: 1.0", "log_interval: 1", "eval_interval: 0", ""]))
    return config


@pytest.mark.slow
def test_sbatch_chain_convert_pretrain_evaluate(slurm_cluster, tmp_path, evaluation_tiny_model,
                                                evaluation_teleqna_fixture):
    """convert -> pretrain (2 tasks, from the converted checkpoint) -> evaluate, chained by afterok."""
    env = subprocess_env(SLURM_CONF=slurm_cluster["SLURM_CONF"])
    data = tmp_path / "data" / "telecom"
    subprocess.run([sys.executable, str(REPO / "tools" / "preprocess_data.py"), "--input", str(SAMPLE),
                    "--output-prefix", str(data), "--tokenizer-type", "HuggingFaceTokenizer",
                    "--tokenizer-model", "bundled:smollm2-135m", "--append-eod", "--workers", "1"],
                   env=env, check=True, capture_output=True, timeout=120)
    base, trained = tmp_path / "base-mcore", tmp_path / "trained"
    logs = {name: tmp_path / f"{name}.out" for name in ("convert", "pretrain")}
    convert = submit(env, "--time=00:10:00", "--cpus-per-task=1", "--mem=0",
                     f"--output={logs['convert']}", str(REPO / "slurm" / "convert.sh"), "hf-to-mcore",
                     "--hf-path", str(evaluation_tiny_model), "--save", str(base))
    pretrain = submit(env, "--time=00:10:00", f"--dependency=afterok:{convert}", "--gpus-per-node=0",
                      "--ntasks-per-node=2", "--cpus-per-task=1", f"--output={logs['pretrain']}",
                      str(REPO / "slurm" / "pretrain.sh"), str(_chain_config(tmp_path, Path(f"{data}_text_document"))),
                      "--load", str(base), "--finetune",
                      "--save", str(trained))
    eval_env = {**env, "EVALUATE_SBATCH_ARGS": f"--dependency=afterok:{pretrain} --gpus-per-node=0 "
                                               "--cpus-per-task=1 --time=00:10:00"}
    results = tmp_path / "eval" / "trained.json"
    perplexity = _submit_evaluation(eval_env, "perplexity", "--model", str(trained), "--input",
                                    str(SAMPLE), "--seq-length", "64", "--output", str(results))
    teleqna = _submit_evaluation({**eval_env, "EVALUATE_SHARDS": "2"}, "teleqna", "--model", str(trained),
                                 "--data", str(evaluation_teleqna_fixture), "--output",
                                 str(tmp_path / "eval" / "teleqna.json"))

    jobs = [convert, pretrain, perplexity["job"], teleqna["merge"]]
    states = wait_all(env, jobs, tmp_path)
    assert states == dict.fromkeys(jobs, "COMPLETED"), f"{states}\n" + "".join(
        f"== {p}\n{p.read_text()[-3000:]}" for p in sorted(tmp_path.rglob("*.out")))
    assert f"loaded weights from {base}" in logs["pretrain"].read_text()
    scored = json.loads(results.read_text())
    assert scored["perplexity"] and all(r["perplexity"] > 1 for r in scored["perplexity"].values())
    merged = json.loads((tmp_path / "eval" / "teleqna.json").read_text())["teleqna"]
    one = tmp_path / "one.json"
    subprocess.run([sys.executable, str(REPO / "tools" / "evaluate.py"), "teleqna", "--model", str(trained),
                    "--data", str(evaluation_teleqna_fixture), "--output", str(one)],
                   env=env, check=True, capture_output=True, timeout=300)
    single = json.loads(one.read_text())["teleqna"]
    assert {k: v["overall"] for k, v in merged.items()} == {k: v["overall"] for k, v in single.items()}
