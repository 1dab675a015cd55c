#!/usr/bin/env bash
# Experiment: does general replay keep what SmolLM2-135M knows while it learns telecom text?
# Continual pretraining on the 80 curated RFCs (../shared/data/rfc) with 0% and with 10% general
# replay, the same token budget for both; telecom (RFC) held-out perplexity, general held-out
# perplexity and TeleQnA (a fixed --teleqna-limit sample, both scoring modes), before and after.
#
#   bash examples/experiments/replay_rfc.sh [--train-iters 20] [--teleqna-limit 100]
#
# One iteration is 8 sequences x 256 tokens = 2,048 tokens (examples/configs/smollm2_cpu.yaml).
# Results: runs/experiments/replay/report/ (comparison.txt/.png, loss curves per run).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
iters=20
limit=100
while [[ $# -gt 0 ]]; do
    case "$1" in
        --train-iters) iters="$2"; shift 2 ;;
        --teleqna-limit) limit="$2"; shift 2 ;;
        *) echo "usage: bash examples/experiments/replay_rfc.sh [--train-iters N] [--teleqna-limit N]" >&2; exit 2 ;;
    esac
done
source "$root/tools/setup_env.sh"
cd "$root"
source examples/common.sh
rfc="$root/../shared/data/rfc"
[[ -d "$rfc" ]] || { echo "error: $rfc not found: put ../shared beside the checkout" >&2; exit 2; }
out="runs/experiments/replay"   # the recipes examples/experiments/rfc_replay*.yaml point here
heldout=("$out/split/rfc/heldout_sample.jsonl" "$out/split/general/heldout.jsonl")
rm -rf "$out"
mkdir -p "$out/logs" "$out/eval"

stage 8 "curate the 80 RFCs; general corpus; hold out documents (RFC: 10%, general: 5%)"
quiet "$out/logs/curate.log" python tools/curate_corpus.py --input "$rfc" --output-dir "$out/curated" \
    --tasks 2 --workers 2
python tools/general_corpus.py --output "$out/general.jsonl"
python tools/split_heldout.py --input "$out/curated/*.jsonl" --id-key doc_id --heldout-fraction 0.1 \
    --sample-chars 4000 --output-dir "$out/split/rfc"
python tools/split_heldout.py --input "$out/general.jsonl" --heldout-fraction 0.05 --output-dir "$out/split/general"

stage 8 "preprocess the training splits with SmolLM2's tokenizer"
preprocess_splits "$out" rfc general

stage 8 "import bundled:smollm2-135m; evaluate it (TeleQnA --limit $limit, options and letter)"
python tools/convert_checkpoint.py hf-to-mcore --hf-path bundled:smollm2-135m --save "$out/smollm2-mcore"
evaluate bundled:smollm2-135m "$out/eval/base.json" "$limit" "options letter" "${heldout[@]}"

for replay in 0 10; do
    run="$out/replay$replay"
    stage 8 "continual pretraining with ${replay}% general replay: $iters iterations ($((iters * 2048)) tokens)"
    python tools/data_recipe.py "examples/experiments/rfc_replay$replay.yaml" --train-tokens $((iters * 2048))
    pretrain "$out/logs/pretrain-replay$replay.log" --config examples/configs/smollm2_cpu.yaml \
        --load "$out/smollm2-mcore" --data-recipe "examples/experiments/rfc_replay$replay.yaml" \
        --data-cache-path "$out/data_cache" --save "$run" --train-iters "$iters" \
        --lr-warmup-iters $((iters / 10 + 1)) --log-metrics-file "$run/metrics.jsonl"
    stage 8 "export and evaluate the ${replay}% replay model"
    python tools/convert_checkpoint.py mcore-to-hf --load "$run" --save "$run-hf"
    evaluate "$run-hf" "$out/eval/replay$replay.json" "$limit" "options letter" "${heldout[@]}"
done

stage 8 "report: base vs 0% vs 10% replay (table + PNG), loss curves"
python tools/evaluate.py compare "$out/eval/base.json" "$out/eval/replay0.json" "$out/eval/replay10.json" \
    --labels base replay0 replay10 --output-dir "$out/report"
for replay in 0 10; do
    python tools/plot_loss_curves.py "$out/replay$replay/metrics.jsonl" --output "$out/report/loss_replay$replay.png" \
        --title "SmolLM2-135M on 80 RFCs, ${replay}% general replay"
done
printf '\nexperiment done in %dm%02ds: %s/report/\n' $(((SECONDS - start) / 60)) $(((SECONDS - start) % 60)) "$out"
