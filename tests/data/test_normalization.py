"""Normalization statistics against numpy on the whole array; storage and reload; normalize."""

from __future__ import annotations

import numpy as np
import pytest

from atmorep_coupler.data import compute_normalization, load_normalization, month_index, open_store
from atmorep_coupler.data.normalization import sidecar_path
from atmorep_coupler.errors import DataError


@pytest.fixture
def three_months(make_era5, write_store, tmp_path):
    """Late January to early March at 12 h, with NaNs over 'land' in SST (as in real ERA5)."""
    ds = make_era5(n_times=90, hours=12, start="2001-01-20")
    sst = ds.sea_surface_temperature.values
    sst[:, 2:4, 5:9] = np.nan
    ds["sea_surface_temperature"] = (ds.sea_surface_temperature.dims, sst, {"units": "K"})
    path = write_store(ds, tmp_path / "s.zarr", chunks={"time": 7})
    return ds, open_store(path)


@pytest.mark.filterwarnings("ignore:Mean of empty slice")
@pytest.mark.parametrize("chunk_bytes", [1, 10_000, 2**28])
def test_statistics_equal_numpy(three_months, chunk_bytes):
    ds, store = three_months
    stats = compute_normalization(store, max_chunk_bytes=chunk_bytes, progress=False)
    months = month_index(ds.time.values)
    assert set(np.unique(months)) == {0, 1, 2}
    for var in ("temperature", "geopotential", "vorticity"):
        x = ds[var].values.astype(np.float64)
        for m in (0, 1, 2):
            sel = x[months == m]
            np.testing.assert_allclose(stats.mean(var, [m], mode="local")[0], sel.mean(axis=0), rtol=1e-6)
            np.testing.assert_allclose(stats.std(var, [m], mode="local")[0], sel.std(axis=0), rtol=1e-5)
            np.testing.assert_allclose(
                stats.mean(var, [m], mode="global")[0], sel.mean(axis=(0, 2, 3)), rtol=1e-12
            )
            np.testing.assert_allclose(
                stats.std(var, [m], mode="global")[0], sel.std(axis=(0, 2, 3)), rtol=1e-10
            )
    sst = ds.sea_surface_temperature.values.astype(np.float64)
    for m in (0, 1, 2):
        sel = sst[months == m]
        np.testing.assert_allclose(
            stats.mean("sst", [m], mode="local")[0], np.nanmean(sel, axis=0), rtol=1e-6
        )
        np.testing.assert_allclose(stats.std("sst", [m], mode="global")[0], np.nanstd(sel), rtol=1e-10)
        np.testing.assert_allclose(stats.mean("sst", [m], mode="global")[0], np.nanmean(sel), rtol=1e-12)
    assert np.isnan(stats.mean("sst", [0], mode="local")[0, 2, 5])
    co2 = ds.co2_equivalent.values.astype(np.float64)
    np.testing.assert_allclose(stats.std("co2", [1], mode="global")[0], co2[months == 1].std(), rtol=1e-6)


def test_empty_months_hold_pooled_statistics(three_months):
    ds, store = three_months
    stats = compute_normalization(store, ["temperature"], progress=False)
    x = ds.temperature.values.astype(np.float64)
    for m in (3, 7, 11):
        np.testing.assert_allclose(stats.mean("t", [m], mode="global")[0], x.mean(axis=(0, 2, 3)), rtol=1e-12)
        np.testing.assert_allclose(stats.std("t", [m], mode="global")[0], x.std(axis=(0, 2, 3)), rtol=1e-10)
        np.testing.assert_allclose(stats.std("t", [m], mode="local")[0], x.std(axis=0), rtol=1e-5)
    assert stats.dataset.attrs["filled_months"]["temperature"] == list(range(4, 13))


