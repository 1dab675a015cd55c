"""Byte parity with Megatron-LM core_v0.16.1's tools/preprocess_data.py.

Always: our outputs match golden sha256s that Megatron-LM's own tool produced
(tests/golden/regenerate_preprocess_golden.py). When MEGATRON_LM_DIR points at a Megatron-LM
core_v0.16.1 tree (and MEGATRON_LM_PYTHON at a Python that runs it), the tool is also run live.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from preprocess_cases import CASES, GOLDEN, RFC_DIR, SAMPLE, Case, run_megatron_lm, run_ours


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def require_corpus(case: Case) -> None:
    if case.corpus == "rfc" and not RFC_DIR.is_dir():
        pytest.skip(f"{RFC_DIR} is absent: the RFC parity cases read the shared corpus")
    assert case.corpus != "sample" or SAMPLE.is_file()


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("parity")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_matches_megatron_lm_golden(case: Case, work: Path):
    require_corpus(case)
    golden = json.loads(GOLDEN.read_text())["cases"][case.name]
    dataset = run_ours(case, work)
    assert {"bin": sha256(Path(f"{dataset}.bin")), "idx": sha256(Path(f"{dataset}.idx"))} == golden


@pytest.mark.skipif(not os.environ.get("MEGATRON_LM_DIR"), reason="set MEGATRON_LM_DIR to a Megatron-LM core_v0.16.1 tree to run its tool live")
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_matches_megatron_lm_live(case: Case, work: Path):
    require_corpus(case)
    python = os.environ.get("MEGATRON_LM_PYTHON", "python")
    theirs = run_megatron_lm(case, Path(os.environ["MEGATRON_LM_DIR"]), python, work)
    ours = run_ours(case, work)
    for suffix in (".bin", ".idx"):
        assert Path(f"{ours}{suffix}").read_bytes() == Path(f"{theirs}{suffix}").read_bytes()
