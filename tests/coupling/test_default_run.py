"""coupling_configs/default.yaml and counterfactual.yaml end to end, with a small checkpoint of the
default training config's field set trained here on the tiny store, through ``atmorep_coupler.run``
and its ``--set`` overrides; the plots of the coupled run against the truth store."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

pytest.importorskip("dinosaur")

from atmorep_coupler.analysis.counterfactual import compare, store_config, truth_response  # noqa: E402
from atmorep_coupler.analysis.plots import plot_run  # noqa: E402
from atmorep_coupler.coupling.driver import CoupledRun  # noqa: E402
from atmorep_coupler.data import forcings, open_store  # noqa: E402
from atmorep_coupler.data.default import DefaultDataConfig  # noqa: E402
from atmorep_coupler.errors import ConfigError  # noqa: E402
from atmorep_coupler.quickstart import coupled_overrides, tiny_coupled_overrides  # noqa: E402
from atmorep_coupler.run import load_config, main  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[2] / "coupling_configs"
START = dt.datetime(2000, 1, 2)  # inside the tiny store, after its first 12 hours (the context window)
HOURS = 12


@pytest.fixture(scope="module")
def checkpoint(tiny_default_checkpoint):
    """The default training config's fields (4 predicted, 4 coarse, 2 forcings) made small and trained
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


def test_one_way_differs_from_default_only_by_the_coupling_back():
    """one_way.yaml = default.yaml without the atmorep -> classical coupling (and its unused nudging settings)."""
    default = yaml.safe_load((CONFIGS / "default.yaml").read_text())
    one_way = yaml.safe_load((CONFIGS / "one_way.yaml").read_text())
    back = [c for c in default["couplings"] if c["from"] == "atmorep"]
    assert [c["to"] for c in back] == ["classical"] and back[0]["lag"] == back[0]["period"] == "PT3H"
    assert [f["dst"] for f in back[0]["fields"]] == ["nudging_temperature", "nudging_u_component_of_wind",
                                                     "nudging_v_component_of_wind"]
    default["couplings"] = [c for c in default["couplings"] if c["from"] != "atmorep"]
    nudging = default["components"]["classical"]["config"].pop("nudging")
    assert nudging == {"tau": "PT6H", "levels_hPa": [250, 500, 700, 850], "reach_hPa": 100}
    default["run"]["name"] = "one-way"
    assert one_way == default
    # the two-way settings are those the default data's coarse run was made with (what training saw)
    coarse = DefaultDataConfig().coarse
    assert (coarse.tau_hours, list(coarse.levels_hPa), coarse.reach_hPa) == (6.0, nudging["levels_hPa"], 100.0)


def test_set_overrides_name_the_file_and_key(tmp_path):
    with pytest.raises(ConfigError, match=r"default.yaml: --set run.nope.x=1: run has no key 'nope'"):
        load_config(CONFIGS / "default.yaml", ["run.nope.x=1"])
    with pytest.raises(ConfigError, match=r"default.yaml \(with --set run.ends=1\): run.ends: unknown key"):
        load_config(CONFIGS / "default.yaml", ["run.ends=1"])
    with pytest.raises(ConfigError, match=r"couplings is a list of 6 items; '9' is not an index"):
        load_config(CONFIGS / "default.yaml", ["couplings.9.period=PT6H"])
    config, base = load_config(CONFIGS / "default.yaml", ["couplings.0.period=PT6H", "run.end=2001-03-20T00:00:00"])
    assert config.couplings[0].period == dt.timedelta(hours=6) and config.run.end == dt.datetime(2001, 3, 20)
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
    np.testing.assert_allclose(control[2], stored.astype(np.float64).mean(axis=-1), atol=2e-3)
    # +4 K at the surface warms the lower troposphere of the truth model within half a day
    assert (warmed[2][:, 1] - control[2][:, 1]).mean() > 0.0

    summary = compare(out, out_cf, tiny_store, tmp_path / "response", block_days=0.25, progress=False)
    assert summary["levels_hPa"] == [250.0, 500.0, 700.0, 850.0] and summary["blocks"] == 2
    assert set(summary["mean_response_K"]) == {"multiformer", "truth model (dinosaur)", "classical model (T15)"}
    assert len(summary["amplitude_ratio"]) == len(summary["mean_response_se_K"]["multiformer"]) == 4
    assert (tmp_path / "response" / "response_temperature.png").stat().st_size > 10_000


