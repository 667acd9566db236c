"""The multiformer's imports in a coupled run, from many start dates, without running the multiformer.

In a one-way coupling YAML (``coupling_configs/one_way.yaml``, or ``default.yaml`` without its
couplings back to the coarse model: :func:`one_way`) the multiformer only *receives*: the coarse
classical model's state (``coarse_<field>``, regridded by the coupler) and the forcings, for the
target time of each of its steps. Nothing flows back, so what it receives does not depend on what it
predicts (a two-way YAML is refused here; :mod:`.two_way` runs it). :func:`coupled_imports` therefore runs the coupling YAML itself -- the same
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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from atmorep_coupler.component.atmorep import AtmoRepComponent
from atmorep_coupler.config import to_dict
from atmorep_coupler.coupling.build import RegridderCache
from atmorep_coupler.coupling.schema import COMPONENT_KINDS, CoupledRunConfig, load_coupling_config
from atmorep_coupler.errors import ConfigError

__all__ = ["ImportRecorder", "classical_components", "coupled_imports", "is_two_way", "multiformer_component",
           "one_way", "run_mapping", "spinup_sources"]

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
                    states_dir: Path | None = None, progress: bool = True) -> list[dict[str, np.ndarray]]:
    """Per start date, the imports of ``component`` at each of its steps: ``{name: [steps, *shape]}``.

    ``config`` is run as it is, per start date, for ``hours`` from the start (``run.start`` and
    ``run.end`` replaced, no outputs, no restarts, components in this process), with ``component``
    replaced by an :class:`ImportRecorder` and classical components chained (module docstring).
    ``states_dir``: where the chained classical states are kept (:func:`spinup_sources` names them);
    default a temporary folder.
    """
    if is_two_way(config, component):
        raise ConfigError(f"the coupling config couples {component!r} back to other components (two-way): its imports "
                          "depend on its forecasts and cannot be recorded without it; record its one-way variant "
                          "(verification.coupled.one_way) and run the two-way one with verification.two_way")
    base = to_dict(config)
    classical = classical_components(config)
    result, regridders = [], RegridderCache()  # the same grids every start: weights built once
    with tempfile.TemporaryDirectory(prefix="atmorep_verify_") as scratch:
        folder = Path(states_dir) if states_dir is not None else Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        sources = spinup_sources(classical, folder, len(starts))
        for k, start in enumerate(tqdm(starts, desc="coupled imports (coupling YAML per start date)", unit="start",
                                       disable=not progress)):
            mapping = run_mapping(base, component, RECORDER, start, hours, sources[k])
            run_config, _ = load_coupling_config(mapping)
            result.append(_run(run_config, component, classical, folder, k, Path(scratch) / start.strftime("%Y%m%dT%H"),
                               regridders))
    return result


def is_two_way(config: CoupledRunConfig, component: str) -> bool:
    """Whether anything of ``component`` flows to another component (a coupling from it)."""
    return any(c.from_ == component for c in config.couplings)


def one_way(config: CoupledRunConfig, component: str) -> CoupledRunConfig:
    """``config`` without its couplings from ``component``: the one-way variant of a two-way run."""
    mapping = to_dict(config)
    mapping["couplings"] = [c for c in mapping["couplings"] if c["from"] != component]
    return load_coupling_config(mapping)[0]


def classical_components(config: CoupledRunConfig) -> list[str]:
    """The classical components of ``config`` whose spin-up :func:`coupled_imports` chains."""
    return [n for n, spec in config.components.items()
            if COMPONENT_KINDS.get(spec.kind, spec.kind) == CLASSICAL and isinstance(spec.config, dict)
            and (spec.config.get("initialization") or {}).get("store")]


def spinup_sources(classical: Sequence[str], folder: Path, count: int) -> list[dict[str, Path]]:
    """Per start ``k`` of a chain, the state each classical component spins up from: none for the first
    (the YAML's spin-up from rest), the end state of start ``k - 1`` after it."""
    return [{} if k == 0 else {name: Path(folder) / f"{name}_state_{k - 1}.npz" for name in classical}
            for k in range(count)]


def run_mapping(base: dict, component: str, kind: str, start: dt.datetime, hours: float,
                sources: Mapping[str, Path]) -> dict[str, Any]:
    """The coupling mapping ``base`` for one start: ``hours`` from ``start``, no outputs or restarts, in
    this process, ``component`` of class ``kind``, classical components spun up from ``sources``."""
    mapping = copy.deepcopy(base)
    mapping["run"].update(start=start, end=start + dt.timedelta(hours=hours), restart=None, transport="inprocess")
    mapping["outputs"] = []
    mapping["components"][component]["kind"] = kind
    for name, state in sources.items():
        settings = mapping["components"][name]["config"]
        settings.update(spinup_from=str(state), spinup_days=settings["initialization"].get("days", 5.0))
    return mapping


def _run(config: CoupledRunConfig, component: str, classical: Sequence[str], folder: Path, k: int,
         out: Path, regridders: RegridderCache) -> dict[str, np.ndarray]:
    from atmorep_coupler.coupling.driver import CoupledRun

    with CoupledRun(config, base_dir=out, out_dir=out, progress=False, resume=False, regridders=regridders) as run:
        run.run()
        records = run.components[component].records
        for name in classical:
            np.savez(Path(folder) / f"{name}_state_{k}.npz", **run.components[name].model.get_state())
    if not records:
        raise ConfigError(f"the coupled run from {config.run.start} made no step of {component!r}")
    return {name: np.stack([r[name] for r in records]) for name in records[0]}
