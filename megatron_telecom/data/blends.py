"""Blends of indexed datasets: Megatron-LM's ``--data-path`` forms, or a data recipe YAML.

Megatron-free, so the trainer and the model card of an export read a run's blend the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from megatron_telecom.data.recipe import load_data_recipe


@dataclass(frozen=True, kw_only=True)
class Blend:
    """Dataset prefixes, their weights (None = by size) and display names."""

    prefixes: list[str]
    weights: list[float] | None
    names: list[str]


def parse_data_path(data_path: list[str]) -> Blend:
    """Megatron-LM's --data-path forms: ``P1 P2 ...`` or ``W1 P1 W2 P2 ...``."""
    prefixes, weights = _prefixes_and_weights(data_path)
    return Blend(prefixes=prefixes, weights=weights, names=_display_names(prefixes))


def _prefixes_and_weights(data_path: list[str]) -> tuple[list[str], list[float] | None]:
    def is_number(text: str) -> bool:
        try:
            float(text)
        except ValueError:
            return False
        return True

    if not data_path:
        raise ValueError("--data-path is empty")
    if is_number(data_path[0]):
        if len(data_path) % 2:
            raise ValueError(f"--data-path {data_path}: weights and prefixes must come in pairs")
        weights = [float(w) for w in data_path[0::2]]
        prefixes = list(data_path[1::2])
    else:
        weights, prefixes = None, list(data_path)
    for prefix in prefixes:
        if not Path(prefix + ".idx").is_file() or not Path(prefix + ".bin").is_file():
            raise ValueError(f"--data-path: {prefix}.bin/.idx not found (give the prefix without "
                             "the extension, as written by tools/preprocess_data.py)")
    if weights is not None and (min(weights) < 0 or sum(weights) <= 0):
        raise ValueError(f"--data-path weights {weights} must be >= 0 and not all 0")
    return prefixes, weights


def _display_names(prefixes: list[str]) -> list[str]:
    """Each prefix's file name, or ``folder/name`` where two prefixes share a file name."""
    names = [Path(p).name for p in prefixes]
    names = [f"{Path(p).parent.name}/{n}" if names.count(n) > 1 else n
             for p, n in zip(prefixes, names, strict=True)]
    _check_unique_names(names, "--data-path")
    return names


def _check_unique_names(names: list[str], source: str) -> None:
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{source}: datasets {duplicates} appear more than once (or share a "
                         "folder and file name); validation is reported per name, so give each "
                         "dataset of the blend a distinct path")


def resolve_blend(data_path: list[str], data_recipe: str | None) -> Blend:
    """The blend from --data-path or from a data recipe YAML."""
    if data_path:
        return parse_data_path(data_path)
    recipe = load_data_recipe(data_recipe)
    prefixes, weights = _prefixes_and_weights(recipe.data_path())
    names = [entry.name for entry in recipe.datasets]
    _check_unique_names(names, f"--data-recipe {data_recipe}")
    return Blend(prefixes=prefixes, weights=weights, names=names)
