"""``python -m megatron_telecom.convert COMMAND [flags]``: the commands of tools/convert_checkpoint.py
by module name, for callers that run a conversion in a process of its own (evaluation's export)."""

from __future__ import annotations

import sys

from megatron_telecom.convert.cli import main

sys.exit(main(prog="python -m megatron_telecom.convert"))
