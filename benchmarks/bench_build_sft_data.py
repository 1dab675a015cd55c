#!/usr/bin/env python3
"""Throughput of tools/build_sft_data.py (rows and pairs from a curated corpus) and of
tools/decontaminate.py on the same corpus (TeleQnA + ORAN-Bench-13K, 13-grams), in one process.

The input is curated JSONL (tools/curate_corpus.py output: 3GPP clause documents, RFCs). Each step
runs --repeats times; the fastest is printed as MB of corpus per wall-clock second and per CPU
second of this process (user+sys: the figure to trust on a shared machine), with the load average.

    python benchmarks/bench_build_sft_data.py --input /work/corpus/3gpp/curated/00000.jsonl \\
        '/work/corpus/rfc_curated/*.jsonl'
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from megatron_telecom.data.decontamination import DecontaminateConfig, Decontaminator, decontaminate
from megatron_telecom.data.instructions.builder import BuildSFTConfig, build_sft_data
from megatron_telecom.data.jsonl_input import resolve_inputs

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _timed(step) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    step()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", nargs="+", required=True, help="curated JSONL files or globs")
    parser.add_argument("--benchmarks", nargs="+",
                        default=[f"teleqna={SHARED / 'teleqna' / 'TeleQnA.zip'}", f"oranbench={SHARED / 'oranbench'}"])
    parser.add_argument("--repeats", type=int, default=1, help="runs per step; the fastest is printed")
    args = parser.parse_args()
    mb = sum(i.size for i in resolve_inputs(args.input)) / 1e6
    decontaminator = Decontaminator.from_specs(args.benchmarks)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        build = BuildSFTConfig(input=args.input, output=f"{tmp}/sft.jsonl", dpo_output=f"{tmp}/dpo.jsonl")
        decon = DecontaminateConfig(input=args.input, output=f"{tmp}/clean.jsonl", benchmarks=args.benchmarks)
        for name, step in (("build_sft_data (rows + pairs)", lambda: build_sft_data(build)),
                           ("decontaminate (TeleQnA + ORAN-Bench)", lambda: decontaminate(decon, decontaminator))):
            results[name] = min((_timed(step) for _ in range(args.repeats)), key=lambda t: t[1])
    print(f"corpus: {mb:,.1f} MB; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    print(f"{'step':40s} {'wall s':>8s} {'CPU s':>8s} {'MB/s wall':>10s} {'MB per CPU-s':>13s}")
    for name, (wall, cpu) in results.items():
        print(f"{name:40s} {wall:8.2f} {cpu:8.2f} {mb / wall:10.1f} {mb / cpu:13.1f}")


if __name__ == "__main__":
    main()
