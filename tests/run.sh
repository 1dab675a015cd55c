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
# Four workers (pytest-xdist) on the 2-core machine: many tests wait (SLURM scheduling and
# requeues, rendezvous, process start-up) while others compute, and with three the cores still
# idled a fifth of the run. One thread per process (and per child), so the workers never
# oversubscribe the cores with OpenMP threads that spin. conftest's scheduler hands out whole
# modules, heaviest first; the minutes-long SmolLM2 conversion is built once per session and
# shared (built_once). --durations lists the slowest tests, the place to start when it grows.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
python -m pytest -q -ra -n "${PYTEST_WORKERS:-4}" --no-loadscope-reorder --durations=25 "$@"
