"""The multiformer's imports in a coupled run, from many start dates, without running the multiformer.

In a coupling YAML such as ``coupling_configs/default.yaml`` the multiformer only *receives*: the
coarse classical model's state (``coarse_<field>``, regridded by the coupler) and the forcings, for
the target time of each of its steps. Nothing flows back, so what it receives does not depend on
what it predicts. :func:`coupled_imports` therefore runs the coupling YAML itself -- the same
components, couplings, regridders, units and initialisation -- once per start date, with the
multiformer's place taken by an :class:`ImportRecorder` (the same component config, items and grids;
it records each import instead of predicting). The forecasts of all start dates are then made in
batches from the recorded imports (:mod:`.forecasts`), and the recorded ``coarse_<field>`` is the
coarse model alone on the fine grid, regridded by the project's regridder as in the coupled run.

**Chained spin-up.** A classical component of the YAML (``components.classical:ClassicalModel``)
spins up ``spinup_days`` from rest before its start and ends nudged toward the truth store
(``initialization``). The first start date runs exactly that. Each later one begins its spin-up
from the classical model's state at the end of the previous start's run (``spinup_from``) and runs
only the nudged ``initialization.days``: a spun-up climate state nudged toward the truth up to the
start, as the YAML's own spin-up produces, at a fraction of the cost.
"""

from __future__ import annotations

import copy
import datetime as dt
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from atmorep_coupler.component.atmorep import AtmoRepComponent
from atmorep_coupler.config import to_dict
from atmorep_coupler.coupling.build import RegridderCache
from atmorep_coupler.coupling.schema import COMPONENT_KINDS, CoupledRunConfig, load_coupling_config
from atmorep_coupler.errors import ConfigError

__all__ = ["ImportRecorder", "coupled_imports", "multiformer_component"]

RECORDER = f"{__name__}:ImportRecorder"
CLASSICAL = COMPONENT_KINDS["classical"]


class ImportRecorder(AtmoRepComponent):
    """The multiformer's place in a coupled run: its config, items and grids; every step records the
    imports (set for the step's target time) instead of predicting. ``records``: one dict per step."""

    def _initialize(self, config) -> None:
        super()._initialize(config)
        self.records: list[dict[str, np.ndarray]] = []

    def _advance(self, dt: float) -> None:
        self.records.append({spec.name: np.array(self._arrays[spec.name], copy=True) for spec in self.inputs})


def multiformer_component(config: CoupledRunConfig, name: str | None = None) -> str:
    """The id of the multiformer component of a coupling config (``kind: atmorep``), or ``name``."""
    atmorep = COMPONENT_KINDS["atmorep"]
    found = [n for n, spec in config.components.items() if COMPONENT_KINDS.get(spec.kind, spec.kind) == atmorep]
    if name is not None:
        if name not in config.components:
            raise ConfigError(f"--component {name!r}: the coupling config has components {sorted(config.components)}")
        return name
    if len(found) != 1:
        raise ConfigError(f"the coupling config has {len(found)} multiformer components ({found}); name one "
                          "with --component")
    return found[0]


def coupled_imports(config: CoupledRunConfig, component: str, starts: Sequence[dt.datetime], hours: float, *,
                    progress: bool = True) -> list[dict[str, np.ndarray]]:
    """Per start date, the imports of ``component`` at each of its steps: ``{name: [steps, *shape]}``.

    ``config`` is run as it is, per start date, for ``hours`` from the start (``run.start`` and
    ``run.end`` replaced, no outputs, no restarts, components in this process), with ``component``
    replaced by an :class:`ImportRecorder` and classical components chained (module docstring).
    """
    base = to_dict(config)
    classical = [n for n, spec in config.components.items()
                 if COMPONENT_KINDS.get(spec.kind, spec.kind) == CLASSICAL and isinstance(spec.config, dict)]
    result, regridders = [], RegridderCache()  # the same grids every start: weights built once
    with tempfile.TemporaryDirectory(prefix="atmorep_verify_") as scratch:
        states: dict[str, Path] = {}
        for start in tqdm(starts, desc="coupled imports (coupling YAML per start date)", unit="start",
                          disable=not progress):
            mapping = _run_mapping(base, component, start, hours, classical, states)
            run_config, _ = load_coupling_config(mapping)
            result.append(_run(run_config, component, classical, states, Path(scratch) / start.strftime("%Y%m%dT%H"),
                               regridders))
    return result


def _run_mapping(base: dict, component: str, start: dt.datetime, hours: float, classical: Sequence[str],
                 states: dict[str, Path]) -> dict[str, Any]:
    mapping = copy.deepcopy(base)
    mapping["run"].update(start=start, end=start + dt.timedelta(hours=hours), restart=None, transport="inprocess")
    mapping["outputs"] = []
    mapping["components"][component]["kind"] = RECORDER
    for name in classical:
        settings = mapping["components"][name]["config"]
        init = settings.get("initialization") or {}
        if name in states and init.get("store"):
            settings.update(spinup_from=str(states[name]), spinup_days=init.get("days", 5.0))
    return mapping


def _run(config: CoupledRunConfig, component: str, classical: Sequence[str], states: dict[str, Path],
         out: Path, regridders: RegridderCache) -> dict[str, np.ndarray]:
    from atmorep_coupler.coupling.driver import CoupledRun

    with CoupledRun(config, base_dir=out, out_dir=out, progress=False, resume=False, regridders=regridders) as run:
        run.run()
        records = run.components[component].records
        for name in classical:
            states[name] = out.parent / f"{name}_state.npz"
            np.savez(states[name], **run.components[name].model.get_state())
    if not records:
        raise ConfigError(f"the coupled run from {config.run.start} made no step of {component!r}")
    return {name: np.stack([r[name] for r in records]) for name in records[0]}
