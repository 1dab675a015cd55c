"""Curation report: documents and characters in/out per stage, removals by reason, and the same
per source type (original documents and clauses in/out, characters removed by step and reason).

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
# Characters a stage removes that no step attributed to a reason.
_UNATTRIBUTED = {"clean": "normalization", "split": "clause_joins", **_REASONLESS}


@dataclass(kw_only=True)
class SourceRow:
    """One stage for one source type: originals (specs), documents (clauses), characters."""

    stage: str
    originals_in: int
    originals_out: int
    docs_in: int
    docs_out: int
    chars_in: int
    chars_out: int
    removed_chars: dict[str, int] = field(default_factory=dict)
    """Characters removed by reason (whole documents dropped, or text cut by cleaning)."""


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


def _per_source(stats: dict) -> dict[str, tuple[int, int, int]]:
    """(originals, documents, characters) per source type from one tally's stats."""
    out: dict[str, tuple[int, int, int]] = {}
    for key in stats:
        if key.startswith("documents:"):
            source = key.split(":", 1)[1]
            out[source] = (_total(stats.get(f"originals:{source}")), _total(stats[key]),
                           _total(stats.get(f"characters:{source}")))
    return out


def _source_rows(label: str, before: dict, after: dict, removed: dict) -> dict[str, SourceRow]:
    rows = {}
    for source in sorted(set(before) | set(after)):
        o_in, d_in, c_in = before.get(source) or after[source]
        o_out, d_out, c_out = after.get(source, (0, 0, 0))
        reasons = dict(removed.get(source, {}))
        rest = c_in - c_out - sum(reasons.values())
        if rest:
            key = _UNATTRIBUTED.get(label, "other")
            reasons[key] = reasons.get(key, 0) + rest
        rows[source] = SourceRow(stage=label, originals_in=o_in, originals_out=o_out, docs_in=d_in,
                                 docs_out=d_out, chars_in=c_in, chars_out=c_out, removed_chars=reasons)
    return rows


def _removed_chars(stats: dict, into: dict[str, dict[str, int]]) -> None:
    for key, value in stats.items():
        if key.startswith("removed_chars:"):
            _, source, reason = key.split(":", 2)
            into.setdefault(source, {})[reason] = into.setdefault(source, {}).get(reason, 0) + _total(value)


def _by_source(rows: dict[str, list[SourceRow]]) -> dict[str, dict]:
    """Per source: its stage rows, totals in/out and characters removed by (stage, reason)."""
    out = {}
    for source, stage_rows in rows.items():
        first, last = stage_rows[0], stage_rows[-1]
        removed = {f"{row.stage}:{reason}": chars for row in stage_rows
                   for reason, chars in row.removed_chars.items() if chars}
        out[source] = {
            "input": {"documents": first.originals_out, "characters": first.chars_out},
            "output": {"documents": last.originals_out, "clauses": last.docs_out,
                       "characters": last.chars_out},
            "removed_chars": removed,
            "stages": [asdict(row) for row in stage_rows],
        }
    return out


def build_report(logs_dir: str | Path, stages: list[str]) -> dict:
    """Aggregate the stages' stats into rows between consecutive tallies, plus totals."""
    rows: list[StageRow] = []
    rejected: dict[str, int] = {}
    files = 0
    previous: tuple[int, int] | None = None
    pending: dict[str, int] = {}
    sources: dict[str, list[SourceRow]] = {}
    source_before: dict[str, tuple[int, int, int]] | None = None
    source_removed: dict[str, dict[str, int]] = {}
    for step in _load_steps(Path(logs_dir), stages):
        name, stats = step["name"], step.get("stats", {})
        if "tally:" not in name:
            _removed_chars(stats, source_removed)
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
            after = _per_source(stats)
            for source, row in _source_rows(label, source_before or after, after,
                                            source_removed).items():
                sources.setdefault(source, []).append(row)
            source_before = after
        previous, pending, source_removed = current, {}, {}
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
        "by_source": _by_source(sources),
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
    for source, part in report.get("by_source", {}).items():
        lines += ["", *_format_source(source, part)]
    return "\n".join(lines) + "\n"


def _format_source(source: str, part: dict) -> list[str]:
    """One source type's block: originals and documents (clauses) per stage, chars by reason."""
    inp, out = part["input"], part["output"]
    kept = out["characters"] / inp["characters"] if inp["characters"] else 0.0
    lines = [
        f"source {source}: {inp['documents']} documents in, {out['documents']} out "
        f"({out['clauses']} documents after splitting); characters {inp['characters']} in, "
        f"{out['characters']} out ({kept:.1%})",
        f"  {'stage':<18}{'orig in':>8}{'orig out':>9}{'docs in':>9}{'docs out':>9}"
        f"{'chars in':>12}{'chars out':>12}  removed characters",
    ]
    for row in part["stages"]:
        removed = ", ".join(f"{k}={v}" for k, v in sorted(row["removed_chars"].items()) if v) or "-"
        lines.append(
            f"  {row['stage']:<18}{row['originals_in']:>8}{row['originals_out']:>9}"
            f"{row['docs_in']:>9}{row['docs_out']:>9}{row['chars_in']:>12}{row['chars_out']:>12}"
            f"  {removed}"
        )
    return lines


def write_report(report: dict, output_dir: str | Path) -> tuple[Path, Path]:
    """Write curation_stats.json and curation_stats.txt into the output folder (atomically)."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, text_path = out / "curation_stats.json", out / "curation_stats.txt"
    atomic_write_text(json_path, json.dumps(report, indent=2) + "\n")
    atomic_write_text(text_path, format_report(report))
    return json_path, text_path
