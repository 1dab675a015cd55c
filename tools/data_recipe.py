#!/usr/bin/env python3
"""Resolve a data recipe YAML into Megatron's --data-path and a token-accounting table."""

from __future__ import annotations

import argparse
import shlex
import sys

from megatron_telecom.data.recipe import load_data_recipe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("recipe", help="recipe YAML (see megatron_telecom/data/recipe.py)")
    parser.add_argument("--train-tokens", type=float, help="token budget (overrides the recipe's)")
    parser.add_argument("--data-path-only", action="store_true", help="print only the --data-path words")
    args = parser.parse_args(argv)
    try:
        recipe = load_data_recipe(args.recipe)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    data_path = " ".join(shlex.quote(word) for word in recipe.data_path())
    if args.data_path_only:
        print(data_path)
        return 0
    print(recipe.accounting_table(args.train_tokens))
    print(f"\n--data-path {data_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
