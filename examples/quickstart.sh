#!/usr/bin/env bash
# The CPU quickstart: the whole pipeline on the built-in base model SmolLM2-135M, on 2 CPU processes.
# Stage 1, continual pretraining (CPT) on telecom text with general replay; stage 2, instruction
# tuning (SFT) on telecom conversations from the CPT checkpoint; stage 3, preference alignment (DPO)
# on telecom answer pairs from the SFT checkpoint; each exported to Hugging Face. Then one telecom
# question to base, CPT, SFT and DPO through the chat template, and what each gained and
# forgot, side by side (one table + PNG). Everything lands in runs/quickstart/. Knobs:
#   QUICKSTART_TRAIN_ITERS    CPT iterations of 8 x 256 = 2,048 tokens (default 6)
#   QUICKSTART_SFT_ITERS      SFT iterations of 8 packed sequences x 512 tokens (default 3; the
#                             sample's 117 conversations fill 22 sequences: one epoch is ~3)
#   QUICKSTART_DPO_ITERS      DPO iterations of 8 preference pairs (default 4; the sample has 60)
#   QUICKSTART_TELEQNA_LIMIT  stratified questions of TeleQnA and as many of ORAN-Bench-13K per
#                             model (default 40; 0 skips both)
#   LORA=1                    SFT and DPO train rank-16 LoRA adapters on the frozen CPT weights
#                             (examples/configs/smollm2_lora_*_cpu.yaml, merged exports; docs/lora.md)
# A later stage is one more block before "chat": train from the previous stage's checkpoint,
# export it, `add_model LABEL HF_FOLDER`; the chat, evaluation and report stages take every model
# added, and the stage count follows the `stage` lines.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/tools/setup_env.sh"
cd "$root"
out="runs/quickstart"   # examples/configs/smollm2_*cpu.yaml and examples/recipes/quickstart_replay.yaml point here
iters="${QUICKSTART_TRAIN_ITERS:-6}"
sft_iters="${QUICKSTART_SFT_ITERS:-3}"
dpo_iters="${QUICKSTART_DPO_ITERS:-4}"
limit="${QUICKSTART_TELEQNA_LIMIT:-40}"
if [ "${LORA:-0}" = 1 ]; then lora=lora_ run=lora- export=lora-merge; else lora= run= export=mcore-to-hf; fi
question="What does the AMF do in a 5G core network?"   # no sample conversation asks it
source examples/common.sh
stages=$(grep -c '^stage ' "${BASH_SOURCE[0]}")
labels=(base)
models=(bundled:smollm2-135m)
add_model() {  # add_model LABEL MODEL: chatted with, evaluated and reported beside the others
    labels+=("$1")
    models+=("$2")
}

heldout=("$out/split/telecom/heldout.jsonl" "$out/split/general/heldout.jsonl")
rm -rf "$out"   # a fresh run: an old checkpoint in --save would be resumed, old results updated
mkdir -p "$out/logs" "$out/eval"

stage "$stages" "curate the sample telecom corpus: clean, telecom filter, dedup (datatrove)"
quiet "$out/logs/curate.log" python tools/curate_corpus.py --input examples/data --glob 'telecom_sample.jsonl' \
    --output-dir "$out/curated"
tail -n 3 "$out/curated/curation_stats.txt" 2>/dev/null || true

stage "$stages" "general English corpus (Python's documentation topics, PSF-2.0) for replay and forgetting"
python tools/general_corpus.py --output "$out/general.jsonl"

stage "$stages" "hold out documents that training never sees (by document-id hash)"
python tools/split_heldout.py --input "$out/curated/*.jsonl" --id-key doc_id --heldout-fraction 0.1 \
    --output-dir "$out/split/telecom"
python tools/split_heldout.py --input "$out/general.jsonl" --heldout-fraction 0.05 \
    --output-dir "$out/split/general"

stage "$stages" "preprocess the training splits with SmolLM2's tokenizer -> Megatron indexed datasets"
preprocess_splits "$out" telecom general
python tools/data_recipe.py examples/recipes/quickstart_replay.yaml --train-tokens $((iters * 2048))

stage "$stages" "import the base model bundled:smollm2-135m into a megatron checkpoint"
python tools/convert_checkpoint.py hf-to-mcore --hf-path bundled:smollm2-135m --save "$out/smollm2-mcore"

# ---- stage 1: continual pretraining (CPT) ----
stage "$stages" "CPT on 2 CPU processes: $iters iterations, telecom + 10% general replay"
pretrain "$out/logs/pretrain.log" --config examples/configs/smollm2_cpu.yaml --train-iters "$iters" \
    --lr-warmup-iters $((iters / 5)) --eval-interval $((iters / 2)) --log-metrics-file "$out/smollm2-telecom/metrics.jsonl"

stage "$stages" "export the CPT checkpoint to a Hugging Face model"
python tools/convert_checkpoint.py mcore-to-hf --load "$out/smollm2-telecom" --save "$out/smollm2-telecom-hf"
add_model cpt "$out/smollm2-telecom-hf"

