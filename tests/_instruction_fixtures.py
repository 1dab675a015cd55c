"""Invented curated records (3GPP clause documents and an RFC) for tests/test_instructions*.py.

Every spec number, term, abbreviation and sentence here was written for these tests; none is
3GPP or IETF text.
"""

SPEC_CLAUSES = """# 1 Scope

The present document specifies the invented test anchor protocol used by the builder tests.

# 2 References

[1] Invented TR 99.905: "Vocabulary for invented tests".

# 3 Definitions of terms and abbreviations

## 3.1 Terms

For the purposes of the present document, the following terms apply.

**Test anchor:** an invented node that terminates the test bearer.

Quiet period: the invented time during which no test frame is sent.
Busy period: the invented time during which test frames are sent.

Test bearer: as defined in TR 99.905 [1].

## 3.2 Abbreviations

For the purposes of the present document, the following abbreviations apply.

TANTest Anchor Node
TATest Anchor
QPF\tQuiet Period Function
| TBR | Test Bearer Reference |
Lorem ipsum dolor
XYZ

# 4 General

The TAN sends test frames during the busy period.
"""

SPEC = {"id": "99101-j00#0000", "text": SPEC_CLAUSES, "source": "3gpp", "doc_id": "99101-j00",
        "title": "3rd Generation Partnership Project; Technical Specification Group Invented Tests; "
                 "Invented Test Anchor Protocol; Stage 2", "spec_number": "99.101", "spec_type": "TS",
        "spec_series": "99", "spec_version": "19.0.0", "clause": "1", "clause_path": "1 Scope",
        "clause_index": 0, "clause_count": 2}

# a later clause document of another spec of the series: continues clause 3.2 without a heading
SPEC2_PIECE = {"id": "99102-j00#0001", "source": "3gpp", "doc_id": "99102-j00",
               "title": "Invented Quiet Frame Protocol", "spec_number": "99.102", "spec_type": "TS",
               "spec_series": "99", "clause": "3.2", "clause_index": 1, "clause_count": 3,
               "clause_path": "3 Definitions, symbols and abbreviations > 3.2 Abbreviations",
               "text": "QFP Quiet Frame Protocol\nZZ Zone Zero TZ Test Zone\nTAN Test Anchor Node\n\n# 4 General\n\nThe QFP is quiet.\n"}

NO_ABBREVIATIONS = {"id": "99103-j00#0000", "source": "3gpp", "doc_id": "99103-j00", "title": "",
                    "spec_number": "99.103", "spec_type": "TR", "spec_series": "99", "clause": "3",
                    "clause_path": "3 Definitions", "clause_index": 2,
                    "text": "# 3 Definitions, symbols and abbreviations\n\n## 3.1 Abbreviations\n\n"
                            "For the purposes of the present document, the abbreviations given in TR 99.905 [1] "
                            "apply.\n\n# 4 General\n\nNothing is abbreviated here.\n"}

RFC_TEXT = """               The Invented Test Transfer Protocol

Abstract

   This document specifies the Invented Test Transfer Protocol (ITTP), a
   protocol that exists only in test fixtures.

1.  Introduction

   The protocol moves invented frames between relay nodes.

2.  Terminology

   The key words "MUST" and "MAY" in this document are to be interpreted
   as described in an invented convention.

   relay node:  A node that forwards invented frames
      between two endpoints.

   o "frame"

   A frame is the unit of data that the invented protocol sends.

   +------------------+
   |  t9        tq tr |
   |            ts tu |
   +------------------+

3.  Abbreviations

   ITTP    Invented Test Transfer Protocol
   RN      Relay Node
   L2      Layer 2 L3      Layer 3

4.  Protocol Overview

   A relay node forwards every frame.
"""

RFC = {"id": "rfc9999", "doc_id": "rfc9999", "title": "The Invented Test Transfer Protocol",
       "source": "rfc", "text": RFC_TEXT}

RECORDS = [SPEC, SPEC2_PIECE, RFC]
