"""coupling_configs/default.yaml and counterfactual.yaml end to end, with a small checkpoint of the
default training config's field set trained here on the tiny store, through ``atmorep_coupler.run``
and its ``--set`` overrides; the plots of the coupled run against the truth store."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

pytest.importorskip("dinosaur")

from atmorep_coupler.analysis.counterfactual import compare, store_config, truth_response  # noqa: E402
from atmorep_coupler.analysis.plots import plot_run  # noqa: E402
from atmorep_coupler.data import forcings, open_store  # noqa: E402
from atmorep_coupler.errors import ConfigError  # noqa: E402
from atmorep_coupler.quickstart import coupled_overrides, tiny_coupled_overrides  # noqa: E402
from atmorep_coupler.run import load_config, main  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[2] / "coupling_configs"
START = dt.datetime(2000, 1, 2)  # inside the tiny store, after its first 12 hours (the context window)
HOURS = 12


@pytest.fixture(scope="module")
def checkpoint(tiny_default_checkpoint):
    """The default training config's fields (4 predicted, 4 coarse, 3 forcings) made small and trained
    3 steps on the tiny store: the recipe of ``quickstart --tiny`` (tests/conftest.py)."""
    return tiny_default_checkpoint


def overrides(checkpoint: Path, store: Path) -> list[str]:
    """The quickstart's ``--set`` assignments of ``--tiny``, for half its period."""
    return coupled_overrides(checkpoint, store) + tiny_coupled_overrides(START, HOURS)


def test_counterfactual_differs_in_one_line_only():
    default = (CONFIGS / "default.yaml").read_text().splitlines()
    counterfactual = (CONFIGS / "counterfactual.yaml").read_text().splitlines()
    strip = [line for line in default if not line.lstrip().startswith("#") and line.strip()]
    strip_cf = [line for line in counterfactual if not line.lstrip().startswith("#") and line.strip()]
    differing = [(a, b) for a, b in zip(strip, strip_cf, strict=True) if a != b]
    assert [(a.split()[0], b.split()[0]) for a, b in differing] == [("name:", "name:"), ("ramp:", "ramp:")]
    assert "warming_offset_K: 4.0" in differing[1][1]


def test_set_overrides_name_the_file_and_key(tmp_path):
    with pytest.raises(ConfigError, match=r"default.yaml: --set run.nope.x=1: run has no key 'nope'"):
        load_config(CONFIGS / "default.yaml", ["run.nope.x=1"])
    with pytest.raises(ConfigError, match=r"default.yaml \(with --set run.ends=1\): run.ends: unknown key"):
        load_config(CONFIGS / "default.yaml", ["run.ends=1"])
    with pytest.raises(ConfigError, match=r"couplings is a list of 6 items; '9' is not an index"):
        load_config(CONFIGS / "default.yaml", ["couplings.9.period=PT6H"])
    config, base = load_config(CONFIGS / "default.yaml", ["couplings.0.period=PT6H", "run.end=2000-03-20T00:00:00"])
    assert config.couplings[0].period == dt.timedelta(hours=6) and config.run.end == dt.datetime(2000, 3, 20)
    assert base == CONFIGS and config.grids["atmorep"].first_lon == 0.0


@pytest.mark.slow
def test_default_and_counterfactual_runs(checkpoint, tiny_store, tmp_path, capsys):
    out, out_cf = tmp_path / "default", tmp_path / "counterfactual"
    sets = [arg for s in overrides(checkpoint, tiny_store) for arg in ("--set", s)]
    assert main([str(CONFIGS / "default.yaml"), "--out", str(out), "--no-progress", *sets]) == 0
    assert main([str(CONFIGS / "counterfactual.yaml"), "--out", str(out_cf), "--no-progress", *sets]) == 0
    capsys.readouterr()

    atm = xr.open_zarr(out / "atmorep.zarr")
    times = atm.time.values.astype("datetime64[s]").astype(object)
    assert list(times) == [START + dt.timedelta(hours=h) for h in range(6, HOURS + 1, 6)]
    assert atm.temperature.sizes["level"] == 4 and np.isfinite(atm.temperature.values).all()
    # trained three steps: not skilful, but a temperature, not noise around zero
    assert 180.0 < float(atm.temperature.min()) and float(atm.temperature.max()) < 340.0

    # the SST proxy: the store's formula (Held-Suarez eq. 3 at p0) at the output times, +4 K exactly in
    # the counterfactual (the one changed line reaches it through the CO2 import)
    sst, sst_cf = (xr.open_zarr(o / "sst_daily.zarr").sea_surface_temperature for o in (out, out_cf))
    lat = sst[sst.dims[1]].values
    scenario = forcings.ClimateScenario()
    days = forcings.days_since_epoch(sst.time.values, scenario.epoch)
    expect = forcings.surface_equilibrium_temperature(lat[None, :], days[:, None], scenario)
    np.testing.assert_allclose(sst.values, np.broadcast_to(expect[:, :, None], sst.shape), rtol=1e-6)
    np.testing.assert_allclose(sst_cf.values - sst.values, 4.0, atol=1e-4)

    # the counterfactual: +4 K at the surface reaches the classical model (its surface warming) and
    # the SST proxy exactly; the multiformer's state responds
    classical = xr.open_zarr(out / "classical_daily.zarr")
    classical_cf = xr.open_zarr(out_cf / "classical_daily.zarr")
    np.testing.assert_allclose(classical_cf.surface_warming.values - classical.surface_warming.values, 4.0, atol=1e-9)
    atm_cf = xr.open_zarr(out_cf / "atmorep.zarr")
    assert not np.array_equal(atm_cf.temperature.values, atm.temperature.values)

    # plots of the coupled run against the truth store
    paths = plot_run(out, tiny_store, tmp_path / "plots")
    assert [p.name for p in paths] == ["maps_temperature500.png", "global_mean_temperature500.png",
                                       "zonal_mean_temperature.png"]
    assert all(p.stat().st_size > 10_000 for p in paths)

    # the truth model's response: its control run reproduces the truth store at the runs' output times
    times = atm.time.values
    config = store_config(tiny_store)
    control, warmed = truth_response(config, times, [500.0, 850.0], 4.0, progress=False)
    truth = open_store(tiny_store)
    stored = truth.read("temperature", time=[truth.time_index(t) for t in times], levels=[500.0, 850.0])
    np.testing.assert_allclose(control[2], stored.astype(np.float64).mean(axis=(0, -1)), atol=2e-3)
    # +4 K at the surface warms the lower troposphere of the truth model within half a day
    assert (warmed[2][1] - control[2][1]).mean() > 0.0

    summary = compare(out, out_cf, tiny_store, tmp_path / "response", progress=False)
    assert summary["levels_hPa"] == [250.0, 500.0, 700.0, 850.0]
    assert set(summary["mean_response_K"]) == {"multiformer", "truth model (dinosaur)", "classical model (T15)"}
    assert (tmp_path / "response" / "response_temperature.png").stat().st_size > 10_000
