#!/usr/bin/env python3
"""PNG of the training and validation loss curves from a --log-metrics-file JSONL."""

from __future__ import annotations

import sys

from megatron_telecom.arguments import run_entry_point
from megatron_telecom.training.loss_curves import LossCurvesConfig, report_loss_curves

CONFIG = LossCurvesConfig


def main(argv: list[str] | None = None) -> int:
    """Plot and print the curves' first and last losses; bad input is exit code 2."""
    return run_entry_point(CONFIG, report_loss_curves, argv, prog="plot_loss_curves.py", description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
