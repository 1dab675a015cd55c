"""The config filler shared by every entry point (megatron_telecom/arguments.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from megatron_telecom import arguments
from megatron_telecom.arguments import (
    HelpRequested,
    flag_surface,
    flat_values,
    parse_args,
    positional,
    run_entry_point,
)


@dataclass(kw_only=True)
class Inner:
    """A section."""

    mode: Literal["fast", "exact"] = "exact"
    """How to run."""
    ratio: float = 0.5
    """A share."""


@dataclass(kw_only=True)
class Root:
    """A tool."""

    prefix: str = positional()
    """Dataset prefix."""
    keys: list[str] = field(default_factory=lambda: ["text"])
    """JSON keys."""
    workers: int
    """Processes."""
    exact_dedup: bool = True
    """Remove exact duplicates."""
    limit: int | None = None
    """At most this many."""
    inner: Inner = field(default_factory=Inner)


def test_flags_positionals_sections_and_types():
    cfg = parse_args(Root, ["--workers", "2", "data/x", "--keys", "a", "b", "--mode", "fast",
                            "--ratio=0.25", "--no-exact-dedup", "--limit", "1e3"])
    assert (cfg.prefix, cfg.keys, cfg.workers, cfg.exact_dedup, cfg.limit) == ("data/x", ["a", "b"], 2, False, 1000)
    assert (cfg.inner.mode, cfg.inner.ratio) == ("fast", 0.25)
    assert parse_args(Root, ["p", "--workers", "1", "--exact-dedup", "false"]).exact_dedup is False
    assert parse_args(Root, ["p", "--workers", "1", "--exact_dedup"]).exact_dedup is True
    assert parse_args(Root, ["p", "--workers", "1", "--limit", "none"]).limit is None


@pytest.mark.parametrize("argv, message", [
    (["p", "--workers", "1", "--mode", "quick"], "--mode 'quick': choose one of fast, exact"),
    (["p"], "--workers is required"),
    (["--workers", "1"], "the PREFIX argument is required"),
    (["p", "--workers", "two"], "--workers: cannot read 'two' as int"),
    (["p", "--workers", "1.5"], "--workers: cannot read '1.5' as int"),
    (["p", "--workers"], "--workers needs a value"),
    (["p", "--workers", "1", "--wokers", "2"], "unknown flag --wokers"),
    (["p", "q", "--workers", "1"], "unexpected argument 'q'"),
    (["p", "--workers", "1", "--exact-dedup", "maybe"], "unexpected argument 'maybe'"),
    (["p", "--workers", "1", "--no-workers"], "unknown flag --no-workers"),
])
def test_bad_flags_say_what_is_wrong(argv, message):
    with pytest.raises(ValueError, match=message):
        parse_args(Root, argv)


def test_yaml_gives_base_values_and_flags_override(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("workers: 3\nexact-dedup: false\nmode: fast\nkeys: [a, b]\n")
    cfg = parse_args(Root, ["p", "--config", str(path), "--workers", "4"])
    assert (cfg.workers, cfg.exact_dedup, cfg.inner.mode, cfg.keys) == (4, False, "fast", ["a", "b"])
    path.write_text("wrkers: 3\n")
    with pytest.raises(ValueError, match="unknown key 'wrkers'"):
        parse_args(Root, ["p", "--config", str(path)])
    path.write_text("mode: slow\n")
    with pytest.raises(ValueError, match="--mode 'slow': choose one of fast, exact"):
        parse_args(Root, ["p", "--workers", "1", "--config", str(path)])


def test_repeated_flag_replaces_like_argparse():
    cfg = parse_args(Root, ["p", "--workers", "1", "--keys", "a", "--workers", "5", "--keys", "b", "c"])
    assert (cfg.workers, cfg.keys) == (5, ["b", "c"])


def test_help_comes_from_field_docstrings():
    text = arguments.help_text(Root, "tool.py", "A tool.")
    assert text.splitlines()[0] == "usage: tool.py PREFIX [--config X.yaml] [--flag value ...]"
    assert "  --workers int\n      Processes. [required]" in text
    assert "inner:\n  --mode {fast,exact}\n      How to run. [default: exact]" in text
    with pytest.raises(HelpRequested):
        parse_args(Root, ["--workers", "1", "-h"])


def test_flag_surface_and_flat_values():
    assert flag_surface(Root).splitlines() == [
        "PREFIX str = REQUIRED", "--keys list[str] = ['text']", "--workers int = REQUIRED",
        "--exact-dedup bool = True", "--limit int | None = None", "--mode {fast,exact} = 'exact'",
        "--ratio float = 0.5"]
    cfg = parse_args(Root, ["p", "--workers", "2"])
    assert flat_values(cfg) == {"prefix": "p", "keys": ["text"], "workers": 2, "exact_dedup": True,
                                "limit": None, "mode": "exact", "ratio": 0.5}


def test_run_entry_point_exit_codes(capsys):
    seen = []
    assert run_entry_point(Root, seen.append, ["p", "--workers", "2"], prog="tool.py") == 0
    assert seen[0].workers == 2
    assert run_entry_point(Root, seen.append, ["--help"], prog="tool.py") == 0
    assert "usage: tool.py PREFIX" in capsys.readouterr().out
    assert run_entry_point(Root, seen.append, ["p"], prog="tool.py") == 2
    assert capsys.readouterr().err == "error: --workers is required (see --help)\n"

    def refuse(cfg):
        raise ValueError(f"no such dataset {cfg.prefix}")

    assert run_entry_point(Root, refuse, ["p", "--workers", "1"], prog="tool.py") == 2
    assert capsys.readouterr().err == "error: no such dataset p\n"


def test_commands_dispatch_and_help(capsys):
    commands = {"one": Inner, "two": Root}
    runs = {"one": lambda cfg: 7, "two": lambda cfg: None}
    assert run_entry_point(commands, runs, ["one", "--mode", "fast"], prog="t.py") == 7
    assert run_entry_point(commands, runs, ["two", "p", "--workers", "1"], prog="t.py") == 0
    assert run_entry_point(commands, runs, ["three"], prog="t.py") == 2
    assert "unknown command 'three': choose one of one, two" in capsys.readouterr().err
    assert run_entry_point(commands, runs, [], prog="t.py") == 0
    assert "  one            A section." in capsys.readouterr().out
    assert run_entry_point(commands, runs, ["two", "--help"], prog="t.py") == 0
    assert capsys.readouterr().out.startswith("usage: t.py two PREFIX")
    assert flag_surface(commands).startswith("[one]\n--mode {fast,exact} = 'exact'\n")
