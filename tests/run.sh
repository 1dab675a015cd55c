#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what it needs, then lint + pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/tools/setup_env.sh"
cd "$root"
# A real one-node SLURM for the SLURM tests (Debian packages; the tests start their own daemons).
# Without root or apt those tests skip with a reason.
if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null && ! command -v slurmctld >/dev/null; then
  echo "installing slurmctld slurmd slurm-client munge for the SLURM tests"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      slurmctld slurmd slurm-client munge >/dev/null; } || echo "SLURM install failed: SLURM tests will skip"
fi
ruff check .
python -m pytest -q -ra "$@"
