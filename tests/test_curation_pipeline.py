"""The whole curation pipeline on datatrove's local executor, on a subset of the real RFCs.

Injected: a lightly edited copy of an RFC (near duplicate), a CRLF copy of another (exact
duplicate after cleaning), an off-topic document, a too-short one, a 3GPP .docx and an unsafe zip.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from megatron_telecom.data.curation import CurationConfig, ExecutorConfig, ReaderConfig
from megatron_telecom.data.curation.pipeline import run_curation

SUBSET = ("rfc768", "rfc3262", "rfc3311", "rfc3515", "rfc5516", "rfc8999")
OFF_TOPIC = (
    "Preheat the oven and mix the flour, sugar and butter in a large bowl until the mixture "
    "looks like fine breadcrumbs. Add the eggs one at a time, beating well after each. Pour "
    "the batter into the tin and bake for forty minutes, until a skewer comes out clean. "
) * 8


def _near_duplicate(text: str) -> str:
    """Edits a reviewer would make: a few words changed, one paragraph dropped."""
    edited = text.replace("provisional", "interim", 3).replace("reliable", "dependable", 2)
    paragraphs = edited.split("\n\n")
    del paragraphs[len(paragraphs) // 2]
    return "\n\n".join(paragraphs)


@pytest.fixture(scope="module")
def curation_inputs(tmp_path_factory, curation_rfc_dir: Path, curation_spec_docx: bytes) -> Path:
    root = tmp_path_factory.mktemp("inputs")
    for name in SUBSET:
        shutil.copy(curation_rfc_dir / f"{name}.txt", root / f"{name}.txt")
    original = (curation_rfc_dir / "rfc3262.txt").read_text(encoding="utf-8")
    (root / "rfc3262-edited.txt").write_text(_near_duplicate(original), encoding="utf-8")
    crlf = (curation_rfc_dir / "rfc3515.txt").read_text(encoding="utf-8").replace("\n", "\r\n")
    (root / "rfc3515-crlf.txt").write_bytes(crlf.encode("utf-8"))
    (root / "23501-i50.docx").write_bytes(curation_spec_docx)
    records = [
        {"id": "cake", "text": OFF_TOPIC, "url": "https://example.org/cake"},
        {"id": "tiny", "text": "The gNB and the AMF exchange NGAP messages over N2 in 5G NR."},
    ]
    (root / "web.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    shutil.copy(root / "23501-i50.docx", root / "evil-src.docx")
    import zipfile

    with zipfile.ZipFile(root / "evil.zip", "w") as zf:
        zf.write(root / "evil-src.docx", "../../evil.docx")
    (root / "evil-src.docx").unlink()
    return root


def _config(inputs: Path, out: Path, *, workers: int = 1) -> CurationConfig:
    return CurationConfig(
        reader=ReaderConfig(input=[str(inputs)]),
        executor=ExecutorConfig(tasks=2, workers=workers),
        output_dir=str(out),
        removed_dir=str(out.parent / "removed"),
    )


def report_source(curated, source: str) -> dict:
    return curated[1]["by_source"][source]


def _shards(out: Path) -> list[dict]:
    return [json.loads(line) for shard in sorted(out.glob("*.jsonl")) for line in shard.open()]


@pytest.fixture(scope="module")
def curated(curation_inputs: Path, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("run") / "out"
    report = run_curation(_config(curation_inputs, out, workers=2))
    return out, report


def test_output_shards_are_jsonl_with_text_and_metadata(curated) -> None:
    out, _ = curated
    docs = _shards(out)
    assert sorted(p.name for p in out.glob("*.jsonl")) == ["00000.jsonl", "00001.jsonl"]
    for doc in docs:
        assert isinstance(doc["text"], str) and doc["text"]
        for key in ("source", "doc_id", "title", "file_path", "telecom_score"):
            assert key in doc, key
    sources = sorted(d["source"] for d in docs)
    assert sources.count("rfc") == len(SUBSET) and sources.count("3gpp") == 1
    spec = next(d for d in docs if d["source"] == "3gpp")
    assert spec["spec_number"] == "23.501" and spec["text"].startswith("# 1 Scope")
    # the .docx path gets the same clause treatment (a spec this short stays one document)
    assert spec["spec_release"] == "18" and spec["spec_format"] == "docx"
    assert (spec["clause"], spec["clause_end"], spec["clause_count"]) == ("1", "Annex A (normative)", 1)
    assert report_source(curated, "3gpp")["output"] == {"documents": 1, "clauses": 1,
                                                        "characters": len(spec["text"])}
    assert all("\f" not in d["text"] and "[Page" not in d["text"] for d in docs)


def test_duplicates_removed_distinct_documents_kept(curated) -> None:
    out, report = curated
    docs = _shards(out)
    ids = sorted(d["doc_id"] for d in docs)
    assert ids == sorted([*SUBSET, "23501-i50"])  # one of each RFC pair survives, nothing else
    assert report["removed_by_reason"] == {
        "telecom_low_relevance": 1,
        "gopher_short_doc": 1,
        "exact_duplicate": 1,
        "near_duplicate": 1,
    }
    removed = out.parent / "removed"
    assert sorted(p.name for p in removed.iterdir()) == [
        "exact_duplicate", "gopher_quality", "near_duplicate", "telecom_relevance",
    ]
    cake = [json.loads(x) for f in (removed / "telecom_relevance").glob("*.jsonl") for x in f.open()]
    assert [d["id"] for d in cake] == ["cake"] and cake[0]["filter_reason"] == "telecom_low_relevance"


def test_report_counts_documents_and_characters(curated) -> None:
    out, report = curated
    saved = json.loads((out / "curation_stats.json").read_text())
    assert saved == report
    assert report["input"]["documents"] == len(SUBSET) + 2 + 1 + 2
    assert report["input"]["rejected_files"] == {"rejected_unsafe_archive": 1}
    assert report["output"]["documents"] == len(SUBSET) + 1
    assert report["output"]["characters"] == sum(len(d["text"]) for d in _shards(out))
    rows = {row["stage"]: row for row in report["stages"]}
    assert rows["clean"]["chars_out"] < rows["clean"]["chars_in"]  # page furniture, boilerplate
    for previous, row in zip(report["stages"], report["stages"][1:]):
        assert row["docs_in"] == previous["docs_out"]
        assert row["docs_in"] - row["docs_out"] == sum(row["removed"].values())
    table = (out / "curation_stats.txt").read_text()
    assert "near_duplicate=1" in table and "telecom_low_relevance=1" in table


def test_rerun_skips_finished_work_and_resumes_half_finished(
    curation_inputs: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    config = _config(curation_inputs, out)
    run_curation(config)
    first = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.glob("*.jsonl")}
    run_curation(config)  # finished run: every task is skipped, nothing rewritten
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.glob("*.jsonl")} == first
    # half-finished: the last stage's task 1 never completed
    (out / "_work" / "logs" / "write" / "completions" / "00001").unlink()
    (out / "00001.jsonl").unlink()
    run_curation(config)
    assert (out / "00001.jsonl").read_bytes() == first["00001.jsonl"][0]
    assert (out / "00000.jsonl").stat().st_mtime_ns == first["00000.jsonl"][1]
