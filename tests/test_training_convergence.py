"""End to end on the sample corpus: preprocess, then the quickstart config's tiny preset learns.

Real tokenizer (Mistral's SentencePiece model), real preprocess tool, 2 torchrun processes.
The validation loss must fall clearly within 100 iterations (it reaches 6.60 against the bar of
6.74), and TensorBoard logs must land in the run folder.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys

import pytest
from _dist_helpers import REPO, read_jsonl, run_torchrun, subprocess_env

SAMPLE = REPO / "examples" / "data" / "telecom_sample.jsonl"
CONFIG = REPO / "examples" / "configs" / "tiny_cpu.yaml"


@pytest.mark.slow
@pytest.mark.torchrun
def test_tiny_preset_validation_loss_falls_on_sample_corpus(tmp_path):
    if not SAMPLE.is_file():
        pytest.skip(f"sample corpus {SAMPLE} not found")
    prefix = tmp_path / "data" / "telecom_sample"
    subprocess.run([sys.executable, "tools/preprocess_data.py", "--input", str(SAMPLE),
                    "--output-prefix", str(prefix), "--tokenizer-type", "SentencePieceTokenizer",
                    "--tokenizer-model", "bundled:mistral-v1", "--append-eod", "--workers", "1"],
                   check=True, cwd=REPO, env=subprocess_env(), timeout=300,
                   capture_output=True)
    save = tmp_path / "run"
    proc = run_torchrun(2, [
        "--config", str(CONFIG), "--data-path", f"{prefix}_text_document",
        "--data-cache-path", str(tmp_path / "cache"), "--save", str(save),
        "--train-iters", "100", "--eval-interval", "10", "--save-interval", "100",
        "--log-metrics-file", str(tmp_path / "metrics.jsonl")], timeout=600)

    valid = [r["validation"]["telecom_sample_text_document"]
             for r in read_jsonl(tmp_path / "metrics.jsonl") if "validation" in r]
    assert len(valid) == 10
    assert valid[0] < math.log(32000) + 0.5  # the first evaluation follows 10 updates
    assert valid[-1] < valid[0] - 1.5, valid
    assert valid[-1] < 0.65 * math.log(32000), valid
    assert re.search(r"validation loss at iteration 100 \| telecom_sample_text_document lm loss "
                     r"value: \S+ \|", proc.stdout)
    assert list((save / "tensorboard").glob("events.out.tfevents.*"))
    assert (save / "latest_checkpointed_iteration.txt").read_text().strip() == "100"
