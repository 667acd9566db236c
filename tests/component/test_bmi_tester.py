"""The CSDMS ``bmi-tester`` (stages: bootstrap, info/time, variables, grids/values) against the forcing
components and the classical model, in a subprocess as its CLI runs it. With ``gimli.units`` installed
it also checks every unit string against the real UDUNITS-2 database.

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
    root = tmp_path / "stage"
    root.mkdir()
    config = yaml_writer(root / "config.yaml", _configs(data_dir)[entry_point])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
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
