#!/usr/bin/env bash
# Experiment: does a little SFT on 3GPP spec text teach SmolLM2-135M which working group wrote it?
# 1. builds the working-group classification benchmark (docs/wg_classification.md) from a 3GPP corpus:
#    a folder of specifications (.docx, .zip, .md, .txt: curated first) or of curated JSONL;
# 2. scores bundled:smollm2-135m zero-shot on the spec-disjoint test split;
# 3. SFT of SmolLM2-135M on the train split (2 CPU processes, examples/configs/smollm2_sft_cpu.yaml);
# 4. scores the SFT model on the same test split; prints before and after beside the random and
#    majority baselines (tools/evaluate.py compare: table + PNG).
#
#   bash examples/experiments/wg_classification.sh CORPUS_DIR [--test-per-class 40] [--train-per-class 200]
#        [--sft-iters 30] [--lr 1e-4] [--seed 1234] [--out runs/experiments/wg]
#
# The train rows are prompt/completion text in the prompt that scoring uses ("Question: ...\nAnswer:",
# completion " RAN2"), so SFT learns the answer in the form it is asked. One SFT iteration is
# 8 packed sequences of 512 tokens (about 20 snippets of 80 words). An active virtual environment is
# used as it is; otherwise tools/setup_env.sh makes ./.venv.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
usage="usage: bash examples/experiments/wg_classification.sh CORPUS_DIR [--test-per-class N] [--train-per-class N] [--sft-iters N] [--lr LR] [--seed N] [--out DIR]"
[[ $# -ge 1 && -d "$1" ]] || { echo "$usage" >&2; exit 2; }
corpus="$(cd "$1" && pwd)"
shift
test_per_class=40
train_per_class=200
iters=30
lr=1e-4
seed=1234
out="runs/experiments/wg"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --test-per-class) test_per_class="$2"; shift 2 ;;
        --train-per-class) train_per_class="$2"; shift 2 ;;
        --sft-iters) iters="$2"; shift 2 ;;
        --lr) lr="$2"; shift 2 ;;
        --seed) seed="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        *) echo "$usage" >&2; exit 2 ;;
    esac
done
[[ -n "${VIRTUAL_ENV:-}" ]] || source "$root/tools/setup_env.sh"
cd "$root"
source examples/common.sh
rm -rf "$out"
mkdir -p "$out/logs" "$out/eval"

curated="$corpus"
if ! compgen -G "$corpus/*.jsonl" >/dev/null && ! compgen -G "$corpus/*.jsonl.gz" >/dev/null; then
    stage 7 "curate the 3GPP corpus in $corpus (clauses, cleaning, dedup)"
    curated="$out/curated"
    quiet "$out/logs/curate.log" python tools/curate_corpus.py --input "$corpus" --output-dir "$curated" \
        --tasks 2 --workers 2
else
    stage 7 "the corpus is curated JSONL already: $corpus"
fi

stage 7 "build the benchmark: normative snippets, spec-disjoint, balanced (<= $test_per_class test, $train_per_class train per class)"
python tools/build_wg_benchmark.py --input "$curated" --output-dir "$out/wg" --seed "$seed" \
    --test-per-class "$test_per_class" --train-per-class "$train_per_class" --train-format completion

stage 7 "zero-shot: bundled:smollm2-135m on the test split"
OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" python tools/evaluate.py exam --model bundled:smollm2-135m --data "$out/wg/test.jsonl" \
    --name wg_classification --output "$out/eval/base.json"

stage 7 "preprocess the train split (prompt/completion, loss on the answer only, packed into 512 tokens)"
python tools/preprocess_sft.py --input "$out/wg/train.jsonl" --output-prefix "$out/data/wg_sft" \
    --tokenizer-type HuggingFaceTokenizer --tokenizer-model bundled:smollm2-135m --seq-length 512 | tail -n 4
python tools/convert_checkpoint.py hf-to-mcore --hf-path bundled:smollm2-135m --save "$out/smollm2-mcore"

stage 7 "SFT of SmolLM2-135M on 2 CPU processes: $iters iterations of 8 x 512 tokens, lr $lr"
pretrain "$out/logs/sft.log" --config examples/configs/smollm2_sft_cpu.yaml --sft-data-path "$out/data/wg_sft" \
    --load "$out/smollm2-mcore" --save "$out/smollm2-wg-sft" --train-iters "$iters" --lr "$lr" \
    --log-metrics-file "$out/smollm2-wg-sft/metrics.jsonl"
python tools/convert_checkpoint.py mcore-to-hf --load "$out/smollm2-wg-sft" --save "$out/smollm2-wg-sft-hf"

stage 7 "after SFT: the same test split"
OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" python tools/evaluate.py exam --model "$out/smollm2-wg-sft-hf" --data "$out/wg/test.jsonl" \
    --name wg_classification --output "$out/eval/sft.json"

stage 7 "report: before and after, with the random and majority baselines"
python tools/evaluate.py compare "$out/eval/base.json" "$out/eval/sft.json" --labels base sft \
    --output-dir "$out/report"
printf '\ndone in %dm%02ds: %s/report/comparison.txt, %s/wg/wg_benchmark.json\n' \
    $(((SECONDS - start) / 60)) $(((SECONDS - start) % 60)) "$out" "$out"
