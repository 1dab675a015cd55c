#!/usr/bin/env python3
"""Regenerate tests/golden/preprocess_megatron_lm.json by running Megatron-LM's own tool.

    python tests/golden/regenerate_preprocess_golden.py /path/to/Megatron-LM [/path/to/python]

The Megatron-LM tree must be tag core_v0.16.1 (see ../shared/reference/megatron-lm-preprocess.md).
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from preprocess_cases import CASES, GOLDEN, run_megatron_lm  # noqa: E402


def main() -> int:
    megatron_lm = Path(sys.argv[1])
    python = sys.argv[2] if len(sys.argv) > 2 else sys.executable
    golden = {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            dataset = run_megatron_lm(case, megatron_lm, python, Path(tmp))
            golden[case.name] = {
                suffix: hashlib.sha256(Path(f"{dataset}.{suffix}").read_bytes()).hexdigest()
                for suffix in ("bin", "idx")
            }
            print(case.name, golden[case.name])
    payload = {"producer": "Megatron-LM tools/preprocess_data.py at tag core_v0.16.1", "cases": golden}
    GOLDEN.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
