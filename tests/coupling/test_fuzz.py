"""A seeded fuzz of the coupling-YAML entry point in CI: mutated packaged configs and ``--set`` values
(``bench/fuzz.py`` runs thousands) end in one ``error:`` line naming the file and a key path or line,
never a traceback, and quickly."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import bench_module as _bench

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_mutated_configs_and_set_values_end_in_project_errors():
    result = _bench("fuzz").fuzz(300, seed=15, slow=10.0)
    assert sum(result["tried"].values()) == 300 and set(result["tried"]) == {"value", "key", "text", "set"}
    assert result["failed"] == {}, result["failures"]
    assert sum(result["still_valid"].values()) < 150  # most mutations break the file: the checks are exercised


def test_the_cases_of_the_issue_each_end_in_a_named_error(tmp_path):
    """The specific inputs that crashed the loader before, one by one."""
    fuzz = _bench("fuzz")
    base = (REPO / "coupling_configs" / "forcing_only.yaml").read_text()
    cases = {
        "list key": base + "\n? [a, b]\n: 1\n",
        "dict key": base + "\n? {a: 1}\n: 1\n",
        "huge duration": base.replace("timestep: P1D", "timestep: P99999999999D"),
        "inf duration": base.replace("timestep: P1D", "timestep: .inf"),
        "huge number": base.replace("timestep: P1D", "timestep: 999999999999999999999999999"),
        "deep nesting": base + "\ndeep: " + "[" * 5000 + "]" * 5000 + "\n",
        "alias bomb": base + "\nbomb:\n" + "".join("  " + line + "\n" for line in fuzz.BOMB.splitlines()),
        "recursive alias": base + "\nloop: &loop [*loop]\n",
        "long name": base.replace("name: forcing-only", "name: " + "n" * 100_000),
        "name ..": base.replace("name: forcing-only", "name: '..'"),
        "escaping output": base.replace("path: model_daily.zarr", "path: ../../escape.zarr"),
        "absolute output": base.replace("path: model_daily.zarr", "path: /tmp/absolute.zarr"),
        "code import": base.replace("kind: receiver", "kind: 'this:Nope'"),
    }
    for name, text in cases.items():
        outcome = fuzz.run_case(fuzz.Case("text", f"{name.replace(' ', '_')}.yaml", name, text), tmp_path / name,
                                slow=10.0)
        assert outcome.status == "clean" and outcome.reason == "error", (name, outcome)
    set_cases = ["run.end=[", "run.end=2000-01-31T00:00:00", "couplings.0.period=P99999999999D", "run.name=..",
                 "outputs.0.path=/abs.zarr", "components.model.config.grid.lat_order=up"]
    for assignment in set_cases:
        case = fuzz.Case("set", "forcing_only.yaml", assignment, base, [assignment])
        outcome = fuzz.run_case(case, tmp_path / "set", slow=10.0)
        assert outcome.status == "clean", (assignment, outcome)
