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
    echo "setting up .venv (${extras:-chorus}); log in .venv/install.log" >&2
    # This project was installed as "chorus" before it was renamed chorus-replicated:
    # drop that install, if it is ours (it provides transport), so that two
    # distributions do not claim the same packages and the same command.
    if "$venv/bin/python" -c 'import importlib.metadata as m
raise SystemExit("transport" not in m.distribution("chorus").read_text("top_level.txt").split())' \
            2>/dev/null; then
        "$venv/bin/python" -m pip uninstall -y chorus > "$venv/uninstall.log" 2>&1
    fi
    if ! { "$venv/bin/python" -m pip install --upgrade pip \
           && "$venv/bin/python" -m pip install -e "$spec"; } > "$venv/install.log" 2>&1; then
        tail -n 30 "$venv/install.log" >&2
        echo "installing failed: see .venv/install.log" >&2
        exit 1
    fi
    touch "$stamp"
fi
PY="$venv/bin/python"
cd "$repo"
