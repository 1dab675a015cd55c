#!/usr/bin/env python3
"""Preprocessing throughput and peak memory: ours vs Megatron-LM's tools/preprocess_data.py.

Builds JSONL from the 80 RFCs in ../shared/data/rfc (one document per RFC, the set repeated to
about the target size: 50 MB is 4 copies, 1000 MB 80), runs both tools with the same flags
(`--workers 2 --append-eod`) for each tokenizer (SentencePiece: Mistral v3; Hugging Face: SmolLM2's
byte-level BPE, the built-in base model's, and a Llama-3-style tokenizer built offline, see
`llama3_style_tokenizer`) and prints wall and CPU seconds of the process tree (CPU seconds, also
per MB, are the figure to trust on a shared machine), docs/s, tokens/s, MB/s, peak RSS (summed
over the process tree, sampled every 50 ms), our speedup and whether the outputs are
byte-identical. Megatron-LM runs only when --megatron-lm points at its source tree (tag
core_v0.16.1; see ../shared/reference/megatron-lm-preprocess.md) and --megatron-python at a Python
that can run it, at every size or only at --megatron-sizes-mb; the two tools run back to back.

    python benchmarks/bench_preprocess.py --sizes-mb 50 1000 --megatron-sizes-mb 50 \
        --megatron-lm /path/to/Megatron-LM --megatron-python /path/to/venv/bin/python
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from megatron_telecom.bundled import resolve_hf_path
from megatron_telecom.data.indexed import read_index
from megatron_telecom.data.tokenizers import bundled_tokenizer_model

REPO = Path(__file__).resolve().parents[1]
RFC_DIR = REPO.parent / "shared" / "data" / "rfc"
# --tokenizers names -> (--tokenizer-type, how to find the model)
LLAMA3_STYLE_RANKS = 128_000  # Llama-3's BPE size; 256 special tokens follow, as in Llama-3 (128,256 ids)


def llama3_style_tokenizer(folder: Path) -> Path:
    """A Llama-3-shaped tokenizer.json (Split with Llama-3's regex + ByteLevel, 128,000 BPE ranks +
    256 special tokens, eos <|end_of_text|>), built offline once into ``folder``.

    Meta's file cannot be downloaded here, so the ranks are the first 128,000 of the tiktoken-style
    vocabulary that the mistral-common wheel ships (tekken, 2024-09-11), converted by transformers'
    TikTokenConverter, the converter that produces Llama-3's own tokenizer.json from its tiktoken file.
    """
    if (folder / "tokenizer.json").is_file():
        return folder
    import base64
    import importlib.util

    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    from megatron_telecom.data.word_cache import LLAMA3_PATTERN

    tekken = Path(importlib.util.find_spec("mistral_common").submodule_search_locations[0]) / "data" / "tekken_240911.json"
    vocab = json.loads(tekken.read_text())["vocab"][:LLAMA3_STYLE_RANKS]
    folder.mkdir(parents=True, exist_ok=True)
    ranks = folder / "llama3_style.tiktoken"
    ranks.write_text("".join(f"{v['token_bytes']} {v['rank']}\n" for v in vocab))
    assert all(base64.b64decode(v["token_bytes"]) for v in vocab)
    specials = ["<|begin_of_text|>", "<|end_of_text|>", *(f"<|reserved_special_token_{i}|>" for i in range(254))]
    converted = TikTokenConverter(str(ranks), pattern=LLAMA3_PATTERN, extra_special_tokens=specials).converted()
    PreTrainedTokenizerFast(tokenizer_object=converted, bos_token="<|begin_of_text|>",
                            eos_token="<|end_of_text|>").save_pretrained(str(folder))
    ranks.unlink()
    return folder


# --tokenizers names -> (--tokenizer-type, how to find the model given the work dir)
TOKENIZERS = {
    "mistral-v3": ("SentencePieceTokenizer", lambda work: bundled_tokenizer_model("mistral-v3")),
    "mistral-v1": ("SentencePieceTokenizer", lambda work: bundled_tokenizer_model("mistral-v1")),
    "smollm2-135m": ("HuggingFaceTokenizer", lambda work: resolve_hf_path("bundled:smollm2-135m")),
    "llama3-style": ("HuggingFaceTokenizer", lambda work: llama3_style_tokenizer(work / "llama3_style_tokenizer")),
}


def build_corpus(path: Path, size_mb: int) -> tuple[int, int]:
    """Write RFC JSONL of about size_mb MB (whole copies of the 80 RFCs); returns (documents, bytes)."""
    lines = [json.dumps({"text": p.read_bytes().decode("utf-8"), "id": p.stem}) + "\n"
             for p in sorted(RFC_DIR.glob("*.txt"))]
    block = "".join(lines).encode()
    copies = max(1, round(size_mb * 1_000_000 / len(block)))
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
                 ) -> tuple[float, float, float]:
    """Run a command; returns (wall seconds, CPU seconds of its whole process tree, peak ``memory``
    (RSS by default) of the tree in MB). CPU seconds hardly change with other load on a shared
    machine; wall does."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
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
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # waited-for descendants: the workers too
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed:\n{proc.stderr.read()[-3000:]}")
    return wall, cpu, peak / 2**20


