"""Data recipes: which datasets a continual-pretraining run mixes, and in what shares.

A recipe is a YAML file (paths are relative to the file)::

    train_tokens: 2.0e9          # optional token budget, for the accounting table
    datasets:                    # telecom data
      - {name: rfc,  prefix: data/rfc_text_document,  weight: 2}
      - {name: 3gpp, prefix: data/3gpp_text_document, share: 0.3}
      - {name: papers, prefix: data/arxiv_text_document, weight: 1}
    replay:                      # general data replayed against forgetting
      share: 0.2
      datasets:
        - {name: wiki, prefix: data/wiki_text_document}

Shares are fractions of all sampled tokens. `replay.share` goes to the replay datasets; entries with
`share` get exactly that; the rest is split among the other entries in proportion to `weight`
(given to all of them, or to none: then each dataset's own token count, its natural proportion). The result is Megatron's
`--data-path W1 P1 W2 P2 ...` with normalised weights, plus a token-accounting table.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import yaml

from megatron_telecom.arguments import positional
from megatron_telecom.data.indexed import read_index


@dataclass(frozen=True, kw_only=True)
class RecipeEntry:
    """One dataset of a resolved recipe."""

    name: str
    prefix: str
    group: str  # "telecom" or "replay"
    tokens: int
    documents: int
    weight: float  # normalised sampling share (all entries sum to 1)

    def epochs(self, train_tokens: float) -> float:
        """How many times this dataset is seen if `train_tokens` are drawn from the blend."""
        return self.weight * train_tokens / self.tokens if self.tokens else float("inf")


@dataclass(frozen=True, kw_only=True)
class DataRecipe:
    """A resolved recipe: datasets with normalised weights and an optional token budget."""

    datasets: list[RecipeEntry]
    train_tokens: float | None = None

    def data_path(self) -> list[str]:
        """Megatron-LM's `--data-path` form: ["W1", "P1", "W2", "P2", ...]."""
        return [item for e in self.datasets for item in (f"{e.weight:.10g}", e.prefix)]

    def accounting_table(self, train_tokens: float | None = None) -> str:
        """Tokens per dataset, share, tokens drawn and epochs implied by the budget."""
        budget = train_tokens if train_tokens is not None else self.train_tokens
        header = f"{'dataset':<16} {'group':<8} {'documents':>10} {'tokens':>14} {'share':>7}"
        if budget:
            header += f" {'drawn':>14} {'epochs':>8}"
        lines = [header, "-" * len(header)]
        for e in self.datasets:
            line = f"{e.name:<16} {e.group:<8} {e.documents:>10,} {e.tokens:>14,} {e.weight:>7.1%}"
            if budget:
                line += f" {e.weight * budget:>14,.0f} {e.epochs(budget):>8.2f}"
            lines.append(line)
        total = sum(e.tokens for e in self.datasets)
        lines.append(f"{'total':<16} {'':<8} {sum(e.documents for e in self.datasets):>10,} {total:>14,} {1:>7.1%}")
        return "\n".join(lines)


def _parse_entries(raw: object, where: str, base: Path) -> list[dict]:
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{where} must be a non-empty list of {{name, prefix, weight|share}}")
    entries = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or "prefix" not in item:
            raise ValueError(f"{where}[{i}] needs at least a 'prefix' (dataset path without .bin/.idx)")
        unknown = set(item) - {"name", "prefix", "weight", "share"}
        if unknown:
            raise ValueError(f"{where}[{i}] has unknown keys {sorted(unknown)}")
        if "weight" in item and "share" in item:
            raise ValueError(f"{where}[{i}] gives both 'weight' and 'share': keep one")
        prefix = Path(item["prefix"])
        prefix = Path(os.path.normpath(prefix if prefix.is_absolute() else base / prefix))
        index = read_index(prefix)
        entries.append({**item, "prefix": str(prefix), "name": str(item.get("name", prefix.name)),
                        "tokens": index.num_tokens, "documents": index.num_documents})
    return entries


