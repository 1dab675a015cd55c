#!/usr/bin/env python
"""Throughput of the full curation pipeline (local executor) on the real RFC corpus, or on
any folder (e.g. 3GPP specifications in Markdown: `--input specs/ --glob '*.md'`).

Prints documents/s and MB/s of raw input for the whole run (read, clean, split, filter, exact
and MinHash dedup, write) at each worker count, then the busiest pipeline steps of the last run.

    python benchmarks/bench_curation.py --workers 1 2
    python benchmarks/bench_curation.py --input /path/to/specs --glob '*.md' --workers 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from megatron_telecom.data.curation import CurationConfig, ExecutorConfig, ReaderConfig
from megatron_telecom.data.curation.pipeline import run_curation, stage_names

DEFAULT_INPUT = Path(__file__).resolve().parents[2] / "shared" / "data" / "rfc"


def run_once(inputs: Path, workers: int, tasks: int, work: Path, glob: str) -> tuple[float, dict]:
    config = CurationConfig(
        reader=ReaderConfig(input=[str(inputs)], glob=glob),
        executor=ExecutorConfig(tasks=tasks, workers=workers),
        output_dir=str(work / "out"),
    )
    start = time.perf_counter()
    report = run_curation(config)
    return time.perf_counter() - start, {"report": report, "config": config}


def busiest_steps(config: CurationConfig, top: int = 6) -> list[tuple[str, float]]:
    """(step, summed CPU seconds over tasks) from each stage's merged datatrove stats."""
    times: list[tuple[str, float]] = []
    for stage in stage_names(config):
        path = Path(config.resolved_work_dir) / "logs" / stage / "stats.json"
        for step in json.loads(path.read_text()):
            seconds = step.get("time_stats") or {}
            if isinstance(seconds, dict) and seconds.get("total"):
                times.append((f"{stage}: {step['name']}", seconds["total"]))
    return sorted(times, key=lambda item: -item[1])[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--tasks", type=int, default=4, help="input shards per run")
    parser.add_argument("--glob", default="rfc*.txt", help="files of --input to read")
    args = parser.parse_args()
    files = sorted(args.input.glob(args.glob))
    if not files:
        raise SystemExit(f"no {args.glob} under {args.input}")
    megabytes = sum(f.stat().st_size for f in files) / 1e6
    print(f"corpus: {len(files)} files, {megabytes:.1f} MB raw, tasks={args.tasks}")
    print(f"{'workers':>8}{'seconds':>10}{'docs/s':>10}{'MB/s':>8}{'docs out':>10}")
    details = None
    for workers in args.workers:
        with tempfile.TemporaryDirectory(prefix="bench_curation_") as tmp:
            seconds, details = run_once(args.input, workers, args.tasks, Path(tmp), args.glob)
            out_docs = details["report"]["output"]["documents"]
            print(f"{workers:>8}{seconds:>10.1f}{len(files) / seconds:>10.2f}"
                  f"{megabytes / seconds:>8.2f}{out_docs:>10}")
            steps = busiest_steps(details["config"])
    if details is not None:
        print("\nbusiest steps of the last run (CPU seconds summed over tasks):")
        for name, seconds in steps:
            print(f"  {seconds:8.2f}  {name}")


if __name__ == "__main__":
    main()
