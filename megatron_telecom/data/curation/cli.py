"""What `tools/curate_corpus.py` runs: a CurationConfig (its flags) -> run the stages, print the report."""

from __future__ import annotations

import sys

from megatron_telecom.data.curation.config import CurationConfig


def run(config: CurationConfig) -> int:
    """Run (or, with --report-only, only report on) a curation; returns the exit code."""
    from megatron_telecom.data.curation.pipeline import run_curation, write_curation_report
    from megatron_telecom.data.curation.report import format_report

    report = write_curation_report(config) if config.report_only else run_curation(config)
    if report is None:
        print(f"SLURM jobs submitted; logs under {config.resolved_work_dir}/logs. When they have "
              "finished, rerun the same command with --report-only for the stats report.")
    else:
        sys.stdout.write(format_report(report))
        print(f"shards and curation_stats.json/.txt written to {config.output_dir}")
    return 0
