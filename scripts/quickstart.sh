#!/usr/bin/env bash
# Set up the environment and run the main job on the embedded default data: generate (or reuse) the
# default Held–Suarez dataset, train with Ray Train, evaluate, run the coupled runs, write the report.
# Extra arguments go to `python -m atmorep_coupler.quickstart` (e.g. --tiny for a 2-minute smoke run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export PYTHONUNBUFFERED=1
exec .venv/bin/python -m atmorep_coupler.quickstart "$@"