def _distribute(entries: list[dict], budget: float, where: str) -> list[float]:
    """Shares for entries: explicit `share`s first, the remaining budget in proportion to weight."""
    fixed = sum(float(e["share"]) for e in entries if "share" in e)
    rest = budget - fixed
    if rest < -1e-9:
        raise ValueError(f"{where}: shares add up to {fixed:.3f}, more than the {budget:.3f} available")
    weighted = [e for e in entries if "share" not in e]
    if 0 < sum("weight" in e for e in weighted) < len(weighted):
        raise ValueError(f"{where}: give 'weight' to all entries without 'share', or to none (natural proportions)")
    weights = [float(e.get("weight", e["tokens"])) for e in weighted]
    if any(w < 0 for w in weights) or any(float(e["share"]) < 0 for e in entries if "share" in e):
        raise ValueError(f"{where}: weights and shares must be >= 0")
    if weights and sum(weights) <= 0:
        raise ValueError(f"{where}: weights add up to 0")
    if not weights and abs(rest) > 1e-6:
        raise ValueError(f"{where}: shares add up to {fixed:.3f}, not {budget:.3f}; add weights or fix shares")
    it = iter(weights)
    return [float(e["share"]) if "share" in e else rest * next(it) / sum(weights) for e in entries]


def load_data_recipe(path: str | Path) -> DataRecipe:
    """Read and resolve a recipe YAML (dataset token counts are read from their .idx files)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"data recipe {path} does not exist")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict) or "datasets" not in raw:
        raise ValueError(f"{path}: a recipe needs a 'datasets' list (and optionally 'replay', 'train_tokens')")
    base = path.parent
    telecom = _parse_entries(raw["datasets"], f"{path}: datasets", base)
    replay_raw = raw.get("replay") or {}
    replay_share = float(replay_raw.get("share", 0.0))
    if not 0 <= replay_share < 1:
        raise ValueError(f"{path}: replay.share must be in [0, 1), got {replay_share}")
    if replay_share and not replay_raw.get("datasets"):
        raise ValueError(f"{path}: replay.share is {replay_share} but replay.datasets lists no dataset")
    if replay_raw.get("datasets") and not replay_share:
        raise ValueError(f"{path}: replay.datasets are listed but replay.share is 0: set the share they get")
    replay = _parse_entries(replay_raw["datasets"], f"{path}: replay.datasets", base) if replay_share else []
    shares = _distribute(telecom, 1 - replay_share, f"{path}: datasets")
    shares += _distribute(replay, replay_share, f"{path}: replay.datasets") if replay else []
    entries = [
        RecipeEntry(name=e["name"], prefix=e["prefix"], group=group, tokens=e["tokens"],
                    documents=e["documents"], weight=share)
        for (e, group), share in zip([(e, "telecom") for e in telecom] + [(e, "replay") for e in replay], shares)
    ]
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: dataset names must be unique, got {names}")
    train_tokens = raw.get("train_tokens")
    return DataRecipe(datasets=entries, train_tokens=float(train_tokens) if train_tokens else None)


@dataclass(kw_only=True)
class DataRecipeConfig:
    """Flags of `tools/data_recipe.py`."""

    recipe: str = positional()
    """Recipe YAML (see megatron_telecom/data/recipe.py)."""
    train_tokens: float | None = None
    """Token budget (overrides the recipe's)."""
    data_path_only: bool = False
    """Print only the --data-path words."""


def run_recipe(config: DataRecipeConfig) -> int:
    """`tools/data_recipe.py`: print the accounting table and the --data-path words."""
    recipe = load_data_recipe(config.recipe)
    data_path = " ".join(shlex.quote(word) for word in recipe.data_path())
    if config.data_path_only:
        print(data_path)
        return 0
    print(recipe.accounting_table(config.train_tokens))
    print(f"\n--data-path {data_path}")
    return 0
