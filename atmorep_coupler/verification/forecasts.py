"""Multiformer forecasts from many start dates at once, made the way a user runs the model.

One :class:`~atmorep_coupler.component.atmorep.AtmoRepComponent` per start date, configured as the
coupling YAML configures the multiformer (tiling, blending, ensemble, device), each started at its
start date from the truth store's context window. Every step sets each component's imports (the
recorded coupled imports of :mod:`.coupled`, or :func:`perfect_imports` from the truth) and steps all
components together (:func:`~atmorep_coupler.component.atmorep.step_together`): the tiles of all
start dates go through the network in shared calls. After each step the predictions are handed to
a callback, lead by lead, so nothing of a whole forecast is held.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from atmorep_coupler.component.atmorep import AtmoRepComponent, member_item, step_together
from atmorep_coupler.data.sampler import transform_reader
from atmorep_coupler.data.store import ERA5Store

__all__ = ["build_components", "members_of", "perfect_imports", "run_forecasts"]

#: ``on_lead(lead, {field: [S, (M,) L, lat, lon]})`` with lead = 1, 2, ... component steps.
LeadCallback = Callable[[int, Mapping[str, np.ndarray]], None]


def build_components(settings: Mapping, config_dir: Path, starts: Sequence[dt.datetime], hours: float,
                     **overrides) -> list[AtmoRepComponent]:
    """One multiformer component per start date from a component config mapping (clock keys included,
    as :func:`atmorep_coupler.coupling.build.component_config` gives them), with ``start``/``end`` per
    start date and ``overrides`` (e.g. ``tile_batch_size``) applied."""
    components = []
    for start in starts:
        mapping = {**settings, **overrides, "start": start, "end": start + dt.timedelta(hours=hours)}
        components.append(AtmoRepComponent.from_config(mapping, config_dir=config_dir))
    return components


def perfect_imports(component: AtmoRepComponent, store: ERA5Store, steps: int) -> dict[str, np.ndarray]:
    """The imports of ``component`` for its next ``steps`` steps taken from the truth ``store``: each
    input-only field read as in training (its transform, e.g. the truth coarsened to the classical
    model's grid for ``coarse_<field>``) at each step's target time: ``{name: [steps, *shape]}``."""
    dt_s = component.get_time_step()
    now = component.get_current_time()
    targets = [component.datetime_at(now + k * dt_s) for k in range(1, steps + 1)]
    index = np.array([store.time_index(np.datetime64(t.isoformat())) for t in targets])
    imports = {}
    for spec in component.inputs:
        f = spec.config
        reader = transform_reader(f.transform) if f.transform else ERA5Store.read
        values = reader(store, spec.variable, time=index, levels=list(f.levels) or None)
        imports[spec.name] = np.asarray(values, dtype=np.float32).reshape(steps, *component.grid_of(spec.name).shape)
    return imports


def run_forecasts(components: Sequence[AtmoRepComponent], imports: Sequence[Mapping[str, np.ndarray]], steps: int,
                  on_lead: LeadCallback, *, desc: str = "multiformer forecasts", progress: bool = True) -> None:
    """Step all ``components`` ``steps`` times together, each with its own ``imports`` (``{name: [steps, ...]}``),
    and call ``on_lead`` after every step with the predicted fields of all start dates (the ensemble's
    members ``[S, M, L, lat, lon]`` when the components run more than one member, else ``[S, L, lat, lon]``)."""
    fields = [spec.name for spec in components[0].predicted]
    members = components[0].members
    for k in tqdm(range(steps), desc=desc, unit="step", disable=not progress):
        for component, given in zip(components, imports):
            for name, values in given.items():
                component.set_value(name, values[k].reshape(-1))
        step_together(components)
        on_lead(k + 1, {name: np.stack([members_of(c, name, members) for c in components]) for name in fields})


def members_of(component: AtmoRepComponent, name: str, members: int) -> np.ndarray:
    """The field's ensemble members ``[M, ...]`` (the field itself when there is one member)."""
    if members == 1:
        return component.get_field(name).values
    return np.stack([component.get_field(member_item(name, k)).values for k in range(members)])