# ---- stage 2: instruction tuning (SFT) ----
stage "$stages" "preprocess the sample conversations: SmolLM2's chat template, assistant-only mask, packed"
python tools/preprocess_sft.py --input examples/data/telecom_sft_sample.jsonl --output-prefix "$out/data/telecom_sft" \
    --tokenizer-type HuggingFaceTokenizer --tokenizer-model bundled:smollm2-135m --seq-length 512 | tail -n 4

stage "$stages" "SFT from the CPT checkpoint on 2 CPU processes: $sft_iters iterations of 8 x 512 tokens"
pretrain "$out/logs/sft.log" --config examples/configs/smollm2_${lora}sft_cpu.yaml --train-iters "$sft_iters" \
    --log-metrics-file "$out/smollm2-${run}sft/metrics.jsonl"

stage "$stages" "export the SFT checkpoint (the model card lists both stages; the chat template travels)"
python tools/convert_checkpoint.py "$export" --load "$out/smollm2-${run}sft" --save "$out/smollm2-${run}sft-hf"
add_model sft "$out/smollm2-${run}sft-hf"

# ---- stage 3: preference alignment (DPO) ----
stage "$stages" "preprocess the sample preference pairs: prompt (no loss), chosen and rejected answers"
python tools/preprocess_dpo.py --input examples/data/telecom_dpo_sample.jsonl --output-prefix "$out/data/telecom_dpo" \
    --tokenizer-type HuggingFaceTokenizer --tokenizer-model bundled:smollm2-135m --seq-length 192 | tail -n 3

stage "$stages" "reference log-probs of every pair, once, from the SFT checkpoint (fingerprinted; no reference model in training)"
pretrain "$out/logs/dpo_reference.log" --config examples/configs/smollm2_${lora}dpo_cpu.yaml --compute-reference-logprobs

stage "$stages" "DPO from the SFT checkpoint on 2 CPU processes: $dpo_iters iterations of 8 pairs"
pretrain "$out/logs/dpo.log" --config examples/configs/smollm2_${lora}dpo_cpu.yaml --train-iters "$dpo_iters" \
    --log-metrics-file "$out/smollm2-${run}dpo/metrics.jsonl"

stage "$stages" "export the DPO checkpoint (the model card lists CPT -> SFT -> DPO)"
python tools/convert_checkpoint.py "$export" --load "$out/smollm2-${run}dpo" --save "$out/smollm2-${run}dpo-hf"
add_model dpo "$out/smollm2-${run}dpo-hf"

# ---- every model side by side ----
stage "$stages" "chat: one telecom question through the chat template, ${labels[*]} (greedy)"
for i in "${!models[@]}"; do
    echo "-- ${labels[i]}:"
    # one token per step: small matrix products, no faster on 2 threads, much slower on a busy machine
    OMP_NUM_THREADS=1 python tools/generate.py --model "${models[i]}" --chat --max-new-tokens 48 "$question" 2>/dev/null
done

stage "$stages" "evaluate ${labels[*]}: held-out perplexity and bits per byte, TeleQnA and ORAN-Bench (--limit $limit)"
[[ -f "$teleqna" ]] || echo "(TeleQnA skipped: $teleqna not found; put ../shared beside the checkout)"
[[ -f "$oranbench/fin_E.json" ]] || echo "(ORAN-Bench skipped: $oranbench not found; put ../shared beside the checkout)"
results=()
for i in "${!models[@]}"; do
    echo "-- ${labels[i]}:"
    evaluate "${models[i]}" "$out/eval/${labels[i]}.json" "$limit" options "${heldout[@]}"
    results+=("$out/eval/${labels[i]}.json")
done

stage "$stages" "report: ${labels[*]} side by side (table + PNG) and the loss curves (PNG)"
python tools/evaluate.py compare "${results[@]}" --labels "${labels[@]}" --output-dir "$out/report"
python tools/plot_loss_curves.py "$out/smollm2-telecom/metrics.jsonl" --output "$out/report/loss_curves.png" \
    --title "SmolLM2-135M continual pretraining (telecom + 10% general replay)"
python tools/plot_loss_curves.py "$out/smollm2-${run}sft/metrics.jsonl" --output "$out/report/sft_loss_curves.png" \
    --title "SmolLM2-135M SFT (assistant tokens of the telecom conversations)"
python tools/plot_loss_curves.py "$out/smollm2-${run}dpo/metrics.jsonl" --output "$out/report/dpo_loss_curves.png" \
    --title "SmolLM2-135M DPO (telecom preference pairs)"
printf '\nquickstart done in %dm%02ds: %s/report/ (comparison.txt, comparison.png, loss_curves.png, sft_loss_curves.png, dpo_loss_curves.png)\n' \
    $(((SECONDS - start) / 60)) $(((SECONDS - start) % 60)) "$out"
