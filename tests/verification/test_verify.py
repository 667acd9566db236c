"""The verification end to end on the tiny store: every system on the scorecard, baselines against numpy
computations from raw store reads, the coarse model alone against a separately run classical component
regridded with scipy, start dates, the CLI."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
import scipy.sparse
import xarray as xr

from atmorep_coupler.data import open_store
from atmorep_coupler.errors import ConfigError
from atmorep_coupler.verification.pipeline import VerifySettings, default_starts, verify
from atmorep_coupler.verify import DEFAULT_COUPLING, build_parser, main

STARTS = (dt.datetime(2000, 1, 3, 6), dt.datetime(2000, 1, 3, 12))  # after the tiny run's training period
HOURS = 12.0
TINY_CLASSICAL = ("components.classical.config.spinup_days=10", "components.classical.config.initialization.days=1")
LEVELS = [250.0, 500.0, 700.0, 850.0]


def settings(checkpoint, store, **changes) -> VerifySettings:
    given = {"coupling": DEFAULT_COUPLING, "overrides": TINY_CLASSICAL, "starts": STARTS, "hours": HOURS,
             "tile_batch_size": 64}
    return VerifySettings(checkpoint=checkpoint, store=store, **(given | changes))


@pytest.fixture(scope="module")
def card(tiny_default_checkpoint, tiny_store):
    return verify(settings(tiny_default_checkpoint, tiny_store), progress=False)


def wb2_weights(lat: np.ndarray) -> np.ndarray:
    bounds = np.concatenate([[90.0], 0.5 * (lat[1:] + lat[:-1]), [-90.0]])  # north-first rows
    w = np.sin(np.deg2rad(bounds[:-1])) - np.sin(np.deg2rad(bounds[1:]))
    return w / w.mean()


def wb2(forecast: np.ndarray, truth: np.ndarray, clim: np.ndarray, lat: np.ndarray) -> tuple[float, float]:
    """RMSE and ACC over start dates of ``[S, lat, lon]`` fields, written out here."""
    w = wb2_weights(lat)[:, None]
    mean = lambda x: (w * x).mean(axis=(-2, -1))  # noqa: E731
    f, o = forecast - clim, truth - clim
    with np.errstate(invalid="ignore"):  # the climatology's own ACC is 0 / 0
        acc = float((mean(f * o) / np.sqrt(mean(f**2) * mean(o**2))).mean())
    return float(np.sqrt(mean((forecast - truth) ** 2).mean())), acc


@pytest.mark.slow
def test_every_system_is_scored_at_every_lead(card):
    assert card.leads_hours == [3.0, 6.0, 9.0, 12.0]
    assert card.starts == [s.isoformat() for s in STARTS]
    assert set(card.systems) == {"persistence", "climatology", "climatology_in_sample", "coarse_model",
                                 "multiformer_coupled", "multiformer_one_way", "multiformer_perfect"}
    # default.yaml is two-way: its coarse model follows the multiformer, so the two hybrids part ways
    two, one = (card.value(s, "temperature", "500hPa", "rmse", HOURS) for s in ("multiformer_coupled", "multiformer_one_way"))
    assert abs(two - one) > 1e-4 * one
    scores = card.scores()
    for system in card.systems:
        for name, levels in card.fields.items():
            for level in levels:
                rmse = scores[system][name][level]["rmse"]
                assert np.all(np.isfinite(rmse)) and np.all(np.asarray(rmse) > 0), (system, name, level)
                acc = np.asarray(scores[system][name][level]["acc"])
                assert np.all(np.isnan(acc)) if system == "climatology" else np.all(np.abs(acc) <= 1)
    assert card.info["wall_time_s"]["total"] > 0 and card.info["tiling"]["tiles"] == 32


@pytest.mark.slow
def test_persistence_and_climatology_equal_numpy_on_raw_store_reads(card, tiny_store):
    store = open_store(tiny_store)
    lat = store.latitudes
    train = store.times <= np.datetime64("2000-01-03T00:00")  # the tiny run's training period
    hour = lambda t: (t - t.astype("datetime64[D]")).astype("timedelta64[h]").astype(int)  # noqa: E731
    for name, j in (("temperature", 1), ("geopotential", 3)):
        data = store.read(name, levels=LEVELS)[:, j].astype(np.float64)  # [time, lat, lon]
        index = lambda t: int(np.flatnonzero(store.times == np.datetime64(t, "ns"))[0])  # noqa: E731
        for k, h in enumerate(card.leads_hours):
            targets = [s + dt.timedelta(hours=h) for s in STARTS]
            truth = np.stack([data[index(t)] for t in targets])
            clim = np.stack([data[train & (hour(store.times) == t.hour)].mean(axis=0) for t in targets])
            persistence = np.stack([data[index(s)] for s in STARTS])
            level = card.fields[name][j]
            for system, forecast in (("persistence", persistence), ("climatology", clim)):
                rmse, acc = wb2(forecast, truth, clim, lat)
                assert card.value(system, name, level, "rmse", h) == pytest.approx(rmse, rel=1e-5), (system, name, h)
                if system == "persistence":
                    assert card.value(system, name, level, "acc", h) == pytest.approx(acc, rel=1e-5, abs=1e-6)


def conservative_to_fine(coarse_lat_bounds_sin: np.ndarray, fine_lat: np.ndarray, nlon_coarse: int,
                         nlon_fine: int) -> scipy.sparse.csr_matrix:
    """First-order conservative weights (destination-area normalized) between two global lat-lon grids with
    cells bounded by parallels and meridians, cells centred on 0 deg longitude: overlaps in sin(latitude)
    times overlaps in longitude, as a scipy sparse Kronecker product."""
    fine_bounds = np.concatenate([[90.0], 0.5 * (fine_lat[1:] + fine_lat[:-1]), [-90.0]])
    fine_sin = np.sin(np.deg2rad(fine_bounds))
    top = np.minimum(fine_sin[:-1, None], coarse_lat_bounds_sin[None, :-1])
    bottom = np.maximum(fine_sin[1:, None], coarse_lat_bounds_sin[None, 1:])
    rows = np.clip(top - bottom, 0, None) / (fine_sin[:-1] - fine_sin[1:])[:, None]

    def lon_overlap(n_dst: int, n_src: int) -> np.ndarray:
        d, s = 360.0 / n_dst, 360.0 / n_src
        dst = np.arange(n_dst)[:, None] * d - d / 2
        out = np.zeros((n_dst, n_src))
        for shift in (-360.0, 0.0, 360.0):
            src = np.arange(n_src)[None, :] * s - s / 2 + shift
            out += np.clip(np.minimum(dst + d, src + s) - np.maximum(dst, src), 0, None)
        return out / d

    return scipy.sparse.kron(scipy.sparse.csr_matrix(rows), scipy.sparse.csr_matrix(lon_overlap(nlon_fine, nlon_coarse))).tocsr()


@pytest.mark.slow
def test_coarse_model_alone_equals_a_classical_component_run_separately_and_regridded_with_scipy(card, tiny_store,
                                                                                                   tmp_path):
    """The classical component run here from each start with the coupling YAML's settings (the second start
    chained from the first's end state, as the verification documents), its temperature regridded to the
    fine grid with the conservative weights above, scored with numpy: the coarse_model rows of the card."""
    from components.classical import ClassicalModel

    store = open_store(tiny_store)
    lat = store.latitudes
    nodes, gauss = np.polynomial.legendre.leggauss(24)
    sin_bounds = np.concatenate([[1.0], 1.0 - np.cumsum(gauss[::-1])])  # north first; band areas 2 pi w
    regrid = conservative_to_fine(sin_bounds, lat, 48, store.longitudes.size)
    from atmorep_coupler.run import load_config

    yaml_config, _ = load_config(DEFAULT_COUPLING, TINY_CLASSICAL)  # the classical settings as the YAML has them
    base = {**yaml_config.components["classical"].config, "time_step": "PT1H"}
    base["initialization"] = {**base["initialization"], "store": str(tiny_store)}
    forecasts, state = [], None
    for start in STARTS:
        config = {**base, "start": start.isoformat(), "end": (start + dt.timedelta(hours=HOURS)).isoformat()}
        if state is not None:
            config |= {"spinup_from": str(state), "spinup_days": 1}
        model = ClassicalModel.from_config(config)
        steps = []
        for _ in range(int(HOURS // 3)):
            model.step(3)
            t = model.get_field("temperature").values  # [level, 24, 48] north first
            steps.append((regrid @ t.reshape(len(LEVELS), -1).T).T.reshape(len(LEVELS), lat.size, -1))
        forecasts.append(np.stack(steps))
        state = tmp_path / f"state{len(forecasts)}.npz"
        np.savez(state, **model.model.get_state())
    forecasts = np.stack(forecasts)  # [S, K, L, lat, lon]
    data = store.read("temperature", levels=LEVELS).astype(np.float64)
    for k, h in enumerate(card.leads_hours):
        index = [int(np.flatnonzero(store.times == np.datetime64(s + dt.timedelta(hours=h), "ns"))[0]) for s in STARTS]
        for j, level in enumerate(card.fields["temperature"]):
            truth = data[index, j]
            rmse = float(np.sqrt((wb2_weights(lat)[:, None] * (forecasts[:, k, j] - truth) ** 2).mean(axis=(1, 2)).mean()))
            # the coupler's weights use great-circle cell edges (as ESMF); here edges are parallels: 0.5 % apart
            assert card.value("coarse_model", "temperature", level, "rmse", h) == pytest.approx(rmse, rel=5e-3), (h, level)


def test_default_starts_lie_after_the_held_out_period(tmp_path):
    times = np.datetime64("2000-01-01", "ns") + np.arange(2928) * np.timedelta64(3, "h")  # one leap year, 3-hourly
    ds = xr.Dataset({"temperature": (("time", "latitude", "longitude"), np.zeros((times.size, 2, 4), "f4"), {"units": "K"})},
                    coords={"time": times, "latitude": [45.0, -45.0], "longitude": [0.0, 90.0, 180.0, 270.0]})
    ds.to_zarr(tmp_path / "s.zarr", zarr_format=3, consolidated=False)
    store = open_store(tmp_path / "s.zarr")
    starts = default_starts(store, dt.datetime(2000, 3, 14, 21), 16, 240.0, 120.0)
    assert len(starts) == 16 and all(s.hour in (0, 12) and s.minute == 0 for s in starts)
    assert starts[0] == dt.datetime(2000, 3, 20) and starts[-1] + dt.timedelta(hours=240) <= dt.datetime(2000, 12, 31, 21)
    gaps = np.diff([s.timestamp() for s in starts]) / 3600
    assert gaps.max() - gaps.min() <= 12  # evenly spread to the nearest 12 h


def test_forecasts_over_the_training_period_are_refused(tiny_default_checkpoint, tiny_store):
    with pytest.raises(ConfigError, match=r"start 2000-01-02T00:00:00: its forecast to \+12 h overlaps the checkpoint's "
                                          "training period"):
        verify(settings(tiny_default_checkpoint, tiny_store, starts=(dt.datetime(2000, 1, 2),)), progress=False)


def test_cli_writes_the_scorecard_and_its_plots(tiny_default_checkpoint, tiny_store, tmp_path, capsys):
    """A 2-member ensemble with perfect conditioning (no coupled runs: they take minutes) from one start."""
    out = tmp_path / "verify"
    code = main([str(tiny_default_checkpoint), "--store", str(tiny_store), "--out", str(out), "--starts",
                 "2000-01-03T06:00:00", "--hours", "6", "--no-coupled", "--members", "2", "--no-progress",
                 "--climatology-window", "31"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "RMSE by lead (1 start dates)" in printed and "| temperature | 500hPa | persistence |" in printed
    assert "| field (ACC) | level | system | 3 h | 6 h |" in printed
    card = json.loads((out / "scorecard.json").read_text())
    assert set(card["systems"]) == {"persistence", "climatology", "climatology_in_sample", "multiformer_perfect"}
    assert card["systems"]["multiformer_perfect"]["ensemble_size"] == 2
    ensemble = card["scores"]["multiformer_perfect"]["temperature"]["500hPa"]
    assert all(x > 0 for x in ensemble["crps"] + ensemble["spread"] + ensemble["spread_skill"])
    assert card["scores"]["persistence"]["temperature"]["500hPa"]["crps"] == [None, None]
    assert card["leads_hours"] == [3.0, 6.0] and "acc" in card["definitions"]
    assert sorted(p.name for p in out.glob("*.png")) == [f"scorecard_{f}.png" for f in sorted(card["fields"])]
    args = build_parser().parse_args(["c.pt", "--store", "s.zarr", "--climatology-period", "2000-01-01", "2000-12-31"])
    assert args.climatology_period == [dt.datetime(2000, 1, 1), dt.datetime(2000, 12, 31)]


@pytest.mark.slow
def test_two_way_forecasts_in_lockstep_equal_the_coupling_yaml_run_on_its_own(tiny_default_checkpoint, tiny_store,
                                                                               tmp_path):
    """Two start dates stepped in lockstep (shared network calls; each coarse model nudged toward its own
    multiformer): the second start's multiformer temperature at every step equals that of the two-way
    coupling YAML run by the driver on its own from the same start."""
    from atmorep_coupler.config import to_dict
    from atmorep_coupler.coupling.driver import CoupledRun
    from atmorep_coupler.coupling.schema import load_coupling_config
    from atmorep_coupler.run import load_config
    from atmorep_coupler.verification.coupled import run_mapping
    from atmorep_coupler.verification.two_way import two_way_forecasts

    sets = [*TINY_CLASSICAL, f"components.atmorep.config.checkpoint={tiny_default_checkpoint}",
            f"components.atmorep.config.initial_condition={tiny_store}",
            f"components.classical.config.initialization.store={tiny_store}"]
    config, _ = load_config(DEFAULT_COUPLING, sets)
    hours, together = 6.0, {}
    two_way_forecasts(config, "atmorep", STARTS, hours, [{}, {}], lambda k, f: together.__setitem__(k, f["temperature"]))
    assert sorted(together) == [1, 2] and together[1].shape == (2, 4, 32, 64)

    mapping = run_mapping(to_dict(config), "atmorep", "atmorep", STARTS[1], hours, {})
    mapping["outputs"] = [{"component": "atmorep", "variables": ["temperature"], "interval": "PT3H",
                           "reduction": "instant", "path": "alone.zarr"}]
    with CoupledRun(load_coupling_config(mapping)[0], base_dir=tmp_path, out_dir=tmp_path, progress=False,
                    resume=False) as run:
        run.run()
    alone = xr.open_zarr(tmp_path / "alone.zarr").temperature.transpose("time", "level", ...).values
    np.testing.assert_allclose(np.stack([together[k][1] for k in (1, 2)]), alone, rtol=0, atol=1e-3)
