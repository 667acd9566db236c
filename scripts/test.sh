#!/usr/bin/env bash
# Set up the environment and run the whole test suite (slow end-to-end tests included).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"`.
# Where the user may create network namespaces (root, or unprivileged user namespaces), the suite
# runs in a private one with only loopback, so no Ray or torch.distributed listener is reachable
# from outside.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export PYTHONUNBUFFERED=1
if unshare -n true 2>/dev/null; then
  exec unshare -n sh -c 'ip link set lo up 2>/dev/null || true; exec .venv/bin/python -m pytest -q "$@"' pytest "$@"
elif unshare -rn true 2>/dev/null; then
  exec unshare -rn sh -c 'ip link set lo up 2>/dev/null || true; exec .venv/bin/python -m pytest -q "$@"' pytest "$@"
else
  exec .venv/bin/python -m pytest -q "$@"
fi
