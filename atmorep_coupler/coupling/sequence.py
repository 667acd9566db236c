"""The run sequence: a coupling YAML compiled into the list of actions the driver executes, in order.

Every action happens at a time in whole seconds since ``run.start``:

=================  =======================================================================================
``put``            a source's fields after its step ending at ``time`` go into coupling ``k`` (every step for
                   average/accumulate/min/max, only the window's last for instant); at a window end the
                   window ``(time - P, time]`` is reduced, converted and regridded. ``initial``: the
                   source's state before anyone steps, for the first ``L / P`` windows of a lagged coupling
``get``            the destination takes coupling ``k``'s import for its window ``[time, time + P)``
``step``           a component steps from ``time - timestep`` to ``time``
``output``         a component's fields after its step ending at ``time`` go into output stream ``k``
``sync``           every component is at ``time`` (a multiple of the synchronisation interval S, or the
                   end): the run clock moves on, conservation diagnostics are written
``restart``        a restart is written (at the start of a fresh run, every ``run.restart.every``, at the end)
=================  =======================================================================================

The order is the one the coupling rules give (docs/coupling.md): within each interval S the components
are walked in an order where zero-lag sources come before their destinations, and each takes as many
steps as it can, a step that starts an import window only once that window's put exists. The sequence
depends on the configuration alone (times, periods, lags, reductions, outputs), never on data, so it is
compiled before the run, printed by ``python -m atmorep_coupler.run CONFIG --print-sequence``, and
checked by tests against hand-written sequences; a configuration in which no component can advance is
refused here, before anything runs.

**Stages: what may run together.** :func:`schedule` cuts the sequence into stages, the unit the driver
executes. ``initial`` puts, ``sync`` and ``restart`` are barriers, a stage each. Between two barriers the
actions fall into *blocks*: a component's gets, its step and the puts and outputs of that step. A block
depends on the component's previous block and on every block holding a put that closes a window one of
its gets takes (the put for ``E = T + P - L``, when it falls in the same interval). Each block goes to the
stage after the latest one it depends on, so blocks of different components in one stage share no data:
with lag = period the two sides of a coupling land together. Moving blocks this way never changes what
any component receives: an exchange's puts and gets touch distinct windows unless one depends on the
other, and each component's blocks keep their order. The driver runs a stage's gets, then every block's
step (at once under ``transport: ray``), then its puts and outputs, in sequence order; with
``run.concurrent: false`` every block is its own stage, in sequence order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from atmorep_coupler.coupling.schema import CoupledRunConfig
from atmorep_coupler.errors import ComponentError

__all__ = ["Action", "Block", "Stage", "compile_sequence", "compile_stages", "component_order", "format_sequence", "schedule"]

Kind = Literal["put", "get", "step", "output", "sync", "restart"]


@dataclass(frozen=True)
class Action:
    """One action of the run sequence (module docstring). ``index``: the coupling (put, get) or output
    stream (output) it concerns; ``closes``: a put that closes its coupling's window; ``initial``: a put
    of the source's initial state."""

    kind: Kind
    time: int
    component: str = ""
    index: int | None = None
    closes: bool = False
    initial: bool = False

    def __str__(self) -> str:
        where = f"{self.time:>9d} s"
        if self.kind == "put":
            what = "initial state" if self.initial else ("closes its window" if self.closes else "sample")
            return f"{where}  put     {self.component} -> couplings[{self.index}] ({what})"
        if self.kind == "get":
            return f"{where}  get     couplings[{self.index}] -> {self.component}"
        if self.kind == "step":
            return f"{where}  step    {self.component}"
        if self.kind == "output":
            return f"{where}  output  {self.component} -> outputs[{self.index}]"
        return f"{where}  {self.kind}"


def component_order(config: CoupledRunConfig) -> list[str]:
    """YAML order, moved so that every zero-lag source comes before its destinations."""
    names = list(config.components)
    before = {n: {c.from_ for c in config.couplings if c.to == n and c.lag.total_seconds() == 0} for n in names}
    order: list[str] = []
    while len(order) < len(names):
        order.append(next(n for n in names if n not in order and before[n] <= set(order)))
    return order


def compile_sequence(config: CoupledRunConfig) -> list[Action]:
    """The actions of a fresh run of ``config`` from ``run.start`` to ``run.end`` (module docstring)."""
    return list(_Compiler(config).actions())


def compile_stages(config: CoupledRunConfig) -> list[Stage]:
    """The stages the driver executes: the sequence cut as ``run.concurrent`` says (:func:`schedule`)."""
    return schedule(compile_sequence(config), config, concurrent=config.run.concurrent)


@dataclass(frozen=True)
class Block:
    """One step of one component with what goes with it: the gets before it, the puts and outputs after it."""

    component: str
    actions: tuple[Action, ...]

    @property
    def gets(self) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if a.kind == "get")

    @property
    def step(self) -> Action:
        return next(a for a in self.actions if a.kind == "step")

    @property
    def feeds(self) -> tuple[Action, ...]:
        """The puts and outputs that take the step's values."""
        return tuple(a for a in self.actions if a.kind in ("put", "output"))


@dataclass(frozen=True)
class Stage:
    """What the driver executes in one go: a barrier (``initial`` put, ``sync``, ``restart``), or blocks of
    distinct components that share no data and may step at the same time (module docstring)."""

    blocks: tuple[Block, ...] = ()
    barrier: Action | None = None

    @property
    def actions(self) -> tuple[Action, ...]:
        return (self.barrier,) if self.barrier is not None else tuple(a for b in self.blocks for a in b.actions)


