"""3GPP specifications as text/Markdown: recognition, boilerplate removal, heading repair,
clause splitting, per-source filters and the per-source report.

The fixtures are invented text laid out as TSpec-LLM-style conversions are (cover line, cover
block, disclaimer, address, copyright and trademark lines, a run-together Contents, Foreword,
run-together `#` headings, pipe tables incl. one-column ones, ASN.1, change-history annex) and as
pandoc writes them (setext headings, `{#contents .TT}`). No 3GPP text is reproduced.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datatrove.data import Document
from datatrove.pipeline.filters import GopherRepetitionFilter

from megatron_telecom.data.curation import (
    CurationConfig,
    ExecutorConfig,
    FilterConfig,
    ReaderConfig,
)
from megatron_telecom.data.curation.clauses import split_clauses
from megatron_telecom.data.curation.pipeline import run_curation
from megatron_telecom.data.curation.readers import TelecomDocumentReader
from megatron_telecom.data.curation.steps import NearDedupExempt, SourceRoutedFilter
from megatron_telecom.data.curation.text import OfflineWordTokenizer
from megatron_telecom.data.curation.threegpp import spec_metadata
from megatron_telecom.data.curation.threegpp_text import (
    clean_3gpp_markdown,
    is_3gpp_text,
    text_spec_metadata,
)

FRONT = """3GPP TS 38.999 V19.2.0 (2026-03)

Technical Specification

3rd Generation Partnership Project;

Technical Specification Group Radio Access Network;

NR;

Invented layer protocol for curation tests

(Release 19)

The present document has been developed within an invented project and serves only as a test fixture.

Keywords

Invented, Layer 2

3GPP

Postal address

Invented support office address

## 1 Example Road - Testville

Internet

http://www.3gpp.org

Copyright Notification

No part may be reproduced from this fixture, which reproduces nothing.

© 2026, Invented Partners of this fixture.

All rights reserved.

UMTS™ is a Trade Mark named here as an invented example

GSM® and the GSM logo are invented examples in this fixture

Contents

Foreword5

1Scope6

2References6

4.2MAC architecture15

5.1.416QAM16

Annex B (informative):Example calculation54

Annex C (informative):Change history55

## Foreword

This invented foreword explains how the versions of the test document are numbered.

"""

TIMERS = "\n\n".join(
    f"If the MAC entity is configured with the parameter timerValue{i} for the HARQ process, the "
    f"MAC entity shall start the timer number {i} in the slot after the PDCCH occasion and shall "
    "stop the timer when the UE receives the acknowledgement."
    for i in range(30)
)

BODY = f"""## 1Scope

The present document specifies an invented medium access protocol, used to test how the curation pipeline treats specifications.

## 2References

Documents listed here are referenced by this invented test document.

[1]Invented TR 00.001: "Vocabulary for test fixtures".

## 3Definitions of terms and abbreviations

## 3.1Terms

Test entity: an invented MAC entity that exists only in this fixture.

## 3.2Abbreviations

| HARQ Hybrid Automatic Repeat Request |
|---|
| UE User Equipment |

## 4General

## 4.1Introduction

The UE keeps one MAC entity per cell group in this invented protocol.

## 4.2MAC architecture

| Table 4.2-1: invented note |
|---|
| The gNB configures the MAC entity through RRC signalling. |

| Channel | Direction |
|---|---|
| UL-SCH | uplink |
| DL-SCH | downlink |

## 5Procedures

## 5.1Modulation

## 5.1.3QPSK

Two bits select one of four constellation points on the uplink carrier.

## 5.1.416QAM

Four bits select one of sixteen constellation points on the downlink carrier.

## 5.2Timers

{TIMERS}

## 5.2aMaintenance of invented alignment

The UE applies the timing advance command received in the random access response.

## 6Messages

## 6.1Message encoding

-- ASN1START
InventedMessage ::= SEQUENCE {{
    harqProcessId      INTEGER (0..15),
    timerValue         ENUMERATED {{ms10, ms20, ms40}}
}}
-- ASN1STOP

## Annex A (normative):Invented constants

The invented constant maxHARQ equals sixteen processes per MAC entity.

## Annex B (informative):Example calculation

## B.2.3An example of checksum calculation

The checksum of the invented header is the sum of its octets modulo 256.

## Annex C (informative):Change history

