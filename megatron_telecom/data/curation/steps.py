"""The project's own datatrove pipeline steps: cleaning, telecom relevance, and tallies.

They take and yield datatrove `Document`s, so they compose with datatrove's readers, filters
and writers in any pipeline.
"""

from __future__ import annotations

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers.disk_base import DiskWriter

from megatron_telecom.data.curation.lexicon import load_lexicon, relevance_score
from megatron_telecom.data.curation.rfc import clean_rfc
from megatron_telecom.data.curation.text import clean_text


class TelecomTextCleaner(PipelineStep):
    """RFC page-furniture (and optional boilerplate) removal, then Unicode/whitespace repair."""

    type = "🧹 - CLEAN"
    name = "📡 telecom text cleaner"

    def __init__(self, *, remove_boilerplate: bool = True):
        super().__init__()
        self.remove_boilerplate = remove_boilerplate

    def clean(self, document: Document) -> str:
        text = document.text
        if document.metadata.get("source") == "rfc":
            text = clean_rfc(text, remove_boilerplate=self.remove_boilerplate)
        return clean_text(text)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for document in data:
            with self.track_time():
                self.stat_update("total")
                document.text = self.clean(document)
            if not document.text.strip():
                self.stat_update("dropped", "dropped_empty_after_cleaning")
                continue
            self.stat_update("forwarded")
            self.update_doc_stats(document)
            yield document


class TelecomRelevanceFilter(BaseFilter):
    """Keeps documents whose weighted telecom-keyword density reaches `threshold`.

    The score (summed lexicon weight per 1,000 words) is stored in `telecom_score` metadata.
    """

    name = "📡 telecom relevance"

    def __init__(
        self,
        *,
        threshold: float = 40.0,
        lexicon_path: str | None = None,
        min_words: int = 200,
        exclusion_writer: DiskWriter | None = None,
    ):
        super().__init__(exclusion_writer)
        self.threshold = threshold
        self.lexicon_path = lexicon_path
        self.min_words = min_words

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        score = relevance_score(doc.text, load_lexicon(self.lexicon_path), self.min_words)
        doc.metadata["telecom_score"] = round(score, 2)
        return True if score >= self.threshold else (False, "telecom_low_relevance")


class CorpusTally(PipelineStep):
    """Pass-through step that counts documents and characters at one point of the pipeline."""

    type = "📊 - STATS"

    def __init__(self, label: str):
        self.label = label
        self.name = f"tally:{label}"  # before super().__init__, which names the stats after it
        super().__init__()

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for document in data:
            self.stat_update("documents")
            self.stat_update("characters", value=len(document.text))
            yield document
