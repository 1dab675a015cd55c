#!/bin/bash
# Preprocessing under SLURM: one array task per input file, then a merge job (afterok).
#
# Run it with bash on the login node (it only submits; more sbatch options: $PREPROCESS_SBATCH_ARGS):
#   PREPROCESS_SBATCH_ARGS="--partition=cpu" bash slurm/preprocess.sh \
#       --input 'curated/telecom/*.jsonl' --output-prefix data/telecom \
#       --tokenizer-type HuggingFaceTokenizer --tokenizer-model /models/Meta-Llama-3-8B --append-eod
# The files the --input globs match now (in tools/preprocess_data.py's order) are listed in {output-prefix}_parts/inputs.txt; array task
# i runs tools/preprocess_data.py on line i+1 into {output-prefix}_parts/shard_NNNNN_*; the merge
# job (afterok: it runs only if every shard succeeded) runs tools/merge_datasets.py per JSON key,
# in input order, into {output-prefix}_{key}_document, the same dataset one process would write
# (checked by tests/test_pipeline_slurm.py). Every other flag goes to tools/preprocess_data.py;
# --workers defaults to the task's CPUs. Prints the array and merge job ids.
#SBATCH --job-name=preprocess
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=8
#SBATCH --mem-per-cpu=2G
#SBATCH --time=12:00:00
set -euo pipefail

inputs=()
prefix=""
rest=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --input) shift; while [[ $# -gt 0 && "$1" != --* ]]; do inputs+=("$1"); shift; done ;;
        --output-prefix) prefix="$2"; shift 2 ;;
        *) rest+=("$1"); shift ;;
    esac
done
if [[ ${#inputs[@]} -eq 0 || -z "$prefix" ]]; then
    echo "usage: bash slurm/preprocess.sh --input FILES|GLOBS --output-prefix PREFIX [preprocess_data.py flags]" >&2
    exit 2
fi
parts="${prefix}_parts"
workdir="$PWD"   # relative paths are the caller's; env.sh enters the checkout
root="${PREPROCESS_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
source "$root/slurm/env.sh"
cd "$workdir"

case "${PREPROCESS_STAGE:-submit}" in
submit)
    mkdir -p "$parts"
    python - "${inputs[@]}" > "$parts/inputs.txt" <<'PY'
import sys
from megatron_telecom.data.preprocess import resolve_inputs
try:
    print("\n".join(str(f.path.resolve()) for f in resolve_inputs(sys.argv[1:])))
except ValueError as exc:
    sys.exit(f"error: {exc}")
PY
    count=$(wc -l < "$parts/inputs.txt")
    # shellcheck disable=SC2206  # PREPROCESS_SBATCH_ARGS holds several options
    common=(--parsable --export=ALL --chdir="$workdir" ${PREPROCESS_SBATCH_ARGS:-})
    array=$(PREPROCESS_STAGE=shard PREPROCESS_ROOT="$root" sbatch "${common[@]}" \
        --array="0-$((count - 1))" --output="$parts/shard-%a.out" \
        "$root/slurm/preprocess.sh" --input "$parts/inputs.txt" --output-prefix "$prefix" "${rest[@]}")
    array="${array%%;*}"
    merge=$(PREPROCESS_STAGE=merge PREPROCESS_ROOT="$root" sbatch "${common[@]}" \
        --dependency="afterok:$array" --cpus-per-task=1 --output="$parts/merge.out" \
        "$root/slurm/preprocess.sh" --input "$parts/inputs.txt" --output-prefix "$prefix")
    echo "preprocess: $count input file(s): array job $array, merge job ${merge%%;*} -> ${prefix}_*_document"
    ;;
shard)
    file=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" "${inputs[0]}")
    shard=$(printf '%s/shard_%05d' "$parts" "$SLURM_ARRAY_TASK_ID")
    workers=(--workers "${SLURM_CPUS_PER_TASK:-1}")
    [[ " ${rest[*]} " == *" --workers "* ]] && workers=()
    exec python "$root/tools/preprocess_data.py" --input "$file" --output-prefix "$shard" \
        "${workers[@]}" "${rest[@]}"
    ;;
merge)
    count=$(wc -l < "${inputs[0]}")
    for idx in "$parts"/shard_00000_*.idx; do
        suffix=$(basename "$idx" .idx)
        suffix="${suffix#shard_00000_}"
        datasets=()
        for ((i = 0; i < count; i++)); do datasets+=("$(printf '%s/shard_%05d_%s' "$parts" "$i" "$suffix")"); done
        python "$root/tools/merge_datasets.py" --datasets "${datasets[@]}" --output-prefix "${prefix}_${suffix}"
    done
    ;;
*)
    echo "error: PREPROCESS_STAGE=${PREPROCESS_STAGE} (submit, shard or merge)" >&2
    exit 2
    ;;
esac
