"""The model card (README.md) of an HF export: what the model is and where it came from.

Provenance is read from what the checkpoint recorded: the base model of the conversion, the
training flags (data recipe or --data-path), the dataset sidecars preprocess_data wrote
(``<prefix>.json``: documents and tokens), iterations, tokens seen and the last losses from
``--log-metrics-file``. What was not recorded is said to be unknown, not guessed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from megatron_telecom.models.presets import ModelPreset


def _datasets(args: dict[str, Any]) -> list[str]:
    """One line per dataset: weight, prefix, and its sidecar's documents/tokens when present."""
    paths = list(args.get("data_path") or [])
    weighted = len(paths) % 2 == 0 and all(_is_number(p) for p in paths[::2])
    pairs = list(zip(paths[::2], paths[1::2], strict=True)) if weighted and paths else [
        ("1", p) for p in paths]
    lines = []
    for weight, prefix in pairs:
        sidecar = Path(prefix + ".json")
        counts = ""
        if sidecar.is_file():
            dataset = json.loads(sidecar.read_text(encoding="utf-8")).get("dataset", {})
            counts = f": {dataset.get('documents', '?'):,} documents, {dataset.get('tokens', '?'):,} tokens"
        lines.append(f"- weight {weight}: `{prefix}`{counts}")
    return lines


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _last_losses(args: dict[str, Any]) -> tuple[float | None, dict[str, float]]:
    """(last training lm loss, last validation losses by name) from --log-metrics-file."""
    path = args.get("log_metrics_file")
    if not path or not Path(path).is_file():
        return None, {}
    train, valid = None, {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        record = json.loads(line) if line.strip() else {}
        if "lm_loss" in record:
            train = record["lm_loss"]
        valid.update({k: v for k, v in record.items() if k.startswith("valid") and
                      isinstance(v, float)})
    return train, valid


def model_card(preset: ModelPreset, common: dict[str, Any], folder: Path,
               provenance: dict[str, Any]) -> str:
    """Markdown model card for the export of checkpoint ``folder``."""
    args = common.get("args") or {}
    iteration = int(common.get("iteration") or 0)
    tokens = int(args.get("consumed_train_samples") or 0) * int(args.get("seq_length") or 0)
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
    if args.get("data_recipe"):
        lines.append(f"- data recipe: `{args['data_recipe']}`")
    datasets = _datasets(args)
    if datasets:
        lines += ["", "## Training data", "", *datasets]
    lines += ["", "## Architecture", "",
              f"{preset.num_layers} layers, hidden {preset.hidden_size}, FFN "
              f"{preset.ffn_hidden_size}, {preset.num_attention_heads} heads / "
              f"{preset.num_query_groups} KV heads, vocabulary {preset.vocab_size}, RoPE base "
              f"{preset.rotary_base:g}{' with llama3 scaling' if preset.rope_scaling else ''}, "
              f"context {preset.max_position_embeddings}.", ""]
    return "\n".join(lines)
