#!/usr/bin/env python3
"""Regenerate tests/golden/preprocess_megatron_lm.json by running Megatron-LM's own tool.

    python tests/golden/regenerate_preprocess_golden.py /path/to/Megatron-LM [/path/to/python] [--cases NAME ...]

With --cases only the named cases are rerun; the others keep their recorded hashes.

The Megatron-LM tree must be tag core_v0.16.1 (see ../shared/reference/megatron-lm-preprocess.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from preprocess_cases import CASES, GOLDEN, run_megatron_lm  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("megatron_lm", type=Path)
    parser.add_argument("python", nargs="?", default=sys.executable)
    parser.add_argument("--cases", nargs="+", choices=[c.name for c in CASES], help="only these cases")
    args = parser.parse_args()
    recorded = json.loads(GOLDEN.read_text())["cases"] if args.cases and GOLDEN.is_file() else {}
    golden = {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            if args.cases and case.name not in args.cases:
                if case.name in recorded:
                    golden[case.name] = recorded[case.name]
                continue
            dataset = run_megatron_lm(case, args.megatron_lm, args.python, Path(tmp))
            golden[case.name] = {
                suffix: hashlib.sha256(Path(f"{dataset}.{suffix}").read_bytes()).hexdigest()
                for suffix in ("bin", "idx")
            }
            print(case.name, golden[case.name])
    payload = {"producer": "Megatron-LM tools/preprocess_data.py at tag core_v0.16.1", "cases": golden}
    temporary = GOLDEN.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(payload, indent=2) + "\n")
    temporary.replace(GOLDEN)
    return 0


if __name__ == "__main__":
    sys.exit(main())
