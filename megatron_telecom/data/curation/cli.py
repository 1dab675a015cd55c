"""Command line of `tools/curate_corpus.py`: flags -> CurationConfig -> run and report."""

from __future__ import annotations

import argparse
import sys

from megatron_telecom.data.curation.archives import ArchiveLimits
from megatron_telecom.data.curation.config import (
    CurationConfig,
    DedupConfig,
    ExecutorConfig,
    FilterConfig,
    ReaderConfig,
)


def build_parser() -> argparse.ArgumentParser:
    """The curate_corpus flags, grouped as the config tree is (reader, filters, dedup, executor)."""
    p = argparse.ArgumentParser(
        description="Raw telecom documents (RFC .txt, 3GPP .docx/.zip, PDF, JSONL) -> clean, "
        "telecom-filtered, deduplicated JSONL shards for tools/preprocess_data.py."
    )
    io = p.add_argument_group("input/output")
    io.add_argument("--input", nargs="+", required=True, help="folders (recursive) or files")
    io.add_argument("--output-dir", required=True, help="final <rank>.jsonl shards + curation_stats.*")
    io.add_argument("--work-dir", help="intermediate files and logs (default: OUTPUT_DIR/_work)")
    io.add_argument("--removed-dir", help="also write removed documents here, one folder per reason")
    io.add_argument("--glob", dest="glob_pattern", help="only files matching this pattern")
    io.add_argument("--text-key", default="text", help="JSONL key of the text (default: text)")
    io.add_argument("--id-key", default="id", help="JSONL key of the document id (default: id)")
    io.add_argument("--limit", type=int, default=-1, help="documents per task, for trials")
    io.add_argument("--compression", choices=["none", "gzip"], default="none")
    io.add_argument("--max-archive-member-mb", type=int, default=512)
    io.add_argument("--max-compression-ratio", type=float, default=200.0)
    io.add_argument("--report-only", action="store_true",
                    help="only (re)build the stats report of a finished run (after SLURM jobs)")
    flt = p.add_argument_group("cleaning and filtering")
    flt.add_argument("--keep-boilerplate", action="store_true",
                     help="keep RFC Status of This Memo, Copyright, Contents, Authors' Addresses")
    flt.add_argument("--telecom-threshold", type=float, default=40.0,
                     help="min lexicon weight per 1,000 words (0: keep all)")
    flt.add_argument("--lexicon", dest="lexicon_path", help="custom weighted keyword file")
    flt.add_argument("--no-quality-filters", action="store_true",
                     help="skip datatrove's Gopher repetition/quality filters")
    flt.add_argument("--min-doc-words", type=int, default=50)
    flt.add_argument("--max-non-alpha-words-ratio", type=float, default=0.6)
    flt.add_argument("--dup-line-frac", type=float, default=0.45)
    flt.add_argument("--dup-para-frac", type=float, default=0.45)
    dd = p.add_argument_group("deduplication")
    dd.add_argument("--no-exact-dedup", action="store_true")
    dd.add_argument("--no-minhash", action="store_true")
    dd.add_argument("--minhash-n-grams", type=int, default=5)
    dd.add_argument("--minhash-buckets", type=int, default=14)
    dd.add_argument("--minhash-hashes-per-bucket", type=int, default=8)
    dd.add_argument("--minhash-seed", type=int, default=1)
    ex = p.add_argument_group("execution")
    ex.add_argument("--executor", choices=["local", "slurm"], default="local")
    ex.add_argument("--tasks", type=int, default=1, help="input shards (one task each)")
    ex.add_argument("--workers", type=int, default=1, help="tasks at once (slurm: -1 = no cap)")
    ex.add_argument("--partition", help="SLURM partition")
    ex.add_argument("--time", default="04:00:00", help="SLURM time limit per task")
    ex.add_argument("--cpus-per-task", type=int, default=1)
    ex.add_argument("--mem-per-cpu-gb", type=int, default=2)
    ex.add_argument("--qos", default="")
    ex.add_argument("--job-name", default="curate")
    ex.add_argument("--env-command", help="shell line run first in each SLURM task")
    ex.add_argument("--sbatch-arg", action="append", default=[], metavar="KEY=VALUE",
                    help="extra #SBATCH directive, e.g. account=telecom (repeatable)")
    return p


def _sbatch_args(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--sbatch-arg expects KEY=VALUE, got {pair!r}")
        out[key.lstrip("-")] = value
    return out


def config_from_args(args: argparse.Namespace) -> CurationConfig:
    """Fill the typed config tree from parsed flags (validation happens in the dataclasses)."""
    limits = ArchiveLimits(max_member_bytes=args.max_archive_member_mb << 20,
                           max_compression_ratio=args.max_compression_ratio)
    return CurationConfig(
        reader=ReaderConfig(inputs=args.input, glob_pattern=args.glob_pattern,
                            text_key=args.text_key, id_key=args.id_key, limit=args.limit,
                            archive_limits=limits),
        filters=FilterConfig(
            remove_boilerplate=not args.keep_boilerplate,
            telecom_threshold=args.telecom_threshold, lexicon_path=args.lexicon_path,
            quality_filters=not args.no_quality_filters, min_doc_words=args.min_doc_words,
            max_non_alpha_words_ratio=args.max_non_alpha_words_ratio,
            dup_line_frac=args.dup_line_frac, dup_para_frac=args.dup_para_frac),
        dedup=DedupConfig(exact=not args.no_exact_dedup, minhash=not args.no_minhash,
                          n_grams=args.minhash_n_grams, num_buckets=args.minhash_buckets,
                          hashes_per_bucket=args.minhash_hashes_per_bucket, seed=args.minhash_seed),
        executor=ExecutorConfig(
            executor=args.executor, tasks=args.tasks, workers=args.workers,
            partition=args.partition, time=args.time, cpus_per_task=args.cpus_per_task,
            mem_per_cpu_gb=args.mem_per_cpu_gb, qos=args.qos, job_name=args.job_name,
            env_command=args.env_command, sbatch_args=_sbatch_args(args.sbatch_arg)),
        output_dir=args.output_dir, work_dir=args.work_dir, removed_dir=args.removed_dir,
        compression=args.compression,
    )


def main(argv: list[str] | None = None) -> int:
    """Run (or, with --report-only, only report on) a curation; bad flags exit with status 2."""
    from megatron_telecom.data.curation.pipeline import run_curation, write_curation_report
    from megatron_telecom.data.curation.report import format_report

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
        report = write_curation_report(config) if args.report_only else run_curation(config)
    except ValueError as err:
        parser.exit(2, f"curate_corpus: error: {err}\n")
    if report is None:
        print(f"SLURM jobs submitted; logs under {config.resolved_work_dir}/logs. When they have "
              "finished, rerun the same command with --report-only for the stats report.")
    else:
        sys.stdout.write(format_report(report))
        print(f"shards and curation_stats.json/.txt written to {config.output_dir}")
    return 0
