"""tools/curate_corpus.py: flags, clear errors, an offline run, and the SLURM job scripts."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import dill
import pytest
from datatrove.executor import SlurmPipelineExecutor

from megatron_telecom.arguments import parse_args
from megatron_telecom.data.curation.config import CurationConfig
from megatron_telecom.data.curation.pipeline import build_executor, stage_names

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "curate_corpus.py"


def _tool_main():
    spec = importlib.util.spec_from_file_location("curate_corpus_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--input", "/no/such/folder", "--output-dir", "o"], "--input path(s) not found"),
        (["--executor", "slurm"], "--executor slurm needs --partition"),
        (["--sbatch-arg", "account"], "--sbatch-arg expects KEY=VALUE"),
        (["--telecom-threshold", "-1"], "--telecom-threshold must be >= 0"),
        (["--minhash-buckets", "0"], "--minhash-buckets must be >= 1"),
        (["--minhash-n-grams", "0"], "--minhash-n-grams must be >= 1"),
        (["--dup-line-frac", "1.5"], "--dup-line-frac must be within [0, 1]"),
        (["--executor", "pbs"], "--executor 'pbs': choose one of local, slurm"),
        (["--output-dir", "{tmp}/in/out"], "is inside --input"),
    ],
)
def test_bad_flags_exit_with_a_clear_message(tmp_path: Path, capsys, argv, message) -> None:
    (tmp_path / "in").mkdir()
    base = ["--input", str(tmp_path / "in"), "--output-dir", str(tmp_path / "out")]
    assert _tool_main()(base + [arg.format(tmp=tmp_path) for arg in argv]) == 2
    assert message in capsys.readouterr().err


def test_negated_switches_and_archive_limits_fill_the_config(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    config = _config(["--input", str(tmp_path / "in"), "--output-dir", str(tmp_path / "out"),
                      "--keep-boilerplate", "--no-quality-filters", "--no-exact-dedup",
                      "--no-minhash", "--glob", "*.txt", "--max-archive-member-mb", "3",
                      "--max-compression-ratio", "50", "--report-only"])
    assert config.filters.keep_boilerplate and not config.filters.quality_filters
    assert not config.dedup.exact_dedup and not config.dedup.minhash and config.report_only
    assert config.reader.glob == "*.txt"
    assert config.reader.archive_limits.max_member_bytes == 3 << 20
    assert config.reader.archive_limits.max_compression_ratio == 50.0
    assert stage_names(config) == ["filter", "write"]


def _config(argv: list[str]) -> CurationConfig:
    return parse_args(CurationConfig, argv)


def _chain(executor) -> list:
    chain = [executor]
    while chain[0].depends is not None:
        chain.insert(0, chain[0].depends)
    return chain


def test_slurm_executors_and_sbatch_scripts(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    config = _config([
        "--input", str(tmp_path / "in"), "--output-dir", str(tmp_path / "out"),
        "--executor", "slurm", "--partition", "cpu", "--tasks", "8", "--workers", "4",
        "--time", "02:30:00", "--cpus-per-task", "2", "--mem-per-cpu-gb", "3",
        "--job-name", "tc", "--qos", "high", "--sbatch-arg", "account=telecom", "reservation=maint",
        "--env-command", "source /opt/venv/bin/activate",
    ])
    chain = _chain(build_executor(config))
    names = stage_names(config)
    assert names == ["filter", "exact_signatures", "exact_find", "minhash_signatures",
                     "minhash_buckets", "minhash_cluster", "write"]
    assert [type(ex) for ex in chain] == [SlurmPipelineExecutor] * len(names)
    assert [ex.job_name for ex in chain] == [f"tc_{name}" for name in names]
    assert [ex.tasks for ex in chain] == [8, 8, 1, 8, 14, 1, 8]
    for executor, name in zip(chain, names):
        script = executor.get_launch_file_contents(
            executor.get_sbatch_args(max_array=executor.tasks), "launch_pickled_pipeline x.pik"
        )
        assert script.startswith("#!/bin/bash\n")
        for directive in (
            "#SBATCH --partition=cpu", "#SBATCH --time=02:30:00", "#SBATCH --cpus-per-task=2",
            "#SBATCH --mem-per-cpu=3G", f"#SBATCH --job-name=tc_{name}", "#SBATCH --qos=high",
            "#SBATCH --account=telecom", "#SBATCH --reservation=maint", f"#SBATCH --array=0-{executor.tasks - 1}%4",
        ):
            assert directive in script, (name, directive)
        assert "mail-type" not in script
        assert "source /opt/venv/bin/activate" in script
        assert script.rstrip().endswith("launch_pickled_pipeline x.pik")
        assert str(executor.logging_dir.path).endswith(f"_work/logs/{name}")
    clone = dill.loads(dill.dumps(chain[-1]))  # what datatrove ships to the SLURM tasks
    assert clone.job_name == "tc_write" and len(clone.pipeline) == len(chain[-1].pipeline)


def test_cli_runs_offline_end_to_end(tmp_path: Path, curation_rfc_dir: Path) -> None:
    """Internet connections raise inside the child; no spaCy/fastText/NLTK data is touched."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("rfc768", "rfc3311"):
        (inputs / f"{name}.txt").write_bytes((curation_rfc_dir / f"{name}.txt").read_bytes())
    (inputs / "notes.jsonl").write_text(json.dumps({"content": "hello", "uid": 1}) + "\n")
    out = tmp_path / "out"
    child = textwrap.dedent(f"""
        import socket, sys, runpy
        local_connect = socket.socket.connect
        def refuse(*args, **kwargs):
            raise OSError("network disabled by test")
        def connect(sock, address):  # local (AF_UNIX) sockets of multiprocessing stay allowed
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                refuse()
            return local_connect(sock, address)
        socket.socket.connect = connect
        socket.create_connection = refuse
        sys.argv = ["curate_corpus.py", "--input", {str(inputs)!r}, "--output-dir", {str(out)!r},
                    "--text-key", "content", "--id-key", "uid"]
        try:
            runpy.run_path({str(ROOT / "tools" / "curate_corpus.py")!r}, run_name="__main__")
        except SystemExit as exit_:
            assert not exit_.code, exit_.code
        loaded = sorted(m for m in ("spacy", "fasttext", "kenlm", "stanza") if m in sys.modules)
        print("LOADED", loaded)
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NLTK_DATA": str(tmp_path / "no-nltk-data")}
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                            timeout=300, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "LOADED []" in result.stdout
    assert "stage" in result.stdout and "near_dedup" in result.stdout
    docs = [json.loads(line) for shard in out.glob("*.jsonl") for line in shard.open()]
    assert sorted(d["doc_id"] for d in docs) == ["rfc3311", "rfc768"]
    report = json.loads((out / "curation_stats.json").read_text())
    assert report["input"]["documents"] == 3  # the JSONL record was read via --text-key content
    assert report["removed_by_reason"] == {"telecom_low_relevance": 1}  # ... and is off-topic
