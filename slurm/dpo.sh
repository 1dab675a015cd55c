#!/bin/bash
# DPO (stage 3) under SLURM: the reference log-probs, then training; one task per GPU in each.
#
#   sbatch slurm/dpo.sh CONFIG.yaml --dpo-data-path DATA --load SFT_CHECKPOINT --finetune \
#       --save DPO_CHECKPOINT [--flag value ...]
#
# Both steps run megatron_telecom.pretrain --stage dpo with the same config and flags:
# 1. --compute-reference-logprobs: --load's weights (the reference, usually the SFT result) at the
#    config's TP/PP compute every pair's log-probs once, written beside DATA with their
#    fingerprint (DATA_reference_logps.npy/.json). A fingerprint that is already there and
#    current (a requeued job, a rerun) is kept and nothing is recomputed.
# 2. training on the stored log-probs (no reference model in memory), with the time-limit signal,
#    checkpoint, requeue and resume of slurm/pretrain.sh (read its header): a requeued job runs
#    this script again, step 1 keeps the log-probs, step 2 resumes from --save.
# Each step runs slurm/pretrain.sh, so the job log shows its "job N (restart R)" line twice.
# On a CPU-only cluster, override the GPU lines:
#   sbatch --gpus-per-node=0 --ntasks-per-node=2 slurm/dpo.sh examples/configs/tiny_cpu.yaml ...
#SBATCH --job-name=telecom-dpo
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=12
#SBATCH --mem=0
#SBATCH --time=24:00:00
#SBATCH --signal=USR1@300
#SBATCH --requeue
#SBATCH --output=dpo-%j.out
#SBATCH --open-mode=append
set -euo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: sbatch slurm/dpo.sh CONFIG.yaml --dpo-data-path DATA --load REFERENCE --finetune --save OUT [...]" >&2
    exit 2
fi
config="$1"
shift

root="${PRETRAIN_ROOT:-${SLURM_SUBMIT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}}"
export PRETRAIN_ROOT="$root"
# each step is slurm/pretrain.sh's (environment, srun over the job's tasks, requeue hint)
bash "$root/slurm/pretrain.sh" "$config" --stage dpo "$@" --compute-reference-logprobs
exec bash "$root/slurm/pretrain.sh" "$config" --stage dpo "$@"
