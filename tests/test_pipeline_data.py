"""The quickstart's data: the general corpus from Python's own docs and the held-out split by document."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from _dist_helpers import REPO, subprocess_env

from megatron_telecom.data.general_corpus import LICENSE, python_docs_documents
from megatron_telecom.data.heldout import SplitHeldoutConfig, is_heldout, split_heldout

SAMPLE = REPO / "examples" / "data" / "telecom_sample.jsonl"


def _split(inputs: list[str], output_dir: Path, **options):
    return split_heldout(SplitHeldoutConfig(input=inputs, output_dir=str(output_dir), **options))


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def general_docs() -> list[dict]:
    return list(python_docs_documents())


def test_general_corpus_keeps_every_topic_whole_with_source_and_licence(general_docs):
    from pydoc_data.topics import topics

    assert len({d["id"] for d in general_docs}) == len(general_docs) > 100
    assert all(d["license"] == LICENSE and d["source"] and d["text"].strip() for d in general_docs)
    for name, text in topics.items():  # sections joined back give each topic page, nothing lost
        parts = [d["text"] for d in general_docs if d["id"].split("/")[1] == name]
        assert "\n\n".join(parts) == text.strip(), name
    assert sum(len(d["text"]) for d in general_docs) > 300_000


def test_split_keeps_all_documents_without_overlap(tmp_path):
    report = _split([str(SAMPLE)], tmp_path, heldout_fraction=0.2)
    train, heldout = _lines(tmp_path / "train.jsonl"), _lines(tmp_path / "heldout.jsonl")
    assert Counter(train + heldout) == Counter(_lines(SAMPLE))  # every document, exactly once
    train_ids = {json.loads(line)["id"] for line in train}
    heldout_ids = {json.loads(line)["id"] for line in heldout}
    assert not train_ids & heldout_ids
    assert report.documents == {"train": len(train), "heldout": len(heldout)}
    assert 8 <= len(heldout) <= 35  # ~20 of 100 expected
    assert json.loads((tmp_path / "split.json").read_text())["documents"] == report.documents


def test_split_is_deterministic_and_stable_when_the_corpus_grows(tmp_path):
    records = [json.loads(line) for line in _lines(SAMPLE)]
    first, again, grown = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    _split([str(SAMPLE)], first, heldout_fraction=0.3)
    _split([str(SAMPLE)], again, heldout_fraction=0.3)
    for side in ("train.jsonl", "heldout.jsonl"):
        assert (first / side).read_bytes() == (again / side).read_bytes()
    bigger = tmp_path / "bigger.jsonl"
    extra = [{**r, "id": r["id"] + "-v2"} for r in records]
    bigger.write_text("".join(json.dumps(r) + "\n" for r in extra + records), encoding="utf-8")
    _split([str(bigger)], grown, heldout_fraction=0.3)
    old = {json.loads(line)["id"] for line in _lines(first / "heldout.jsonl")}
    new = {json.loads(line)["id"] for line in _lines(grown / "heldout.jsonl")}
    assert old == {i for i in new if not i.endswith("-v2")}
    assert new - old  # some of the added documents are held out too


def test_records_without_id_are_split_by_their_text(tmp_path):
    data = tmp_path / "noid.jsonl"
    texts = [f"document number {i} about the AMF and the SMF" for i in range(200)]
    data.write_text("".join(json.dumps({"text": t}) + "\n\n" for t in texts), encoding="utf-8")
    _split([str(data)], tmp_path / "out", heldout_fraction=0.5, id_key="doc_id")
    heldout = {json.loads(line)["text"] for line in _lines(tmp_path / "out" / "heldout.jsonl")}
    assert 60 < len(heldout) < 140
    _split([str(data)], tmp_path / "other", heldout_fraction=0.5, id_key="doc_id", seed="x")
    other = {json.loads(line)["text"] for line in _lines(tmp_path / "other" / "heldout.jsonl")}
    assert other != heldout  # the seed changes the split


def test_bad_input_is_refused_and_the_previous_split_survives(tmp_path):
    out = tmp_path / "out"
    _split([str(SAMPLE)], out, heldout_fraction=0.1)
    before = (out / "train.jsonl").read_bytes()
    broken = tmp_path / "broken.jsonl"
    broken.write_text(SAMPLE.read_text(encoding="utf-8") + '{"id": "x", "text": \n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken\.jsonl:101: not valid JSON"):
        _split([str(broken)], out, heldout_fraction=0.1)
    with pytest.raises(ValueError, match="no heldout documents"):
        _split([str(SAMPLE)], out, heldout_fraction=1e-6)
    with pytest.raises(ValueError, match="between 0 and 1"):
        _split([str(SAMPLE)], out, heldout_fraction=1.0)
    assert (out / "train.jsonl").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["heldout.jsonl", "split.json", "train.jsonl"]


def test_is_heldout_fraction_is_respected_at_scale():
    share = sum(is_heldout(f"doc-{i}", 0.05) for i in range(20_000)) / 20_000
    assert 0.045 < share < 0.055


def test_tools_write_the_general_corpus_and_split_it(tmp_path):
    env = subprocess_env()
    corpus = tmp_path / "general.jsonl"
    run = [sys.executable, str(REPO / "tools" / "general_corpus.py"), "--output", str(corpus)]
    assert "PSF-2.0" in subprocess.run(run, env=env, check=True, capture_output=True, text=True,
                                       timeout=120).stdout
    split = [sys.executable, str(REPO / "tools" / "split_heldout.py"), "--input", str(corpus),
             "--output-dir", str(tmp_path / "general"), "--heldout-fraction", "0.1"]
    proc = subprocess.run(split, env=env, check=True, capture_output=True, text=True, timeout=120)
    assert "heldout" in proc.stdout
    assert len(_lines(corpus)) == sum(len(_lines(tmp_path / "general" / f"{s}.jsonl"))
                                      for s in ("train", "heldout"))
    missing = subprocess.run([*split[:3], str(tmp_path / "nope*.jsonl"), *split[4:]], env=env,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "matches no file" in missing.stderr


def test_heldout_sample_holds_the_head_of_each_heldout_document(tmp_path):
    _split([str(SAMPLE)], tmp_path, heldout_fraction=0.2, sample_chars=600)
    full = [json.loads(line) for line in _lines(tmp_path / "heldout.jsonl")]
    sample = [json.loads(line) for line in _lines(tmp_path / "heldout_sample.jsonl")]
    assert [r["id"] for r in sample] == [r["id"] for r in full]
    for whole, head in zip(full, sample):
        assert whole["text"].startswith(head["text"]) and 0 < len(head["text"]) <= 600
        assert head["text"] == whole["text"] or whole["text"][len(head["text"]):].startswith("\n\n") \
            or len(head["text"]) == 600
