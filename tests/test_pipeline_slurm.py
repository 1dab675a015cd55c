"""The stage scripts under slurm/ for real, on conftest's private one-node SLURM cluster.

`slurm/preprocess.sh` submits a job array over input files and a merge job (afterok) whose
dataset equals what one process writes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from _dist_helpers import REPO, subprocess_env
from test_training_slurm import _state, _wait_done

SAMPLE = REPO / "examples" / "data" / "telecom_sample.jsonl"
HF_TOKENIZER = REPO / "tests" / "fixtures" / "hf_tokenizer"
TOKENIZER_FLAGS = ["--tokenizer-type", "HuggingFaceTokenizer", "--tokenizer-model", str(HF_TOKENIZER),
                   "--append-eod"]


def _job_ids(text: str) -> dict[str, str]:
    """{'array': id, 'merge': id} from preprocess.sh's summary line."""
    words = text.replace(",", " ").replace(":", " ").split()
    return {name: words[words.index(name) + 2] for name in ("array", "merge")}


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
    assert _wait_done(env, jobs["merge"], parts / "merge.out", timeout=300) == "COMPLETED", \
        "".join(p.read_text() for p in sorted(parts.glob("*.out")))
    assert _state(env, jobs["array"]) in ("COMPLETED", "GONE")

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
