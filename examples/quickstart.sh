#!/usr/bin/env bash
# The CPU quickstart: every stage of the pipeline at tiny scale on the bundled sample corpus.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/tools/setup_env.sh"
cd "$root"
out="${QUICKSTART_DIR:-$root/runs/quickstart}"
mkdir -p "$out"
