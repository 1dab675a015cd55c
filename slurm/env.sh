# Sourced by the sbatch scripts once they have set $root (the project checkout): enter it and
# activate the project's Python environment (the active $VIRTUAL_ENV, else ./.venv).
cd "$root"
if [[ -n "${VIRTUAL_ENV:-}" ]]; then
    source "$VIRTUAL_ENV/bin/activate"
elif [[ -f "$root/.venv/bin/activate" ]]; then
    source "$root/.venv/bin/activate"
fi