def great_circle_cell_areas(lat_edges: np.ndarray, lon_edges: np.ndarray) -> np.ndarray:
    """Areas (unit sphere) of the cells between successive latitude and longitude edges (degrees) with
    great-circle sides, as ESMF and the regridder see them: two spherical triangles per cell, each of excess
    E with tan(E/2) = |a.(b x c)| / (1 + a.b + b.c + c.a) (Van Oosterom & Strackee 1983)."""
    la, lo = np.meshgrid(np.deg2rad(lat_edges), np.deg2rad(lon_edges), indexing="ij")
    xyz = np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)
    p1, p2, p3, p4 = xyz[:-1, :-1], xyz[:-1, 1:], xyz[1:, 1:], xyz[1:, :-1]

    def excess(a, b, c):
        dot = lambda x, y: (x * y).sum(-1)  # noqa: E731
        return 2 * np.arctan2(np.abs(dot(a, np.cross(b, c))), 1 + dot(a, b) + dot(b, c) + dot(c, a))

    return excess(p1, p2, p3) + excess(p1, p3, p4)


def _two_way_run(config_overrides: list[str], out: Path, *, resume: bool | None = None) -> dict[str, np.ndarray]:
    """Run default.yaml with the overrides; return the classical model's last nudging imports."""
    config, base = load_config(CONFIGS / "default.yaml", config_overrides)
    with CoupledRun(config, base_dir=base, out_dir=out, resume=resume, progress=False) as run:
        run.run()
        classical = run.components["classical"]
        return {name: classical.get_field("nudging_" + name).values.astype(np.float64)
                for name in ("temperature", "u_component_of_wind", "v_component_of_wind")}


@pytest.mark.slow
def test_two_way_run_conserves_and_restarts_bit_identically(checkpoint, tiny_store, tmp_path):
    """default.yaml couples the multiformer back to the classical model. (1) That exchange conserves the area
    integral over cells with great-circle sides (the regridder's, ESMF's), checked independently: the
    multiformer's output at 9 h integrated over its lat-lon cells equals the classical model's last imported
    target integrated over its Gaussian cells, both areas computed here in numpy (to 1e-6). (2) A run stopped at 6 h and resumed from its restart equals an uninterrupted 12 h run bit for bit."""
    sets = overrides(checkpoint, tiny_store) + ["outputs.0.interval=PT3H"]
    targets = _two_way_run(sets, tmp_path / "reference")
    end_6h = (START + dt.timedelta(hours=6)).isoformat()
    _two_way_run(sets + [f"run.end={end_6h}"], tmp_path / "resumed")
    _two_way_run(sets, tmp_path / "resumed", resume=True)

    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    for name in ("atmorep.zarr", "classical_daily.zarr", "sst_daily.zarr"):
        a, b = xr.open_zarr(reference / name), xr.open_zarr(resumed / name)
        assert a.sizes == b.sizes and a.sizes["time"] > 1, name
        for var in a.data_vars:
            np.testing.assert_array_equal(a[var].values, b[var].values, err_msg=f"{name}: {var}")
    assert (reference / "conservation.csv").read_text() == (resumed / "conservation.csv").read_text()

    atm = xr.open_zarr(reference / "atmorep.zarr").sel(time=np.datetime64(START + dt.timedelta(hours=9)))
    lat, lon = atm.latitude.values, atm.longitude.values
    lat, lon = (lat[:, 0], lon[0]) if lat.ndim == 2 else (lat, lon)
    area_latlon = great_circle_cell_areas(np.concatenate([[90.0], 0.5 * (lat[1:] + lat[:-1]), [-90.0]]),
                                          np.append(lon - 0.5 * (lon[1] - lon[0]), lon[-1] + 0.5 * (lon[1] - lon[0])))
    _, weights = np.polynomial.legendre.leggauss(24)
    band_edges = np.rad2deg(np.arcsin(1.0 - np.concatenate([[0.0], np.cumsum(weights)])))  # north first
    area_gauss = great_circle_cell_areas(band_edges, 7.5 * np.arange(49) - 3.75)
    for name, target in targets.items():
        source = atm[name].transpose("level", ...).values.astype(np.float64)
        for k in range(4):
            a = float((source[k] * area_latlon).sum())
            b = float((target[k] * area_gauss).sum())
            assert abs(b - a) <= 1e-6 * float((np.abs(source[k]) * area_latlon).sum()), (name, k, a, b)
    rows = (reference / "conservation.csv").read_text().splitlines()
    back = [row.split(",") for row in rows[1:] if "atmorep->classical" in row]
    assert {row[2] for row in back} == set(targets) and len(back) == 3 * 5  # three fields at 0, 3, 6, 9, 12 h
    assert max(float(row[-1]) for row in back) <= 1e-6
