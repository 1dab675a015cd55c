"""The fixed prompt templates of each task, and the seeded choice among them.

A row's template depends only on the seed and the row itself (task, variant, document, term),
never on the order rows are built in, so adding a document changes no other row. The templates
are part of the data's identity: the sidecar records their SHA-256 (`templates_sha256`).
"""

from __future__ import annotations

import hashlib
import json
import random

TEMPLATES: dict[str, tuple[str, ...]] = {
    "abbreviation": (
        "In {doc}, what does the abbreviation {term} stand for?",
        "What is the expansion of {term} as used in {doc}?",
        "{doc} uses the abbreviation {term}. What does it stand for?",
        "Expand the abbreviation {term} ({doc}).",
        "What is the full form of {term} in {doc}?",
    ),
    "definition": (
        "How does {doc} define the term \"{term}\"?",
        "What is the definition of \"{term}\" in {doc}?",
        "Define \"{term}\" as {doc} does.",
        "According to {doc}, what is meant by \"{term}\"?",
        "In {doc}, what does \"{term}\" mean?",
    ),
    "title_to_spec": (
        "Which {kind} is titled \"{term}\"?",
        "Name the {kind} whose title is \"{term}\".",
        "\"{term}\": which {kind} has this title?",
    ),
    "spec_to_title": (
        "What is the title of {term}?",
        "Give the title of {term}.",
        "What is {term} called?",
    ),
    "scope_to_spec": (
        "Which {kind} has this {scope}: \"{term}\"",
        "Identify the {kind} whose {scope} reads: \"{term}\"",
        "The {scope} of a {kind} reads: \"{term}\" Which one is it?",
    ),
    "spec_to_scope": (
        "What is the {scope} of {term}?",
        "Summarise the {scope} of {term} in its own words.",
        "What does {term} cover, according to its {scope}?",
    ),
}


def template_key(task: str, variant: str) -> str:
    """Key of ``TEMPLATES`` for a task and its variant (identification has one set per direction)."""
    return variant or task


def templates_sha256() -> str:
    """Hash of every template, recorded in the sidecar so a changed wording is visible."""
    return hashlib.sha256(json.dumps(TEMPLATES, sort_keys=True).encode()).hexdigest()


def choose_template(seed: int, task: str, variant: str, doc: str, term: str) -> int:
    """Index of the template a row gets: seeded by the seed and the row, not by build order."""
    count = len(TEMPLATES[template_key(task, variant)])
    return random.Random(f"{seed}\x00{task}\x00{variant}\x00{doc}\x00{term}").randrange(count)


def render_prompt(index: int, task: str, variant: str, *, doc: str, term: str, source: str) -> str:
    """The user prompt of template ``index``."""
    kind = "3GPP specification" if source == "3gpp" else "RFC"
    scope = "scope" if source == "3gpp" else "abstract"
    return TEMPLATES[template_key(task, variant)][index].format(doc=doc, term=term, kind=kind, scope=scope)
