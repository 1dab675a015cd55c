"""The pretrain entry point's command line and the checkpoint tracker, without processes groups."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from _dist_helpers import REPO, run_subprocess, subprocess_env

from megatron_telecom.models.checkpoint_format import checkpoint_dir, read_tracker, write_tracker


def _pretrain(*args: str) -> subprocess.CompletedProcess:
    return run_subprocess([sys.executable, "-m", "megatron_telecom.pretrain", *args],
                          env=subprocess_env(), timeout=120, cwd=REPO)


def test_help_and_config_errors_exit_cleanly(tmp_path):
    shown = _pretrain("--help")
    assert shown.returncode == 0 and "--tensor-model-parallel-size" in shown.stdout
    bad = _pretrain("--config", str(REPO / "examples/configs/tiny_cpu.yaml"),
                    "--data-path", str(tmp_path / "missing"), "--train-iters", "0")
    assert bad.returncode == 2
    assert "error: set --train-iters" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.mark.parametrize("name, extra", [
    ("llama3_8b_telecom.yaml", []), ("mistral_7b_telecom.yaml", []),
    ("tiny_cpu.yaml", ["--data-path", "/data/x"])])
def test_example_configs_parse(name, extra):
    """Every key the example YAML sets reaches the parsed config with the YAML's value."""
    from megatron_telecom.training.arguments import parse_config

    path = REPO / "examples" / "configs" / name
    cfg = parse_config(["--config", str(path), *extra]).to_flat_dict()
    written = yaml.safe_load(path.read_text())
    assert {key: cfg.get(key) for key in written} == written


def test_tracker_is_replaced_atomically(tmp_path):
    assert read_tracker(tmp_path) is None
    write_tracker(tmp_path, 100)
    write_tracker(tmp_path, 200)
    assert read_tracker(tmp_path) == 200
    assert [p.name for p in tmp_path.iterdir()] == ["latest_checkpointed_iteration.txt"]
    assert checkpoint_dir(tmp_path, 200) == tmp_path / "iter_0000200"
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("release\n")
    assert read_tracker(tmp_path) == "release"
    assert checkpoint_dir(tmp_path, None) == tmp_path / "release"
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("garbage")
    with pytest.raises(ValueError, match="iteration number"):
        read_tracker(tmp_path)
