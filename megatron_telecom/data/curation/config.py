"""The flags of `tools/curate_corpus.py`, as the typed config tree of a curation run.

Field names are the flag names with underscores (``--minhash-buckets`` -> ``minhash_buckets``),
so error messages derive the flag from the field and cannot drift from it; each field's docstring
is its ``--help`` line. Switches that are on by default are negated on the command line
(``--no-exact-dedup``, ``--no-minhash``, ``--no-quality-filters``); ``--sbatch-arg`` takes
``KEY=VALUE`` words (a repeated ``--sbatch-arg`` replaces the earlier one, as for every list flag:
give several directives after one flag).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from megatron_telecom.data.curation.archives import ArchiveLimits


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _sbatch_args(words: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` words -> {key: value} (a leading '--' on a key is dropped)."""
    out = {}
    for pair in words:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--sbatch-arg expects KEY=VALUE, got {pair!r}")
        out[key.lstrip("-")] = value
    return out


@dataclass(kw_only=True)
class ReaderConfig:
    """Where the raw documents are and how to read them."""

    input: list[str]
    """Folders (searched recursively) or single files of RFC .txt, 3GPP .docx/.zip/.txt/.md, PDF, JSONL."""
    glob: str | None = None
    """Only read files matching this pattern (relative to each input folder)."""
    text_key: str = "text"
    """JSONL key holding the text."""
    id_key: str = "id"
    """JSONL key holding the document id."""
    limit: int = -1
    """Read at most this many documents per task (-1: all); for trials."""
    max_archive_member_mb: int = 512
    """Zip safety: largest decompressed size of one archive member, in MiB."""
    max_compression_ratio: float = 200.0
    """Zip safety: largest decompressed/compressed size ratio of a member (zip bombs reach 1000s)."""

    def __post_init__(self) -> None:
        if not self.input:
            raise ValueError("no --input given: pass at least one folder or file to curate")
        missing = [p for p in self.input if "://" not in p and not Path(p).exists()]
        if missing:
            raise ValueError(f"--input path(s) not found: {missing}")

    @property
    def archive_limits(self) -> ArchiveLimits:
        """The zip safety bounds (the limits without a flag keep their defaults)."""
        return ArchiveLimits(max_member_bytes=self.max_archive_member_mb << 20,
                             max_compression_ratio=self.max_compression_ratio)


@dataclass(kw_only=True)
class FilterConfig:
    """Cleaning and filtering of documents."""

    keep_boilerplate: bool = False
    """Keep RFC front matter, Status of This Memo, Copyright, Contents, Authors' Addresses, and 3GPP covers, Contents, Foreword, change history."""
    telecom_threshold: float = 40.0
    """Minimum telecom relevance (lexicon weight per 1,000 words); 0 disables the filter."""
    lexicon: str | None = None
    """Weighted keyword lexicon file (default: the project's telecom_keywords.txt)."""
    quality_filters: bool = True
    """Apply datatrove's Gopher repetition and quality filters (--no-quality-filters skips them)."""
    min_doc_words: int = 50
    """Gopher quality: fewest words a document may have."""
    max_non_alpha_words_ratio: float = 0.6
    """Gopher quality: least fraction of words with a letter (lower than web text: specs have tables)."""
    dup_line_frac: float = 0.45
    """Gopher repetition: most fraction of duplicated lines (standards repeat more than web text)."""
    dup_para_frac: float = 0.45
    """Gopher repetition: most fraction of duplicated paragraphs."""
    clause_max_chars: int = 16000
    """Split 3GPP specifications into clause-level documents of at most about this many characters (0: keep whole)."""
    standards_min_doc_words: int = 20
    """3GPP clauses: fewest words a clause document may have (the other Gopher quality rules do not apply)."""
    standards_dup_line_frac: float = 0.9
    """3GPP clauses: most fraction of duplicated lines (n-gram repetition rules do not apply to standards)."""
    standards_dup_para_frac: float = 0.9
    """3GPP clauses: most fraction of duplicated paragraphs."""

    def __post_init__(self) -> None:
        if self.telecom_threshold < 0:
            raise ValueError(f"--telecom-threshold must be >= 0, got {self.telecom_threshold}")
        if self.clause_max_chars < 0 or self.standards_min_doc_words < 0:
            raise ValueError("--clause-max-chars and --standards-min-doc-words must be >= 0")
        for name in ("max_non_alpha_words_ratio", "dup_line_frac", "dup_para_frac",
                     "standards_dup_line_frac", "standards_dup_para_frac"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{_flag(name)} must be within [0, 1]")


@dataclass(kw_only=True)
class DedupConfig:
    """Exact and MinHash near-duplicate removal (datatrove's dedup stages)."""

    exact_dedup: bool = True
    """Remove documents whose normalised text hashes equal an earlier one's (--no-exact-dedup: keep them)."""
    minhash: bool = True
    """Remove near-duplicates with MinHash LSH (--no-minhash: keep them)."""
    minhash_n_grams: int = 5
    """MinHash shingle size in words."""
    minhash_buckets: int = 14
    """MinHash LSH bands."""
    minhash_hashes_per_bucket: int = 8
    """MinHash rows per band (similarity threshold ~ (1/buckets)^(1/hashes per bucket))."""
    minhash_seed: int = 1
    """MinHash permutation seed (must be the same for every task)."""

    def __post_init__(self) -> None:
        for name in ("minhash_n_grams", "minhash_buckets", "minhash_hashes_per_bucket"):
            if getattr(self, name) < 1:
                raise ValueError(f"{_flag(name)} must be >= 1")


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
    sbatch_arg: list[str] = field(default_factory=list)
    """Extra '#SBATCH --KEY=VALUE' directives as KEY=VALUE words, e.g. account=telecom."""
    sbatch_args: dict[str, str] = field(init=False)
    """The --sbatch-arg words as {key: value}, parsed once here."""

    def __post_init__(self) -> None:
        if self.executor not in ("local", "slurm"):
            raise ValueError(f"--executor must be 'local' or 'slurm', got {self.executor!r}")
        if self.tasks < 1 or self.workers == 0 or self.workers < -1:
            raise ValueError("--tasks must be >= 1 and --workers >= 1 (or -1 on slurm)")
        if self.executor == "slurm" and not self.partition:
            raise ValueError("--executor slurm needs --partition (the SLURM partition to run in)")
        self.sbatch_args = _sbatch_args(self.sbatch_arg)


@dataclass(kw_only=True)
class CurationConfig:
    """A whole curation run: sources -> clean -> filter -> dedup -> JSONL shards + report."""

    reader: ReaderConfig
    output_dir: str
    """Final JSONL shards (`text` + metadata) and the stats report go here."""
    work_dir: str | None = None
    """Intermediate files, logs and completion markers (default: <output_dir>/_work)."""
    removed_dir: str | None = None
    """If set, removed documents are written here, one folder per reason/stage."""
    compression: Literal["none", "gzip"] = "none"
    """Output shard compression ('none': .jsonl, 'gzip': .jsonl.gz)."""
    report_only: bool = False
    """Only (re)build the stats report of a finished run (after the SLURM jobs have ended)."""
    filters: FilterConfig = field(default_factory=FilterConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)

    def __post_init__(self) -> None:
        if self.compression not in ("none", "gzip"):
            raise ValueError(f"--compression must be 'none' or 'gzip', got {self.compression!r}")
        for name, folder in (("--output-dir", self.output_dir), ("--work-dir", self.work_dir),
                             ("--removed-dir", self.removed_dir)):
            for source in self.reader.input:
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