def schedule(actions: Sequence[Action], config: CoupledRunConfig, *, concurrent: bool = True) -> list[Stage]:
    """The sequence ``actions`` cut into stages (module docstring); ``concurrent=False``: one block per stage,
    in sequence order (the sequence itself)."""
    periods = [_seconds(c.period) for c in config.couplings]
    lags = [_seconds(c.lag) for c in config.couplings]
    stages: list[Stage] = []
    levels: list[tuple[int, Block]] = []  # the blocks since the last barrier, each with its stage number
    last: dict[str, int] = {}  # per component, the stage of its latest block
    closed: dict[tuple[int, int], int] = {}  # (coupling, window end) -> the stage of the put that closes it
    gets: dict[str, list[Action]] = {}

    def flush() -> None:
        for level in sorted({n for n, _ in levels}):
            stages.append(Stage(blocks=tuple(b for n, b in levels if n == level)))
        levels.clear(), last.clear(), closed.clear()

    i = 0
    while i < len(actions):
        action = actions[i]
        if action.kind == "get":
            gets.setdefault(action.component, []).append(action)
            i += 1
        elif action.kind == "step":
            feeds = []
            for after in actions[i + 1:]:
                if after.kind not in ("put", "output") or after.time != action.time or after.component != action.component:
                    break
                feeds.append(after)
            own = gets.pop(action.component, [])
            block = Block(action.component, (*own, action, *feeds))
            if concurrent:
                level = max([last.get(action.component, -1)]
                            + [closed.get((g.index, g.time + periods[g.index] - lags[g.index]), -1) for g in own]) + 1
            else:
                level = len(levels)
            last[action.component] = level
            closed.update({(a.index, a.time): level for a in feeds if a.kind == "put" and a.closes})
            levels.append((level, block))
            i += 1 + len(feeds)
        else:
            if gets:
                raise ComponentError(f"run sequence: gets of {sorted(gets)} without a step before {action}")
            flush()
            stages.append(Stage(barrier=action))
            i += 1
    flush()
    return stages


def format_sequence(stages: Sequence[Stage]) -> str:
    """One line per action, as ``--print-sequence`` prints it: a barrier on its own line, the blocks of a
    stage indented under a header naming the components that may step together."""
    lines = []
    for stage in stages:
        if stage.barrier is not None:
            lines.append(str(stage.barrier))
        else:
            lines.append("stage: " + " | ".join(b.component for b in stage.blocks))
            lines.extend(f"  {action}" for action in stage.actions)
    return "\n".join(lines)


def _seconds(delta) -> int:
    return int(delta.total_seconds())


class _Compiler:
    """Plays the coupling rules on times alone: which window's put exists, which import is due."""

    def __init__(self, config: CoupledRunConfig) -> None:
        self.config = config
        self.order = component_order(config)
        self.steps = {name: _seconds(spec.timestep) for name, spec in config.components.items()}
        self.periods = [_seconds(c.period) for c in config.couplings]
        self.lags = [_seconds(c.lag) for c in config.couplings]
        self.elapsed = dict.fromkeys(config.components, 0)
        self.next_import = [0] * len(config.couplings)
        self.puts: list[set[int]] = [set() for _ in config.couplings]
        self.total = _seconds(config.run.end - config.run.start)
        self.sync = config.sync_seconds
        restart = config.run.restart
        self.restart_every = _seconds(restart.every) if restart is not None else 0

    def actions(self) -> Iterator[Action]:
        for k, coupling in enumerate(self.config.couplings):
            if self.periods[k] - self.lags[k] <= 0:  # the first import needs the source's initial state
                yield Action("put", 0, coupling.from_, k, initial=True)
        if self.restart_every:
            yield Action("restart", 0)
        elapsed = 0
        while elapsed < self.total:
            stop = min(elapsed + self.sync, self.total)
            yield from self._interval(stop)
            elapsed = stop
            yield Action("sync", stop)
            if self.restart_every and (stop % self.restart_every == 0 or stop >= self.total):
                yield Action("restart", stop)

    def _interval(self, stop: int) -> Iterator[Action]:
        """Every component to ``stop``, each step as soon as its imports exist."""
        while True:
            progressed = False
            for name in self.order:
                while self.elapsed[name] < stop:
                    gets, ready = self._imports(name)
                    yield from gets
                    if not ready:
                        break
                    yield from self._step(name)
                    progressed = True
            if all(t >= stop for t in self.elapsed.values()):
                return
            if not progressed:
                waiting = {n: t for n, t in self.elapsed.items() if t < stop}
                raise ComponentError(f"no component can advance (stuck at {waiting} s); a coupling put is missing")

    def _imports(self, name: str) -> tuple[list[Action], bool]:
        """The gets due at the component's time, in coupling order, up to the first whose put is missing."""
        now, gets = self.elapsed[name], []
        for k, coupling in enumerate(self.config.couplings):
            if coupling.to != name or self.next_import[k] != now:
                continue
            end = now + self.periods[k] - self.lags[k]
            if end > 0 and end not in self.puts[k]:
                return gets, False
            self.puts[k].discard(end)
            self.next_import[k] += self.periods[k]
            gets.append(Action("get", now, name, k))
        return gets, True

    def _step(self, name: str) -> Iterator[Action]:
        now = self.elapsed[name] + self.steps[name]
        self.elapsed[name] = now
        yield Action("step", now, name)
        for k, coupling in enumerate(self.config.couplings):
            if coupling.from_ != name:
                continue
            closes = now % self.periods[k] == 0
            if coupling.time_reduction != "instant" or closes:
                if closes:
                    self.puts[k].add(now)
                yield Action("put", now, name, k, closes=closes)
        for k, output in enumerate(self.config.outputs):
            if output.component == name and (output.reduction != "instant" or now % _seconds(output.interval) == 0):
                yield Action("output", now, name, k)
