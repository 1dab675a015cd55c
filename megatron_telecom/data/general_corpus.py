"""A general (non-telecom) English corpus built from text that ships with Python itself.

Continual pretraining replays general text against forgetting and measures forgetting on general
held-out text. So that neither needs a download nor root, the corpus is the Python documentation's
topic pages held by the standard library module `pydoc_data.topics` (the text behind `help()`:
about 460 K characters of English prose with code examples; Python Software Foundation License
2.0, https://docs.python.org/3/license.html). Each topic is cut at its section headings into
documents of at least `MIN_DOCUMENT_CHARS` characters, so that a held-out split by document has
enough documents to choose from. Records carry `id`, `title`, `source`, `license`, `url`, `text`.
"""

from __future__ import annotations

import platform
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from megatron_telecom.jsonl import write_jsonl

SOURCE = "python-docs-topics"
LICENSE = "PSF-2.0"
MIN_DOCUMENT_CHARS = 1000

# A heading: its own line, underlined by '=' (a section of a topic page), after a blank line.
_SECTION = re.compile(r"\n\n(?=[^\n]+\n=+\n)")


def _sections(text: str) -> list[str]:
    """Split a topic page at its section headings, joining sections shorter than the minimum."""
    pieces: list[str] = []
    for piece in _SECTION.split(text.strip()):
        if pieces and len(pieces[-1]) < MIN_DOCUMENT_CHARS:
            pieces[-1] = f"{pieces[-1]}\n\n{piece}"
        else:
            pieces.append(piece)
    if len(pieces) > 1 and len(pieces[-1]) < MIN_DOCUMENT_CHARS:
        pieces[-2:] = [f"{pieces[-2]}\n\n{pieces[-1]}"]
    return pieces


def python_docs_documents() -> Iterator[dict]:
    """The documentation topics of the running Python, one record per section group, sorted."""
    from pydoc_data.topics import topics

    version = ".".join(platform.python_version_tuple()[:2])
    for name in sorted(topics):
        for index, text in enumerate(_sections(topics[name])):
            yield {
                "id": f"{SOURCE}/{name}/{index}",
                "title": text.split("\n", 1)[0].strip(),
                "source": SOURCE,
                "license": LICENSE,
                "url": f"https://docs.python.org/{version}/",
                "text": text,
            }


def write_general_corpus(output: str | Path) -> int:
    """Write the general corpus as JSONL (atomically); returns the number of documents."""
    return write_jsonl(output, python_docs_documents())


@dataclass(kw_only=True)
class GeneralCorpusConfig:
    """Flags of `tools/general_corpus.py`."""

    output: str
    """JSONL file to write."""


def run_general_corpus(config: GeneralCorpusConfig) -> int:
    """`tools/general_corpus.py`: write the corpus and say what it is; an unwritable path exits 2."""
    try:
        count = write_general_corpus(config.output)
    except OSError as exc:
        raise ValueError(str(exc)) from exc
    print(f"general corpus: {count} documents from {SOURCE} (licence {LICENSE}) -> {config.output}")
    return 0
