"""The run loop of a coupled simulation driven by a coupling YAML.

Time is counted in whole seconds since ``run.start``. Each component steps with its own
``timestep``; each coupling has a ``period`` P (a multiple of both components' timesteps) and a
``lag`` L (a multiple of P).

**Order of operations.** The run advances in synchronisation intervals S (the least common
multiple of all periods and timesteps: at multiples of S every component is at the same time and
every coupling window is closed). The configuration is compiled into the run sequence
(:mod:`.sequence`), which this driver executes stage by stage: within an interval the components are
walked (in an order where zero-lag sources come before their destinations), each taking as many steps
as it can. Before a component takes a step that starts one of its import windows ``[T, T + P)``, it
receives every import due at T (``get``: ``set_field``); a step may only start when those imports exist.
After every step the component's exports are sampled for each coupling it feeds (``put``: all steps for
average/accumulate/min/max; only the step ending a window for instant) and for its outputs. When a
source reaches a window end E, the window ``(E - P, E]`` is reduced, converted and regridded: the put
for E.

**Lag in time units.** The import for the destination window ``[T, T + P)`` is the put for
``E = T + P - L``. ``L = 0``: the source's reduction over the same span, so the source runs the
window first (sequential coupling; zero-lag couplings may not form a cycle). ``L = P``: the window
that ended at T, so the two sides may run the span in any order (the usual way to close a two-way
coupling). ``L = kP`` looks k windows back.

**t = 0.** A put for a window ending at or before the start (``E <= 0``, which happens for the
first ``L / P`` windows) is the source's initial state: one instant sample taken before anyone
steps, whatever the time reduction.

**Determinism.** Every component's inputs are fixed by data times alone (which put serves which
window), not by the order in which the driver happens to call components, and all reductions run
in the driver in step order in float64. A run is therefore the same in-process and with Ray, with the
steps of a stage at the same time or one after another (``run.concurrent``), and the same after a
restart. Seeds come from ``run.seed``.

**Restarts.** At the start of a fresh run (before any output exists), every ``run.restart.every`` (a
multiple of S) and at the end, the driver writes each component's ``save_state``, the open
accumulators and lag buffers of every exchange, the output streams' record counts and open
reductions, and the clock. Resuming loads all of these, cuts each output store back to its recorded
length, and continues: the outputs are bit-identical to those of an uninterrupted run, from whatever
instant the run was killed at (``restart.py`` and ``output.py`` say why).

**Trust and places.** A coupling YAML is code (``kind: pkg.module:Class`` imports a module): only
registered kinds and modules of their packages are imported unless ``allow_imports`` names more, and
outputs and restarts stay inside ``out_dir`` unless ``allow_outside_out``.
"""

from __future__ import annotations

import csv
import itertools
import os
import time
import warnings
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from atmorep_coupler.component.native import NativeComponent
from atmorep_coupler.coupling.build import (
    RegridderCache,
    build_exchange,
    build_grid,
    check_component_grid,
    component_config,
)
from atmorep_coupler.coupling.clock import RunClock
from atmorep_coupler.coupling.exchange import ConservationRecord
from atmorep_coupler.coupling.output import OutputStream
from atmorep_coupler.coupling.restart import RestartStore
from atmorep_coupler.coupling.sequence import Block, compile_stages
from atmorep_coupler.coupling.schema import (
    CoupledRunConfig,
    check_exchange_items,
    check_trusted_kinds,
    load_coupling_config,
)
from atmorep_coupler.coupling.transport import Call, RayCluster, call_batches, create_component
from atmorep_coupler.errors import AtmoRepError, CheckpointError, ComponentError, ConfigError

__all__ = ["CoupledRun", "RunSummary"]


@dataclass
class RunSummary:
    """What a finished (or resumed and finished) run reports."""

    elapsed_seconds: int
    resumed_from: Path | None
    outputs: list[Path]
    restarts: list[Path] = field(default_factory=list)
    max_conservation_error: dict[str, float] = field(default_factory=dict)
    #: Wall-clock seconds by part: ``setup``, ``component:<id>`` (steps, get/set field, timed where the
    #: component runs: under ``transport: ray`` the components of a stage overlap), ``exchange``
    #: (reduction, units, regridding), ``output``, ``restart``.
    timings: dict[str, float] = field(default_factory=dict)


