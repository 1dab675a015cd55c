"""Which 3GPP working group is responsible for a specification: a documented, versioned map.

A 3GPP specification number is ``aa.bbb`` (``aa`` the series, an optional ``-N`` part: ``38.101-1``).
Each specification has one *primary responsible group* in the 3GPP specification database; that
group, a working group (WG) of TSG RAN, SA or CT, is the label of the working-group classification
benchmark (``wg_benchmark.py``).

Map version 1 (``MAP_VERSION``) is, in this order:

1. the table ``working_groups_v1.tsv`` (3,154 specifications, TS and TR): the primary responsible
   group of each specification's newest version in the 3GPP database, as crawled by
   relaton/relaton-data-3gpp (commit c6e533e, 2025-12-12). Only the 15 working groups that own
   specifications are kept; TSG plenaries (RP, SP, CP), GERAN and closed groups are left out;
2. for a TS number the table does not hold (a newer spec), series rules that agree with the table
   on at least 90% of its TSs (``SERIES_RULES``, ``RADIO_RULES``; the agreement is in docs);
3. otherwise None: the spec has no label and is left out.

The 16th class of GSMA's Open Telco ``3gpp_tsg`` task, RAN_AH1 (RAN ad hoc on ITU coordination),
owns no specification, so spec text yields at most 15 classes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

MAP_VERSION = "3gpp-wg-map-v1 (3GPP primary responsible groups, relaton-data-3gpp c6e533e, 2025-12-12)"
"""Recorded in every benchmark built with this map; a new table is a new version."""

WORKING_GROUPS = ("RAN1", "RAN2", "RAN3", "RAN4", "RAN5", "SA1", "SA2", "SA3", "SA4", "SA5", "SA6",
                  "CT1", "CT3", "CT4", "CT6")
"""The 15 working groups that own specifications, in 3GPP's order (the benchmark's class names)."""

GSMA_CLASSES = (*WORKING_GROUPS[:5], "RAN_AH1", *WORKING_GROUPS[5:])
"""The 16 labels of GSMA Open Telco's ``3gpp_tsg`` (Tdoc) task: ours plus RAN_AH1."""

TABLE = Path(__file__).with_name("working_groups_v1.tsv")

SERIES_RULES = {"22": "SA1", "26": "SA4", "28": "SA5", "31": "CT6", "32": "SA5", "33": "SA3", "35": "SA3"}
"""Series -> WG for TS numbers missing from the table (series 23, 24, 29 and 34 are split between groups)."""
RADIO_SERIES = ("25", "36", "37", "38")
"""UTRA, LTE, multi-RAT and NR: the hundreds digit names the RAN working group."""
RADIO_RULES = {"1": "RAN4", "2": "RAN1", "3": "RAN2", "4": "RAN3", "5": "RAN5"}
"""Hundreds digit of a radio TS -> WG (x.1xx RF and RRM, x.2xx physical layer, x.3xx radio protocols,
x.4xx RAN interfaces, x.5xx conformance tests); x.6xx-x.9xx (mostly TRs) have no rule."""

SPEC_NUMBER = re.compile(r"^(\d{2})\.(\d{3})(?:-(\d+))?$")


@dataclass(frozen=True)
class Label:
    """A specification's working group and where the map found it."""

    working_group: str
    how: str
    """'table' (the 3GPP database) or 'rule' (series rule for a spec the table lacks)."""


@cache
def _rows(path: Path = TABLE) -> dict[str, tuple[str, str]]:
    """spec number -> (TS or TR, working group); comment lines start with '#'."""
    rows: dict[str, tuple[str, str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            spec, spec_type, working_group = line.split("\t")
            assert working_group in WORKING_GROUPS and spec_type in ("TS", "TR"), line
            rows[spec] = (spec_type, working_group)
    return rows


@cache
def spec_table() -> dict[str, str]:
    """The table: spec number -> working group."""
    return {spec: wg for spec, (_, wg) in _rows().items()}


def spec_type(spec: str, given: str | None = None) -> str:
    """TS or TR: as the document says, else as the table lists it, else by number (x.7xx-x.9xx are TRs)."""
    if given in ("TS", "TR"):
        return given
    number = normalize_spec_number(spec) or ""
    if number in _rows():
        return _rows()[number][0]
    return "TR" if number[3:4] in ("7", "8", "9") else "TS"


def normalize_spec_number(spec: str) -> str | None:
    """'38.321', 'TS 38.321', '38321', '38.101-1' -> the canonical 'aa.bbb[-N]'; None if not one."""
    spec = re.sub(r"^(?:3GPP\s+)?T[SR]\s+", "", spec.strip())
    if re.fullmatch(r"\d{5}(?:-\d+)?", spec):
        spec = f"{spec[:2]}.{spec[2:]}"
    return spec if SPEC_NUMBER.match(spec) else None


def working_group(spec: str, spec_type: str = "TS") -> Label | None:
    """The working group of a specification under map version 1, or None when the map has none."""
    number = normalize_spec_number(spec)
    if number is None:
        return None
    table = spec_table()
    if number in table:
        return Label(table[number], "table")
    base = number.split("-")[0]
    siblings = {wg for spec, wg in table.items() if spec == base or spec.startswith(f"{base}-")}
    if len(siblings) == 1:  # a new part of a multi-part spec belongs with its listed parts
        return Label(siblings.pop(), "table")
    if spec_type != "TS":
        return None
    series, digits = number[:2], number[3:]
    if series in RADIO_SERIES and digits[0] in RADIO_RULES:
        return Label(RADIO_RULES[digits[0]], "rule")
    if series in SERIES_RULES:
        return Label(SERIES_RULES[series], "rule")
    return None
