#!/usr/bin/env bash
# The CPU quickstart: every stage of the pipeline at tiny scale on the bundled sample corpus.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/tools/setup_env.sh"
cd "$root"
out="${QUICKSTART_DIR:-$root/runs/quickstart}"
mkdir -p "$out"

echo "== 1/3 preprocess the sample corpus -> Megatron indexed dataset"
python tools/preprocess_data.py \
  --input examples/data/telecom_sample.jsonl \
  --output-prefix "$out/data/telecom_sample" \
  --tokenizer-type SentencePieceTokenizer --tokenizer-model bundled:mistral-v1 \
  --append-eod --workers 2
python tools/inspect_data.py "$out/data/telecom_sample_text_document" --samples 1 | head -n 24
