"""Byte-parity cases for tools/preprocess_data.py vs Megatron-LM core_v0.16.1 (shared by the test
and by tests/golden/regenerate_preprocess_golden.py, which runs Megatron-LM's own tool)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from megatron_telecom.bundled import resolve_hf_path
from megatron_telecom.data.tokenizers import bundled_tokenizer_model

REPO = Path(__file__).resolve().parents[1]
RFC_DIR = REPO.parent / "shared" / "data" / "rfc"
SAMPLE = REPO / "examples" / "data" / "telecom_sample.jsonl"
HF_TOKENIZER = REPO / "tests" / "fixtures" / "hf_tokenizer"
GOLDEN = REPO / "tests" / "golden" / "preprocess_megatron_lm.json"


@dataclass(frozen=True)
class Case:
    name: str
    corpus: str  # "rfc" (../shared/data/rfc as JSONL) or "sample" (examples/data)
    tokenizer_type: str
    tokenizer: str  # bundled SentencePiece name, "hf-fixture", or "smollm2" (the built-in base model's)
    flags: tuple[str, ...] = ()
    key: str = "text"  # the dataset compared (Megatron-LM finalizes only the last --json-keys)

    def tokenizer_model(self) -> str:
        if self.tokenizer == "hf-fixture":
            return str(HF_TOKENIZER)
        if self.tokenizer == "smollm2":
            return str(resolve_hf_path("bundled:smollm2-135m"))
        return str(bundled_tokenizer_model(self.tokenizer))

    def args(self, input_path: Path, prefix: Path, workers: int) -> list[str]:
        return ["--input", str(input_path), "--output-prefix", str(prefix), "--workers", str(workers),
                "--tokenizer-type", self.tokenizer_type, "--tokenizer-model", self.tokenizer_model(),
                *self.flags]

    def dataset(self, prefix: Path) -> Path:
        return Path(f"{prefix}_{self.key}_document")


CASES = [
    Case("rfc-sentencepiece-v3", "rfc", "SentencePieceTokenizer", "mistral-v3"),
    Case("rfc-sentencepiece-v3-eod", "rfc", "SentencePieceTokenizer", "mistral-v3", ("--append-eod",)),
    Case("rfc-huggingface", "rfc", "HuggingFaceTokenizer", "hf-fixture"),
    Case("rfc-huggingface-eod", "rfc", "HuggingFaceTokenizer", "hf-fixture", ("--append-eod",)),
    Case("sample-llama2-v1-eod", "sample", "Llama2Tokenizer", "mistral-v1", ("--append-eod",)),
    Case("sample-gptsentencepiece-keys-eod", "sample", "GPTSentencePieceTokenizer", "mistral-v1",
         ("--append-eod", "--json-keys", "text", "title"), key="title"),
    Case("sample-huggingface-eod", "sample", "HuggingFaceTokenizer", "hf-fixture", ("--append-eod",)),
    Case("rfc-smollm2-eod", "rfc", "HuggingFaceTokenizer", "smollm2", ("--append-eod",)),
    Case("sample-smollm2-keys", "sample", "HuggingFaceTokenizer", "smollm2", ("--json-keys", "text", "title"),
         key="title"),
]


def corpus_path(case: Case, work: Path) -> Path:
    """The case's input JSONL (RFCs are converted: one document per RFC, files in name order)."""
    if case.corpus == "sample":
        return SAMPLE
    path = work / "rfc.jsonl"
    if not path.exists():
        with open(path, "w", encoding="utf-8") as f:
            for rfc in sorted(RFC_DIR.glob("*.txt")):
                f.write(json.dumps({"text": rfc.read_bytes().decode("utf-8"), "id": rfc.stem}) + "\n")
    return path


def run_megatron_lm(case: Case, megatron_lm: Path, python: str, work: Path) -> Path:
    """Run Megatron-LM's own tool on a case; returns the compared dataset prefix."""
    prefix = work / f"megatron_lm_{case.name}"
    cmd = [python, "tools/preprocess_data.py", *case.args(corpus_path(case, work), prefix, 2)]
    result = subprocess.run(cmd, cwd=megatron_lm, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"Megatron-LM failed on {case.name}:\n{result.stderr[-3000:]}")
    return case.dataset(prefix)


def run_ours(case: Case, work: Path, workers: int = 2) -> Path:
    prefix = work / f"ours_{case.name}"
    cmd = [sys.executable, str(REPO / "tools" / "preprocess_data.py"), *case.args(corpus_path(case, work), prefix, workers)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"ours failed on {case.name}:\n{result.stderr[-3000:]}")
    return case.dataset(prefix)