def measure_size(args: argparse.Namespace, corpus: Path, docs: int, nbytes: int, name: str,
                 with_megatron: bool = True) -> None:
    """Both tools on one corpus and tokenizer, back to back; prints one row per tool."""
    tokenizer_type, model = TOKENIZERS[name]
    flags = ["--tokenizer-type", tokenizer_type, "--tokenizer-model", str(model(args.work_dir)),
             "--workers", str(args.workers), "--append-eod", "--log-interval", "100000"]
    tools = [("megatron-telecom", [sys.executable, str(REPO / "tools" / "preprocess_data.py")], REPO)]
    if args.megatron_lm and with_megatron:
        tools.append(("Megatron-LM", [args.megatron_python, "tools/preprocess_data.py"], args.megatron_lm))
    outputs, walls, cpus = {}, {}, {}
    for tool, cmd, cwd in tools:
        prefix = args.work_dir / f"{tool}_{name}_{nbytes}"
        wall, cpus[tool], rss = run_measured([*cmd, "--input", str(corpus), "--output-prefix", str(prefix), *flags], cwd)
        dataset = Path(f"{prefix}_text_document")
        tokens = read_index(dataset).num_tokens
        outputs[tool] = tuple(sha256_file(Path(f"{dataset}{suffix}")) for suffix in (".bin", ".idx"))
        walls[tool] = wall
        ours = "megatron-telecom"
        same = "" if len(outputs) == 1 else (
            f"{walls[tool] / walls[ours]:.2f}x wall, {cpus[tool] / cpus[ours]:.2f}x CPU, "
            + ("byte-identical" if outputs[tool] == outputs[ours] else "DIFFERENT"))
        print(f"{nbytes / 1e6:>6.1f}MB {name:<13} {tool:<17} {wall:>7.1f} {cpus[tool]:>6.1f} "
              f"{cpus[tool] / (nbytes / 1e6):>8.4f} {docs / wall:>7.1f} "
              f"{tokens / wall / 1e6:>7.2f} {nbytes / wall / 1e6:>6.2f} {rss:>11.0f}  {same}", flush=True)
        for suffix in (".bin", ".idx", ".json"):
            Path(f"{dataset}{suffix}").unlink(missing_ok=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[50, 100])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tokenizers", nargs="+", choices=sorted(TOKENIZERS),
                        default=["mistral-v3", "smollm2-135m", "llama3-style"],
                        help="tokenizers to run (SentencePiece mistral-*, Hugging Face smollm2-135m and llama3-style)")
    parser.add_argument("--megatron-lm", type=Path, help="Megatron-LM source tree (core_v0.16.1)")
    parser.add_argument("--megatron-python", default=sys.executable)
    parser.add_argument("--megatron-sizes-mb", type=int, nargs="+",
                        help="run Megatron-LM only at these of --sizes-mb (default: all); ours runs at every size")
    parser.add_argument("--work-dir", type=Path)
    args = parser.parse_args()
    if not RFC_DIR.is_dir():
        print(f"skipped: {RFC_DIR} is absent (the benchmark reads the shared RFC corpus)")
        return 0
    args.work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="bench_preprocess_"))
    args.work_dir.mkdir(parents=True, exist_ok=True)
    print(f"{'size':>8} {'tokenizer':<13} {'tool':<17} {'wall s':>7} {'CPU s':>6} {'CPU s/MB':>8} {'docs/s':>7} {'Mtok/s':>7} "
          f"{'MB/s':>6} {'peak RSS MB':>11}  vs ours")
    for size in args.sizes_mb:
        corpus = args.work_dir / f"rfc_{size}mb.jsonl"
        docs, nbytes = build_corpus(corpus, size)
        for name in args.tokenizers:
            measure_size(args, corpus, docs, nbytes, name,
                         with_megatron=args.megatron_sizes_mb is None or size in args.megatron_sizes_mb)
        corpus.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
