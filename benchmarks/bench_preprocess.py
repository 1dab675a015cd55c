#!/usr/bin/env python3
"""Preprocessing throughput and peak memory: ours vs Megatron-LM's tools/preprocess_data.py.

Builds JSONL from the 80 RFCs in ../shared/data/rfc (one document per RFC, the set repeated
until the target size), runs both tools with the same flags and prints docs/s, tokens/s, MB/s,
peak RSS (summed over the process tree, sampled every 50 ms) and whether the outputs are
byte-identical. Megatron-LM runs only when --megatron-lm points at its source tree (tag
core_v0.16.1; see ../shared/reference/megatron-lm-preprocess.md) and --megatron-python at a Python
that can run it.

    python benchmarks/bench_preprocess.py --sizes-mb 100 1000 \
        --megatron-lm /path/to/Megatron-LM --megatron-python /path/to/venv/bin/python
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from megatron_telecom.data.indexed import read_index
from megatron_telecom.data.tokenizers import bundled_tokenizer_model

REPO = Path(__file__).resolve().parents[1]
RFC_DIR = REPO.parent / "shared" / "data" / "rfc"


def build_corpus(path: Path, size_mb: int) -> tuple[int, int]:
    """Write RFC JSONL of at least size_mb MB; returns (documents, bytes)."""
    lines = [json.dumps({"text": p.read_bytes().decode("utf-8"), "id": p.stem}) + "\n"
             for p in sorted(RFC_DIR.glob("*.txt"))]
    block = "".join(lines).encode()
    copies = -(-size_mb * 1_000_000 // len(block))
    with open(path, "wb") as f:
        for _ in range(copies):
            f.write(block)
    return copies * len(lines), copies * len(block)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(16 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def run_measured(cmd: list[str], cwd: Path, memory=lambda p: p.memory_info().rss  # noqa: ANN001
                 ) -> tuple[float, float]:
    """Run a command; returns (wall seconds, peak ``memory`` (RSS) of its whole process tree in MB)."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    root = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(memory(p) for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.05)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed:\n{proc.stderr.read()[-3000:]}")
    return wall, peak / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[100])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tokenizer", default="mistral-v3", help="bundled SentencePiece model")
    parser.add_argument("--megatron-lm", type=Path, help="Megatron-LM source tree (core_v0.16.1)")
    parser.add_argument("--megatron-python", default=sys.executable)
    parser.add_argument("--work-dir", type=Path)
    args = parser.parse_args()
    if not RFC_DIR.is_dir():
        print(f"skipped: {RFC_DIR} is absent (the benchmark reads the shared RFC corpus)")
        return 0
    model = str(bundled_tokenizer_model(args.tokenizer))
    flags = ["--tokenizer-type", "SentencePieceTokenizer", "--tokenizer-model", model,
             "--workers", str(args.workers), "--append-eod", "--log-interval", "100000"]
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench_preprocess_"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"{'size':>7} {'tool':<15} {'wall s':>7} {'docs/s':>8} {'Mtok/s':>7} {'MB/s':>7} {'peak RSS MB':>11}  output")
    for size in args.sizes_mb:
        corpus = work / f"rfc_{size}mb.jsonl"
        docs, nbytes = build_corpus(corpus, size)
        tools = [("megatron-telecom", [sys.executable, str(REPO / "tools" / "preprocess_data.py")], REPO)]
        if args.megatron_lm:
            tools.append(("Megatron-LM", [args.megatron_python, "tools/preprocess_data.py"], args.megatron_lm))
        outputs = {}
        for name, cmd, cwd in tools:
            prefix = work / f"{name}_{size}"
            wall, rss = run_measured([*cmd, "--input", str(corpus), "--output-prefix", str(prefix), *flags], cwd)
            dataset = Path(f"{prefix}_text_document")
            tokens = read_index(dataset).num_tokens
            outputs[name] = tuple(sha256_file(Path(f"{dataset}{suffix}")) for suffix in (".bin", ".idx"))
            same = "" if len(outputs) == 1 else (
                "byte-identical" if outputs[name] == outputs["megatron-telecom"] else "DIFFERENT")
            print(f"{size:>5}MB {name:<15} {wall:>7.1f} {docs / wall:>8.1f} {tokens / wall / 1e6:>7.2f} "
                  f"{nbytes / wall / 1e6:>7.2f} {rss:>11.0f}  {same}", flush=True)
            for suffix in (".bin", ".idx", ".json"):
                Path(f"{dataset}{suffix}").unlink(missing_ok=True)
        corpus.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
