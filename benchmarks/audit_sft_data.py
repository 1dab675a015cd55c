#!/usr/bin/env python3
"""Audit built instruction rows against their source: draw N rows (seeded), look each up by its
record_id in the curated corpus, and report the share whose answer is found verbatim there
(whitespace collapsed; identification answers may be the record's title or document name), per
task. Rows of --extra-sft files (no record_id) and of records not in the corpus are reported apart.

    python benchmarks/audit_sft_data.py --rows built_sft.jsonl --corpus curated/*.jsonl --sample 200
"""

from __future__ import annotations

import argparse
import glob
import json
import random
import sys
from collections import Counter

from megatron_telecom.data.instructions.vocabulary import found_verbatim


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", required=True, help="SFT JSONL written by tools/build_sft_data.py")
    parser.add_argument("--corpus", nargs="+", required=True, help="the curated JSONL it was built from")
    parser.add_argument("--sample", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show", type=int, default=3, help="rows printed per task")
    args = parser.parse_args(argv)
    rows = [json.loads(line) for line in open(args.rows, encoding="utf-8") if line.strip()]
    rows = [r for r in rows if "record_id" in r]
    drawn = random.Random(args.seed).sample(rows, min(args.sample, len(rows)))
    wanted = {r["record_id"] for r in drawn}
    records = {}
    for path in sorted(p for pattern in args.corpus for p in glob.glob(pattern)):
        with open(path, encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                if record.get("id", record.get("doc_id")) in wanted:
                    records[record.get("id", record.get("doc_id"))] = record
    found, total, missing, shown = Counter(), Counter(), 0, Counter()
    for row in drawn:
        record = records.get(row["record_id"])
        if record is None:
            missing += 1
            continue
        answer = row["messages"][-1]["content"]
        ok = found_verbatim(answer, record)
        total[row["task"]] += 1
        found[row["task"]] += ok
        if shown[row["task"]] < args.show or not ok:
            shown[row["task"]] += 1
            print(f"[{'verbatim' if ok else 'NOT FOUND'}] {row['task']} {row['document']} {row['clause']}: "
                  f"{row['messages'][0]['content'][:100]!r} -> {answer[:100]!r}")
    print(f"\naudit of {len(drawn)} random rows (seed {args.seed}) of {len(rows)}; {missing} not in the corpus")
    for task in sorted(total):
        print(f"  {task:20s} {found[task]:4d} / {total[task]:4d} verbatim ({100 * found[task] / total[task]:.1f}%)")
    all_found, all_total = sum(found.values()), sum(total.values())
    print(f"  {'all':20s} {all_found:4d} / {all_total:4d} verbatim ({100 * all_found / max(all_total, 1):.1f}%)")
    return 0 if all_found == all_total else 1


if __name__ == "__main__":
    sys.exit(main())
