"""Forecasts of a two-way coupled run from many start dates at once.

When the coupling YAML couples the multiformer back to the coarse model (``coupling_configs/default.yaml``:
its state is the classical model's nudging target), what the multiformer receives depends on what it
predicted, so its imports cannot be recorded without it (:mod:`.coupled`). Here the YAML runs as it
is, once per start date, all start dates side by side: each run in a thread of its own, its multiformer
a :class:`LockstepMultiformer`. A multiformer's step waits until the multiformers of all runs reached
the same step; the last to arrive predicts all of them in shared network calls
(:func:`~atmorep_coupler.component.atmorep.predict_steps`, as ``step_together``) and hands the predictions
of all start dates to a callback, lead by lead. Everything else of each run (the classical model, the
forcings, the couplings both ways, regridding and units) is the YAML's, untouched.

The classical model of start ``k`` spins up from the state the one-way pass of
:func:`.coupled.coupled_imports` chained for it (:func:`.coupled.spinup_sources`), so both passes start
the coarse model from the same state.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from atmorep_coupler.component.atmorep import AtmoRepComponent, predict_steps
from atmorep_coupler.config import to_dict
from atmorep_coupler.coupling.build import RegridderCache
from atmorep_coupler.coupling.schema import CoupledRunConfig, load_coupling_config
from atmorep_coupler.errors import ConfigError
from atmorep_coupler.verification.coupled import run_mapping
from atmorep_coupler.verification.forecasts import LeadCallback, members_of

__all__ = ["Lockstep", "LockstepMultiformer", "two_way_forecasts"]

LOCKSTEP = f"{__name__}:LockstepMultiformer"


class Lockstep:
    """Steps the multiformers of several runs together: each run's thread calls :meth:`step`; the last to
    arrive predicts all pending steps in shared network calls and calls ``on_lead``."""

    def __init__(self, count: int, on_lead: LeadCallback) -> None:
        self.components: list[AtmoRepComponent] = []
        self.on_lead, self.lead = on_lead, 0
        self._pending: dict[int, object] = {}
        self._lock = threading.Lock()
        self._barrier = threading.Barrier(count, action=self._predict)

    def step(self, component: AtmoRepComponent, dt: float) -> None:
        begun = component._begin_step(dt)
        with self._lock:
            self._pending[id(component)] = begun
        self._barrier.wait()

    def abort(self) -> None:
        self._barrier.abort()

    def _predict(self) -> None:
        predict_steps([(c, self._pending.pop(id(c))) for c in self.components])
        self.lead += 1
        first = self.components[0]
        self.on_lead(self.lead, {spec.name: np.stack([members_of(c, spec.name, first.members) for c in self.components])
                                 for spec in first.predicted})


class LockstepMultiformer(AtmoRepComponent):
    """The multiformer of one run among several stepped together (``lockstep`` set before the run)."""

    lockstep: Lockstep

    def _advance(self, dt: float) -> None:
        self.lockstep.step(self, dt)


def two_way_forecasts(config: CoupledRunConfig, component: str, starts: Sequence[dt.datetime], hours: float,
                      sources: Sequence[Mapping[str, Path]], on_lead: LeadCallback) -> None:
    """Run ``config`` as it is from each of ``starts`` for ``hours``, the multiformers of all runs stepped
    together (module docstring), calling ``on_lead`` after every step; ``sources[k]``: per classical
    component the state its spin-up for start ``k`` begins from (:func:`.coupled.spinup_sources`)."""
    from atmorep_coupler.coupling.driver import CoupledRun

    base = to_dict(config)
    lockstep = Lockstep(len(starts), on_lead)
    runs, regridders = [], RegridderCache()
    with tempfile.TemporaryDirectory(prefix="atmorep_verify_two_way_") as scratch:
        try:
            for start, given in zip(starts, sources):
                run_config, _ = load_coupling_config(run_mapping(base, component, LOCKSTEP, start, hours, given))
                out = Path(scratch) / start.strftime("%Y%m%dT%H")
                runs.append(CoupledRun(run_config, base_dir=out, out_dir=out, progress=False, resume=False,
                                       regridders=regridders))
                runs[-1].components[component].lockstep = lockstep
                lockstep.components.append(runs[-1].components[component])
            _run_threads(runs, lockstep)
        finally:
            for run in runs:
                run.close()
    if lockstep.lead == 0:
        raise ConfigError(f"the two-way runs made no step of {component!r}")


def _run_threads(runs: Sequence, lockstep: Lockstep) -> None:
    """``run.run()`` of every run in a thread of its own; the first error aborts the others and is raised."""
    errors: list[BaseException] = []

    def target(run) -> None:
        try:
            run.run()
        except threading.BrokenBarrierError:
            pass  # another run failed first
        except BaseException as exc:  # noqa: BLE001 -- handed to the caller below
            errors.append(exc)
            lockstep.abort()

    threads = [threading.Thread(target=target, args=(run,), name=f"two-way run {k}") for k, run in enumerate(runs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