class CoupledRun:
    """A coupled run: components, exchanges, outputs, restarts and the loop that drives them.

    ``out_dir``: relative output paths and the restart folder resolve against it. ``resume``:
    ``True`` requires a restart, ``False`` never uses one, ``None`` follows ``run.restart.resume``.
    ``regridders``: a cache to take regridders from and add them to, shared by runs on the same grids
    (the verification's run per start date); default a new one.
    ``allow_imports``: modules (or packages) that ``kind: module:Class`` may import besides the
    registered kinds' packages. ``allow_outside_out``: let absolute output and restart paths leave ``out_dir``.
    """

    def __init__(
        self,
        config: CoupledRunConfig,
        *,
        base_dir: Path,
        out_dir: Path,
        resume: bool | None = None,
        progress: bool = True,
        origin: str = "<coupling config>",
        regridders: RegridderCache | None = None,
        allow_imports: Sequence[str] = (),
        allow_outside_out: bool = False,
    ) -> None:
        self.config = config
        self.regridders = regridders if regridders is not None else RegridderCache()
        self.out_dir = Path(out_dir)
        self.progress = progress
        self.timings: dict[str, float] = defaultdict(float)
        self._ray = None
        try:
            check_trusted_kinds(config, allow_imports)  # before anything is imported
            self._check_places(allow_outside_out)
            self._ray = RayCluster() if config.run.transport == "ray" else None
            with self._timed("setup"):
                self._build(base_dir, allow_imports)
                self._restarts = self._restart_store()
                self.resumed_from = self._start(resume)
        except AtmoRepError as exc:  # name the coupling file in errors of the pre-run checks
            self.close()
            if str(exc).startswith(origin):
                raise
            raise _located(exc, origin) from None
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_file(cls, path: str | Path, *, out_dir: Path | None = None, **kwargs) -> CoupledRun:
        config, base_dir = load_coupling_config(path)
        out_dir = Path(out_dir) if out_dir is not None else Path("runs") / config.run.name
        return cls(config, base_dir=base_dir, out_dir=out_dir, origin=str(path), **kwargs)

    # -- construction --------------------------------------------------------------------------
    def _check_places(self, allow_outside_out: bool) -> None:
        """Outputs and restarts stay inside ``out_dir`` (the schema refuses ``..``); absolute paths only when allowed."""
        if allow_outside_out:
            return
        places = [(f"outputs[{i}].path", o.path) for i, o in enumerate(self.config.outputs)]
        if self.config.run.restart is not None:
            places.append(("run.restart.dir", self.config.run.restart.dir))
        for where, path in places:
            if path.is_absolute():
                raise ConfigError(f"{where}: {str(path)!r} is outside the output folder {str(self.out_dir)!r}; "
                                  "give a path relative to it, or allow this with --allow-outside-out")

    def _build(self, base_dir: Path, allow_imports: Sequence[str]) -> None:
        config = self.config
        self.grids = {name: build_grid(name, spec) for name, spec in config.grids.items()}
        self.components: dict[str, NativeComponent] = {}
        for name, spec in config.components.items():
            class_path, mapping, folder, source = component_config(name, config, base_dir, allow_imports)
            try:
                self.components[name] = create_component(
                    config.run.transport, class_path, mapping, folder, device=spec.device or config.run.device,
                    origin=source,
                )
            except AtmoRepError as exc:  # say which component, and where its config came from
                if str(exc).startswith(f"components.{name}"):
                    raise
                raise _located(exc, f"components.{name}") from None
        self.items = {name: {i.name: i for i in comp.exchange_items()} for name, comp in self.components.items()}
        component_grids = {name: comp.grids for name, comp in self.components.items()}
        for name, spec in config.components.items():
            for grid in component_grids[name].values():
                if grid.horizontal is not None:
                    if spec.grid is None:
                        raise ConfigError(f"components.{name}.grid: component {name!r} has gridded fields; name its grid")
                    check_component_grid(name, spec.grid, self.grids[spec.grid], grid.horizontal)
        check_exchange_items(config, self.items, self.grids)
        self.exchanges = [
            build_exchange(i, spec, config, self.items, component_grids, self.grids, self.regridders)
            for i, spec in enumerate(config.couplings)
        ]
        self.clock = RunClock(config.run.start, config.run.end, config.run.calendar, config.sync_seconds)
        self.steps = {name: int(spec.timestep.total_seconds()) for name, spec in config.components.items()}
        self.elapsed = {name: 0 for name in config.components}
        self.stages = compile_stages(config)
        self.outputs: dict[str, list[OutputStream]] = {name: [] for name in config.components}
        self.streams: list[OutputStream] = []  # in the order of config.outputs (the sequence's output index)
        for spec in config.outputs:
            comp = self.components[spec.component]
            templates = {var: comp.get_field(var) for var in spec.variables}
            stream = OutputStream(spec, self._out_path(spec.path), templates, self.clock,
                                  title=f"{config.run.name}: {spec.component}", run=config.run.name)
            self.outputs[spec.component].append(stream)
            self.streams.append(stream)
        self.diagnostics_path = self.out_dir / "conservation.csv"
        self.max_conservation_error: dict[str, float] = {}

    def _out_path(self, path: Path) -> Path:
        return path if path.is_absolute() else self.out_dir / path

    def _restart_store(self) -> RestartStore | None:
        restart = self.config.run.restart
        if restart is None:
            return None
        return RestartStore(self._out_path(restart.dir) / self.config.run.name)

    def _start(self, resume: bool | None) -> Path | None:
        """Resume from the latest restart, or prepare a fresh start (initial puts, empty outputs)."""
        restart = self.config.run.restart
        mode = {True: "require", False: "never", None: restart.resume if restart else "never"}[resume]
        if self._restarts is not None:
            self._restarts.clean()
        latest = self._restarts.latest() if self._restarts is not None and mode != "never" else None
        if mode == "require" and latest is None:
            where = self._restarts.root if self._restarts is not None else "run.restart (not configured)"
            raise CheckpointError(f"{where}: no restart to resume from")
        if latest is not None:
            self._resume(latest)
            return latest
        for streams in self.outputs.values():
            for stream in streams:
                stream.check_fresh()
        if self.diagnostics_path.exists():
            raise ConfigError(f"{self.diagnostics_path}: exists from an earlier run; delete it, choose another "
                              "--out folder, or resume (--resume)")
        prologue = list(itertools.takewhile(lambda stage: stage.barrier is not None, self.stages))  # before any step
        for action in (stage.barrier for stage in prologue):
            if action.kind == "put":  # the source's initial state, for the first windows of a lagged coupling
                exchange = self.exchanges[action.index]
                exchange.set_initial(self._sample(action.component, exchange.source_fields))
            else:
                if (self._restarts.root / "latest").is_file():
                    warnings.warn(f"{self._restarts.root}: holds restarts of an earlier run named "
                                  f"{self.config.run.name!r}; this fresh run replaces them as it passes the same times",
                                  stacklevel=2)
                    (self._restarts.root / "latest").unlink()  # from now on 'latest' names this run's restarts only
                self._save_restart()  # before the first output: a run killed from then on can resume
        self._position = len(prologue)
        return None

    def _resume(self, folder: Path) -> None:
        state = self._restarts.load(folder, self.components)
        self.clock.load_state_dict(state["clock"])
        for name in self.elapsed:
            self.elapsed[name] = self.clock.elapsed
        for exchange, ex_state in zip(self.exchanges, state["exchanges"], strict=True):
            exchange.load_state_dict(ex_state)
        streams = [s for group in self.outputs.values() for s in group]
        for stream, out_state in zip(streams, state["outputs"], strict=True):
            stream.load_state_dict(out_state)
        self._truncate_diagnostics(self.clock.elapsed)
        at = self.clock.elapsed  # continue after the sequence's last barrier at the restart's time (its sync or restart)
        done = [i for i, stage in enumerate(self.stages) if stage.barrier is not None and stage.barrier.time == at]
        if not done:
            raise CheckpointError(f"{folder}: a restart at {at} s, which is not a synchronisation time of this "
                                  "configuration; resume with the configuration that wrote it")
        self._position = done[-1] + 1

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> RunSummary:
        """Execute the run sequence, stage by stage, from the current time to ``run.end``; returns a summary."""
        from tqdm.auto import tqdm

        written = []
        hours = self.clock.total_seconds / 3600
        with tqdm(total=hours, initial=self.clock.elapsed / 3600, unit="h", unit_scale=False, disable=not self.progress,
                  desc=f"{self.config.run.name} (simulated hours)", bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} h "
                  "[{elapsed}<{remaining}{postfix}]") as bar:
            for i in range(self._position, len(self.stages)):
                stage = self.stages[i]
                if stage.barrier is None:
                    self._run_blocks(stage.blocks)
                elif stage.barrier.kind == "sync":
                    self.clock.advance()
                    if self.clock.elapsed != stage.barrier.time:
                        raise ComponentError(f"run sequence: sync at {stage.barrier.time} s, but the clock is at "
                                             f"{self.clock.elapsed} s")
                    self._write_diagnostics()
                    bar.set_postfix_str(self.clock.now.isoformat(), refresh=False)
                    bar.update(self.clock.elapsed / 3600 - bar.n)
                else:  # restart (initial puts only precede the first step: _start)
                    with self._timed("restart"):
                        written.append(self._save_restart())
                self._position = i + 1
        return RunSummary(
            elapsed_seconds=self.clock.elapsed,
            resumed_from=self.resumed_from,
            outputs=[s.path for group in self.outputs.values() for s in group],
            restarts=written,
            max_conservation_error=dict(self.max_conservation_error),
            timings=dict(self.timings),
        )

    def _run_blocks(self, blocks: Sequence[Block]) -> None:
        """One stage: every block's imports, then their steps (at once in Ray actors), then the puts and
        outputs of each step, in sequence order (``sequence.py`` says why the order is free)."""
        batches, wanted = [], []
        for block in blocks:
            calls = [Call("set_field", (name, data)) for get in block.gets for name, data in self._take(get).items()]
            fields = sorted({f for a in block.feeds if a.kind == "put" for f in self.exchanges[a.index].source_fields}
                            | {v for a in block.feeds if a.kind == "output" for v in self.streams[a.index].spec.variables})
            batches.append((self.components[block.component], [*calls, Call("step", (1,)),
                                                               *(Call("get_field", (f,)) for f in fields)]))
            wanted.append(fields)
        for block, fields, (results, seconds) in zip(blocks, wanted, call_batches(batches), strict=True):
            self.timings[f"component:{block.component}"] += seconds
            self.elapsed[block.component] = block.step.time
            values = {f: np.asarray(r.values) for f, r in zip(fields, results[len(results) - len(fields):], strict=True)}
            for action in block.feeds:
                if action.kind == "put":
                    with self._timed("exchange"):
                        self.exchanges[action.index].add_sample(action.time, values)
                else:
                    with self._timed("output"):
                        self.streams[action.index].add(action.time, values)

    def _take(self, action) -> dict:
        """The import of coupling ``action.index`` for the destination's window starting now."""
        exchange = self.exchanges[action.index]
        if not (exchange.import_due(self.elapsed[action.component]) and exchange.import_ready()):
            raise ComponentError(f"run sequence: {exchange.name}: no import is due or ready at {action.time} s")
        return exchange.take_import()

    def _sample(self, name: str, fields) -> dict[str, np.ndarray]:
        component = self.components[name]
        return {f: np.asarray(component.get_field(f).values) for f in sorted(fields)}

    # -- restarts and diagnostics ----------------------------------------------------------------
    def _save_restart(self) -> Path:
        state = {
            "clock": self.clock.state_dict(),
            "exchanges": [e.state_dict() for e in self.exchanges],
            "outputs": [s.state_dict() for group in self.outputs.values() for s in group],
        }
        label = self.clock.now.strftime("%Y%m%dT%H%M%S")
        return self._restarts.save(label, state, self.components)

    def _write_diagnostics(self) -> None:
        records: list[ConservationRecord] = [r for e in self.exchanges for r in e.records]
        if not records:
            return
        new = not self.diagnostics_path.exists()
        self.diagnostics_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.diagnostics_path, "a", newline="") as fh:
            writer = csv.writer(fh)
            if new:
                writer.writerow(["time_seconds", "coupling", "field", "source_integral", "destination_integral",
                                 "relative_error"])
            for r in sorted(records, key=lambda r: (r.time, r.coupling, r.field)):
                writer.writerow([r.time, r.coupling, r.field, repr(r.source), repr(r.destination),
                                 f"{r.relative_error:.3e}"])
        for r in records:
            self.max_conservation_error[r.coupling] = max(self.max_conservation_error.get(r.coupling, 0.0),
                                                          r.relative_error)
        for exchange in self.exchanges:
            exchange.records.clear()

    def _truncate_diagnostics(self, elapsed: int) -> None:
        """Keep the header and the complete rows up to ``elapsed`` (a kill may have torn the last line);
        replaced in one rename, so a kill now loses nothing."""
        if not self.diagnostics_path.exists():
            return
        lines = self.diagnostics_path.read_text().splitlines(keepends=True)
        if not lines or not lines[0].endswith("\n"):  # killed while the header was written: start the file anew
            self.diagnostics_path.unlink()
            return
        kept = lines[:1] + [line for line in lines[1:] if line.endswith("\n") and _row_time(line) <= elapsed]
        tmp = self.diagnostics_path.with_name(self.diagnostics_path.name + ".partial")
        tmp.write_text("".join(kept))
        os.replace(tmp, self.diagnostics_path)

    @contextmanager
    def _timed(self, key: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[key] += time.perf_counter() - start

    # -- teardown ------------------------------------------------------------------------------
    def close(self) -> None:
        """Finalize the components and stop a Ray instance this run started."""
        for component in getattr(self, "components", {}).values():
            try:
                component.finalize()
            except Exception as exc:  # finalize every component even if one fails
                warnings.warn(f"finalize failed: {exc}", stacklevel=2)
        self.components = {}
        if self._ray is not None:
            self._ray.close()
            self._ray = None

    def __enter__(self) -> CoupledRun:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _row_time(line: str) -> float:
    """The time of a conservation.csv row; infinite for a row that is not a whole one (never kept)."""
    row = next(csv.reader([line]), [])
    return int(row[0]) if len(row) == 6 and row[0].isdigit() else float("inf")


def _located(exc: AtmoRepError, where: str) -> AtmoRepError:
    """The same kind of error with ``where`` (the coupling file, a component) in front of its message."""
    try:
        return type(exc)(f"{where}: {exc}")
    except TypeError:  # an error class with another constructor keeps its own message
        return exc
