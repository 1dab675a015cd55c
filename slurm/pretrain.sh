#!/bin/bash
# Training under SLURM (continual pretraining, or SFT with --stage sft): one task per GPU,
# megatron_telecom.pretrain in each.
#
#   sbatch --nodes 4 slurm/pretrain.sh examples/configs/llama3_8b_telecom.yaml [--flag value ...]
#
# Flags after the config override its keys (Megatron-LM names), e.g. --train-iters 2000.
# SFT (stage 2) runs on the same trainer, so this script runs it too: add --stage sft and the
# prefix written by tools/preprocess_sft.py, and start from the CPT checkpoint (docs/sft.md):
#   sbatch --job-name=telecom-sft --output=sft-%j.out slurm/pretrain.sh CONFIG.yaml --stage sft \
#       --sft-data-path data/telecom_sft --load checkpoints/cpt --finetune --save checkpoints/sft \
#       --eval-interval 0 [--data-recipe none: clears a CPT config's pretraining data]
# Requeue works the same: a restart resumes from --save once it holds a checkpoint, never from
# the --load weights again.
# Multi-node: everything comes from the allocation, nothing to set by hand. Each task reads
# SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID / SLURM_NODEID and the step's node list; rank 0
# runs on the first node, which is the master (port: $MASTER_PORT, else derived from the job
# id). Every rank meets rank 0 there within $RENDEZVOUS_TIMEOUT seconds (default: the
# --distributed-timeout-minutes); a node whose tasks never join ends the job with an error that
# names it. Rank 0 logs which ranks run on which node ("rendezvous at ...: cn01: ranks 0-7; ...").
# Megatron's rank order puts TP innermost: TP <= tasks per node keeps TP inside a node.
# Time limits and preemption: the run carries on by itself, in the same job id.
# SLURM sends SIGUSR1 300 s before the time limit (--signal below) and SIGTERM on preemption;
# every task saves a checkpoint, then rank 0 runs `scontrol requeue` for this job (array jobs:
# their own task) and SLURM starts this script again, which resumes from the config's --save.
# SLURM holds a requeued job for cred_expire (slurm.conf AuthInfo, 120 s by default) first.
# Not requeued: a finished run (--train-iters), the --exit-duration-in-mins budget, a failure
# (NaN/Inf, exception, bad config: the job ends FAILED), a job cancelled with scancel, and a job
# already requeued --max-requeues times (default 5). Without scontrol on the compute nodes, or
# if SLURM refuses, the job ends COMPLETED and prints the command to resubmit.
# The log tells the story: one output file per job (--open-mode=append: each restart appends,
# starting with a "job N (restart R)" line), and <save>/run_history.jsonl records every start
# and stop (UTC time, iteration, reason, requeued or why not).
# Limits: the save after SIGUSR1 must fit in the 300 s of --signal=USR1@300 (raise it for large
# models / slow storage); after SIGTERM, SLURM waits KillWait (slurm.conf, often 30 s) and, for
# preemption, the partition's GraceTime before SIGKILL: ask the admins to set them above the
# time one checkpoint save takes, else a preempted job may lose the work since its last
# --save-interval checkpoint (the previous checkpoint always stays loadable). A job killed at
# its hard time limit (no SIGUSR1 margin) or by SIGKILL is not requeued by the run itself.
# On a CPU-only cluster, override the GPU lines:
#   sbatch --gpus-per-node=0 --ntasks-per-node=2 slurm/pretrain.sh examples/configs/tiny_cpu.yaml ...
#SBATCH --job-name=telecom-cpt
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=12
#SBATCH --mem=0
#SBATCH --time=24:00:00
#SBATCH --signal=USR1@300
#SBATCH --requeue
#SBATCH --output=pretrain-%j.out
#SBATCH --open-mode=append
set -euo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: sbatch slurm/pretrain.sh CONFIG.yaml [--flag value ...]" >&2
    exit 2
fi
config="$1"
shift

root="${PRETRAIN_ROOT:-${SLURM_SUBMIT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}}"
source "$root/slurm/env.sh"

export OMP_NUM_THREADS="${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}"
export CUDA_DEVICE_MAX_CONNECTIONS=1   # megatron-core: keeps TP/SP communication ordered
export TORCH_NCCL_ASYNC_ERROR_HANDLING=1
export PYTHONUNBUFFERED=1

# how to continue by hand if the run cannot requeue itself (printed by the trainer)
export PRETRAIN_RESUBMIT="sbatch [your sbatch options] slurm/pretrain.sh ${config}${*:+ $*}"
echo "job ${SLURM_JOB_ID:-?} (restart ${SLURM_RESTART_COUNT:-0}) $(date -u +%FT%TZ):" \
    "${SLURM_NNODES:-1} node(s) ${SLURM_JOB_NODELIST:-}, ${SLURM_NTASKS:-1} task(s)" \
    "(per node: ${SLURM_TASKS_PER_NODE:-1}), config $config"
# SLURM >= 22.05 no longer passes the job's --cpus-per-task on to srun: ask for it again
srun --kill-on-bad-exit=1 --cpus-per-task="${SLURM_CPUS_PER_TASK:-1}" \
    python -m megatron_telecom.pretrain --config "$config" "$@"
