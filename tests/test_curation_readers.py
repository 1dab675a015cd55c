"""TelecomDocumentReader on JSONL(.gz), PDF and plain text, with datatrove rank sharding."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from megatron_telecom.data.curation.readers import TelecomDocumentReader


def _pdf(text: str) -> bytes:
    """A minimal one-page PDF with `text` in Helvetica (offsets computed, so it is valid)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Title (Beam management in NR) >>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 6 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    return bytes(out)


def test_jsonl_gz_with_custom_keys(tmp_path: Path) -> None:
    records = [{"body": f"text {i}", "uid": f"u{i}", "lang": "en"} for i in range(3)]
    with gzip.open(tmp_path / "corpus.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    docs = list(TelecomDocumentReader(str(tmp_path), text_key="body", id_key="uid").run())
    assert [d.text for d in docs] == ["text 0", "text 1", "text 2"]
    assert [d.id for d in docs] == ["u0", "u1", "u2"]
    assert docs[0].metadata["source"] == "jsonl" and docs[0].metadata["lang"] == "en"
    assert docs[0].metadata["doc_id"] == "u0"
    assert docs[0].metadata["file_path"].endswith("corpus.jsonl.gz")


def test_pdf_and_plain_text(tmp_path: Path) -> None:
    (tmp_path / "paper.pdf").write_bytes(_pdf("The gNB sweeps SSB beams."))
    (tmp_path / "notes.txt").write_text("Plain notes about the UPF.\n")
    docs = {d.metadata["source"]: d for d in TelecomDocumentReader(str(tmp_path)).run()}
    assert docs["pdf"].text == "The gNB sweeps SSB beams."
    assert docs["pdf"].metadata["title"] == "Beam management in NR"
    assert docs["pdf"].metadata["doc_id"] == "paper"
    assert docs["text"].text == "Plain notes about the UPF.\n"


def test_files_are_sharded_across_ranks_and_bad_files_counted(tmp_path: Path) -> None:
    for i in range(4):
        (tmp_path / f"doc{i}.txt").write_text(f"document {i}")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    reader = TelecomDocumentReader(str(tmp_path))
    shards = [[d.text for d in reader.run(rank=r, world_size=2)] for r in range(2)]
    assert sorted(shards[0] + shards[1]) == [f"document {i}" for i in range(4)]
    assert shards[0] and shards[1]
    assert reader.stats["rejected_unreadable_file"].total == 1
    assert reader.stats["skipped_unsupported_file"].total == 1
