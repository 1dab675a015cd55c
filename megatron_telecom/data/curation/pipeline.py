"""The curation pipeline as datatrove stages, and the executors (local or SLURM) that run them.

Stages, each an executor with its own logging folder and completion markers (so a rerun skips
finished tasks): filter (read, clean, split 3GPP specs into clauses, relevance and quality filters
chosen per source type) -> exact signatures -> exact find -> MinHash signatures -> MinHash
buckets -> MinHash cluster -> write. Dedup stages read the filtered shards back with the same
task count, so datatrove's per-rank document indices line up between signature and filter.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from datatrove.data import Document
from datatrove.executor import LocalPipelineExecutor, SlurmPipelineExecutor
from datatrove.executor.base import PipelineExecutor
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup import MinhashDedupCluster, MinhashDedupFilter, MinhashDedupSignature
from datatrove.pipeline.dedup.exact_dedup import (
    ExactDedupConfig,
    ExactDedupFilter,
    ExactDedupSignature,
    ExactFindDedups,
)
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupBuckets
from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter
from datatrove.utils.hashing import HashConfig

from megatron_telecom.data.curation.config import CurationConfig
from megatron_telecom.data.curation.readers import TelecomDocumentReader
from megatron_telecom.data.curation.report import build_report, write_report
from megatron_telecom.data.curation.steps import (
    THREEGPP,
    ClauseSplitter,
    CorpusTally,
    NearDedupExempt,
    SourceRoutedFilter,
    TelecomRelevanceFilter,
    TelecomTextCleaner,
)
from megatron_telecom.data.curation.text import OfflineWordTokenizer

# Workers inherit the imported modules instead of re-importing datatrove per stage (2x faster
# on small inputs); spawn where fork is unavailable or unsafe.
START_METHOD = "fork" if sys.platform == "linux" else "spawn"
# sha1 needs no extra package (datatrove's default, xxhash, is an optional dependency).
HASH_CONFIG = HashConfig(precision=64, hash_fc="sha1")


def normalized_text(document: Document) -> str:
    """What exact dedup hashes: lower-cased text with whitespace runs collapsed."""
    return " ".join(document.text.lower().split())


@dataclass(kw_only=True)
class Stage:
    """One datatrove executor's worth of work."""

    name: str
    """Stage name: its logging folder under <work_dir>/logs and its SLURM job-name suffix."""
    pipeline: list[PipelineStep]
    """The datatrove steps every task runs, in order."""
    tasks: int
    """Tasks (datatrove ranks) the stage is split into."""


def _input_readers(config: CurationConfig) -> list[PipelineStep]:
    readers = []
    for path in config.reader.input:
        folder, pattern = path, config.reader.glob
        if Path(path).is_file():
            folder, pattern = str(Path(path).parent), Path(path).name
        readers.append(
            TelecomDocumentReader(
                folder,
                glob_pattern=pattern,
                text_key=config.reader.text_key,
                id_key=config.reader.id_key,
                archive_limits=config.reader.archive_limits,
                limit=config.reader.limit,
            )
        )
    return readers


def _removed_writer(config: CurationConfig, reason: str) -> JsonlWriter | None:
    if not config.removed_dir:
        return None
    return JsonlWriter(f"{config.removed_dir}/{reason}", compression=None, expand_metadata=True)


