"""The CSDMS ``bmi-tester`` (stages: bootstrap, info/time, variables, grids/values) against the forcing
components and the classical model, in a subprocess as its CLI runs it. With ``gimli.units`` installed
it also checks every unit string against the real UDUNITS-2 database.

The AtmoRep component (a two-member ensemble of the tiny default checkpoint: one item per member, on
the grid of its field) runs as :class:`tests.component.bmi_prefed.PrefedAtmoRep`, which sets its imports
once inside ``initialize`` because the tester's bootstrap steps it before any host could.

Curvilinear (``structured_quadrilateral``) grids are left to test_bmi.py: bmi-tester 0.5.10's
``test_grid_x/y`` only size their buffer for rectilinear and unstructured grids and fail with an
``UnboundLocalError`` on any other grid type.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("bmi_tester")

REPO = Path(__file__).resolve().parents[2]


def _configs(data_dir: Path) -> dict[str, dict]:
    return {
        "components.forcing:PrescribedField": {
            "start": "2000-01-01",
            "time_step": "PT6H",
            "calendar": "360_day",
            "path": str(data_dir / "levels.nc"),
            "variable": "ta",
        },
        "components.forcing:CO2Scenario": {
            "start": "2000-01-01",
            "time_step": "P1D",
            "series": [["2000-01-01", 280.0], ["2100-01-01", 560.0]],
        },
        "components.forcing:Insolation": {
            "start": "2000-01-01",
            "time_step": "PT6H",
            "grid": {"type": "gaussian", "nlat": 8},
        },
        "components.classical:ClassicalModel": {"start": "2000-01-01", "time_step": "PT1H", "resolution": "T10"},
    }


@pytest.mark.parametrize("entry_point", list(_configs(Path("."))))
def test_bmi_tester_passes(entry_point, data_dir, tmp_path, yaml_writer):
    bmi_tester(entry_point, _configs(data_dir)[entry_point], tmp_path, yaml_writer)


@pytest.mark.slow
def test_bmi_tester_passes_the_atmorep_component_with_two_members(tiny_store, tiny_default_checkpoint, tmp_path,
                                                                   yaml_writer):
    config = {"start": "2000-01-02T00:00:00", "calendar": "proleptic_gregorian", "ensemble": {"members": 2},
              "checkpoint": str(tiny_default_checkpoint), "initial_condition": str(tiny_store)}
    output = bmi_tester("tests.component.bmi_prefed:PrefedAtmoRep", config, tmp_path, yaml_writer)
    assert "temperature_member_1" in output  # the member items were among the variables tested


def bmi_tester(entry_point: str, config_values: dict, tmp_path: Path, yaml_writer) -> str:
    root = tmp_path / "stage"
    root.mkdir()
    config = yaml_writer(root / "config.yaml", config_values)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "bmi_tester", "--root-dir", str(root), "--config-file", str(config), entry_point],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "All tests passed" in output
    if importlib.util.find_spec("gimli.units") is not None:  # the UDUNITS-2 checks ran, not skipped
        assert "gimli.units is not installed" not in output
    return output
