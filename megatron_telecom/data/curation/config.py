"""Typed configuration of a curation run; `tools/curate_corpus.py` fills it from flags."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from megatron_telecom.data.curation.archives import ArchiveLimits


@dataclass(kw_only=True)
class ReaderConfig:
    """Where the raw documents are and how to read them."""

    inputs: list[str]
    """Folders (searched recursively) or single files of RFC .txt, 3GPP .docx/.zip, PDF, JSONL."""
    glob_pattern: str | None = None
    """Only read files matching this pattern (relative to each input folder)."""
    text_key: str = "text"
    """JSONL key holding the text."""
    id_key: str = "id"
    """JSONL key holding the document id."""
    limit: int = -1
    """Read at most this many documents per task (-1: all); for trials."""
    archive_limits: ArchiveLimits = field(default_factory=ArchiveLimits)
    """Zip safety bounds (member size, total size, compression ratio, member count)."""

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ValueError("no --input given: pass at least one folder or file to curate")
        missing = [p for p in self.inputs if "://" not in p and not Path(p).exists()]
        if missing:
            raise ValueError(f"--input path(s) not found: {missing}")


@dataclass(kw_only=True)
class FilterConfig:
    """Cleaning and filtering of documents."""

    remove_boilerplate: bool = True
    """Drop RFC front matter, Status of This Memo, Copyright, Contents, Authors' Addresses."""
    telecom_threshold: float = 40.0
    """Minimum telecom relevance (lexicon weight per 1,000 words); 0 disables the filter."""
    lexicon_path: str | None = None
    """Keyword lexicon file (default: the project's telecom_keywords.txt)."""
    quality_filters: bool = True
    """Apply datatrove's Gopher repetition and quality filters."""
    min_doc_words: int = 50
    """Gopher quality: fewest words a document may have."""
    max_non_alpha_words_ratio: float = 0.6
    """Gopher quality: least fraction of words with a letter (lower than web text: specs have tables)."""
    dup_line_frac: float = 0.45
    """Gopher repetition: most fraction of duplicated lines (standards repeat more than web text)."""
    dup_para_frac: float = 0.45
    """Gopher repetition: most fraction of duplicated paragraphs."""

    def __post_init__(self) -> None:
        if self.telecom_threshold < 0:
            raise ValueError(f"--telecom-threshold must be >= 0, got {self.telecom_threshold}")
        for name in ("max_non_alpha_words_ratio", "dup_line_frac", "dup_para_frac"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"--{name.replace('_', '-')} must be within [0, 1]")


@dataclass(kw_only=True)
class DedupConfig:
    """Exact and MinHash near-duplicate removal (datatrove's dedup stages)."""

    exact: bool = True
    """Remove documents whose normalised text hashes equal an earlier one's."""
    minhash: bool = True
    """Remove near-duplicates with MinHash LSH."""
    n_grams: int = 5
    """MinHash shingle size in words."""
    num_buckets: int = 14
    """MinHash LSH bands."""
    hashes_per_bucket: int = 8
    """MinHash rows per band (similarity threshold ~ (1/num_buckets)^(1/hashes_per_bucket))."""
    seed: int = 1
    """MinHash permutation seed (must be the same for every task)."""

    def __post_init__(self) -> None:
        for name in ("n_grams", "num_buckets", "hashes_per_bucket"):
            if getattr(self, name) < 1:
                raise ValueError(f"--minhash-{name.replace('_', '-')} must be >= 1")


@dataclass(kw_only=True)
class ExecutorConfig:
    """Where the pipeline runs: this machine (local) or a SLURM cluster."""

    executor: Literal["local", "slurm"] = "local"
    """'local': processes on this machine; 'slurm': sbatch job arrays, one per stage."""
    tasks: int = 1
    """Shards the input files are split into (one task per shard)."""
    workers: int = 1
    """Tasks running at once (local: processes; slurm: array concurrency, -1 = no cap)."""
    partition: str | None = None
    """SLURM partition (required with --executor slurm)."""
    time: str = "04:00:00"
    """SLURM time limit per task."""
    cpus_per_task: int = 1
    """SLURM CPUs per task."""
    mem_per_cpu_gb: int = 2
    """SLURM memory per CPU in GB."""
    qos: str = ""
    """SLURM QOS ('' leaves it to the cluster default)."""
    job_name: str = "curate"
    """Prefix of the SLURM job names."""
    env_command: str | None = None
    """Shell line run before each SLURM task (e.g. 'source /path/venv/bin/activate')."""
    sbatch_args: dict[str, str] = field(default_factory=dict)
    """Extra '#SBATCH --key=value' directives (e.g. account)."""

    def __post_init__(self) -> None:
        if self.executor not in ("local", "slurm"):
            raise ValueError(f"--executor must be 'local' or 'slurm', got {self.executor!r}")
        if self.tasks < 1 or self.workers == 0 or self.workers < -1:
            raise ValueError("--tasks must be >= 1 and --workers >= 1 (or -1 on slurm)")
        if self.executor == "slurm" and not self.partition:
            raise ValueError("--executor slurm needs --partition (the SLURM partition to run in)")


@dataclass(kw_only=True)
class CurationConfig:
    """A whole curation run: sources -> clean -> filter -> dedup -> JSONL shards + report."""

    reader: ReaderConfig
    filters: FilterConfig = field(default_factory=FilterConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    output_dir: str
    """Final JSONL shards (`text` + metadata) and the stats report go here."""
    work_dir: str | None = None
    """Intermediate files, logs and completion markers (default: <output_dir>/_work)."""
    removed_dir: str | None = None
    """If set, removed documents are written here, one folder per reason/stage."""
    compression: Literal["none", "gzip"] = "none"
    """Output shard compression ('none': .jsonl, 'gzip': .jsonl.gz)."""

    def __post_init__(self) -> None:
        if self.compression not in ("none", "gzip"):
            raise ValueError(f"--compression must be 'none' or 'gzip', got {self.compression!r}")
        for name, folder in (("--output-dir", self.output_dir), ("--work-dir", self.work_dir),
                             ("--removed-dir", self.removed_dir)):
            for source in self.reader.inputs:
                if folder and Path(source).is_dir() and Path(folder).resolve().is_relative_to(
                    Path(source).resolve()
                ):
                    raise ValueError(
                        f"{name} {folder} is inside --input {source}: a rerun would read its own "
                        "output; choose a folder outside the inputs"
                    )

    @property
    def resolved_work_dir(self) -> str:
        return self.work_dir or str(Path(self.output_dir) / "_work")
