"""The project's own datatrove pipeline steps: cleaning, clause splitting, telecom relevance,
filters chosen by source type, benchmark decontamination, and tallies.

They take and yield datatrove `Document`s, so they compose with datatrove's readers, filters
and writers in any pipeline.
"""

from __future__ import annotations

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter, get_filter_result
from datatrove.pipeline.writers.disk_base import DiskWriter

from megatron_telecom.data.curation.clauses import split_clauses
from megatron_telecom.data.curation.lexicon import load_lexicon, relevance_score
from megatron_telecom.data.curation.rfc import clean_rfc
from megatron_telecom.data.curation.text import clean_text, normalize_whitespace, repair_unicode
from megatron_telecom.data.curation.threegpp_text import clean_3gpp_markdown

THREEGPP = "3gpp"


def source_of(document: Document) -> str:
    """The document's source type ('rfc', '3gpp', 'text', 'pdf', 'jsonl', ...)."""
    return str(document.metadata.get("source") or "unknown")


def count_removal(step: PipelineStep, document: Document, reason: str) -> None:
    """Record a dropped document and its characters under its source type and reason."""
    source = source_of(document)
    step.stat_update(f"removed_docs:{source}:{reason}")
    step.stat_update(f"removed_chars:{source}:{reason}", value=len(document.text))


class TelecomTextCleaner(PipelineStep):
    """RFC page furniture, RFC and 3GPP boilerplate (optional), then Unicode/whitespace repair.

    For 3GPP specifications the characters removed are counted per reason (cover, copyright,
    contents, foreword, change_history, ...) as `removed_chars:3gpp:<reason>` stats.
    """

    type = "🧹 - CLEAN"
    name = "📡 telecom text cleaner"

    def __init__(self, *, remove_boilerplate: bool = True):
        super().__init__()
        self.remove_boilerplate = remove_boilerplate

    def clean(self, document: Document) -> str:
        text = document.text
        source = source_of(document)
        if source == "rfc":
            text = clean_rfc(text, remove_boilerplate=self.remove_boilerplate)
        elif source == THREEGPP and self.remove_boilerplate:
            spec = clean_3gpp_markdown(repair_unicode(text))
            for reason, chars in spec.removed.items():
                self.stat_update(f"removed_chars:{source}:{reason}", value=chars)
            return normalize_whitespace(spec.text)
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
        exempt_sources: tuple[str, ...] = (),
        exclusion_writer: DiskWriter | None = None,
    ):
        super().__init__(exclusion_writer)
        self.threshold = threshold
        self.lexicon_path = lexicon_path
        self.min_words = min_words
        self.exempt_sources = exempt_sources

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        score = relevance_score(doc.text, load_lexicon(self.lexicon_path), self.min_words)
        doc.metadata["telecom_score"] = round(score, 2)
        if score >= self.threshold or source_of(doc) in self.exempt_sources:
            return True
        count_removal(self, doc, "telecom_low_relevance")
        return False, "telecom_low_relevance"


class BenchmarkDecontamination(BaseFilter):
    """Drops (or, with ``action="flag"``, marks under ``contamination`` metadata) documents that share
    an n-gram with a benchmark question (see data/decontamination.py); the index of the benchmarks'
    n-grams is built once per task, on its first batch, so the step pickles small."""

    name = "🧪 benchmark decontamination"

    def __init__(
        self,
        *,
        benchmarks: tuple[str, ...] = ("teleqna", "oranbench"),
        ngram: int = 13,
        action: str = "drop",
        batch_size: int = 256,
        exclusion_writer: DiskWriter | None = None,
    ):
        super().__init__(exclusion_writer, batch_size=batch_size)
        if action not in ("drop", "flag"):
            raise ValueError(f"action {action!r}: choose drop or flag")
        self.benchmarks, self.ngram, self.action = tuple(benchmarks), ngram, action
        self._decontaminator = None

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        return self.filter_batch([doc])[0]

    def filter_batch(self, batch: list[Document]) -> list[bool | tuple[bool, str]]:
        from megatron_telecom.data.decontamination import FLAG_KEY, Decontaminator

        if self._decontaminator is None:
            self._decontaminator = Decontaminator.from_specs(self.benchmarks, self.ngram)
        found = self._decontaminator.match([[doc.text] for doc in batch])
        results: list[bool | tuple[bool, str]] = []
        for i, doc in enumerate(batch):
            hits = found.get(i)
            if hits is None:
                results.append(True)
                continue
            for benchmark in hits.questions:
                self.stat_update(f"contaminated:{benchmark}")
            if self.action == "flag":
                doc.metadata[FLAG_KEY] = hits.record()
                results.append(True)
            else:
                count_removal(self, doc, "benchmark_overlap")
                results.append((False, "benchmark_overlap"))
        return results


