"""tools/generate_qa.py: model-written pairs kept only when grounded, new and within limits, through a
real OpenAI-compatible HTTP server process on localhost (tests/_canned_openai_server.py: stdlib
http.server answering canned JSON) and through a real --model (the tiny random Llama of the evaluation tests)."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from megatron_telecom.data.instructions.generated import overlap, parse_pairs

REPO = Path(__file__).resolve().parents[1]
CLAUSE = ("   A relay node forwards every invented frame to the next hop of the invented path. The relay\n"
          "   node keeps no state about the frames it forwards, and it drops a frame whose hop counter\n"
          "   has reached zero.")
RECORD = {"id": "rfc9998", "doc_id": "rfc9998", "source": "rfc", "title": "An Invented Relay Protocol",
          "text": f"               An Invented Relay Protocol\n\n1.  Relay Behaviour\n\n{CLAUSE}\n"}
CANNED = ("Q: What does a relay node forward?\nA: every invented frame to the next hop\n\n"
          "Q: What colour is the relay node painted?\nA: The relay node is painted bright purple by its vendor.\n\n"
          "Q: What does a relay node forward?\nA: every invented frame\n\n"
          "Q: Why?\nA: Because it drops a frame.\n\n"
          "Q: When does the relay node drop a frame?\nA: it drops a frame whose hop counter has reached zero\n\n"
          "Q: 1. What does the relay node keep?\nA: 2. no state about the frames it forwards\n\n"
          "Q: The relay node forwards frames.\nA: every invented frame to the next hop\n\n"
          "Q: What does the relay node keep about the frames it forwards?\nA: the relay node keeps about frames")


def _tool():
    spec = importlib.util.spec_from_file_location("_tool_generate_qa", REPO / "tools" / "generate_qa.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real server process (tests/_canned_openai_server.py) answering CANNED: (its URL, its request log)."""
    reply, log = tmp_path / "reply.txt", tmp_path / "requests.jsonl"
    reply.write_text(CANNED, encoding="utf-8")
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "_canned_openai_server.py"), str(reply), str(log)],
                            stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}", log
    finally:
        proc.kill()
        proc.wait(timeout=30)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "curated.jsonl"
    path.write_text(json.dumps(RECORD) + "\n", encoding="utf-8")
    return path


def test_endpoint_pairs_are_kept_only_when_grounded_new_and_within_limits(server, corpus, tmp_path):
    url, log = server
    out = tmp_path / "qa.jsonl"
    assert _tool().main(["--input", str(corpus), "--output", str(out), "--endpoint", url,
                         "--endpoint-model", "team-model", "--min-clause-words", "10"]) == 0
    (path, body), = [(r["path"], r["body"]) for r in map(json.loads, log.read_text().splitlines())]
    assert path == "/v1/chat/completions" and body["model"] == "team-model" and body["temperature"] == 0.0
    assert "keeps no state about the frames it forwards" in body["messages"][0]["content"]
    assert "RFC 9998, clause 1" in body["messages"][0]["content"]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["messages"][0]["content"], r["messages"][1]["content"]) for r in rows] == [
        ("What does a relay node forward?", "every invented frame to the next hop"),
        ("When does the relay node drop a frame?", "it drops a frame whose hop counter has reached zero"),
        ("What does the relay node keep?", "no state about the frames it forwards")]
    assert rows[0]["generator"]["model"] == "canned-test-model"
    assert rows[0]["generator"]["url"] == f"{url}/v1/chat/completions"
    assert rows[0]["clause"] == "1" and rows[0]["task"] == "generated_qa" and rows[0]["overlap"] == 1.0
    info = json.loads((tmp_path / "qa.generate.json").read_text())
    assert info["rejected"]["by_reason"] == {"answer_repeats_question": 1, "duplicate": 1, "not_a_question": 1,
                                             "not_grounded": 1, "question_too_short": 1}
    assert info["pairs"] == {"proposed": 8, "kept": 3} and info["grounding"]["min_overlap"] == 0.8


def test_an_unreachable_endpoint_is_one_error_line(corpus, tmp_path, capsys):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never served: the port is free again after the block
    assert _tool().main(["--input", str(corpus), "--output", str(tmp_path / "qa.jsonl"), "--min-clause-words", "10",
                         "--endpoint", f"http://127.0.0.1:{port}", "--timeout", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the generator failed on the first clause")
    assert not (tmp_path / "qa.jsonl").exists()


def test_grounding_and_parsing_rules():
    assert overlap("every invented frame", CLAUSE) == 1.0
    assert overlap("bright purple frame", CLAUSE) == pytest.approx(1 / 3)
    assert parse_pairs("1. Q: What is X?\n   A: X is Y.\n2. Question: And Z?\nAnswer: Z too.") == [
        ("What is X?", "X is Y."), ("And Z?", "Z too.")]


def test_a_model_source_generates_through_our_generation_code(evaluation_tiny_model, corpus, tmp_path):
    out = tmp_path / "qa.jsonl"
    assert _tool().main(["--input", str(corpus), "--output", str(out), "--model", str(evaluation_tiny_model),
                         "--min-clause-words", "10", "--max-new-tokens", "8"]) == 0
    info = json.loads((tmp_path / "qa.generate.json").read_text())
    assert info["generator"]["kind"] == "model" and info["generator"]["model"] == str(evaluation_tiny_model)
    assert info["clauses"] == {"eligible": 1, "answered": 1}
    # a random tiny model writes no Q:/A: pairs: counted, nothing kept
    assert info["rejected"]["by_reason"] == {"unparsable_output": 1} and out.read_text() == ""
