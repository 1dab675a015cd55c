#!/usr/bin/env python3
"""PNG of the training and validation loss curves from a --log-metrics-file JSONL."""

from __future__ import annotations

import argparse
import sys

from megatron_telecom.training.loss_curves import plot_loss_curves


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("metrics", help="the JSONL the trainer wrote with --log-metrics-file")
    parser.add_argument("--output", required=True, help="PNG to write")
    parser.add_argument("--title", default="")
    args = parser.parse_args(argv)
    try:
        train, valid = plot_loss_curves(args.metrics, args.output, args.title)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    first, last = min(train), max(train)
    print(f"train lm loss {train[first]:.3f} (iteration {first}) -> {train[last]:.3f} (iteration {last})")
    for name, points in sorted(valid.items()):
        a, b = min(points), max(points)
        print(f"validation {name}: {points[a]:.3f} (iteration {a}) -> {points[b]:.3f} (iteration {b})")
    print(f"loss curves -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
