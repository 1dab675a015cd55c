#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what it needs, then lint + pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/tools/setup_env.sh"
cd "$root"
ruff check .
python -m pytest -q -ra "$@"
