#!/usr/bin/env python3
"""SFT preprocessing throughput: our prefix-rendered masks vs TRL SFTTrainer's dataset preparation.

Both sides tokenize and mask the same rows with SmolLM2's tokenizer, in this one process:
- chat rows of examples/data/telecom_sft_sample.jsonl: ours renders SmolLM2's own (untagged)
  template prefix by prefix; TRL renders a generation-tagged copy once (``assistant_only_loss``);
- prompt/completion rows: ours and TRL's ``completion_only_loss``.
Rows are the sample repeated ``--repeat`` times. Prints rows/s, tokens/s and CPU seconds per side
(CPU seconds are the figure to trust on a shared machine), and whether every mask is equal. TRL's
side includes building its SFTTrainer around a 1-layer model (it prepares datasets there).

    python benchmarks/bench_sft_preprocess.py --repeat 20
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "examples" / "data" / "telecom_sft_sample.jsonl"
# SmolLM2's template with {% generation %} tags, as TRL needs them (shared with tests/test_sft_data.py).
TAGGED_SMOLLM2 = (REPO / "tests" / "fixtures" / "smollm2_generation_tagged.jinja").read_text(encoding="utf-8")


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def ours(renderer, rows: list[dict]) -> list[tuple[list[int], list[int]]]:
    from megatron_telecom.data.sft import tokenize_row

    out = []
    for row in rows:
        result = tokenize_row(renderer, json.dumps(row).encode(), 1 << 20)
        out.append((result.tokens, result.loss_mask.tolist()))
    return out


def trl(folder: Path, rows: list[dict], workdir: str, chat_template: str | None, **sft_args):
    from datasets import Dataset
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if chat_template:
        tokenizer.chat_template = chat_template
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=8, intermediate_size=16,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1))
    args = SFTConfig(output_dir=workdir, report_to="none", max_length=None, use_cpu=True,
                     disable_tqdm=True, **sft_args)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    return [(ex["input_ids"], [int(label != -100) for label in ex["labels"]]) for ex in trainer.train_dataset]


def main() -> None:
    import tempfile

    from datasets import disable_progress_bars

    from megatron_telecom.bundled import resolve_hf_path
    from megatron_telecom.data.chat_template import ChatRenderer

    disable_progress_bars()

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=20, help="copies of the sample")
    args = parser.parse_args()
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()] * args.repeat
    folder = resolve_hf_path("bundled:smollm2-135m")
    renderer = ChatRenderer(folder)
    kinds = {
        "chat (assistant-only)": ([r for r in rows if "messages" in r], TAGGED_SMOLLM2,
                                  {"assistant_only_loss": True}),
        "prompt/completion": ([r for r in rows if "prompt" in r and not isinstance(r["prompt"], str)], None,
                              {"completion_only_loss": True}),
    }
    print(f"{'rows':<24}{'side':<6}{'rows/s':>10}{'tokens/s':>12}{'wall s':>9}{'CPU s':>8}  equal")
    for name, (subset, template, sft_args) in kinds.items():
        mine, wall, cpu = timed(lambda subset=subset: ours(renderer, subset))
        with tempfile.TemporaryDirectory() as workdir:
            theirs, twall, tcpu = timed(lambda subset=subset, t=template, a=sft_args, w=workdir:
                                        trl(folder, subset, w, t, **a))
        tokens = sum(len(t) for t, _ in mine)
        equal = mine == theirs
        for side, w, c in (("ours", wall, cpu), ("TRL", twall, tcpu)):
            print(f"{name:<24}{side:<6}{len(subset) / w:>10,.0f}{tokens / w:>12,.0f}{w:>9.2f}{c:>8.2f}  {equal}")


if __name__ == "__main__":
    main()