| Date | Meeting | CR | Subject |
|---|---|---|---|
| 2026-03 | RAN#99 | CR-0042 | Invented correction |
"""

SPEC = FRONT + BODY

PANDOC = """3GPP TR 38.998 V18.1.0 (2025-06)

Technical Report

Invented study on curation fixtures

(Release 18)

 Contents {#contents .TT}
========

Foreword 4

1 Scope 5

 Foreword
========

This invented foreword is dropped.

 1 Scope
=======

The present document studies an invented feature of the gNB scheduler.

4.1 Scheduler model
-------------------

The gNB assigns PDSCH resources to each UE every slot in this invented model.

  Index   Value
  ------- -------
  0       1
  1       2

########  Annex A (informative): Change history

  Date     CR
  -------- ------
  2025-06  0001
"""

# The cover as one Markdown heading line, annex headings as plain lines run together with their
# title (as some .docx conversions write them); invented text.
ONE_LINE_COVER = """# 3GPP TS 38.995 V19.0.0 (2025-06) Technical Specification 3rd Generation Partnership Project; Technical Specification Group Radio Access Network; NR; Invented physical layer overview for curation tests (Release 19)

""" + FRONT[FRONT.index("The present document"):FRONT.index("UMTS™")] + """# Contents

Foreword 4

1 Scope 5

Annex A (normative):Invented channel model 8

Annex N (informative):Change history 9

# Foreword

This invented foreword explains how versions of the test document are numbered.

# 1 Scope

The present document gives an invented overview of a physical layer, used to test curation.

# 2 References

[1] Invented TR 00.002: "Vocabulary for more test fixtures".

# 4 General description

## 4.1 Overview

The invented physical layer maps transport blocks onto slots of fourteen symbols.

Annex A (normative):Invented channel model

The invented channel model has three taps with equal power.

Annex N (informative):Change history

| Date | Meeting | TDoc | CR | Subject | New version |
|---|---|---|---|---|---|
| 2025-06 | RAN#108 | RP-250999 | - | Invented first version | 19.0.0 |
"""

# A cover written as a title heading with the version on a line of its own (seen in a
# docx-to-Markdown toolkit's output), tab-separated heading numbers.
TITLE_COVER = """# 3GPP TS 38.994 \u2014 Invented Security Procedures for Curation Tests

**Version:** V20.1.0 (2026-01) | **Release:** 20

---

""" + FRONT[FRONT.index("The present document"):FRONT.index("Keywords")] + """Contents


## Foreword
This invented foreword explains how versions of the test document are numbered.

## 1\tScope
The present document specifies invented security procedures, used to test curation.

## 2\tReferences
[1]\tInvented TR 00.003: "Vocabulary for yet more test fixtures".

### 2.1\tInvented key hierarchy
The invented AMF derives a key from the invented anchor key.
"""

# A conversion that dropped the cover, the Contents and clauses 1 to 3 (and the headings of
# depth 1): it starts at the Foreword heading.
NO_COVER = """## Foreword
This invented foreword explains how versions of the test document are numbered.

### 4.1\tOverview
The invented NAS layer carries invented registration messages between the UE and the AMF.

### 4.2\tCoordination
The invented session management waits for the invented mobility management.
"""

# A multi-part Technical Report number ('TR 38.993-01-02').
MULTI_PART = FRONT.replace("3GPP TS 38.999 V19.2.0 (2026-03)", "3GPP TR 38.993-01-02 V16.0.0 (2020-06)") + """
# Foreword

This invented foreword explains how versions of the test document are numbered.

# 1 Scope

The present document is an invented report on a band combination, used to test curation.
"""

BOILERPLATE = ("3GPP TS 38.999", "Technical Specification Group", "developed within", "Postal address",
               "Example Road", "www.3gpp.org", "Copyright", "No part may be reproduced",
               "All rights reserved", "Trade Mark", "Contents", "Foreword", "Change history",
               "CR-0042", "Keywords")


def test_recognised_by_cover_line_with_metadata() -> None:
    assert is_3gpp_text(SPEC) and is_3gpp_text(PANDOC)
    assert not is_3gpp_text("RFC 9000 QUIC\n\n3GPP TS 38.999 V1.0.0 appears only " + "x" * 5000)
    assert text_spec_metadata(SPEC) == {
        "spec_number": "38.999", "spec_version": "19.2.0", "spec_type": "TS",
        "spec_release": "19", "spec_series": "38",
        "title": "3rd Generation Partnership Project; Technical Specification Group Radio Access "
                 "Network; NR; Invented layer protocol for curation tests",
    }
    assert text_spec_metadata(PANDOC)["spec_type"] == "TR"
    assert text_spec_metadata(PANDOC)["spec_release"] == "18"


def test_boilerplate_removed_body_kept_headings_repaired() -> None:
    spec = clean_3gpp_markdown(SPEC)
    for phrase in BOILERPLATE:
        assert phrase not in spec.text, phrase
    headings = [line for line in spec.text.split("\n") if line.startswith("#")]
    assert headings == [
        "# 1 Scope", "# 2 References", "# 3 Definitions of terms and abbreviations",
        "## 3.1 Terms", "## 3.2 Abbreviations", "# 4 General", "## 4.1 Introduction",
        "## 4.2 MAC architecture", "# 5 Procedures", "## 5.1 Modulation", "### 5.1.3 QPSK",
        "### 5.1.4 16QAM", "## 5.2 Timers", "## 5.2a Maintenance of invented alignment",
        "# 6 Messages", "## 6.1 Message encoding", "# Annex A (normative): Invented constants",
        "# Annex B (informative): Example calculation",
        "### B.2.3 An example of checksum calculation",
    ]
    for kept in ("[1]Invented TR 00.001", "| HARQ Hybrid Automatic Repeat Request |",
                 "| The gNB configures the MAC entity through RRC signalling. |",
                 "| UL-SCH | uplink |", "-- ASN1START", "modulo 256", TIMERS):
        assert kept in spec.text, kept
    assert set(spec.removed) == {"cover", "disclaimer", "address", "copyright", "trademarks",
                                 "contents", "foreword", "change_history"}
    assert spec.removed["change_history"] >= len("| 2026-03 | RAN#99 | CR-0042 | Invented correction |")
    assert spec.removed["contents"] >= len("Annex C (informative):Change history55")


def test_pandoc_form_setext_headings_and_attributes() -> None:
    spec = clean_3gpp_markdown(PANDOC)
    assert spec.text.split("\n")[0] == "# 1 Scope"
    assert "## 4.1 Scheduler model" in spec.text and "  0       1" in spec.text
    for phrase in ("Contents", "Foreword", "Change history", "2025-06  0001", "========"):
        assert phrase not in spec.text, phrase


def test_plain_text_form_with_tab_headings() -> None:
    plain = ("3GPP TS 38.997 V17.0.0 (2022-03)\nTechnical Specification\n(Release 17)\n"
             "Copyright Notification\nNo part may be reproduced from this invented fixture.\n"
             "Contents\nForeword\t4\n1\tScope\t5\n4.2\tModel\t6\nForeword\n"
             "Versions are numbered as follows:\n1\tpresented for information;\n"
             "1\tScope\nThe present document specifies an invented gNB function.\n"
             "4.2\tModel\nThe UE reports CSI every slot.\n")
    spec = clean_3gpp_markdown(plain)
    assert spec.text == ("# 1 Scope\nThe present document specifies an invented gNB function.\n"
                         "## 4.2 Model\nThe UE reports CSI every slot.\n")
    assert set(spec.removed) == {"copyright", "contents"}  # no blank lines, no headings: coarse


def test_cover_as_one_heading_line_and_run_together_plain_annex_headings(tmp_path: Path) -> None:
    """The cover on one '#' line is recognised (before, the spec was plain text: cover, copyright
    and address stayed); a plain 'Annex N (informative):Change history' line ends the clause
    before it (before, the change-history table stayed in annex A)."""
    assert is_3gpp_text(ONE_LINE_COVER)
    assert text_spec_metadata(ONE_LINE_COVER) == {
        "spec_number": "38.995", "spec_version": "19.0.0", "spec_type": "TS", "spec_release": "19",
        "spec_series": "38", "title": "3rd Generation Partnership Project; Technical Specification Group "
                                      "Radio Access Network; NR; Invented physical layer overview for curation tests"}
    spec = clean_3gpp_markdown(ONE_LINE_COVER)
    for phrase in (*BOILERPLATE[1:], "3GPP TS 38.995", "RP-250999", "Invented first version", "Route"):
        assert phrase not in spec.text, phrase
    assert [ln for ln in spec.text.split("\n") if ln.startswith("#")] == [
        "# 1 Scope", "# 2 References", "# 4 General description", "## 4.1 Overview",
        "# Annex A (normative): Invented channel model"]
    assert spec.text.rstrip().endswith("three taps with equal power.")
    assert {"cover", "disclaimer", "address", "copyright", "contents", "foreword", "change_history"} <= set(spec.removed)
    (tmp_path / "overview.md").write_text(ONE_LINE_COVER)
    doc = next(iter(TelecomDocumentReader(str(tmp_path)).run()))
    assert (doc.metadata["source"], doc.metadata["spec_number"], doc.metadata["spec_release"]) == ("3gpp", "38.995", "19")
    pieces = [(p.clause, p.clause_end) for p in split_clauses(spec.text, max_chars=200)]
    assert pieces == [("1", "4"), ("4.1", "4.1"), ("Annex A (normative)", "Annex A (normative)")]


def test_title_heading_cover_multi_part_numbers_and_cover_less_conversions(tmp_path: Path) -> None:
    """Layouts of real conversions: before, the title-heading cover was not recognised (its
    spec number came from the file name only, without title), 'TR 38.716-01-01' got no spec number
    at all, a conversion without cover or '1 Scope' was read as plain text, and a title running
    into '(Release 19)' in one table cell of the cover, or a cover line without a space before
    the version ('38.471V18.0.0'), lost the title and type."""
    assert is_3gpp_text(TITLE_COVER)
    assert text_spec_metadata(TITLE_COVER) == {
        "spec_number": "38.994", "spec_version": "20.1.0", "spec_type": "TS", "spec_release": "20",
        "spec_series": "38", "title": "Invented Security Procedures for Curation Tests"}
    spec = clean_3gpp_markdown(TITLE_COVER)
    assert [ln for ln in spec.text.split("\n") if ln.startswith("#")] == [
        "# 1 Scope", "# 2 References", "## 2.1 Invented key hierarchy"]
    for phrase in ("38.994", "Version:", "developed within", "Contents", "Foreword"):
        assert phrase not in spec.text, phrase
    assert {"cover", "disclaimer", "contents", "foreword"} <= set(spec.removed)

    table_cover = ("| 3GPP TS 38.992 V19.4.0 (2026-03) |  |\n| --- | --- |\n| Technical Specification |  |\n"
                   "| 3rd Generation Partnership Project;NR;Invented radio transmission(Release 19) |  |\n")
    assert text_spec_metadata(table_cover)["title"] == "3rd Generation Partnership Project;NR;Invented radio transmission"
    glued = text_spec_metadata("| 3GPP TS 38.991V18.0.0(2024-03) |  |\n| Invented F1 layer |  |\n| (Release 18) |  |\n")
    assert (glued["spec_number"], glued["spec_version"], glued["title"]) == ("38.991", "18.0.0", "Invented F1 layer")

    meta = text_spec_metadata(MULTI_PART)
    assert (meta["spec_number"], meta["spec_type"], meta["spec_release"]) == ("38.993-01-02", "TR", "19")
    assert spec_metadata("", "38993-01-02-g00")["spec_number"] == "38.993-01-02"
    assert spec_metadata("", "38991-1-ia0.docx")["spec_number"] == "38.991-1"
    assert spec_metadata("", "38990-001")["spec_version"] == "0.0.1"  # a version of digits only

    cleaned = clean_3gpp_markdown(NO_COVER)
    assert cleaned.text.startswith("## 4.1 Overview\nThe invented NAS layer")
    assert set(cleaned.removed) == {"foreword"}  # not the whole text counted as 'cover'
    assert cleaned.removed["foreword"] == len(NO_COVER.split("### 4.1")[0])
    (tmp_path / "24999-j11.md").write_text(NO_COVER)
    (tmp_path / "24998-notes.md").write_text(NO_COVER)  # not a 3GPP file name: plain text
    (tmp_path / "38994-k10_toolkit.md").write_text(TITLE_COVER)
    (tmp_path / "38993-01-02-g00.md").write_text(MULTI_PART)
    docs = {d.metadata["doc_id"]: d.metadata for d in TelecomDocumentReader(str(tmp_path)).run()}
    assert (docs["24999-j11"]["source"], docs["24999-j11"]["spec_number"]) == ("3gpp", "24.999")
    assert docs["24998-notes"]["source"] == "text"
    assert docs["38994-k10_toolkit"]["title"] == "Invented Security Procedures for Curation Tests"
    assert docs["38993-01-02-g00"]["spec_number"] == "38.993-01-02"


def test_text_and_markdown_files_read_as_3gpp(tmp_path: Path) -> None:
    (tmp_path / "38999-j20.txt").write_text(SPEC)
    (tmp_path / "study.md").write_text(PANDOC)
    (tmp_path / "notes.markdown").write_text("# Notes\n\nPlain notes about the UPF.\n")
    no_cover = "![](media/cover.png)\n\n" + PANDOC.split("\n\n", 4)[-1]  # cover as an image
    (tmp_path / "38997-i30.md").write_text(no_cover)
    (tmp_path / "38996-notes.md").write_text(no_cover)  # not a 3GPP file name: plain text
    docs = {d.metadata["doc_id"]: d for d in TelecomDocumentReader(str(tmp_path)).run()}
    assert docs["38997-i30"].metadata["source"] == "3gpp"
    assert docs["38997-i30"].metadata["spec_number"] == "38.997"
    assert docs["38997-i30"].metadata["spec_release"] == "18"
    assert docs["38996-notes"].metadata["source"] == "text"
    assert docs["38999-j20"].metadata["source"] == "3gpp"
    assert docs["38999-j20"].metadata["spec_format"] == "text"
    assert docs["38999-j20"].metadata["spec_number"] == "38.999"
    assert docs["study"].metadata["source"] == "3gpp"
    assert docs["notes"].metadata["source"] == "text"


def test_split_into_clauses_keeps_every_character_and_the_clause_path() -> None:
    text = clean_3gpp_markdown(SPEC).text
    pieces = split_clauses(text, max_chars=700)
    assert len(pieces) > 6
    assert all(len(p.text) <= 700 for p in pieces)
    joined = "".join("".join(p.text.split()) for p in pieces)
    assert joined == "".join(text.split())  # nothing lost, nothing added (tables: see below)
    timers = [p for p in pieces if p.clause == "5.2"]
    assert len(timers) > 1 and all(p.clause_path == "5 Procedures > 5.2 Timers" for p in timers)
    asn1 = [p for p in pieces if p.kind == "asn1"]
    assert len(asn1) == 1 and asn1[0].text.startswith("-- ASN1START")
    assert asn1[0].text.rstrip().endswith("-- ASN1STOP") and asn1[0].clause == "6.1"
    assert pieces[-1].clause_end == "B.2.3"
    assert split_clauses(text, max_chars=0)[0].text == text  # 0: never split
    assert len(split_clauses(text, max_chars=len(text))) == 1


def test_html_and_grid_tables_are_table_pieces() -> None:
    html = "<table>\n" + "\n".join(f"<tr>\n<td>{i}</td>\n</tr>" for i in range(300)) + "\n</table>"
    grid = "\n".join(f"+----+----+\n| {i}  | x  |" for i in range(200))
    for table in (html, grid):
        pieces = split_clauses(f"# 7 Tables\n\nProse before the table.\n\n{table}", max_chars=1000)
        assert [p.kind for p in pieces][:-1] == ["table"] * (len(pieces) - 1)
        # a heading alone would be judged (and dropped) as a too-short document: it joins the table
        assert pieces[0].text.startswith("# 7 Tables\n\nProse before the table.\n\n")


def test_a_long_table_is_cut_between_rows_with_its_header_repeated() -> None:
    rows = "\n".join(f"| {i} | value {i} |" for i in range(200))
    pieces = split_clauses(f"# 7 Tables\n\n| Index | Value |\n|---|---|\n{rows}", max_chars=800)
    tables = [p for p in pieces if p.kind == "table"]
    assert len(tables) > 3
    assert all(p.text.startswith("| Index | Value |\n|---|---|\n| ") for p in tables[1:])
    assert sum(p.text.count("| value ") for p in pieces) == 200


def test_standards_are_judged_by_their_own_repetition_thresholds() -> None:
    tokenizer = OfflineWordTokenizer()
    web = GopherRepetitionFilter(dup_n_grams=((5, 0.30),), language=tokenizer)
    lenient = GopherRepetitionFilter(dup_line_frac=0.9, dup_para_frac=0.9, dup_line_char_frac=0.9,
                                     dup_para_char_frac=0.9, top_n_grams=(), dup_n_grams=(),
                                     language=tokenizer)
    routed = SourceRoutedFilter(name="rep", default=web, by_source={"3gpp": lenient})
    spec = Document(text=TIMERS, id="s", metadata={"source": "3gpp"})
    page = Document(text=TIMERS, id="w", metadata={"source": "jsonl"})
    spam = Document(text="buy now\n" * 50, id="x", metadata={"source": "3gpp"})
    asn1 = Document(text="a ::= INTEGER\n" * 50, id="a", metadata={"source": "3gpp", "clause_kind": "asn1"})
    table = Document(text="<td></td>\n" * 50, id="t", metadata={"source": "3gpp", "clause_kind": "table"})
    assert web.filter(Document(text=TIMERS, id="t"))[0] is False  # web rules drop standards text
    assert routed.filter(spec) is True
    assert routed.filter(page)[0] is False
    assert routed.filter(spam) == (False, "dup_line_frac")
    assert routed.filter(asn1) is True and routed.filter(table) is True
    assert routed.stats["removed_docs:jsonl:duplicated_5_n_grams"].total == 1
    assert routed.stats["removed_chars:3gpp:dup_line_frac"].total == len(spam.text)


def test_near_dedup_exemptions_keep_order_and_pass_around() -> None:
    docs = [Document(text=str(i), id=str(i), metadata={"clause_kind": "table" if i % 3 else "text"})
            for i in range(9)]
    docs[0].metadata.update(source="3gpp", clause_index=0)  # a spec's first clause: exempt
    docs[3].metadata.update(source="3gpp", clause_index=1)

    class DropAll(SourceRoutedFilter):
        def filter(self, doc: Document) -> bool:
            return False

    out = list(NearDedupExempt(DropAll(name="x", default=None)).run(iter(docs)))
    assert [d.id for d in out] == ["0", "1", "2", "4", "5", "7", "8"]
    judged = list(NearDedupExempt().run(iter(docs)))
    assert [d.id for d in judged] == ["3", "6"]


@pytest.fixture(scope="module")
def curated_specs(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("specs")
    inputs = root / "in"
    inputs.mkdir()
    (inputs / "38999-j20.txt").write_text(SPEC)
    (inputs / "38998-i10.md").write_text(PANDOC)
    web = {"id": "forum", "text": TIMERS}  # the same text from the web: judged by web rules
    (inputs / "web.jsonl").write_text(json.dumps(web) + "\n")
    out = root / "out"
    config = CurationConfig(
        reader=ReaderConfig(input=[str(inputs)]), executor=ExecutorConfig(tasks=1),
        filters=FilterConfig(clause_max_chars=7500), output_dir=str(out),
        removed_dir=str(root / "removed"),
    )
    return root, run_curation(config)


def test_pipeline_keeps_every_spec_clause_and_reports_per_source(curated_specs) -> None:
    root, report = curated_specs
    docs = [json.loads(line) for shard in (root / "out").glob("*.jsonl") for line in shard.open()]
    clauses = [d for d in docs if d["doc_id"] == "38999-j20"]
    assert len(clauses) >= 2 and {d["source"] for d in docs} == {"3gpp"}
    for doc in clauses:
        assert doc["spec_number"] == "38.999" and doc["spec_release"] == "19"
        assert doc["clause_count"] == len(clauses) and doc["id"].startswith("38999-j20#")
        for phrase in BOILERPLATE:
            assert phrase not in doc["text"], phrase
    text = "\n".join(d["text"] for d in sorted(clauses, key=lambda d: d["clause_index"]))
    assert TIMERS.split("\n\n")[-1] in text and "-- ASN1STOP" in text  # repetitive clause, ASN.1 kept
    spec = report["by_source"]["3gpp"]
    assert spec["input"]["documents"] == 2 and spec["output"]["documents"] == 2
    assert spec["output"]["clauses"] == len(clauses) + 1
    for reason in ("cover", "copyright", "trademarks", "contents", "foreword", "change_history"):
        assert spec["removed_chars"][f"clean:{reason}"] > 0, reason
    assert not any(key.startswith(("gopher", "near_dedup")) for key in spec["removed_chars"])
    web = report["by_source"]["jsonl"]
    assert web["output"]["documents"] == 0
    assert web["removed_chars"]["gopher_repetition:duplicated_5_n_grams"] == len(TIMERS)
    removed = [json.loads(x) for f in (root / "removed" / "gopher_repetition").glob("*.jsonl")
               for x in f.open()]
    assert [(d["id"], d["filter_reason"]) for d in removed] == [("forum", "duplicated_5_n_grams")]
    table = (root / "out" / "curation_stats.txt").read_text()
    assert "source 3gpp: 2 documents in, 2 out" in table and "clean:" not in table