def test_normalize_window_and_inverse(three_months):
    ds, store = three_months
    stats = compute_normalization(store, progress=False)
    assert stats.mode("vorticity") == "global" and stats.mode("temperature") == "local"
    times = slice(8, 30)  # crosses the January/February boundary
    months = month_index(store.times[times])
    lon = np.array([14, 15, 0, 1])
    x = store.read("t", time=times, levels=[1000, 500], lat=slice(2, 6), lon=lon)
    z = stats.normalize("t", x, months, level_idx=[2, 0], lat_idx=slice(2, 6), lon_idx=lon)
    full = ds.temperature.values.astype(np.float64)
    all_months = month_index(ds.time.values)
    for i, m in enumerate(months):
        ref = full[all_months == m][:, [2, 0]][:, :, 2:6][..., [14, 15, 0, 1]]
        np.testing.assert_allclose(z[i], (x[i] - ref.mean(0)) / ref.std(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(stats.denormalize("t", z, months, [2, 0], slice(2, 6), lon), x, rtol=1e-6)
    zg = stats.normalize("vo", store.read("vo", time=times), months)
    for i, m in enumerate(months):
        sel = ds.vorticity.values.astype(np.float64)[all_months == m]
        ref = (ds.vorticity.values[8 + i] - sel.mean(axis=(0, 2, 3))[:, None, None]) / sel.std(
            axis=(0, 2, 3)
        )[:, None, None]
        np.testing.assert_allclose(zg[i], ref, rtol=1e-4, atol=1e-5)


def test_normalized_data_has_unit_spread(three_months):
    ds, store = three_months
    stats = compute_normalization(store, ["temperature"], progress=False)
    months = month_index(store.times)
    z = stats.normalize("t", store.read("t"), months)
    for m in (0, 1, 2):
        np.testing.assert_allclose(z[months == m].mean(axis=0), 0.0, atol=1e-5)
        np.testing.assert_allclose(z[months == m].std(axis=0), 1.0, rtol=1e-4)


def test_zero_spread_is_not_divided_by(make_era5, write_store, tmp_path):
    ds = make_era5()
    ds["co2_equivalent"] = ds.co2_equivalent * 0 + 400.0
    ds.co2_equivalent.attrs["units"] = "ppm"
    store = open_store(write_store(ds, tmp_path / "s.zarr"))
    stats = compute_normalization(store, ["co2"], progress=False)
    z = stats.normalize("co2", store.read("co2"), month_index(store.times))
    np.testing.assert_array_equal(z, 0.0)


@pytest.mark.parametrize("fmt", [2, 3])
def test_save_inside_store_and_reload(make_era5, write_store, tmp_path, fmt):
    ds = make_era5()
    path = write_store(ds, tmp_path / "s.zarr", zarr_format=fmt)
    store = open_store("file://" + path)
    stats = compute_normalization(store, progress=False)
    where = stats.save(store)
    assert where.endswith("#normalization")
    reopened = open_store(path)
    assert set(reopened.variables) == set(ds.data_vars)  # the group does not leak into the data
    loaded = reopened.normalization
    for var in ds.data_vars:
        for kind in ("mean", "std"):
            for mode in ("global", "local"):
                np.testing.assert_array_equal(
                    getattr(loaded, kind)(var, [0], mode=mode), getattr(stats, kind)(var, [0], mode=mode)
                )
    assert loaded.units("temperature") == "K"
    np.testing.assert_array_equal(reopened.read("t"), ds.temperature.values)
    loaded.save(reopened)  # re-saving statistics onto the group they were read from loses nothing
    np.testing.assert_array_equal(open_store(path).normalization.std("t", [0], mode="local"),
                                  stats.std("t", [0], mode="local"))


def test_memory_url_store(make_era5, write_store):
    ds = make_era5()
    url = write_store(ds, "memory://norm/s.zarr")
    store = open_store(url)
    compute_normalization(store, ["t"], progress=False).save(store)
    np.testing.assert_array_equal(
        open_store(url).normalization.mean("t", [0]),
        compute_normalization(store, ["t"], progress=False).mean("t", [0]),
    )


def test_sidecar_statistics_beside_a_store(make_era5, write_store, tmp_path):
    path = write_store(make_era5(), tmp_path / "readonly.zarr")
    store = open_store(path)
    stats = compute_normalization(store, ["t"], progress=False)
    stats.save(sidecar_path(path))
    assert load_normalization(store).variables == ("temperature",)
    np.testing.assert_array_equal(open_store(path).normalization.std("t", [0]), stats.std("t", [0]))


def test_missing_statistics_and_variables(make_era5, write_store, tmp_path):
    path = write_store(make_era5(), tmp_path / "plain.zarr")
    store = open_store(path)
    with pytest.raises(DataError, match=r"no normalization statistics found.*plain\.zarr.*make|stats STORE"):
        store.normalization
    stats = compute_normalization(store, ["t"], progress=False)
    with pytest.raises(DataError, match=r"no variable 'q'.*temperature"):
        stats.mean("q", [0])
    with pytest.raises(DataError, match="no level 925"):
        stats.level_index([925])
    np.testing.assert_array_equal(stats.level_index([1000, 500]), [2, 0])


def test_statistics_are_interpolated_linearly_between_mid_month_values(three_months):
    """A month's statistics hold at its middle (16 Jan 12:00, 15 Feb 00:00 in 2001: 29.5 days apart) and
    move linearly in time between middles, so a constant physical value normalizes without a step at
    the month boundary; the sampler and the component (cftime dates) see the same positions."""
    import cftime

    from atmorep_coupler.data.normalization import month_position

    _, store = three_months
    stats = compute_normalization(store, ["temperature"], progress=False)
    jan, feb = (stats.mean("t", [m], mode="local")[0].astype(np.float64) for m in (0, 1))
    sjan, sfeb = (stats.std("t", [m], mode="local")[0].astype(np.float64) for m in (0, 1))
    times = np.array(["2001-01-16T12:00", "2001-02-01T00:00", "2001-02-15T00:00"], dtype="datetime64[ns]")
    w = np.array([0.0, 15.5 / 29.5, 1.0])  # days after mid-January over the 29.5 days to mid-February
    np.testing.assert_allclose(month_position(times), w, rtol=1e-12)
    dates = [cftime.datetime(2001, 1, 16, 12, calendar="proleptic_gregorian"),
             cftime.datetime(2001, 2, 1, calendar="proleptic_gregorian"),
             cftime.datetime(2001, 2, 15, calendar="proleptic_gregorian")]
    np.testing.assert_allclose(month_position(dates), w, rtol=1e-12)  # the component's dates
    x = np.full((3, *jan.shape), 250.0)
    z = stats.normalize("t", x, month_position(times))
    for k in range(3):
        mean = (1 - w[k]) * jan + w[k] * feb
        std = (1 - w[k]) * sjan + w[k] * sfeb
        np.testing.assert_allclose(z[k], (250.0 - mean) / std, rtol=1e-5, atol=1e-5)
    # no step at the boundary: three hours either side of 1 February differ by 6 h of the slope,
    # where the month index jumps by the whole January-February difference
    around = np.array(["2001-01-31T21:00", "2001-02-01T03:00"], dtype="datetime64[ns]")
    smooth = stats.normalize("t", x[:2], month_position(around))
    stepped = stats.normalize("t", x[:2], month_index(around))
    assert np.abs(smooth[1] - smooth[0]).max() < 0.02 * np.abs(stepped[1] - stepped[0]).max()
    np.testing.assert_array_equal(stats.normalize("t", x[:1], [1]), stats.normalize("t", x[:1], [1.0]))  # exact at a middle
