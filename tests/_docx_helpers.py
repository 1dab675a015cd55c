"""A 3GPP-style technical specification as .docx bytes, and the Markdown it must convert to.

Built with python-docx in the layout 3GPP uses (cover styles ZA/ZB/ZT, contents, foreword,
numbered clauses, a table, normative and informative annexes) for the curation 3GPP reader tests.
"""

from __future__ import annotations

import io


def build_spec_docx() -> bytes:
    """A 3GPP-style TS: cover, copyright page, contents, foreword, clauses, table, annexes."""
    import docx
    from docx.enum.style import WD_STYLE_TYPE

    document = docx.Document()
    for name in ("ZA", "ZB", "ZT", "TT", "TOC 1", "TOC 2", "B1"):
        document.styles.add_style(name, WD_STYLE_TYPE.PARAGRAPH)
    document.add_paragraph("3GPP TS 23.501 V18.5.0 (2024-03)", style="ZA")
    document.add_paragraph("Technical Specification", style="ZB")
    document.add_paragraph(
        "3rd Generation Partnership Project; Technical Specification Group Services and "
        "System Aspects; System architecture for the 5G System (5GS); Stage 2", style="ZT")
    document.add_paragraph("Postal address: 3GPP support office, 650 Route des Lucioles")
    document.add_paragraph("Copyright Notification: No part may be reproduced.")
    document.add_paragraph("Contents", style="TT")
    document.add_paragraph("Foreword\t5", style="TOC 1")
    document.add_paragraph("1\tScope\t6", style="TOC 1")
    document.add_paragraph("4.2\tArchitecture reference model\t7", style="TOC 2")
    document.add_heading("Foreword", level=1)
    document.add_paragraph("This Technical Specification has been produced by the 3GPP.")
    document.add_heading("1\tScope", level=1)
    document.add_paragraph("The present document defines the Stage 2 system architecture for "
                           "the 5G System, including the AMF, SMF and UPF network functions.")
    document.add_heading("4\tArchitecture model and concepts", level=1)
    document.add_heading("4.2\tArchitecture reference model", level=2)
    document.add_paragraph("The UE reaches the 5G core network over the NG-RAN.")
    document.add_paragraph("the AMF terminates N1 NAS signalling;", style="B1")
    document.add_heading("4.2.1\tService-based interfaces", level=3)
    table = document.add_table(rows=3, cols=2)
    for row, (a, b) in zip(table.rows, [("NF", "Interface"), ("AMF", "Namf"), ("SMF", "Nsmf|x")]):
        row.cells[0].text, row.cells[1].text = a, b
    document.add_paragraph("Each network function exposes its services over the SBI.")
    document.add_heading("Annex A (normative):\tQoS parameters", level=8)
    document.add_paragraph("The 5QI value selects the QoS characteristics of a QoS flow.")
    document.add_heading("Annex B (informative):\tChange history", level=8)
    history = document.add_table(rows=2, cols=3)
    for row, values in zip(history.rows, [("Date", "CR", "Subject"), ("2024-03", "1234", "Fix")]):
        for cell, value in zip(row.cells, values):
            cell.text = value
    document.add_paragraph("Editorial change history entry.")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


SPEC_MARKDOWN = """# 1 Scope

The present document defines the Stage 2 system architecture for the 5G System, including the AMF, SMF and UPF network functions.

# 4 Architecture model and concepts

## 4.2 Architecture reference model

The UE reaches the 5G core network over the NG-RAN.

- the AMF terminates N1 NAS signalling;

### 4.2.1 Service-based interfaces

| NF | Interface |
|---|---|
| AMF | Namf |
| SMF | Nsmf\\|x |

Each network function exposes its services over the SBI.

# Annex A (normative): QoS parameters

The 5QI value selects the QoS characteristics of a QoS flow."""
