"""Curation report: documents and characters in/out per stage, removals by reason.

Built from the stats.json that datatrove's executors merge into each stage's logging folder,
so it works the same after a local run and after a SLURM run (`--report-only`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from megatron_telecom.atomic import atomic_write_text

# Steps that drop documents without saying why: the reason is the stage they implement.
_REASONLESS = {"exact_dedup": "exact_duplicate", "near_dedup": "near_duplicate"}


@dataclass(kw_only=True)
class StageRow:
    """One filtering stage: what went in, what came out, and why documents were removed."""

    stage: str
    docs_in: int
    docs_out: int
    chars_in: int
    chars_out: int
    removed: dict[str, int] = field(default_factory=dict)


def _total(value: int | dict | None) -> int:
    if isinstance(value, dict):
        return int(value.get("total", 0))
    return int(value or 0)


def _load_steps(logs_dir: Path, stages: list[str]) -> list[dict]:
    steps: list[dict] = []
    for stage in stages:
        path = logs_dir / stage / "stats.json"
        if not path.is_file():
            raise ValueError(
                f"{path} is missing: stage '{stage}' has not finished. Wait for the run (SLURM: "
                "the jobs) to complete, or rerun the same command to resume it."
            )
        steps.extend(json.loads(path.read_text(encoding="utf-8")))
    return steps


def build_report(logs_dir: str | Path, stages: list[str]) -> dict:
    """Aggregate the stages' stats into rows between consecutive tallies, plus totals."""
    rows: list[StageRow] = []
    rejected: dict[str, int] = {}
    files = 0
    previous: tuple[int, int] | None = None
    pending: dict[str, int] = {}
    for step in _load_steps(Path(logs_dir), stages):
        name, stats = step["name"], step.get("stats", {})
        if "tally:" not in name:
            if "READER" in name and "Telecom" in name:
                files += _total(stats.get("input_files"))
                for key, value in stats.items():
                    if key.startswith(("rejected_", "skipped_")):
                        rejected[key] = rejected.get(key, 0) + _total(value)
            for key, value in stats.items():
                if key.startswith("dropped_"):
                    pending[key.removeprefix("dropped_")] = _total(value)
            pending.setdefault("_dropped", 0)
            pending["_dropped"] += _total(stats.get("dropped"))
            continue
        label = name.split("tally:", 1)[1]
        current = (_total(stats.get("documents")), _total(stats.get("characters")))
        dropped = pending.pop("_dropped", 0)
        if dropped and not pending:
            pending[_REASONLESS.get(label, label)] = dropped
        if previous is None or label != "filtered":  # 'filtered' only re-reads stage 1's output
            docs_in, chars_in = previous or current
            rows.append(StageRow(stage=label, docs_in=docs_in, docs_out=current[0],
                                 chars_in=chars_in, chars_out=current[1], removed=dict(pending)))
        previous, pending = current, {}
    if not rows:
        raise ValueError(f"no tally stats found under {logs_dir}; is this a curation work folder?")
    removed: dict[str, int] = {}
    for row in rows:
        for reason, count in row.removed.items():
            removed[reason] = removed.get(reason, 0) + count
    return {
        "input": {"files": files, "documents": rows[0].docs_out, "characters": rows[0].chars_out,
                  "rejected_files": rejected},
        "output": {"documents": rows[-1].docs_out, "characters": rows[-1].chars_out},
        "removed_by_reason": removed,
        "stages": [asdict(row) for row in rows],
    }


def format_report(report: dict) -> str:
    """The report as a fixed-width table a person can read."""
    header = f"{'stage':<20}{'docs in':>10}{'docs out':>10}{'chars in':>14}{'chars out':>14}  removed"
    lines = [header, "-" * len(header)]
    for row in report["stages"]:
        removed = ", ".join(f"{k}={v}" for k, v in sorted(row["removed"].items())) or "-"
        lines.append(
            f"{row['stage']:<20}{row['docs_in']:>10}{row['docs_out']:>10}"
            f"{row['chars_in']:>14}{row['chars_out']:>14}  {removed}"
        )
    inp, out = report["input"], report["output"]
    lines += [
        "",
        f"input : {inp['files']} files, {inp['documents']} documents, {inp['characters']} characters",
        f"output: {out['documents']} documents, {out['characters']} characters",
    ]
    if inp["rejected_files"]:
        lines.append("rejected files: " + ", ".join(f"{k}={v}" for k, v in inp["rejected_files"].items()))
    return "\n".join(lines) + "\n"


def write_report(report: dict, output_dir: str | Path) -> tuple[Path, Path]:
    """Write curation_stats.json and curation_stats.txt into the output folder (atomically)."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, text_path = out / "curation_stats.json", out / "curation_stats.txt"
    atomic_write_text(json_path, json.dumps(report, indent=2) + "\n")
    atomic_write_text(text_path, format_report(report))
    return json_path, text_path
