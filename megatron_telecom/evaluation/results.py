"""Results files: one JSON per model holding perplexity and multiple-choice runs, and their tables.

Decision: one file may hold every kind of result, so ``compare base.json trained.json`` sees every
metric of a model at once. A tool adds or replaces its own entry (``perplexity.<input>``, or
``<benchmark>.<mode>-<K>shot`` with benchmark ``teleqna``, ``oranbench`` or an exam's name) and
keeps the others; a file of another model is refused rather than
mixed. Files are written atomically (temporary name, then rename).
"""

from __future__ import annotations

import json
from pathlib import Path

from megatron_telecom.atomic import atomic_write_json

FORMAT = "megatron-telecom-eval/1"
PERPLEXITY = "perplexity"
NOT_BENCHMARKS = ("format", "model", PERPLEXITY)


def read_results(path: str | Path) -> dict:
    """A results file, checked to be one of ours."""
    path = Path(path)
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read a results JSON ({error})") from error
    if not isinstance(results, dict) or results.get("format") != FORMAT:
        raise ValueError(f"{path}: not a results file of tools/evaluate.py (format {FORMAT})")
    return results


def update_results(path: str | Path, model: str, section: str, entries: dict) -> dict:
    """Add ``entries`` to ``section`` of the results file of ``model`` (created when missing)."""
    if section in NOT_BENCHMARKS[:2]:
        raise ValueError(f"{section!r} cannot name a benchmark; choose another --name")
    path = Path(path)
    results = read_results(path) if path.exists() else {"format": FORMAT, "model": model}
    if results["model"] != model:
        raise ValueError(f"--output {path} holds results of model {results['model']!r}, not {model!r}; "
                         f"give another --output file")
    results.setdefault(section, {}).update(entries)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, results)
    return results


def format_table(header: list[str], rows: list[list[str]]) -> str:
    """A plain-text table with aligned columns (first column left, the others right)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def perplexity_table(section: dict) -> str:
    """Table of a perplexity section: one row per input."""
    rows = [[name, f"{r['tokens']:,}", f"{r['bytes']:,}", f"{r['perplexity']:.3f}", f"{r['bits_per_byte']:.4f}"]
            for name, r in section.items()]
    return format_table(["input", "tokens", "bytes", "perplexity", "bits/byte"], rows)


def benchmark_sections(results: dict) -> dict[str, dict]:
    """``{benchmark: {run name: result}}``: every multiple-choice section of a results file."""
    return {k: v for k, v in results.items() if k not in NOT_BENCHMARKS and isinstance(v, dict)}


def accuracy_table(result: dict) -> str:
    """Table of one multiple-choice run: overall and per category, beside the two baselines."""
    keys = ("acc", "acc_norm", "random", "majority")

    def row(name: str, m: dict) -> list[str]:
        if not m.get("n"):
            return [name, "0", *["-"] * len(keys)]
        return [name, str(m["n"]), *[f"{100 * m[k]:.2f}" if k in m else "-" for k in keys]]

    rows = [row(c, m) for c, m in result["categories"].items()] + [row("overall", result["overall"])]
    return format_table(["category", "n", "acc %", "acc_norm %", "random %", "majority %"], rows)
