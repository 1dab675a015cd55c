#!/usr/bin/env bash
# The GPU kit, offline: install what the machine lacks from a local wheel folder, then run it.
#   bash benchmarks/gpu/run.sh OUTDIR [kit.py flags, e.g. --steps abc --peak-tflops 756]
# $WHEELS: the wheel folder (default benchmarks/gpu/wheels, filled as README.md says);
# $PYTHON: the interpreter with CUDA torch (default python3). Packages go into OUTDIR/site,
# not into the machine's environment; the project itself runs from this checkout.
set -euo pipefail
if [[ $# -lt 1 || $1 == -* ]]; then
  echo "usage: bash benchmarks/gpu/run.sh OUTDIR [kit.py flags]" >&2
  exit 2
fi
out="$1"
shift
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
python="${PYTHON:-python3}"
wheels="${WHEELS:-$here/wheels}"
site="$out/site"
mkdir -p "$out"
export PYTHONPATH="$root:$site${PYTHONPATH:+:$PYTHONPATH}"
if ! "$python" -c 'import megatron.core, psutil, yaml' 2>/dev/null; then
  if ! compgen -G "$wheels/*.whl" >/dev/null; then
    echo "error: megatron-core/psutil/pyyaml missing and no wheels in $wheels:" \
         "fill it on a connected machine (benchmarks/gpu/README.md) or set WHEELS" >&2
    exit 1
  fi
  "$python" -m pip install --quiet --no-index --no-deps --find-links "$wheels" \
    --target "$site" -r "$here/requirements.txt"
fi
exec "$python" "$here/kit.py" --output-dir "$out" "$@"
