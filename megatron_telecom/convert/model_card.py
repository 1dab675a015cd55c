"""The model card (README.md) of an HF export: what the model is and where it came from.

Provenance is read from what the checkpoint recorded: the base model of the conversion, the
training flags (data recipe or --data-path), the dataset sidecars preprocess_data wrote
(``<prefix>.json``: documents and tokens), iterations, tokens seen and the last losses from
``--log-metrics-file``. The training stages are listed oldest first by following each
``--load ... --finetune`` back to the checkpoint a stage started from (pretraining data, SFT
conversations, DPO pairs). What was not recorded is said to be unknown, not guessed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from megatron_telecom.data.blends import parse_data_path
from megatron_telecom.jsonl import read_jsonl
from megatron_telecom.models.checkpoint_format import (
    CheckpointArgs,
    StoredCheckpoint,
    open_checkpoint,
)
from megatron_telecom.models.presets import ModelPreset


def _datasets(args: CheckpointArgs) -> list[str]:
    """One line per dataset: weight, prefix, and its sidecar's documents/tokens when present."""
    if not args.data_path:
        return []
    blend = parse_data_path(list(args.data_path))
    lines = []
    for index, prefix in enumerate(blend.prefixes):
        sidecar = Path(prefix + ".json")
        counts = ""
        if sidecar.is_file():
            dataset = json.loads(sidecar.read_text(encoding="utf-8")).get("dataset", {})
            counts = f": {dataset.get('documents', '?'):,} documents, {dataset.get('tokens', '?'):,} tokens"
        weight = f"weight {blend.weights[index]:g}: " if blend.weights else ""
        lines.append(f"- {weight}`{prefix}`{counts}")
    return lines


def lineage(stored: StoredCheckpoint, *, limit: int = 8) -> list[StoredCheckpoint]:
    """``stored`` and the checkpoints its stages started from (``--load`` with ``--finetune``),
    newest first; a start that is gone or unreadable ends the list."""
    chain = [stored]
    while len(chain) < limit:
        args = chain[-1].args
        if not (args.finetune and args.load):
            break
        try:
            previous = open_checkpoint(args.load)
        except (ValueError, OSError):
            break
        if any(previous.path == seen.path for seen in chain):
            break
        chain.append(previous)
    return chain


def _stage_line(number: int, stored: StoredCheckpoint) -> str:
    """One stage: what it trained on, how long, from which checkpoint."""
    args = stored.args
    iterations = int(stored.common.get("iteration") or 0)
    prefix = {"sft": args.sft_data_path, "dpo": args.dpo_data_path}.get(args.stage)
    if prefix:
        sidecar = Path(prefix + ".json")
        counts = ""
        if sidecar.is_file():
            info = json.loads(sidecar.read_text(encoding="utf-8"))
            what = "pairs" if args.stage == "dpo" else "conversations"
            counts = f": {info.get(what, '?'):,} {what}, {info.get('trained_tokens', '?'):,} trained tokens"
        data = f"`{prefix}`{counts}"
    elif args.data_recipe or args.data_path:
        data = f"`{args.data_recipe}`" if args.data_recipe else " ".join(
            f"`{part}`" for part in args.data_path)
    else:
        return f"{number}. base weights `{stored.path}` (converted or initialised; no training recorded)"
    return f"{number}. {args.stage}: {data}, {iterations:,} iterations (`{stored.path}`)"


def _last_losses(args: CheckpointArgs) -> tuple[float | None, dict[str, float]]:
    """(last training lm loss, last validation losses by name) from --log-metrics-file."""
    path = args.log_metrics_file
    if not path or not Path(path).is_file():
        return None, {}
    train, valid = None, {}
    for record in read_jsonl(path):
        if "lm_loss" in record:
            train = record["lm_loss"]
        valid.update({k: v for k, v in record.items() if k.startswith("valid") and
                      isinstance(v, float)})
    return train, valid


def model_card(preset: ModelPreset, stored: StoredCheckpoint, provenance: dict[str, Any]) -> str:
    """Markdown model card for the export of checkpoint ``stored``."""
    args, folder = stored.args, stored.path
    iteration = int(stored.common.get("iteration") or 0)
    seq_length = int(args.seq_length or preset.seq_length)  # None: the model's default
    tokens = int(args.consumed_train_samples) * seq_length
    train_loss, valid = _last_losses(args)
    base = provenance.get("source", "unknown (random initialisation or not recorded)")
    lines = [
        f"# {preset.name} (megatron-telecom export)", "",
        f"A {preset.hf_architecture or 'LlamaForCausalLM'} exported from the megatron checkpoint "
        f"`{folder}` by megatron-telecom's `tools/convert_checkpoint.py mcore-to-hf`.", "",
        "## Provenance", "",
        f"- base model: `{base}`",
        f"- training iterations: {iteration:,}",
        f"- tokens seen: {tokens:,}" if tokens else "- tokens seen: none recorded",
        f"- last training lm loss: {train_loss:.4f}" if train_loss is not None
        else "- last training lm loss: not recorded",
    ]
    lines += [f"- last {name}: {value:.4f}" for name, value in sorted(valid.items())]
    if args.data_recipe:
        lines.append(f"- data recipe: `{args.data_recipe}`")
    datasets = _datasets(args)
    if datasets:
        lines += ["", "## Training data", "", *datasets]
    stages = list(reversed(lineage(stored)))
    lines += ["", "## Training stages", "",
              *(_stage_line(number, stage) for number, stage in enumerate(stages, 1))]
    lines += ["", "## Architecture", "",
              f"{preset.num_layers} layers, hidden {preset.hidden_size}, FFN "
              f"{preset.ffn_hidden_size}, {preset.num_attention_heads} heads / "
              f"{preset.num_query_groups} KV heads, vocabulary {preset.vocab_size}, RoPE base "
              f"{preset.rotary_base:g}{' with llama3 scaling' if preset.rope_scaling else ''}, "
              f"context {preset.max_position_embeddings}.", ""]
    return "\n".join(lines)
