"""Benchmark names -> question sets: the one lookup that tools/evaluate.py, in-loop evaluation and
decontamination share."""

from __future__ import annotations

from pathlib import Path

from megatron_telecom.evaluation.oranbench import read_oranbench
from megatron_telecom.evaluation.questions import QuestionSet, read_questions_jsonl
from megatron_telecom.evaluation.teleqna import DEFAULT_DATA, read_teleqna
from megatron_telecom.evaluation.threegpp_tsg import read_3gpp_tsg

BUILT_IN = ("teleqna", "oranbench")


def read_benchmark(benchmark: str, data: str | None) -> QuestionSet:
    """The ``QuestionSet`` of a built-in benchmark (``teleqna``, ``oranbench``), GSMA's ``3gpp_tsg``
    (``data``: its JSON file) or a generic JSONL exam."""
    if benchmark == "teleqna":
        return read_teleqna(data or DEFAULT_DATA)
    if benchmark == "oranbench":
        return read_oranbench(data)
    if benchmark == "3gpp_tsg":
        return read_3gpp_tsg(data)
    return read_questions_jsonl(data)


def benchmark_source(spec: str, flag: str, example: str) -> tuple[str, str, str | None]:
    """``NAME[=DATA]`` -> (name, reader, data): ``teleqna`` or ``oranbench`` (``=DATA``: their file or
    folder), or a generic ``.jsonl`` exam named after its file (``NAME=exam.jsonl`` names it)."""
    name, _, data = spec.partition("=")
    if name.endswith(".jsonl"):
        return Path(name).stem, "jsonl", name
    if data.endswith(".jsonl") and name and name not in BUILT_IN:
        return name, "jsonl", data
    if name not in BUILT_IN:
        raise ValueError(f"{flag} {example}: unknown benchmark {name!r}; choose teleqna, oranbench "
                         f"or a .jsonl exam in the generic format")
    return name, name, data or None
