"""Every entry point's whole flag surface (names, types, defaults) is frozen in a golden file.

Entry points are ``megatron_telecom/pretrain.py`` and every ``tools/*.py``; each declares its
flags as ``CONFIG`` (a config dataclass, or command name -> config dataclass) and parses them
with ``megatron_telecom.arguments``. A changed or vanished flag fails here; after a deliberate
change, regenerate with ``UPDATE_GOLDEN=1 python -m pytest tests/test_arguments_flag_surface.py``
and commit the diff.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from megatron_telecom.arguments import flag_surface, flags

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden" / "flags"
ENTRY_POINTS = {p.stem: p for p in [REPO / "megatron_telecom" / "pretrain.py",
                                    *sorted((REPO / "tools").glob("*.py"))]}


def _config_of(path: Path):
    spec = importlib.util.spec_from_file_location(f"_entry_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert hasattr(module, "CONFIG"), f"{path} declares no CONFIG (its flags as a config dataclass)"
    return module.CONFIG


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_flag_surface_matches_golden(name):
    surface = flag_surface(_config_of(ENTRY_POINTS[name]))
    golden = GOLDEN / f"{name}.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(surface, encoding="utf-8")
    assert golden.is_file(), f"no golden flag surface for {name}: run with UPDATE_GOLDEN=1"
    assert surface == golden.read_text(encoding="utf-8"), (
        f"the flags of {name} changed; if on purpose, regenerate with UPDATE_GOLDEN=1")


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_every_flag_has_a_help_line(name):
    config = _config_of(ENTRY_POINTS[name])
    roots = config.values() if isinstance(config, Mapping) else [config]
    undocumented = [f.flag for root in roots for f in flags(root).values() if not f.help]
    assert not undocumented, f"{name}: give these fields a one-line docstring: {undocumented}"


def test_every_golden_file_has_an_entry_point():
    assert sorted(p.stem for p in GOLDEN.glob("*.txt")) == sorted(ENTRY_POINTS)


def test_bad_choice_fails_fast_naming_the_choices():
    """A typo in a choice flag exits 2 with the choices, before torch or megatron is imported."""
    code = ("import sys\nfrom megatron_telecom.pretrain import main\n"
            "rc = main(['--transformer-impl', 'foo'])\n"
            "heavy = sorted(m for m in ('torch', 'megatron') if m in sys.modules)\n"
            "print('heavy', heavy)\nsys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "--transformer-impl 'foo': choose one of transformer_engine, local" in proc.stderr
    assert "heavy []" in proc.stdout
