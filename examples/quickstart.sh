#!/usr/bin/env bash
# The CPU quickstart: every stage of the pipeline at tiny scale on the bundled sample corpus.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/tools/setup_env.sh"
cd "$root"
out="${QUICKSTART_DIR:-$root/runs/quickstart}"
mkdir -p "$out"

echo "== curate the sample corpus: clean, telecom filter, dedup (datatrove, local executor)"
rm -rf "$out/curated" "$out/data_cache"   # a fresh run (curation skips finished work; stale dataset indices)
python tools/curate_corpus.py --input examples/data --glob '*.jsonl' --output-dir "$out/curated" 2>"$out/curate.log" \
  || { tail -n 40 "$out/curate.log"; exit 1; }

echo "== preprocess the curated corpus -> Megatron indexed dataset"
python tools/preprocess_data.py \
  --input "$out/curated/*.jsonl" \
  --output-prefix "$out/data/telecom_sample" \
  --tokenizer-type SentencePieceTokenizer --tokenizer-model bundled:mistral-v1 \
  --append-eod --workers 2
python tools/inspect_data.py "$out/data/telecom_sample_text_document" --samples 1 --sample-tokens 60

echo "== train the tiny preset on 2 CPU processes (a few minutes): watch the lm loss fall"
rm -rf "$out/tiny"   # a fresh run (an existing checkpoint in --save would be resumed)
PYTHONWARNINGS=ignore OMP_NUM_THREADS=1 python -m torch.distributed.run --nproc_per_node 2 \
  -m megatron_telecom.pretrain --config examples/configs/tiny_cpu.yaml \
  --data-path "$out/data/telecom_sample_text_document" \
  --data-cache-path "$out/data_cache" \
  --save "$out/tiny" --log-metrics-file "$out/tiny/metrics.jsonl"
python - "$out/tiny/metrics.jsonl" <<'PY'
import json, sys
records = [json.loads(line) for line in open(sys.argv[1])]
valid = [(r["iteration"], v) for r in records if "validation" in r for v in r["validation"].values()]
(first_it, first), (last_it, last) = valid[0], valid[-1]
print(f"validation loss: {first:.3f} at iteration {first_it} -> {last:.3f} at iteration {last_it}")
PY
echo "checkpoints: $out/tiny/iter_*  TensorBoard: tensorboard --logdir $out/tiny/tensorboard"
