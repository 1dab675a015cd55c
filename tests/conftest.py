"""Shared pytest fixtures: area fixtures carry their area's prefix; `slurm_cluster` is shared.

Fixtures stay thin: the SLURM cluster lives in _slurm_helpers, the .docx builder in _docx_helpers.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _docx_helpers import SPEC_MARKDOWN, build_spec_docx
from _slurm_helpers import (
    TwoNodeCluster,
    private_cluster,
    private_two_node_cluster,
    skip_reason,
    two_node_skip_reason,
)

# ---- curation_ fixtures (tests/test_curation*.py) -------------------------------------------

CURATION_RFC_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "rfc"


@pytest.fixture(scope="session")
def curation_rfc_dir() -> Path:
    """The 80 real IETF RFCs beside the repository (skip when absent)."""
    if not any(CURATION_RFC_DIR.glob("rfc*.txt")):
        pytest.skip(f"real RFC corpus not found at {CURATION_RFC_DIR} (../shared/data/rfc)")
    return CURATION_RFC_DIR


@pytest.fixture(scope="session")
def curation_spec_docx() -> bytes:
    """Bytes of a 3GPP-style .docx (see `curation_spec_markdown` for its expected conversion)."""
    return build_spec_docx()


@pytest.fixture(scope="session")
def curation_spec_markdown() -> str:
    """The Markdown that `curation_spec_docx` must convert to."""
    return SPEC_MARKDOWN


# ---- marks from fixtures, and the units of an xdist run (tests/run.sh: -n 2) -------------------

# Fixtures that give their tests a mark: the SLURM cluster (`slurm`), and test_gpu_kit.py's kit run,
# which starts several trainer processes (`torchrun`: ~2 min, more than the fast tier can hold).
MARK_OF_FIXTURE = {"slurm_cluster": pytest.mark.slurm, "kit_run": pytest.mark.torchrun}
HEAVY_MARKS = ("slurm", "slow", "torchrun", "real_model")


def xdist_scope(nodeid: str) -> str:
    """The unit that one xdist worker runs whole: the test's module (module fixtures run once).

    Session fixtures that take minutes (the SmolLM2 conversion) are built once per session and
    shared by the workers (`built_once`); each worker starts its own SLURM cluster (seconds).
    """
    return nodeid.split("::")[0]


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """The folder ``name``, filled by ``build(folder)`` once per test session.

    Under xdist the workers share the session's temporary root: the first to take the folder's
    lock builds it, the others wait and reuse it; a build that failed is redone by the next.
    """
    root = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ:  # gw0, gw1...: their basetemps sit in the session's
        root = root.parent
    folder, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(folder)
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """`pytest -n N` (tests/run.sh; its default `--dist load`): tests go to the workers in
    xdist_scope units. (pytest 9 ignores xdist 3.8's `--dist loadgroup` suffixes, hence our own.)"""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ScopeScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_scope(nodeid)

    return ScopeScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Marks from MARK_OF_FIXTURE (the fast tier leaves `slurm` and `torchrun` tests out).

    On an xdist worker, whose order is the scheduler's queue, the units with the most HEAVY_MARKS
    (a SLURM job that trains counts three) come first, so that the longest ones do not start last.
    """
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        for mark in (mark for name, mark in MARK_OF_FIXTURE.items() if name in fixtures):
            item.add_marker(mark)
    if hasattr(config, "workerinput"):
        weight: dict[str, int] = {}
        for item in items:
            scope = xdist_scope(item.nodeid)
            weight[scope] = weight.get(scope, 0) + sum(bool(item.get_closest_marker(m)) for m in HEAVY_MARKS)
        items.sort(key=lambda item: -weight[xdist_scope(item.nodeid)])


# ---- slurm_cluster: a private one-node SLURM cluster (tests/test_*_slurm.py) ------------------


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Environment (SLURM_CONF set) of a running private one-node SLURM cluster (copy to change).

    See _slurm_helpers.private_cluster; skips without root or the Debian packages slurmctld,
    slurmd, slurm-client and munge (tests/run.sh installs them).
    """
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    with private_cluster(tmp_path_factory.mktemp("slurm")) as env:
        yield env


@pytest.fixture(scope="session")
def slurm_two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoNodeCluster]:
    """A running private two-node SLURM cluster (cn01, cn02: one network namespace each).

    See _slurm_helpers.private_two_node_cluster; skips where slurm_cluster does or where the
    kernel refuses network namespaces.
    """
    reason = two_node_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    with private_two_node_cluster(tmp_path_factory.mktemp("slurm2")) as cluster:
        yield cluster


