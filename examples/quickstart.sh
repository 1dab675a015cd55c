#!/usr/bin/env bash
# The CPU quickstart: stage-1 continual pretraining of the real base model SmolLM2-135M on telecom
# text with general replay, on 2 CPU processes, and what it gained and forgot (base vs trained).
# Everything lands in runs/quickstart/. Smaller/larger runs: QUICKSTART_TRAIN_ITERS (default 10
# iterations of 2,048 tokens) and QUICKSTART_TELEQNA_LIMIT (default 40 stratified questions of TeleQnA
# and as many of ORAN-Bench-13K; 0 skips both).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/tools/setup_env.sh"
cd "$root"
out="runs/quickstart"   # examples/configs/smollm2_cpu.yaml and examples/recipes/quickstart_replay.yaml point here
iters="${QUICKSTART_TRAIN_ITERS:-10}"
limit="${QUICKSTART_TELEQNA_LIMIT:-40}"
source examples/common.sh

heldout=("$out/split/telecom/heldout.jsonl" "$out/split/general/heldout.jsonl")
rm -rf "$out"   # a fresh run: an old checkpoint in --save would be resumed, old results updated
mkdir -p "$out/logs" "$out/eval"

stage 11 "curate the sample telecom corpus: clean, telecom filter, dedup (datatrove)"
quiet "$out/logs/curate.log" python tools/curate_corpus.py --input examples/data --glob '*.jsonl' --output-dir "$out/curated"
tail -n 3 "$out/curated/curation_stats.txt" 2>/dev/null || true

stage 11 "general English corpus (Python's documentation topics, PSF-2.0) for replay and forgetting"
python tools/general_corpus.py --output "$out/general.jsonl"

stage 11 "hold out documents that training never sees (by document-id hash)"
python tools/split_heldout.py --input "$out/curated/*.jsonl" --id-key doc_id --heldout-fraction 0.1 \
    --output-dir "$out/split/telecom"
python tools/split_heldout.py --input "$out/general.jsonl" --heldout-fraction 0.05 \
    --output-dir "$out/split/general"

stage 11 "preprocess the training splits with SmolLM2's tokenizer -> Megatron indexed datasets"
preprocess_splits "$out" telecom general
python tools/data_recipe.py examples/recipes/quickstart_replay.yaml --train-tokens $((iters * 2048))

stage 11 "import the base model bundled:smollm2-135m into a megatron checkpoint"
python tools/convert_checkpoint.py hf-to-mcore --hf-path bundled:smollm2-135m --save "$out/smollm2-mcore"

stage 11 "evaluate the base model: held-out perplexity and bits per byte, TeleQnA and ORAN-Bench (--limit $limit)"
[[ -f "$teleqna" ]] || echo "(TeleQnA skipped: $teleqna not found; put ../shared beside the checkout)"
[[ -f "$oranbench/fin_E.json" ]] || echo "(ORAN-Bench skipped: $oranbench not found; put ../shared beside the checkout)"
evaluate bundled:smollm2-135m "$out/eval/base.json" "$limit" options "${heldout[@]}"

stage 11 "continual pretraining on 2 CPU processes: $iters iterations, telecom + 10% general replay"
pretrain "$out/logs/pretrain.log" --config examples/configs/smollm2_cpu.yaml --train-iters "$iters" \
    --lr-warmup-iters $((iters / 5)) --log-metrics-file "$out/smollm2-telecom/metrics.jsonl"

stage 11 "export the trained checkpoint to a Hugging Face model"
python tools/convert_checkpoint.py mcore-to-hf --load "$out/smollm2-telecom" --save "$out/smollm2-telecom-hf"

stage 11 "generate: a telecom prompt, base vs trained (greedy)"
prompt="In 5G, the Access and Mobility Management Function (AMF)"
for model in bundled:smollm2-135m "$out/smollm2-telecom-hf"; do
    echo "-- $model:"
    python tools/generate.py --model "$model" --max-new-tokens 40 "$prompt" 2>/dev/null
    echo
done

stage 11 "evaluate the trained model"
evaluate "$out/smollm2-telecom-hf" "$out/eval/trained.json" "$limit" options "${heldout[@]}"

stage 11 "report: base vs trained (table + PNG) and the loss curves (PNG)"
python tools/evaluate.py compare "$out/eval/base.json" "$out/eval/trained.json" --labels base trained \
    --output-dir "$out/report"
python tools/plot_loss_curves.py "$out/smollm2-telecom/metrics.jsonl" --output "$out/report/loss_curves.png" \
    --title "SmolLM2-135M continual pretraining (telecom + 10% general replay)"
printf '\nquickstart done in %dm%02ds: %s/report/ (comparison.txt, comparison.png, loss_curves.png)\n' \
    $(((SECONDS - start) / 60)) $(((SECONDS - start) % 60)) "$out"
