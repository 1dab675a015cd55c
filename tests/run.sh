#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what it needs, then lint + pytest.
# --fast: the edit-test loop: everything but the torchrun, SLURM, real-model and slow tests
# (no SLURM install). Other arguments go to pytest (-n 0: one process, no xdist).
set -euo pipefail
fast=0
if [[ ${1:-} == --fast ]]; then fast=1; shift; fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/tools/setup_env.sh"
cd "$root"
# A real SLURM for the SLURM tests (Debian packages; the tests start their own daemons: one node, and
# two nodes in network namespaces joined by a bridge, which needs iproute2).
# Without root or apt those tests skip with a reason.
if [[ $fast == 0 && $(id -u) == 0 ]] && command -v apt-get >/dev/null && ! { command -v slurmctld && command -v ip; } >/dev/null; then
  echo "installing slurmctld slurmd slurm-client munge iproute2 for the SLURM tests"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      slurmctld slurmd slurm-client munge iproute2 >/dev/null; } || echo "SLURM install failed: SLURM tests will skip"
fi
ruff check .
if [[ $fast == 1 ]]; then
  set -- -m "not torchrun and not slurm and not real_model and not slow" "$@"
fi
# Two workers (pytest-xdist): one test often leaves a core idle (one-process launches, SLURM
# scheduling, process start-up). conftest's scheduler keeps each module, and each expensive
# session fixture (SLURM clusters, the SmolLM2 conversion), on one worker, heavy units first.
python -m pytest -q -ra -n 2 --no-loadscope-reorder "$@"