# ---- evaluation_ fixtures (tests/test_evaluation_*.py, tests/test_generate*.py) --------------


@pytest.fixture(scope="session")
def evaluation_tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama HF folder with the real SmolLM2 tokenizer (fast real forwards)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from megatron_telecom.bundled import resolve_hf_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_hf_path("bundled:smollm2-135m"))
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # larger weights than the default init, so scores differ between options
        for param in model.parameters():
            param.mul_(8.0)
    path = tmp_path_factory.mktemp("evaluation") / "tiny-llama"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def evaluation_teleqna_fixture(tmp_path_factory) -> Path:
    """Our TeleQnA-format sample: 3 questions per category, 2-5 options, 2 malformed records."""
    from _teleqna_records import RECORDS

    path = tmp_path_factory.mktemp("teleqna") / "teleqna_sample.json"
    path.write_text(json.dumps(RECORDS, indent=1), encoding="utf-8")
    return path


# ---- convert_ fixtures (tests/test_convert*.py) ---------------------------------------------


@pytest.fixture(scope="session")
def convert_hf_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random HF models, one per Llama-family variant (see _convert_helpers.TINY_VARIANTS)."""
    from _convert_helpers import TINY_VARIANTS, write_tiny_hf_model

    def build(base: Path) -> None:
        for name in TINY_VARIANTS:
            write_tiny_hf_model(base / name, name)

    base = built_once(tmp_path_factory, "convert_hf", build)
    return {name: base / name for name in TINY_VARIANTS}


@pytest.fixture(scope="session")
def convert_checkpoints(convert_hf_models: dict[str, Path],
                        tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each tiny HF model converted by hf-to-mcore (one subprocess: the CPU shim is global)."""
    import sys

    from _dist_helpers import REPO, run_subprocess, subprocess_env

    def build(base: Path) -> None:
        script = ("import json, sys\nfrom megatron_telecom.convert.hf_to_mcore import convert_hf_to_mcore\n"
                  "for hf, save in json.loads(sys.argv[1]):\n    convert_hf_to_mcore(hf, save)\n")
        pairs = [(str(hf), str(base / name)) for name, hf in convert_hf_models.items()]
        proc = run_subprocess([sys.executable, "-c", script, json.dumps(pairs)], env=subprocess_env(),
                              timeout=600, cwd=REPO)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]

    base = built_once(tmp_path_factory, "convert_mcore", build)
    return {name: base / name for name in convert_hf_models}


# ---- stage2_ fixtures (tests/test_training_sft_trl.py, tests/test_training_dpo_trl.py; the
# conversion also serves tests/test_convert_smollm2.py) ----------------------------------------


@pytest.fixture(scope="session")
def stage2_smollm2(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The bundled SmolLM2-135M: its HF folder and its hf-to-mcore conversion (converted once)."""
    import sys

    from _dist_helpers import REPO, run_subprocess, subprocess_env

    from megatron_telecom.bundled import resolve_hf_path

    def build(base: Path) -> None:
        proc = run_subprocess([sys.executable, str(REPO / "tools" / "convert_checkpoint.py"), "hf-to-mcore",
                               "--hf-path", "bundled:smollm2-135m", "--save", str(base / "mcore")],
                              env=subprocess_env(), timeout=600, cwd=REPO)
        assert proc.returncode == 0, proc.stderr[-3000:]

    base = built_once(tmp_path_factory, "stage2_smollm2", build)
    return {"hf": resolve_hf_path("bundled:smollm2-135m"), "mcore": base / "mcore"}
