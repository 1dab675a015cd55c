#!/bin/bash
# Checkpoint conversion under SLURM: one task on one node runs tools/convert_checkpoint.py.
#
#   sbatch slurm/convert.sh hf-to-mcore --hf-path /models/Meta-Llama-3-8B --save checkpoints/llama3-8b-mcore
#   sbatch slurm/convert.sh mcore-to-hf --load checkpoints/llama3-8b-telecom --save hf/llama3-8b-telecom
#   sbatch slurm/convert.sh verify --hf-path /models/Meta-Llama-3-8B --load checkpoints/llama3-8b-mcore
# Conversion needs no GPU and no TP x PP launch: one process streams tensor by tensor (peak memory
# about one copy of the model, ~32 GB for an 8B model in fp32: --mem below), and the torch_dist
# checkpoint it writes loads at any TP/PP. Chain the training after it:
#   cid=$(sbatch --parsable slurm/convert.sh hf-to-mcore ...)
#   sbatch --dependency=afterok:$cid slurm/pretrain.sh CONFIG.yaml --load checkpoints/llama3-8b-mcore --finetune
#SBATCH --job-name=convert
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=02:00:00
#SBATCH --output=convert-%j.out
set -euo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: sbatch slurm/convert.sh hf-to-mcore|mcore-to-hf|verify [flags]" >&2
    exit 2
fi
root="${CONVERT_ROOT:-${SLURM_SUBMIT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}}"
source "$root/slurm/env.sh"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}"
echo "job ${SLURM_JOB_ID:-?}: convert_checkpoint.py $*"
exec python tools/convert_checkpoint.py "$@"