def _quality_filters(config: CurationConfig) -> list[PipelineStep]:
    """datatrove's Gopher filters, with thresholds per source type: web-text rules for every
    source but 3GPP, whose clauses only face a length floor and extreme line/paragraph repetition."""
    filters, tokenizer = config.filters, OfflineWordTokenizer()
    standards_quality = GopherQualityFilter(
        min_doc_words=filters.standards_min_doc_words, max_doc_words=None, min_avg_word_length=None,
        max_avg_word_length=None, max_symbol_word_ratio=None, max_bullet_lines_ratio=None,
        max_ellipsis_lines_ratio=None, max_non_alpha_words_ratio=None, min_stop_words=None,
        language=tokenizer,
    )
    standards_repetition = GopherRepetitionFilter(
        dup_line_frac=filters.standards_dup_line_frac, dup_para_frac=filters.standards_dup_para_frac,
        dup_line_char_frac=filters.standards_dup_line_frac,
        dup_para_char_frac=filters.standards_dup_para_frac,
        top_n_grams=(), dup_n_grams=(), language=tokenizer,
    )
    return [
        SourceRoutedFilter(
            name="🥇 Gopher quality (per source)",
            default=GopherQualityFilter(
                min_doc_words=filters.min_doc_words,
                max_doc_words=None,  # standards are long; length is not a quality signal here
                max_non_alpha_words_ratio=filters.max_non_alpha_words_ratio,
                language=tokenizer,
            ),
            by_source={THREEGPP: standards_quality},
            exclusion_writer=_removed_writer(config, "gopher_quality"),
        ),
        CorpusTally("gopher_quality"),
        SourceRoutedFilter(
            name="🔁 Gopher repetition (per source)",
            default=GopherRepetitionFilter(
                dup_line_frac=filters.dup_line_frac,
                dup_para_frac=filters.dup_para_frac,
                dup_line_char_frac=max(0.0, filters.dup_line_frac - 0.1),
                dup_para_char_frac=max(0.0, filters.dup_para_frac - 0.1),
                dup_n_grams=((5, 0.30), (6, 0.28), (7, 0.26), (8, 0.24), (9, 0.22), (10, 0.20)),
                language=tokenizer,
            ),
            by_source={THREEGPP: standards_repetition},
            exclusion_writer=_removed_writer(config, "gopher_repetition"),
        ),
        CorpusTally("gopher_repetition"),
    ]


def filter_stage(config: CurationConfig, work: str) -> Stage:
    """Read, clean, split specs into clauses, filter for telecom relevance and quality; write
    the survivors to work/filtered."""
    filters = config.filters
    steps: list[PipelineStep] = [*_input_readers(config), CorpusTally("read")]
    steps += [TelecomTextCleaner(remove_boilerplate=not filters.keep_boilerplate), CorpusTally("clean")]
    if filters.clause_max_chars > 0:
        steps += [ClauseSplitter(max_chars=filters.clause_max_chars), CorpusTally("split")]
    if filters.telecom_threshold > 0:
        steps += [
            TelecomRelevanceFilter(
                threshold=filters.telecom_threshold,
                lexicon_path=filters.lexicon,
                exempt_sources=(THREEGPP,),  # a 3GPP clause is telecom by definition
                exclusion_writer=_removed_writer(config, "telecom_relevance"),
            ),
            CorpusTally("telecom_relevance"),
        ]
    if filters.quality_filters:
        steps += _quality_filters(config)
    steps.append(JsonlWriter(f"{work}/filtered", compression=None))
    return Stage(name="filter", pipeline=steps, tasks=config.executor.tasks)


def _filtered_reader(work: str) -> JsonlReader:
    """Reads stage 1's survivors back; every later stage starts from the same shards."""
    return JsonlReader(f"{work}/filtered")


def _exact_config() -> ExactDedupConfig:
    """One definition for the signature and filter steps, which must hash the same way."""
    return ExactDedupConfig(content_getter=normalized_text, hash_config=HASH_CONFIG)


def _exact_filter(config: CurationConfig, work: str, *, with_removed: bool) -> list[PipelineStep]:
    if not config.dedup.exact_dedup:
        return []
    writer = _removed_writer(config, "exact_duplicate") if with_removed else None
    return [ExactDedupFilter(f"{work}/exact/dups", _exact_config(), exclusion_writer=writer)]


def _exact_stages(config: CurationConfig, work: str) -> list[Stage]:
    signatures = ExactDedupSignature(f"{work}/exact/sigs", config=_exact_config())
    find = ExactFindDedups(f"{work}/exact/sigs", f"{work}/exact/dups", _exact_config())
    return [
        Stage(name="exact_signatures", pipeline=[_filtered_reader(work), signatures],
              tasks=config.executor.tasks),
        Stage(name="exact_find", pipeline=[find], tasks=1),
    ]


def _minhash_stages(config: CurationConfig, work: str) -> list[Stage]:
    dedup, minhash = config.dedup, f"{work}/minhash"
    minhash_config = MinhashConfig(
        n_grams=dedup.minhash_n_grams,
        num_buckets=dedup.minhash_buckets,
        hashes_per_bucket=dedup.minhash_hashes_per_bucket,
        seed=dedup.minhash_seed,
        hash_config=HASH_CONFIG,
    )
    signatures = MinhashDedupSignature(
        f"{minhash}/sigs", config=minhash_config, language=OfflineWordTokenizer()
    )
    buckets = MinhashDedupBuckets(f"{minhash}/sigs", f"{minhash}/buckets", config=minhash_config)
    cluster = MinhashDedupCluster(f"{minhash}/buckets", f"{minhash}/remove", config=minhash_config)
    return [
        Stage(
            name="minhash_signatures",
            pipeline=[
                _filtered_reader(work),
                *_exact_filter(config, work, with_removed=False),
                NearDedupExempt(),
                signatures,
            ],
            tasks=config.executor.tasks,
        ),
        Stage(name="minhash_buckets", pipeline=[buckets], tasks=dedup.minhash_buckets),
        Stage(name="minhash_cluster", pipeline=[cluster], tasks=1),
    ]


