"""examples/ run as a user runs them (subprocesses) and give the right numbers:

- bmi_host_loop.py (BMI only) ends in the state that stepping the component through its native layer
  (set_field with labelled arrays in the store's units) gives, and prints that state's global means;
- slab_ocean_coupled.yaml (a new component by module:Class kind) follows the exact solution of the
  relaxation with the SST proxy's formula as forcing;
- code shown in the docs as an excerpt of an example file is a verbatim excerpt of it.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from atmorep_coupler.component.atmorep import AtmoRepComponent
from atmorep_coupler.data import forcings, open_store
from atmorep_coupler.data.sampler import transform_reader

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
STEPS = 2
START = dt.datetime(2000, 1, 2)  # the host loop's default: one day after the tiny store's first time


def run(cmd: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    result = subprocess.run(cmd, cwd=cwd, env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stderr[-3000:]}"
    return result


def native_reference(checkpoint: Path, store_path: Path, steps: int) -> AtmoRepComponent:
    """The component stepped through its native layer: the truth's forcings and coarsened state as
    labelled arrays in the store's own units, read with the training sampler's reader."""
    torch.set_num_threads(1)
    component = AtmoRepComponent.from_config({
        "start": START.isoformat(), "time_step": "PT3H", "calendar": "proleptic_gregorian",
        "checkpoint": str(checkpoint), "initial_condition": str(store_path),
    })
    store = open_store(store_path)
    for _ in range(steps):
        target = component.datetime_at(component.get_current_time() + component.get_time_step())
        index = store.time_index(np.datetime64(target.isoformat()))
        for spec in component.inputs:  # the input-only fields
            reader = transform_reader(spec.config.transform) if spec.config.transform else type(store).read
            values = reader(store, spec.variable, time=[index], levels=list(spec.config.levels) or None)[0]
            dims = component.get_field(spec.name).dims
            component.set_field(spec.name, xr.DataArray(values, dims=dims, attrs={"units": store.units(spec.variable)}))
        component.update()
    return component


def test_bmi_host_loop_matches_native_stepping(tiny_store, tiny_default_checkpoint, tmp_path):
    out = tmp_path / "host"
    result = run([sys.executable, str(EXAMPLES / "bmi_host_loop.py"), "--checkpoint", str(tiny_default_checkpoint),
                  "--store", str(tiny_store), "--steps", str(STEPS), "--out", str(out)], cwd=tmp_path)
    host = np.load(out / "host_fields.npz")
    reference = native_reference(tiny_default_checkpoint, tiny_store, STEPS)
    assert float(host["time"]) == reference.get_current_time() == STEPS * 3 * 3600.0

    rows = [line.split() for line in result.stdout.splitlines() if re.match(r"\s+\d+\s+\d+\s+2000-", line)]
    assert [row[2] for row in rows] == [(START + dt.timedelta(hours=3 * k)).isoformat() for k in range(1, STEPS + 1)]
    names = ["temperature", "geopotential", "u_component_of_wind", "v_component_of_wind"]
    for column, name in enumerate(names):
        field = reference.get_field(name)
        np.testing.assert_allclose(host[name], field.values, rtol=1e-6, atol=1e-6 * float(np.abs(field).max()))
        # the printed global mean: numpy's area-weighted average of the reference state
        weights = np.broadcast_to(np.cos(np.deg2rad(field.latitude.values))[None, :, None], field.shape)
        expected = np.average(field.values.astype(np.float64), weights=weights)
        assert float(rows[-1][3 + column]) == pytest.approx(expected, rel=1e-6, abs=1e-6)
    # a state that moved: the last step differs from the initial condition
    store = open_store(tiny_store)
    initial = store.read("temperature", time=[store.time_index(np.datetime64(START))], levels=[250, 500, 700, 850])[0]
    assert not np.allclose(host["temperature"], initial)


def test_slab_ocean_coupled_run_follows_the_exact_solution(tmp_path):
    config = EXAMPLES / "slab_ocean_coupled.yaml"
    # the kind examples.new_component:SlabOcean resolves through PYTHONPATH from any folder ...
    run([sys.executable, "-m", "atmorep_coupler.run", str(config), "--out", str(tmp_path / "out"), "--no-progress",
         "--allow-import", "examples"], cwd=tmp_path, PYTHONPATH=str(REPO))
    # ... and without it the error names the key and the module
    failed = subprocess.run([sys.executable, "-m", "atmorep_coupler.run", str(config), "--out", str(tmp_path / "x"),
                             "--allow-import", "examples"],
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": ""}, capture_output=True, text=True)
    assert failed.returncode == 2
    assert "components.ocean.kind: cannot import 'examples.new_component'" in failed.stderr
    # a module nobody said to trust is not imported at all
    untrusted = subprocess.run([sys.executable, "-m", "atmorep_coupler.run", str(config), "--out", str(tmp_path / "y")],
                               cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    assert untrusted.returncode == 2
    assert "components.ocean.kind: 'examples.new_component:SlabOcean' would import module 'examples.new_component'" \
        in untrusted.stderr

    ocean = xr.open_zarr(tmp_path / "out" / "ocean.zarr").load()
    days = 10
    assert ocean.sizes["time"] == days
    lat = ocean.latitude.values
    scenario = forcings.ClimateScenario()
    decay = np.exp(-1.0 / 10.0)  # one-day steps, relaxation_time P10D
    sst = np.full(lat.shape, 290.0)
    for n in range(days):  # T_{n+1} = Teq_n + (T_n - Teq_n) e^{-dt/tau}, Teq_n the day's 6-hourly mean
        times = np.datetime64("2000-01-01T00:00") + np.timedelta64(n * 24, "h") + np.arange(6, 25, 6) * np.timedelta64(1, "h")
        t_eq = forcings.surface_equilibrium_temperature(lat[None, :], forcings.days_since_epoch(times, scenario.epoch)[:, None],
                                                        scenario).mean(axis=0)
        sst = t_eq + (sst - t_eq) * decay
        np.testing.assert_allclose(ocean.t_eq.values[n], np.broadcast_to(t_eq[:, None], (lat.size, 36)), rtol=1e-12)
        np.testing.assert_allclose(ocean.sst.values[n], np.broadcast_to(sst[:, None], (lat.size, 36)), rtol=1e-12)


EXCERPT = re.compile(r"<!-- doc-test: skip \(excerpt of (examples/[\w./]+)\) -->\n```\w*\n(.*?)```", re.S)


@pytest.mark.parametrize("doc", ["docs/host_model.md", "docs/components.md"])
def test_doc_excerpts_are_verbatim(doc):
    """Each excerpt block (parts separated by a line '...') appears in its example file, dedented."""
    text = (REPO / doc).read_text()
    excerpts = EXCERPT.findall(text)
    assert excerpts, f"{doc} shows no excerpt of examples/"
    for path, block in excerpts:
        lines = (REPO / path).read_text().splitlines()
        for part in re.split(r"^\s*\.\.\.\s*$", block, flags=re.M):
            part = textwrap.dedent(part).strip("\n")
            if not part:
                continue
            n = len(part.splitlines())
            windows = (textwrap.dedent("\n".join(lines[i:i + n])) for i in range(len(lines) - n + 1))
            assert part in windows, f"{doc}: this excerpt is not in {path} (update the doc):\n{part}"
