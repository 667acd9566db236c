#!/usr/bin/env bash
# The year-long climate run of the hybrid and its +4 K counterfactual, against the truth and the coarse
# model alone (hours on 2 CPU cores: measure first with `python bench/coupled.py`).
#
#   bash scripts/climate_run.sh CHECKPOINT [OUT] [DAYS] [RESPONSE_DAYS] [--set KEY=VALUE ...]
#
# CHECKPOINT: a trainer checkpoint of configs/default.yaml (e.g. the quickstart's last); OUT (default
# outputs/climate): where the runs, the diagnostics and report/report.md go; DAYS (default 365): the
# length of the hybrid and coarse-alone runs from 2000-12-31 (the truth store's second year is held out
# from training); RESPONSE_DAYS (default 90): the length of the +4 K counterfactual, whose control is the
# first RESPONSE_DAYS of the hybrid run. Each run continues from its restarts when re-started.
# COUPLING (environment; default coupling_configs/default.yaml, two-way; e.g. coupling_configs/one_way.yaml):
# the hybrid's coupling YAML, whose +4 K counterfactual is the same file with the CO2 scenario's
# warming_offset_K set to 4. Further arguments are --set overrides of the hybrid runs, e.g.
# --set components.atmorep.config.large_scales.tau=PT24H.
set -euo pipefail
cd "$(dirname "$0")/.."
CKPT=$(realpath "$1")
OUT=$(realpath -m "${2:-outputs/climate}")
DAYS=${3:-365}
RESPONSE_DAYS=${4:-90}
EXTRA=("${@:5}")
COUPLING=${COUPLING:-coupling_configs/default.yaml}
PY=.venv/bin/python
[ -x "$PY" ] || PY=python
START=2000-12-31T00:00:00
end() { "$PY" -c "import datetime as d, sys; print((d.datetime.fromisoformat('$START') + d.timedelta(days=float(sys.argv[1]))).isoformat())" "$1"; }
STORE=${STORE:-$("$PY" -m atmorep_coupler.data make-default | tail -1)}   # or an existing default store
WINDOW=(--set "run.start=$START" --set "run.end=$(end "$DAYS")")
MODELS=(--set "components.atmorep.config.checkpoint=$CKPT" --set "components.atmorep.config.initial_condition=$STORE"
        --set "components.classical.config.initialization.store=$STORE" "${EXTRA[@]}")
mkdir -p "$OUT"
"$PY" -m atmorep_coupler.run "$COUPLING" --out "$OUT/hybrid" "${WINDOW[@]}" "${MODELS[@]}"
"$PY" -m atmorep_coupler.run coupling_configs/coarse_alone.yaml --out "$OUT/coarse-alone" "${WINDOW[@]}" \
  --set "components.classical.config.initialization.store=$STORE"
"$PY" -m atmorep_coupler.analysis.climate --run "$OUT/hybrid" --coarse "$OUT/coarse-alone" --truth "$STORE" \
  --out "$OUT/climate"
"$PY" -m atmorep_coupler.run "$COUPLING" --out "$OUT/counterfactual" "${MODELS[@]}" \
  --set "run.start=$START" --set "run.end=$(end "$RESPONSE_DAYS")" --set components.co2.config.ramp.warming_offset_K=4.0
"$PY" -m atmorep_coupler.analysis.counterfactual --control "$OUT/hybrid" --counterfactual "$OUT/counterfactual" \
  --truth "$STORE" --out "$OUT/response" --no-progress
"$PY" -m atmorep_coupler.analysis.report --out "$OUT/report" --coupled "$OUT/hybrid" --truth "$STORE" \
  --climate "$OUT/climate" --response "$OUT/response"
echo "report: $OUT/report/report.md"
