# Shared by examples/quickstart.sh and examples/experiments/*.sh (sourced): stage lines with the
# elapsed time, quiet steps, and the evaluation of one model into one results file.
start=$SECONDS
step=0
stage() {  # stage TOTAL "what happens"
    step=$((step + 1))
    printf '\n== [%d/%d | %dm%02ds] %s\n' "$step" "$1" $(((SECONDS - start) / 60)) $(((SECONDS - start) % 60)) "$2"
}
quiet() {  # quiet LOG COMMAND...: the output goes to LOG; its tail is shown only if it fails
    local log="$1"
    shift
    "$@" >"$log" 2>&1 || { tail -n 40 "$log"; echo "failed: $*" >&2; exit 1; }
}
evaluate() {  # evaluate MODEL RESULTS.json LIMIT "MODES" HELDOUT.jsonl...: perplexity, TeleQnA, ORAN-Bench
    local model="$1" results="$2" limit="$3" modes="$4" mode
    shift 4
    python tools/evaluate.py perplexity --model "$model" --seq-length 512 --output "$results" --input "$@"
    [[ "$limit" -gt 0 ]] || return 0
    for mode in $modes; do  # the same small stratified sample size for both benchmarks
        if [[ -f "$teleqna" ]]; then
            python tools/evaluate.py teleqna --model "$model" --data "$teleqna" --limit "$limit" --mode "$mode" \
                --output "$results"
        fi
        if [[ -f "$oranbench/fin_E.json" ]]; then
            python tools/evaluate.py oranbench --model "$model" --data "$oranbench" --limit "$limit" \
                --mode "$mode" --output "$results"
        fi
    done
}
preprocess_splits() {  # preprocess_splits OUT NAME...: OUT/split/NAME/train.jsonl -> OUT/data/NAME_text_document
    local out="$1" name
    shift
    for name in "$@"; do
        python tools/preprocess_data.py --input "$out/split/$name/train.jsonl" --output-prefix "$out/data/$name" \
            --tokenizer-type HuggingFaceTokenizer --tokenizer-model bundled:smollm2-135m --append-eod \
            --workers 2 | tail -n 1
    done
}
pretrain() {  # pretrain LOG FLAGS...: 2 CPU processes; prints the iteration and validation lines
    local log="$1"
    shift
    if ! OMP_NUM_THREADS=1 python -m torch.distributed.run --nproc_per_node 2 -m megatron_telecom.pretrain "$@" \
        2>&1 | tee "$log" | grep -E "iteration +[0-9]+/|validation loss|saved checkpoint|reference log-probs"; then
        tail -n 40 "$log"
        exit 1
    fi
}
teleqna="$root/../shared/data/teleqna/TeleQnA.zip"
oranbench="$root/../shared/data/oranbench"
export PYTHONWARNINGS=ignore TOKENIZERS_PARALLELISM=false
