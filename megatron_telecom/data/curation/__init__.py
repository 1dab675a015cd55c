"""Telecom corpus curation on datatrove: sources -> clean -> filter -> dedup -> JSONL shards."""

from megatron_telecom.data.curation.config import (
    CurationConfig,
    DedupConfig,
    ExecutorConfig,
    FilterConfig,
    ReaderConfig,
)

__all__ = ["CurationConfig", "DedupConfig", "ExecutorConfig", "FilterConfig", "ReaderConfig"]
