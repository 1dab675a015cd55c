#!/bin/bash
# Evaluation under SLURM (tools/evaluate.py). Run it with bash on the login node: it only submits.
#
#   bash slurm/evaluate.sh perplexity --model hf/llama3-8b-telecom --input split/rfc/heldout.jsonl --output eval/cpt.json
#   EVALUATE_SHARDS=8 bash slurm/evaluate.sh teleqna --model hf/llama3-8b-telecom --limit 1000 --output eval/cpt.json
#
# One job runs the command, on one GPU. With EVALUATE_SHARDS=N (teleqna), a job array of N tasks
# scores every N-th question of the sample each (--num-shards N --shard-index i, one model replica
# per task) into {output}.shards/shard-i.json, and a merge job (afterok: only if every shard
# succeeded) runs `tools/evaluate.py merge` into --output: the result one process would give.
# --model is anything tools/evaluate.py takes: an HF folder, bundled:smollm2-135m, or a megatron
# checkpoint folder of any TP/PP. More sbatch options (partition, account, a dependency on the
# training job such as --dependency=afterok:JOBID): $EVALUATE_SBATCH_ARGS. Prints the job ids.
#SBATCH --job-name=evaluate
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --gpus-per-node=1
#SBATCH --cpus-per-task=8
#SBATCH --time=04:00:00
set -euo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: [EVALUATE_SHARDS=N] bash slurm/evaluate.sh perplexity|teleqna [tools/evaluate.py flags] --output R.json" >&2
    exit 2
fi
command="$1"
shift
output=""
rest=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --output) output="$2"; shift 2 ;;
        *) rest+=("$1"); shift ;;
    esac
done
if [[ -z "$output" ]]; then
    echo "error: --output R.json is required" >&2
    exit 2
fi
shards="${EVALUATE_SHARDS:-1}"
shard_dir="${output%.json}.shards"
workdir="$PWD"   # relative paths are the caller's; env.sh enters the checkout
root="${EVALUATE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
source "$root/slurm/env.sh"
cd "$workdir"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}"

case "${EVALUATE_STAGE:-submit}" in
submit)
    if [[ "$shards" -gt 1 && "$command" != teleqna ]]; then
        echo "error: EVALUATE_SHARDS applies to teleqna (perplexity runs as one job)" >&2
        exit 2
    fi
    # shellcheck disable=SC2206  # EVALUATE_SBATCH_ARGS holds several options
    common=(--parsable --export=ALL --chdir="$workdir" ${EVALUATE_SBATCH_ARGS:-})
    mkdir -p "$(dirname "$output")"
    if [[ "$shards" -le 1 ]]; then
        job=$(EVALUATE_STAGE=run EVALUATE_ROOT="$root" sbatch "${common[@]}" --output="${output%.json}.out" \
            "$root/slurm/evaluate.sh" "$command" "${rest[@]}" --output "$output")
        echo "evaluate $command: job ${job%%;*} -> $output"
        exit 0
    fi
    mkdir -p "$shard_dir"
    array=$(EVALUATE_STAGE=run EVALUATE_ROOT="$root" sbatch "${common[@]}" --array="0-$((shards - 1))" \
        --output="$shard_dir/shard-%a.out" "$root/slurm/evaluate.sh" "$command" "${rest[@]}" --output "$output")
    array="${array%%;*}"
    # the merge needs no GPU and little CPU
    merge=$(EVALUATE_STAGE=merge EVALUATE_ROOT="$root" sbatch "${common[@]}" --dependency="afterok:$array" \
        --gpus-per-node=0 --cpus-per-task=1 --output="$shard_dir/merge.out" \
        "$root/slurm/evaluate.sh" "$command" --output "$output")
    echo "evaluate $command: $shards shards: array job $array, merge job ${merge%%;*} -> $output"
    ;;
run)
    if [[ -n "${SLURM_ARRAY_TASK_ID:-}" ]]; then
        echo "evaluate $command: shard $SLURM_ARRAY_TASK_ID of $shards on ${SLURMD_NODENAME:-$(hostname)}"
        exec python "$root/tools/evaluate.py" "$command" "${rest[@]}" \
            --num-shards "$shards" --shard-index "$SLURM_ARRAY_TASK_ID" \
            --output "$shard_dir/shard-$SLURM_ARRAY_TASK_ID.json"
    fi
    exec python "$root/tools/evaluate.py" "$command" "${rest[@]}" --output "$output"
    ;;
merge)
    files=()
    for ((i = 0; i < shards; i++)); do files+=("$shard_dir/shard-$i.json"); done
    exec python "$root/tools/evaluate.py" merge "${files[@]}" --output "$output"
    ;;
*)
    echo "error: EVALUATE_STAGE=${EVALUATE_STAGE} (submit, run or merge)" >&2
    exit 2
    ;;
esac
