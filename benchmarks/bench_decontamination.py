#!/usr/bin/env python3
"""Decontamination throughput: training text checked against TeleQnA + ORAN-Bench-13K (13-grams).

Builds JSONL from the 80 RFCs in ../shared/data/rfc, repeated --copies times, in two shapes: CPT
documents (one row per RFC) and SFT rows (each RFC cut into ~1 KB assistant answers), and runs
`tools/decontaminate.py`'s library call on each (one process, the benchmark index built once and
timed apart). Prints MB/s of training text per wall-clock second and per CPU second of the process
(the figure to trust on a shared machine), the load average, and the rows hit.

    python benchmarks/bench_decontamination.py --copies 4 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from megatron_telecom.data.decontamination import DecontaminateConfig, Decontaminator, decontaminate

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def write_corpora(rfc_dir: Path, folder: Path, copies: int) -> dict[str, Path]:
    """rfc_cpt.jsonl (a row per RFC) and rfc_sft.jsonl (~1 KB answers), each the RFCs x ``copies``."""
    texts = {p.stem: p.read_text(encoding="utf-8", errors="replace") for p in sorted(rfc_dir.glob("rfc*.txt"))}
    if not texts:
        raise SystemExit(f"no RFCs in {rfc_dir}: pass --rfc-dir")
    cpt = "".join(json.dumps({"id": k, "source": "rfc", "text": t}) + "\n" for k, t in texts.items())
    sft = []
    for k, text in texts.items():
        for at in range(0, len(text), 1000):
            sft.append(json.dumps({"id": f"{k}:{at}", "messages": [
                {"role": "user", "content": f"Quote {k} from character {at}."},
                {"role": "assistant", "content": text[at:at + 1000]}]}) + "\n")
    paths = {"CPT documents": folder / "rfc_cpt.jsonl", "SFT rows (~1 KB)": folder / "rfc_sft.jsonl"}
    for path, block in zip(paths.values(), (cpt, "".join(sft))):
        path.write_text(block * copies, encoding="utf-8")
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rfc-dir", type=Path, default=SHARED / "rfc")
    parser.add_argument("--benchmarks", nargs="+",
                        default=[f"teleqna={SHARED / 'teleqna' / 'TeleQnA.zip'}", f"oranbench={SHARED / 'oranbench'}"])
    parser.add_argument("--copies", type=int, default=4, help="copies of the 80 RFCs (4: about 50 MB)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per corpus; the fastest is printed")
    args = parser.parse_args()
    start, cpu = time.perf_counter(), time.process_time()
    try:
        decontaminator = Decontaminator.from_specs(args.benchmarks)
    except ValueError as exc:
        raise SystemExit(f"error: {exc} (give --benchmarks NAME=PATH ...)") from None
    print(f"index: {', '.join(f'{n} {s.questions:,} questions {s.ngrams:,} 13-grams' for n, s in decontaminator.stats.items())}"
          f" in {time.perf_counter() - start:.2f} s ({time.process_time() - cpu:.2f} CPU s)")
    with tempfile.TemporaryDirectory() as tmp:
        corpora = write_corpora(args.rfc_dir, Path(tmp), args.copies)
        print(f"{'corpus':<18} {'MB':>7} {'rows':>8} {'wall s':>7} {'CPU s':>7} {'MB/s':>7} {'MB/CPU-s':>9} {'rows hit':>9}")
        for label, path in corpora.items():
            best = None
            for _ in range(args.repeats):
                config = DecontaminateConfig(input=[str(path)], output=str(Path(tmp) / "out.jsonl"),
                                             benchmarks=args.benchmarks)
                wall, cpu = time.perf_counter(), time.process_time()
                report = decontaminate(config, decontaminator)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                best = min(best or (wall, cpu, report), (wall, cpu, report), key=lambda r: r[1])
            wall, cpu, report = best
            mb = report.input_bytes / 1e6
            print(f"{label:<18} {mb:7.1f} {report.rows:8,} {wall:7.2f} {cpu:7.2f} {mb / wall:7.1f} {mb / cpu:9.1f} "
                  f"{report.contaminated:9,}")
    print(f"load average (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
