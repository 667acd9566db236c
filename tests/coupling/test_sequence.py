"""The run sequence a coupling YAML compiles to, against sequences written out by hand from the coupling
rules (docs/coupling.md), and as ``--print-sequence`` prints it."""

from __future__ import annotations

import pytest

from atmorep_coupler.coupling.schema import load_coupling_config
from atmorep_coupler.coupling.sequence import Action, Block, Stage, compile_sequence, format_sequence, schedule
from atmorep_coupler.run import main

from .conftest import base_config, write_config

H = 3600


def six_hours(**coupling) -> dict:
    """a (1 h steps) -> b (3 h steps), one coupling of period 3 h, six hours: S = 3 h, two intervals."""
    config = base_config()
    config["run"]["end"] = "2000-01-01T06:00:00"
    config["couplings"][0].update(period="PT3H", **coupling)
    config["outputs"] = []
    return config


def compiled(config: dict) -> list[Action]:
    return compile_sequence(load_coupling_config(config)[0])


def test_a_lagged_instant_coupling():
    """Lag = period: b's window [T, T + 3 h) takes a's value at T, so the first window takes a's initial state
    (a put before anyone steps) and each sync interval a runs first only because it comes first in the YAML."""
    step = lambda c, h: Action("step", h * H, c)  # noqa: E731
    assert compiled(six_hours(lag="PT3H", time_reduction="instant")) == [
        Action("put", 0, "a", 0, initial=True),
        step("a", 1), step("a", 2), step("a", 3), Action("put", 3 * H, "a", 0, closes=True),
        Action("get", 0, "b", 0), step("b", 3),
        Action("sync", 3 * H),
        step("a", 4), step("a", 5), step("a", 6), Action("put", 6 * H, "a", 0, closes=True),
        Action("get", 3 * H, "b", 0), step("b", 6),
        Action("sync", 6 * H),
    ]


def test_an_averaged_coupling_with_output_and_restarts():
    """Lag 0, average: every step of a puts a sample, the third closes the window b imports for the same
    span; b's mean output samples each of its steps; restarts at the start and every 6 h (here the end)."""
    config = six_hours(lag="PT0S", time_reduction="average")
    config["outputs"] = [{"component": "b", "variables": ["received"], "interval": "PT3H", "reduction": "mean",
                          "path": "b.zarr"}]
    config["run"]["restart"] = {"every": "PT6H"}
    a_window = lambda end: [  # noqa: E731
        x for h in (end - 2, end - 1, end)
        for x in (Action("step", h * H, "a"), Action("put", h * H, "a", 0, closes=h == end))
    ]
    assert compiled(config) == [
        Action("restart", 0),
        *a_window(3), Action("get", 0, "b", 0), Action("step", 3 * H, "b"), Action("output", 3 * H, "b", 0),
        Action("sync", 3 * H),
        *a_window(6), Action("get", 3 * H, "b", 0), Action("step", 6 * H, "b"), Action("output", 6 * H, "b", 0),
        Action("sync", 6 * H), Action("restart", 6 * H),
    ]


def test_zero_lag_sources_step_first_whatever_the_yaml_order():
    """b -> a with lag 0: a waits for b's window, so b's steps come first although a is listed first."""
    config = six_hours(lag="PT0S", time_reduction="instant")
    config["couplings"][0].update({"from": "b", "to": "a", "fields": [{"src": "signal", "dst": "received"}]})
    first = compiled(config)[:5]
    assert first == [Action("step", 3 * H, "b"), Action("put", 3 * H, "b", 0, closes=True),
                     Action("get", 0, "a", 0), Action("step", H, "a"), Action("step", 2 * H, "a")]


def stages(config: dict, concurrent: bool = True) -> list[Stage]:
    return schedule(compiled(config), load_coupling_config(config)[0], concurrent=concurrent)


def test_lag_equal_to_the_period_lets_both_sides_step_together():
    """b's window [T, T + 3 h) takes a's put for T, closed in the interval before: b's step depends on no step
    of a in its interval, so it joins a's first step; a's steps stay in order, one stage each."""
    config = six_hours(lag="PT3H", time_reduction="instant")
    a = lambda h, *more: Block("a", (Action("step", h * H, "a"), *more))  # noqa: E731
    b = lambda h: Block("b", (Action("get", (h - 3) * H, "b", 0), Action("step", h * H, "b")))  # noqa: E731
    closes = lambda h: Action("put", h * H, "a", 0, closes=True)  # noqa: E731
    assert stages(config) == [
        Stage(barrier=Action("put", 0, "a", 0, initial=True)),
        Stage((a(1), b(3))), Stage((a(2),)), Stage((a(3, closes(3)),)), Stage(barrier=Action("sync", 3 * H)),
        Stage((a(4), b(6))), Stage((a(5),)), Stage((a(6, closes(6)),)), Stage(barrier=Action("sync", 6 * H)),
    ]
    sequential = stages(config, concurrent=False)  # one block per stage: the sequence itself, in its order
    assert [len(s.blocks) for s in sequential if s.barrier is None] == [1] * 8
    assert [x for s in sequential for x in s.actions] == compiled(config)


def test_a_step_waits_for_the_put_its_import_takes():
    """Lag 0: b's window takes a's window over the same span, closed by a's third step: b comes after it."""
    config = six_hours(lag="PT0S", time_reduction="average")
    first = stages(config)[:4]
    assert [[b.component for b in s.blocks] for s in first] == [["a"], ["a"], ["a"], ["b"]]
    assert first[3].blocks[0].gets == (Action("get", 0, "b", 0),)


def test_print_sequence_prints_the_compiled_stages(tmp_path, capsys):
    config = six_hours(lag="PT3H", time_reduction="instant")
    path = write_config(tmp_path, config)
    assert main([str(path), "--print-sequence"]) == 0
    printed = capsys.readouterr().out
    assert printed == format_sequence(stages(config)) + "\n"
    lines = printed.splitlines()
    assert lines[0].split() == ["0", "s", "put", "a", "->", "couplings[0]", "(initial", "state)"]
    assert lines[1:5] == ["stage: a | b", "       3600 s  step    a", "          0 s  get     couplings[0] -> b",
                          "      10800 s  step    b"]


@pytest.mark.parametrize("kind", ["get", "step", "put", "output", "sync", "restart"])
def test_every_kind_prints_its_time(kind):
    assert str(Action(kind, 7200, "a", 0)).split()[:3] == ["7200", "s", kind]
