#!/usr/bin/env python3
"""Resolve a data recipe YAML into Megatron's --data-path and a token-accounting table."""

from __future__ import annotations

import sys

from megatron_telecom.arguments import run_entry_point
from megatron_telecom.data.recipe import DataRecipeConfig, run_recipe

CONFIG = DataRecipeConfig


def main(argv: list[str] | None = None) -> int:
    return run_entry_point(CONFIG, run_recipe, argv, prog="tools/data_recipe.py", description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