def dedup_stages(config: CurationConfig, work: str) -> list[Stage]:
    """datatrove's exact-dedup (2 stages) and MinHash (3 stages) stages, as enabled."""
    stages: list[Stage] = []
    if config.dedup.exact_dedup:
        stages += _exact_stages(config, work)
    if config.dedup.minhash:
        stages += _minhash_stages(config, work)
    return stages


def write_stage(config: CurationConfig, work: str) -> Stage:
    """Apply the dedup decisions to the filtered shards and write the final JSONL shards."""
    steps: list[PipelineStep] = [_filtered_reader(work), CorpusTally("filtered")]
    if config.dedup.exact_dedup:
        steps += [*_exact_filter(config, work, with_removed=True), CorpusTally("exact_dedup")]
    if config.dedup.minhash:
        steps += [
            NearDedupExempt(MinhashDedupFilter(
                f"{work}/minhash/remove",
                exclusion_writer=_removed_writer(config, "near_duplicate"),
            )),
            CorpusTally("near_dedup"),
        ]
    gzip = config.compression == "gzip"
    steps.append(
        JsonlWriter(
            config.output_dir,
            output_filename="${rank}.jsonl" + (".gz" if gzip else ""),
            compression="gzip" if gzip else None,
            expand_metadata=True,
        )
    )
    return Stage(name="write", pipeline=steps, tasks=config.executor.tasks)


def build_stages(config: CurationConfig) -> list[Stage]:
    """All stages of a run, in dependency order."""
    work = config.resolved_work_dir
    return [filter_stage(config, work), *dedup_stages(config, work), write_stage(config, work)]


def _env_command(config: CurationConfig) -> str | None:
    if config.executor.env_command:
        return config.executor.env_command
    if sys.prefix != sys.base_prefix:  # running from a virtualenv: activate it in the job too
        return f"source {sys.prefix}/bin/activate"
    return None


def build_executor(config: CurationConfig, stages: list[Stage] | None = None) -> PipelineExecutor:
    """Chain one executor per stage (each depends on the previous); run the last to run all."""
    stages = stages or build_stages(config)
    ex, logs = config.executor, f"{config.resolved_work_dir}/logs"
    executor: PipelineExecutor | None = None
    for stage in stages:
        if ex.executor == "local":
            executor = LocalPipelineExecutor(
                pipeline=stage.pipeline,
                tasks=stage.tasks,
                workers=min(ex.workers, stage.tasks),
                logging_dir=f"{logs}/{stage.name}",
                depends=executor,
                start_method=START_METHOD,
            )
        else:
            executor = SlurmPipelineExecutor(
                pipeline=stage.pipeline,
                tasks=stage.tasks,
                workers=ex.workers,
                time=ex.time,
                partition=ex.partition,
                cpus_per_task=ex.cpus_per_task,
                mem_per_cpu_gb=ex.mem_per_cpu_gb,
                qos=ex.qos,
                job_name=f"{ex.job_name}_{stage.name}",
                env_command=_env_command(config),
                sbatch_args=dict(ex.sbatch_args),
                logging_dir=f"{logs}/{stage.name}",
                slurm_logs_folder=f"{logs}/{stage.name}/slurm_logs",
                depends=executor,
                mail_type="NONE",
            )
    assert executor is not None
    return executor


def stage_names(config: CurationConfig) -> list[str]:
    """Stage names in order (their logging folders hold the stats the report reads)."""
    return [stage.name for stage in build_stages(config)]


def run_curation(config: CurationConfig) -> dict | None:
    """Run (or resume) every stage; local runs return and write the report, SLURM runs submit."""
    build_executor(config).run()
    if config.executor.executor == "slurm":
        return None
    return write_curation_report(config)


def write_curation_report(config: CurationConfig) -> dict:
    """Build the report from the stages' stats and write it beside the output shards."""
    report = build_report(f"{config.resolved_work_dir}/logs", stage_names(config))
    write_report(report, config.output_dir)
    return report
