"""The scorecard: WeatherBench 2 scores of several forecast systems on the same start dates and grid,
per field, level and lead; JSON in and out, a Markdown table and PNG plots.

Any forecast system can be scored: register it with :meth:`Scorecard.add_system` (a key, a label
saying what it is, its ensemble size) and hand it each lead of each field with :meth:`Scorecard.add`
(the truth and the climatology for that lead alongside). ``python -m atmorep_coupler.verify`` fills one
for the multiformer and its baselines; other forecasts (a hybrid, a longer run, an ensemble) use the
same API and land in the same JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from atmorep_coupler.verification.scores import METRICS, ForecastScores

__all__ = ["Scorecard", "System", "REPORTED_LEADS_HOURS", "format_lead"]

#: The leads the tables report (hours), where the scored leads have them.
REPORTED_LEADS_HOURS = (3, 6, 12, 24, 48, 72, 120, 240)


def format_lead(hours: float) -> str:
    """``3 h``, ``12 h``, ``1 d``, ``10 d``."""
    return f"{hours / 24:g} d" if hours >= 24 and hours % 24 == 0 else f"{hours:g} h"


@dataclass(frozen=True)
class System:
    """A forecast system on the scorecard."""

    key: str
    """Short identifier, e.g. ``persistence``."""
    label: str
    """What it is, in words (shown in tables and legends)."""
    ensemble_size: int | None = None
    """Members of an ensemble forecast; None for a single forecast."""


@dataclass
class Scorecard:
    """Scores by system, field, level and lead (see the module docstring).

    ``fields``: level labels per field (``["500hPa", ...]`` or ``["surface"]``); ``units`` per field;
    ``leads_hours``: the scored leads; ``latitudes``: the grid's rows (for the area weights).
    """

    fields: dict[str, list[str]]
    units: dict[str, str]
    leads_hours: list[float]
    latitudes: np.ndarray
    starts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    systems: dict[str, System] = field(default_factory=dict)
    _scores: dict[tuple[str, str], ForecastScores] = field(default_factory=dict, repr=False)
    _results: dict = field(default_factory=dict, repr=False)

    def add_system(self, key: str, label: str, ensemble_size: int | None = None) -> None:
        self.systems[key] = System(key, label, ensemble_size if ensemble_size and ensemble_size > 1 else None)

    def add(self, system: str, name: str, lead: int, forecast: np.ndarray, truth: np.ndarray,
            climatology: np.ndarray | None) -> None:
        """Score lead index ``lead`` (0-based into ``leads_hours``) of ``system`` for field ``name``:
        ``forecast [S, (M,) L, lat, lon]``, ``truth``/``climatology`` ``[S, L, lat, lon]`` (surface fields
        may leave out ``L``)."""
        spec = self.systems[system]
        if (system, name) not in self._scores:
            self._scores[system, name] = ForecastScores(len(self.leads_hours), len(self.fields[name]),
                                                        self.latitudes, spec.ensemble_size)
        levels = truth.ndim == 4
        expand = (lambda x: x) if levels else (lambda x: None if x is None else np.expand_dims(np.asarray(x), -3))  # noqa: E731
        self._scores[system, name].add(lead, expand(forecast), expand(truth), expand(climatology))

    # ------------------------------------------------------------------------------------ results
    def scores(self) -> dict:
        """``{system: {field: {level: {metric: [per lead]}}}}`` (NaN where not scored)."""
        out = dict(self._results)
        for (system, name), acc in self._scores.items():
            result = acc.result()
            out.setdefault(system, {})[name] = {
                label: {metric: result[metric][:, k].tolist() for metric in METRICS}
                for k, label in enumerate(self.fields[name])
            }
        return out

    def to_dict(self) -> dict:
        return {"leads_hours": list(self.leads_hours), "starts": list(self.starts), "fields": self.fields,
                "units": self.units, "latitudes": np.asarray(self.latitudes).tolist(),
                "systems": {k: {"label": s.label, "ensemble_size": s.ensemble_size} for k, s in self.systems.items()},
                "scores": _nan_to_none(self.scores()), "notes": list(self.notes), "info": self.info,
                "definitions": DEFINITIONS}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Scorecard:
        """A scorecard written by :meth:`save` (its scores only; it cannot take more forecasts)."""
        data = json.loads(Path(path).read_text())
        card = cls(data["fields"], data["units"], data["leads_hours"], np.asarray(data["latitudes"]),
                   data["starts"], data.get("notes", []), data.get("info", {}))
        for key, s in data["systems"].items():
            card.add_system(key, s["label"], s["ensemble_size"])
        card._results = _none_to_nan(data["scores"])
        return card

    def value(self, system: str, name: str, level: str, metric: str, hours: float) -> float:
        """One score at lead ``hours`` (NaN if that lead or system was not scored)."""
        try:
            k = self.leads_hours.index(hours)
            return float(self.scores()[system][name][level][metric][k])
        except (KeyError, ValueError):
            return math.nan

    def reported_leads(self) -> list[float]:
        """The leads of :data:`REPORTED_LEADS_HOURS` that were scored."""
        return [h for h in REPORTED_LEADS_HOURS if h in self.leads_hours]

    # ------------------------------------------------------------------------------------ tables
    def table(self, metric: str = "rmse", systems: Sequence[str] | None = None) -> list[str]:
        """Markdown rows: one per field, level and system, one column per reported lead."""
        leads = self.reported_leads()
        systems = list(systems or self.systems)
        lines = [f"| field ({metric.upper()}) | level | system | " + " | ".join(format_lead(h) for h in leads) + " |",
                 "|---|---|---|" + "---|" * len(leads)]
        for name, levels in self.fields.items():
            for level in levels:
                for key in systems:
                    values = [self.value(key, name, level, metric, h) for h in leads]
                    if all(math.isnan(v) for v in values):
                        continue
                    cells = ["n/a" if math.isnan(v) else f"{v:.4g}" for v in values]
                    lines.append(f"| {name} | {level} | {key} | " + " | ".join(cells) + " |")
        return lines

    def verdict(self, model: str, baselines: Sequence[str]) -> dict[str, dict[str, list[str]]]:
        """Per baseline, the reported leads at which ``model``'s RMSE is below the baseline's for
        every field and level (``all``), for some but not all (``some``), and for none (``none``)."""
        out = {}
        for base in baselines:
            verdicts: dict[str, list[str]] = {"all": [], "some": [], "none": []}
            for h in self.reported_leads():
                wins = [self.value(model, n, lv, "rmse", h) < self.value(base, n, lv, "rmse", h)
                        for n, levels in self.fields.items() for lv in levels
                        if not math.isnan(self.value(base, n, lv, "rmse", h))]
                if not wins:
                    continue
                verdicts["all" if all(wins) else "some" if any(wins) else "none"].append(format_lead(h))
            out[base] = verdicts
        return out


DEFINITIONS = {
    "weights": "latitude weights proportional to band areas (bounds midway and at the poles), mean 1, applied once",
    "rmse": "sqrt(mean over start dates of the area-weighted mean squared error); ensembles: of the ensemble mean",
    "bias": "mean over start dates of the area-weighted mean error (forecast - truth)",
    "acc": "mean over start dates of the uncentred anomaly correlation sum(w f'o')/sqrt(sum(w f'^2) sum(w o'^2)) "
           "against the out-of-sample climatology",
    "crps": "fair ensemble CRPS, area-weighted mean, mean over start dates (ensembles only)",
    "spread": "sqrt(mean over start dates of the area-weighted unbiased member variance) (ensembles only)",
    "spread_skill": "sqrt((M+1)/M) * spread / RMSE of the ensemble mean (ensembles only)",
}


def _nan_to_none(x):
    if isinstance(x, Mapping):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_nan_to_none(v) for v in x]
    return None if isinstance(x, float) and math.isnan(x) else x


def _none_to_nan(x):
    if isinstance(x, Mapping):
        return {k: _none_to_nan(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_none_to_nan(v) for v in x]
    return math.nan if x is None else x