class SourceRoutedFilter(BaseFilter):
    """Applies the filter configured for each document's source type (`None`: keep them all).

    Standards text repeats by design (message layouts, tables), so the thresholds that suit web
    text must not judge it; table and ASN.1 pieces of a spec (`clause_kind`) are kept as they are.
    """

    def __init__(
        self,
        *,
        name: str,
        default: BaseFilter | None,
        by_source: dict[str, BaseFilter | None] | None = None,
        exclusion_writer: DiskWriter | None = None,
    ):
        self.name = name
        super().__init__(exclusion_writer)
        self.default = default
        self.by_source = by_source or {}

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        chosen = self.by_source.get(source_of(doc), self.default)
        if chosen is None or doc.metadata.get("clause_kind") in ("table", "asn1"):
            return True
        result = chosen.filter(doc)
        keep, reason = get_filter_result(result)
        if not keep:
            count_removal(self, doc, reason or "unspecified")
        return result


def near_dedup_exempt(document: Document) -> bool:
    """What exact dedup judges and MinHash does not: table and ASN.1 pieces of a spec, and its
    first clause document (Scope, References: what the spec is), so near-dedup never takes a
    whole specification (the 'See TS 37.483' stubs, specs that fit in one document)."""
    metadata = document.metadata
    return metadata.get("clause_kind") in ("table", "asn1") or (
        source_of(document) == THREEGPP and metadata.get("clause_index") == 0)


class NearDedupExempt(PipelineStep):
    """Runs `step` on the documents near-dedup judges and passes the exempt ones around it;
    with `step=None` it leaves the exempt ones out (the signature stage must see the same
    documents, in the same order, as the filter that applies its decisions)."""

    type = "🫂 - DEDUP"
    name = "🪪 near-dedup exemptions (3GPP tables, ASN.1, first clause)"

    def __init__(self, step: PipelineStep | None = None):
        super().__init__()
        self.step = step
        if step is not None:  # its drops must reach the stage's stats (and the report)
            self.stats = step.stats

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        exempt: list[Document] = []

        def judged() -> DocumentsPipeline:
            for document in data:
                if near_dedup_exempt(document):
                    self.stat_update("exempt")
                    exempt.append(document)
                else:
                    yield document

        if self.step is None:
            yield from judged()
            return
        for document in self.step.run(judged(), rank, world_size):
            yield from exempt
            exempt.clear()
            yield document
        yield from exempt


class ClauseSplitter(PipelineStep):
    """Splits each long 3GPP specification into clause-level documents (see clauses.py).

    Each piece keeps the spec's metadata and adds `clause`, `clause_path`, `clause_end`,
    `clause_kind`, `clause_index` and `clause_count`; its id is `<spec id>#NNNN`.
    """

    type = "✂️ - SPLIT"
    name = "📑 3GPP clause splitter"

    def __init__(self, *, max_chars: int, sources: tuple[str, ...] = (THREEGPP,)):
        super().__init__()
        self.max_chars = max_chars
        self.sources = sources

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for document in data:
            if source_of(document) not in self.sources:
                yield document
                continue
            with self.track_time():
                clauses = split_clauses(document.text, self.max_chars)
            self.stat_update("clauses", value=len(clauses))
            for index, clause in enumerate(clauses):
                metadata = {**document.metadata, "clause": clause.clause,
                            "clause_path": clause.clause_path, "clause_end": clause.clause_end,
                            "clause_kind": clause.kind, "clause_index": index,
                            "clause_count": len(clauses)}
                doc_id = document.id if len(clauses) == 1 else f"{document.id}#{index:04d}"
                yield Document(text=clause.text, id=doc_id, metadata=metadata)


class CorpusTally(PipelineStep):
    """Pass-through step that counts documents and characters at one point of the pipeline,
    in all and per source type, and the original documents (specs) their clauses come from."""

    type = "📊 - STATS"

    def __init__(self, label: str):
        self.label = label
        self.name = f"tally:{label}"  # before super().__init__, which names the stats after it
        super().__init__()

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        originals: set[tuple[str, str, str]] = set()
        for document in data:
            source = source_of(document)
            self.stat_update("documents", f"documents:{source}")
            self.stat_update("characters", f"characters:{source}", value=len(document.text))
            original = (source, str(document.metadata.get("file_path", "")),
                        str(document.metadata.get("doc_id", document.id)))
            if original not in originals:  # clauses of one spec are read by one task
                originals.add(original)
                self.stat_update(f"originals:{source}")
            yield document
