#!/bin/bash
# Corpus curation under SLURM (see docs/curation.md).
#
# One node, all its CPUs (the job runs datatrove's local executor):
#   sbatch --partition=cpu --cpus-per-task=32 slurm/curate.sh \
#       --input /data/raw/3gpp /data/raw/rfc --output-dir /data/curated/telecom
#
# Many nodes: set CURATE_EXECUTOR=slurm; this job then only submits one datatrove job array
# per stage (chained with afterok dependencies) and exits:
#   CURATE_EXECUTOR=slurm CURATE_PARTITION=cpu sbatch slurm/curate.sh \
#       --input /data/raw --output-dir /data/curated/telecom --tasks 256 --workers 64
# When those jobs have finished, rerun with --report-only (any node) for the stats report.
# Rerunning the same command resumes: finished tasks are skipped.
#SBATCH --job-name=curate
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=8
#SBATCH --mem-per-cpu=2G
#SBATCH --time=24:00:00
#SBATCH --output=curate-%j.out
set -euo pipefail

root="${CURATE_ROOT:-${SLURM_SUBMIT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}}"
source "$root/slurm/env.sh"

executor="${CURATE_EXECUTOR:-local}"
cpus="${SLURM_CPUS_PER_TASK:-$(nproc)}"
if [[ "$executor" == "local" ]]; then
    exec python tools/curate_corpus.py --executor local --tasks "$cpus" --workers "$cpus" "$@"
else
    exec python tools/curate_corpus.py --executor slurm \
        --partition "${CURATE_PARTITION:?set CURATE_PARTITION to the SLURM partition for the tasks}" "$@"
fi
