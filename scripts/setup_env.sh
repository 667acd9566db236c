#!/usr/bin/env bash
# Create (or reuse) the project virtual environment in .venv and install the project into it.
# torch==2.13.0 (CPU) is installed FIRST: any requirement admitting a newer torch would otherwise
# make pip download several GB of CUDA wheels. Re-running is cheap: the install is skipped while
# pyproject.toml is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
"$PYTHON" - <<'PY' || { echo "atmorep_coupler needs Python >= 3.11 (set PYTHON=...)" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $("$PYTHON" --version)"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.atmorep_coupler_installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing torch 2.13.0 (CPU) and the project (a few minutes the first time)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q -e ".[test]"
  if .venv/bin/python -m pip list 2>/dev/null | grep -qiE '^(nvidia-|triton )'; then
    echo "[setup] error: CUDA packages were pulled in; a dependency wants a torch other than 2.13.0" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi
