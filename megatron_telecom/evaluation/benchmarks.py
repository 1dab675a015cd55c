"""Benchmark names -> question sets: the one lookup that tools/evaluate.py and in-loop evaluation share."""

from __future__ import annotations

from megatron_telecom.evaluation.oranbench import read_oranbench
from megatron_telecom.evaluation.questions import QuestionSet, read_questions_jsonl
from megatron_telecom.evaluation.teleqna import DEFAULT_DATA, read_teleqna


def read_benchmark(benchmark: str, data: str | None) -> QuestionSet:
    """The ``QuestionSet`` of a built-in benchmark (``teleqna``, ``oranbench``) or a generic JSONL exam."""
    if benchmark == "teleqna":
        return read_teleqna(data or DEFAULT_DATA)
    if benchmark == "oranbench":
        return read_oranbench(data)
    return read_questions_jsonl(data)
