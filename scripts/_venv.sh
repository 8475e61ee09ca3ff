# Sourced by scripts/demo and scripts/test: make .venv with chorus installed.
# Usage: . scripts/_venv.sh [EXTRAS]   (e.g. "dev"; none for the library alone)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
extras="${1:-}"
spec="$repo"
[ -n "$extras" ] && spec="$repo[$extras]"
stamp="$venv/.installed-${extras:-base}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
# Reinstall when pyproject.toml changes, otherwise skip the network.
if [ ! -f "$stamp" ] || [ "$repo/pyproject.toml" -nt "$stamp" ]; then
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -e "$spec"
    touch "$stamp"
fi
PY="$venv/bin/python"
cd "$repo"
