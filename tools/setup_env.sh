#!/usr/bin/env bash
# Create (or reuse) ./.venv with the pinned CPU torch first, then this package with its extras.
# Sourced by examples/quickstart.sh and tests/run.sh, so both commands install what they need.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${MEGATRON_TELECOM_VENV:-$root/.venv}"
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi
# shellcheck disable=SC1091
source "$venv/bin/activate"
stamp="$venv/.megatron-telecom-installed"
if [[ ! -f "$stamp" || "$root/setup.py" -nt "$stamp" ]]; then
  python -m pip install -q --upgrade pip
  # A bare torch requirement pulls a multi-GB CUDA build: take the pinned CPU build first.
  python -m pip install -q "torch==${TORCH_VERSION:-2.13.0}"
  python -m pip install -q -e "$root[data,dev]"
  touch "$stamp"
fi
