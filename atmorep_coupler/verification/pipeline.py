"""The verification of a trained multiformer: forecasts from many start dates and every baseline, scored.

Steps (each with a progress bar; the wall time of each lands in the scorecard's ``info``):

1. **Start dates** (:func:`default_starts`): ``count`` dates evenly spread, at 00 or 12 UTC, over the
   truth store's times *after* the checkpoint's training and validation periods, leaving room for the
   multiformer's context window, the classical model's nudged initialisation before each start and the
   forecast after it. Given start dates whose forecasts overlap the training period are refused.
2. **Truth and climatologies** at every lead of every start date. The *out-of-sample* climatology
   (:class:`.climatology.Climatology`) comes from ``climatology_store`` over ``climatology_period``,
   smoothed over day of year; by default the truth store over the checkpoint's training period (a
   climatology from the truth store that contains a verified time is refused), or the whole of
   another store (e.g. an independent realisation of the same climate). ACC is computed against it. The in-sample climatology (the truth store itself, every time) is shown
   beside it, labelled.
3. **Persistence** (the truth at the start) and the climatologies are scored.
4. **Coupled**: the coupling YAML -- its one-way variant if it couples the multiformer back (two-way) --
   is run per start date without the multiformer (:mod:`.coupled`); the recorded ``coarse_<field>``
   imports are the **coarse classical model alone**, regridded to the fine grid by the coupler's
   regridder, scored as a baseline; then the multiformer's forecasts from all start dates are made
   together from the recorded imports (:mod:`.forecasts`): the one-way hybrid. A two-way YAML is then
   run as it is, all start dates in lockstep, the coarse model started from the same states
   (:mod:`.two_way`): ``multiformer_coupled`` is always the YAML as written.
5. **Perfect conditioning** (upper bound): the same forecasts with every import read from the truth
   store as in training (``coarse_<field>``: the store's nudged coarse run, or the truth coarsened to the
   classical grid and back; forcings from the store), labelled as such.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from atmorep_coupler.component.atmorep import AtmoRepComponent
from atmorep_coupler.coupling.build import component_config
from atmorep_coupler.coupling.schema import COMPONENT_KINDS
from atmorep_coupler.data.store import ERA5Store, open_store
from atmorep_coupler.errors import ConfigError, DataError
from atmorep_coupler.model.checkpoint import load_checkpoint
from atmorep_coupler.model.metrics import level_labels
from atmorep_coupler.training.config import run_config_from_yaml
from atmorep_coupler.verification.climatology import Climatology
from atmorep_coupler.verification.coupled import (classical_components, coupled_imports, is_two_way,
                                                  multiformer_component, one_way, spinup_sources)
from atmorep_coupler.verification.forecasts import build_components, perfect_imports, run_forecasts
from atmorep_coupler.verification.scorecard import Scorecard
from atmorep_coupler.verification.two_way import two_way_forecasts

__all__ = ["VerifySettings", "default_starts", "verify"]

SYSTEMS = {
    "multiformer_coupled": "multiformer coupled to the coarse model and forcings (as the coupling YAML)",
    "multiformer_one_way": "multiformer coupled one way (the YAML without its couplings back to the coarse model)",
    "multiformer_perfect": "multiformer, conditioning read from the truth store as in training (upper bound)",
    "coarse_model": "coarse classical model alone (regridded to the fine grid)",
    "persistence": "persistence (the truth at the start)",
    "climatology": "climatology, out of sample",
    "climatology_in_sample": "climatology, in sample (the truth store itself; optimistic)",
}


@dataclass(frozen=True)
class VerifySettings:
    """What :func:`verify` verifies and how (the CLI's options, ``python -m atmorep_coupler.verify``)."""

    checkpoint: Path
    store: Path
    coupling: Path
    overrides: tuple[str, ...] = ()
    starts: tuple[dt.datetime, ...] = ()
    count: int = 16
    hours: float = 240.0
    members: int | None = None
    climatology_store: Path | None = None
    climatology_period: tuple[dt.datetime, dt.datetime] | None = None
    climatology_window_days: float = 61.0
    coupled: bool = True
    perfect: bool = True
    in_sample: bool = True
    tile_batch_size: int = 256
    component: str | None = None


def default_starts(store: ERA5Store, after: dt.datetime | None, count: int, hours: float, before_hours: float,
                   ) -> list[dt.datetime]:
    """``count`` start dates at 00 or 12 UTC, evenly spread over the store's times after ``after``, with
    ``before_hours`` of data before each start and ``hours`` after it."""
    first_time = _datetime(store.times[0]) + dt.timedelta(hours=before_hours)
    lo = max(first_time, (after or first_time) + dt.timedelta(hours=before_hours))
    hi = _datetime(store.times[-1]) - dt.timedelta(hours=hours)
    lo = _ceil_12h(lo)
    if hi < lo:
        raise DataError(f"{store.path}: no room for a {hours:g} h forecast after {lo.isoformat()} (the store ends "
                        f"{str(store.times[-1])[:16]}); shorten --hours or use a longer store")
    slots = int((hi - lo) / dt.timedelta(hours=12)) + 1
    picks = np.unique(np.round(np.linspace(0, slots - 1, min(count, slots))).astype(int))
    return [lo + dt.timedelta(hours=12 * int(k)) for k in picks]


def _datetime(t: np.datetime64) -> dt.datetime:
    return dt.datetime.fromisoformat(str(np.datetime64(t, "s")))


def _ceil_12h(t: dt.datetime) -> dt.datetime:
    base = dt.datetime(t.year, t.month, t.day)
    for k in range(3):
        candidate = base + dt.timedelta(hours=12 * k)
        if candidate >= t:
            return candidate
    raise AssertionError("unreachable")


def verify(settings: VerifySettings, *, progress: bool = True) -> Scorecard:
    """Run the verification (module docstring) and return the filled scorecard."""
    from atmorep_coupler.coupling.overrides import load_config

    clock = _Timer()
    truth = open_store(settings.store)
    model, state = load_checkpoint(settings.checkpoint)
    run_config = run_config_from_yaml(state["config"], origin=str(settings.checkpoint))
    config, base = load_config(settings.coupling, settings.overrides)
    mf = multiformer_component(config, settings.component)
    classical = [n for n, s in config.components.items()
                 if COMPONENT_KINDS.get(s.kind, s.kind) == COMPONENT_KINDS["classical"]]
    assignments = [f"components.{mf}.config.checkpoint={Path(settings.checkpoint).resolve()}",
                   f"components.{mf}.config.initial_condition={Path(settings.store).resolve()}"]
    for name in classical:
        if isinstance(config.components[name].config, dict) and "initialization" in config.components[name].config:
            assignments.append(f"components.{name}.config.initialization.store={Path(settings.store).resolve()}")
    if settings.members is not None:
        assignments.append(f"components.{mf}.ensemble={{members: {settings.members}}}")
    config, base = load_config(settings.coupling, [*assignments, *settings.overrides])
    _, mf_settings, mf_dir, _ = component_config(mf, config, base)
    step_hours = config.components[mf].timestep.total_seconds() / 3600.0
    steps = int(round(settings.hours / step_hours))
    if steps < 1 or abs(steps * step_hours - settings.hours) > 1e-6:
        raise ConfigError(f"--hours {settings.hours:g} must be a whole number (>= 1) of the multiformer's "
                          f"{step_hours:g} h steps")

    training = run_config.data.train
    held_out_after = max((p.end for p in (training, run_config.data.validation) if p is not None and p.end), default=None)
    before = _before_hours(config, classical, model.neighbourhood[0], truth)
    starts = list(settings.starts) or default_starts(truth, held_out_after, settings.count, settings.hours, before)
    _refuse_training_overlap(starts, settings.hours, training)
    leads = [(k + 1) * step_hours for k in range(steps)]

    fields = {f.name: level_labels(f) for f in model.predicted_fields}
    predicted = {f.name: f for f in model.predicted_fields}
    card = Scorecard(fields, {n: truth.units(truth.resolve(f.variable)) for n, f in predicted.items()}, leads,
                     np.asarray(truth.latitudes), [s.isoformat() for s in starts])
    card.info.update(checkpoint=str(settings.checkpoint), truth_store=str(truth.path), coupling=str(settings.coupling),
                     overrides=list(settings.overrides), start_count=len(starts), hours=settings.hours,
                     step_hours=step_hours)

    # ---------------------------------------------------------------- truth and climatologies
    with clock("truth and climatologies"):
        target_times = np.array([[np.datetime64(s + dt.timedelta(hours=h), "ns") for h in [0.0, *leads]] for s in starts])
        truth_values = {n: _read_at(truth, f.variable, f.levels, target_times) for n, f in predicted.items()}
        climatology_store = open_store(settings.climatology_store) if settings.climatology_store else truth
        same_store = str(climatology_store.path) == str(truth.path)
        period = settings.climatology_period
        if period is None and same_store:  # the truth store: out of sample only over the training period
            period = (training.start or _datetime(truth.times[0]), training.end or _datetime(truth.times[-1]))
        out_of_sample = Climatology(climatology_store, None if period is None else
                                    tuple(np.datetime64(p, "ns") for p in period),
                                    settings.climatology_window_days, label="out-of-sample climatology")
        if same_store:
            _refuse_overlap(out_of_sample, target_times)
        climatologies = {"climatology": out_of_sample}
        if settings.in_sample:
            climatologies["climatology_in_sample"] = Climatology(truth, None, settings.climatology_window_days,
                                                                 label="in-sample climatology")
        clim_values = {key: {n: _clim_at(c, f, target_times[:, 1:]) for n, f in predicted.items()}
                       for key, c in climatologies.items()}
        card.notes.append(out_of_sample.describe())
        if settings.in_sample:
            card.notes.append(climatologies["climatology_in_sample"].describe() + " (contains the verified times)")
    reference = clim_values["climatology"]

    def score(system: str, lead: int, forecasts: dict[str, np.ndarray]) -> None:
        for name, values in forecasts.items():
            card.add(system, name, lead - 1, values, truth_values[name][:, lead], reference[name][:, lead - 1])

    # ---------------------------------------------------------------- persistence and climatology
    with clock("persistence and climatology"):
        card.add_system("persistence", SYSTEMS["persistence"])
        for key in climatologies:
            card.add_system(key, SYSTEMS[key])
        for lead in range(1, steps + 1):
            score("persistence", lead, {n: v[:, 0] for n, v in truth_values.items()})
            for key in climatologies:
                score(key, lead, {n: v[:, lead - 1] for n, v in clim_values[key].items()})

    members, tiling = None, None
    tile_batch = {"tile_batch_size": settings.tile_batch_size}
    # ---------------------------------------------------------------- coupled: coarse model alone, multiformer
    if settings.coupled:
        two_way = is_two_way(config, mf)
        with tempfile.TemporaryDirectory(prefix="atmorep_verify_states_") as states:
            with clock("coupled runs of the coarse model and forcings"):
                recorded = coupled_imports(one_way(config, mf) if two_way else config, mf, starts, settings.hours,
                                           states_dir=Path(states), progress=progress)
            components = build_components(mf_settings, mf_dir, starts, settings.hours, **tile_batch)
            members, tiling = components[0].members, _tiling(components[0])
            coarse = _coarse_fields(components[0], predicted)
            if coarse:
                card.add_system("coarse_model", SYSTEMS["coarse_model"])
                for lead in range(1, steps + 1):
                    score("coarse_model", lead, {n: np.stack([r[c][lead - 1] for r in recorded]) for n, c in coarse.items()})
            one_way_key = "multiformer_one_way" if two_way else "multiformer_coupled"
            card.add_system(one_way_key, SYSTEMS[one_way_key], members)
            with clock(f"multiformer forecasts, coupled{' one way' if two_way else ''}"):
                run_forecasts(components, recorded, steps, lambda k, f: score(one_way_key, k, f),
                              desc=f"multiformer, coupled one way ({len(starts)} start dates)", progress=progress)
            del components, recorded
            if two_way:  # the YAML as it is, all start dates in lockstep, the coarse model started as above
                card.add_system("multiformer_coupled", SYSTEMS["multiformer_coupled"], members)
                sources = spinup_sources(classical_components(config), Path(states), len(starts))
                with clock("multiformer forecasts, coupled two ways"), \
                        tqdm(total=steps, desc=f"multiformer, coupled two ways ({len(starts)} start dates)", unit="step",
                             disable=not progress) as bar:
                    def two_way_lead(k: int, f) -> None:
                        score("multiformer_coupled", k, f)
                        bar.update(1)

                    two_way_forecasts(config, mf, starts, settings.hours, sources, two_way_lead)
    # ---------------------------------------------------------------- perfect conditioning (upper bound)
    if settings.perfect:
        components = build_components(mf_settings, mf_dir, starts, settings.hours, **tile_batch)
        members, tiling = components[0].members, _tiling(components[0])
        card.add_system("multiformer_perfect", SYSTEMS["multiformer_perfect"], members)
        with clock("multiformer forecasts, perfect conditioning"):
            imports = [perfect_imports(c, truth, steps) for c in components]
            run_forecasts(components, imports, steps, lambda k, f: score("multiformer_perfect", k, f),
                          desc=f"multiformer, perfect conditioning ({len(starts)} start dates)", progress=progress)
    card.info.update(members=members or 1, tiling=tiling, wall_time_s=clock.seconds)
    return card


class _Timer:
    """Wall seconds per named stage (``seconds``), in order."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._start = time.perf_counter()

    def __call__(self, name: str):
        timer = self

        class _Stage:
            def __enter__(self):
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                timer.seconds[name] = round(time.perf_counter() - self.start, 2)
                timer.seconds["total"] = round(time.perf_counter() - timer._start, 2)

        return _Stage()


def _before_hours(config, classical: Sequence[str], nt: int, truth: ERA5Store) -> float:
    """Hours of truth a start needs before it: the context window and the classical initialisation."""
    step = float((truth.times[1] - truth.times[0]) / np.timedelta64(1, "h")) if truth.times.size > 1 else 0.0
    hours = (nt - 1) * step
    for name in classical:
        settings = config.components[name].config
        if isinstance(settings, dict) and (settings.get("initialization") or {}).get("store"):
            hours = max(hours, 24.0 * float(settings["initialization"].get("days", 5.0)))
    return hours


def _refuse_training_overlap(starts: Sequence[dt.datetime], hours: float, training) -> None:
    lo, hi = training.start or dt.datetime.min, training.end or dt.datetime.max
    for s in starts:
        if s < hi and s + dt.timedelta(hours=hours) > lo:
            raise ConfigError(f"start {s.isoformat()}: its forecast to +{hours:g} h overlaps the checkpoint's training "
                              f"period {lo} .. {hi}; verify on held-out times")


def _refuse_overlap(climatology: Climatology, target_times: np.ndarray) -> None:
    """An 'out-of-sample' climatology from the truth store must not contain a verified time."""
    used = climatology.store.times[climatology.index]
    clash = np.intersect1d(used, target_times[:, 1:].ravel())
    if clash.size:
        raise ConfigError(f"{climatology.describe()} contains verified times (e.g. {str(clash[0])[:16]}); it would "
                          "not be out of sample: choose --climatology-period outside the forecasts, or another "
                          "--climatology-store")


def _read_at(store: ERA5Store, variable: str, levels, times: np.ndarray) -> np.ndarray:
    """``[S, K, (L,) lat, lon]`` of ``variable`` at ``times [S, K]``."""
    index = np.array([[store.time_index(t) for t in row] for row in times])
    values = store.read(store.resolve(variable), time=index.ravel(), levels=list(levels) or None)
    return values.reshape(*index.shape, *values.shape[1:])


def _clim_at(climatology: Climatology, f, times: np.ndarray) -> np.ndarray:
    values = climatology.values(climatology.store.resolve(f.variable), list(f.levels) or None, times.ravel())
    return values.reshape(*times.shape, *values.shape[1:])


def _coarse_fields(component: AtmoRepComponent, predicted: dict) -> dict[str, str]:
    """Predicted field -> the input-only coarse-model field of the same variable and levels, if any: the
    ``coarse:`` transform of the variable, or the store's ``coarse_<variable>`` (the default data's run)."""
    out = {}
    for spec in component.inputs:
        f = spec.config
        family = (f.transform or "").partition(":")[0]
        for name, p in predicted.items():
            same = f.variable == p.variable if family == "coarse" else f.variable == f"coarse_{p.variable}"
            if same and tuple(p.levels) == tuple(f.levels):
                out[name] = f.name
    return out


def _tiling(component: AtmoRepComponent) -> dict:
    t = component.tiling
    return {"tiles": t.count, "tile": list(t.tile), "overlap": list(t.overlap), "staggered": component.config.tile_stagger,
            "tile_batch_size": component.config.tile_batch_size}
