"""The neighbourhood sampler on a real zarr store with analytic fields."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atmorep_coupler.config import from_dict
from atmorep_coupler.data.sampler import BatchStream, batch_loader, NeighbourhoodSampler, row_areas, register_transform
from atmorep_coupler.data.store import open_store
from atmorep_coupler.data.tokens import detokenize
from atmorep_coupler.errors import ConfigError, DataError
from atmorep_coupler.model.config import ModelConfig
from atmorep_coupler.model.masking import Masker

from .conftest import LAT, co2, temperature, tiny_config_dict, u_wind, write_analytic_store


def sampler_for(store, config=None, **kw):
    config = config or from_dict(ModelConfig, tiny_config_dict())
    kw.setdefault("batch_size", 8)
    return NeighbourhoodSampler(store, config, **kw)


def normalized(store, var, values, times, level_idx=None, rows=None, cols=None, mode="global"):
    from atmorep_coupler.data.normalization import month_index

    return store.normalization.normalize(var, values, month_index(times), level_idx, rows, cols, mode=mode)


@pytest.mark.parametrize("mode", ["global", "local"])
def test_tokens_are_the_normalized_analytic_fields(analytic_store, mode):
    d = tiny_config_dict()
    for f in d["fields"][:2]:
        f["normalization"] = mode
    s = sampler_for(analytic_store, from_dict(ModelConfig, d), seed=3)
    batch = s.batch(0)
    times = batch.time.numpy().astype("datetime64[ns]")
    hours = (times - np.datetime64("2000-01-01", "ns")) / np.timedelta64(1, "h")
    lat, lon = batch.latitude.numpy().astype(np.float64), batch.longitude.numpy().astype(np.float64)
    origins = batch.origin.numpy()
    for b in range(8):
        rows = origins[b, 1] + np.arange(8)
        cols = (origins[b, 2] + np.arange(16)) % 64
        np.testing.assert_allclose(lat[b], LAT[rows])
        for name, fn in (("temperature", temperature), ("u_component_of_wind", u_wind)):
            phys = fn(hours[b][:, None, None, None], np.array([850.0, 500.0])[None, :, None, None],
                      lat[b][None, None, :, None], lon[b][None, None, None, :])
            want = normalized(analytic_store, name, phys.astype(np.float32), times[b], [1, 2], rows, cols, mode)
            got = detokenize(batch.tokens[name][b].numpy()).transpose(1, 0, 2, 3)
            np.testing.assert_allclose(got, want, atol=2e-5)
        want = normalized(analytic_store, "co2_equivalent", co2(hours[b]).astype(np.float32), times[b])
        got = detokenize(batch.tokens["co2_equivalent"][b].numpy())[0]  # [nt, ny, nx]
        np.testing.assert_allclose(got, np.broadcast_to(want[:, None, None], got.shape), atol=1e-5)
    sst = batch.tokens["sea_surface_temperature"]
    assert torch.isfinite(sst).all()


def test_global_slab_and_window_reads_agree(analytic_store):
    a = sampler_for(analytic_store, seed=1).batch(5)
    b = sampler_for(analytic_store, seed=1, max_slab_bytes=0).batch(5)  # one read per neighbourhood
    for name in a.tokens:
        assert torch.equal(a.tokens[name], b.tokens[name]) and torch.equal(a.meta[name], b.meta[name])


def test_centres_are_uniform_on_the_sphere_d5(analytic_store):
    s = sampler_for(analytic_store, batch_size=512, samples_per_window=512)
    rows = np.concatenate([s.draw(i)[:, 1] for i in range(40)])
    ny = 8
    centre_lat = 0.5 * (LAT[rows + 3] + LAT[rows + 4])
    # expected: start-row probabilities proportional to cos(centre latitude) on a regular grid
    starts = np.arange(32 - ny + 1)
    centres = 0.5 * (LAT[starts + 3] + LAT[starts + 4])
    expected = np.cos(np.deg2rad(centres))
    expected /= expected.sum()
    np.testing.assert_allclose(s.row_probability, expected, rtol=1e-2)
    counts = np.bincount(rows, minlength=starts.size)
    chi2 = ((counts - rows.size * expected) ** 2 / (rows.size * expected)).sum()
    assert chi2 < 60  # 24 degrees of freedom; the uniform-in-latitude sampler scores in the hundreds
    uniform = np.full(starts.size, 1 / starts.size)
    assert ((counts - rows.size * uniform) ** 2 / (rows.size * uniform)).sum() > 200
    assert np.mean(np.abs(np.sin(np.deg2rad(centre_lat)))) < 0.5  # ~ area mean of |sin| in the band


def testrow_areas_sum_to_the_sphere():
    assert row_areas(LAT).sum() == pytest.approx(2.0)  # ∫ cos φ dφ over [-90, 90]
    gaussian = np.rad2deg(np.arcsin(np.polynomial.legendre.leggauss(16)[0]))[::-1]
    assert row_areas(gaussian).sum() == pytest.approx(2.0)


def test_every_row_is_covered_and_longitudes_wrap(analytic_store):
    s = sampler_for(analytic_store)
    assert s.row_starts[0] == 0 and s.row_starts[-1] + 8 == 32  # windows reach both polar rows
    origins = np.array([[10, 24, 60]])  # columns 60..63, 0..11
    batch = s.read(origins)
    np.testing.assert_allclose(batch.longitude[0].numpy(), (np.arange(60, 76) % 64) * 5.625)
    np.testing.assert_allclose(batch.latitude[0, -1].item(), LAT[-1])  # the southernmost row


def test_windows_never_cross_record_ends_or_gaps_d14(tmp_path, analytic_store):
    s = sampler_for(analytic_store, start=np.datetime64("2000-01-02T00").item(), end=np.datetime64("2000-01-03T00").item())
    times = analytic_store.times
    nt = 3
    assert times[s.time_starts[0]] == np.datetime64("2000-01-02T00")
    assert times[s.time_starts[-1] + nt - 1] == np.datetime64("2000-01-03T00")  # last valid start
    full = sampler_for(analytic_store)
    assert full.time_starts[0] == 0 and full.time_starts[-1] == times.size - nt
    # a store with a missing time step: no window may span the gap
    gappy = np.delete(np.datetime64("2000-01-01T00", "ns") + np.arange(24) * np.timedelta64(3, "h"), 10)
    write_analytic_store(tmp_path / "gap.zarr", gappy)
    g = sampler_for(open_store(tmp_path / "gap.zarr"))
    assert set(g.time_starts) == set(range(0, 8)) | set(range(10, 21))
    with pytest.raises(DataError, match="no window of 3 consecutive time steps"):
        sampler_for(analytic_store, start=np.datetime64("2000-01-02T00").item(),
                    end=np.datetime64("2000-01-02T03").item())


def test_streams_are_deterministic_and_disjoint(analytic_store):
    a, b = sampler_for(analytic_store, seed=7), sampler_for(analytic_store, seed=7)
    np.testing.assert_array_equal(a.draw(3), b.draw(3))
    other_rank = sampler_for(analytic_store, seed=7, rank=1)
    other_stream = sampler_for(analytic_store, seed=7, stream=1)
    assert not np.array_equal(a.draw(3), other_rank.draw(3))
    assert not np.array_equal(a.draw(3), other_stream.draw(3))
    assert not np.array_equal(a.draw(3), a.draw(4))


def test_batch_stream_is_independent_of_worker_count(analytic_store):
    s = sampler_for(analytic_store, seed=2, batch_size=2)
    masker = Masker(s.config)
    serial = [(i, b.tokens["temperature"], m["temperature"].target) for i, b, m in BatchStream(s, masker, 5, 9)]
    parallel = [(i, b.tokens["temperature"], m["temperature"].target)
                for i, b, m in batch_loader(BatchStream(s, masker, 5, 9), num_workers=2)]
    assert [i for i, *_ in serial] == [i for i, *_ in parallel] == [5, 6, 7, 8]
    for (_, x, t), (_, y, u) in zip(serial, parallel):
        assert torch.equal(x, y) and torch.equal(t, u)


def test_nan_policy(analytic_store):
    land = np.array([[0, 10, 3]])  # rows 10..17 (~ +33..-8 deg), columns 3..18 include the land box
    batch = sampler_for(analytic_store).read(land)
    assert torch.isfinite(batch.tokens["sea_surface_temperature"]).all()
    d = tiny_config_dict()
    d["fields"][2]["predicted"] = True
    d["fields"][2]["masking"] = {"coarsen": 0.0}
    with pytest.raises(DataError, match="predicted field 'sea_surface_temperature' has NaN"):
        sampler_for(analytic_store, from_dict(ModelConfig, d)).read(land)


def test_transform_hook_replaces_the_reader(analytic_store):
    register_transform("plus_one_kelvin", lambda store, var, **kw: store.read(var, **kw) + 1.0)
    d = tiny_config_dict()
    d["fields"][0]["transform"] = "plus_one_kelvin"
    plain, shifted = sampler_for(analytic_store).batch(2), sampler_for(analytic_store, from_dict(ModelConfig, d)).batch(2)
    diff = (shifted.tokens["temperature"] - plain.tokens["temperature"]).numpy()
    std = analytic_store.normalization.std("temperature", [0], mode="global")[0, [1, 2]]
    np.testing.assert_allclose(diff.mean(axis=(0, 2, 3, 4, 5, 6, 7)), 1.0 / std, rtol=1e-3)
    d["fields"][0]["transform"] = "not_registered"
    with pytest.raises(ConfigError, match="transform 'not_registered' is not registered"):
        sampler_for(analytic_store, from_dict(ModelConfig, d))


def test_config_store_mismatches_are_named(analytic_store):
    d = tiny_config_dict()
    d["fields"][0]["levels"] = [850, 700]
    with pytest.raises(DataError, match="no level 700 hPa"):
        sampler_for(analytic_store, from_dict(ModelConfig, d))
    d = tiny_config_dict()
    d["fields"][2]["levels"] = [850]
    d["fields"][2]["token_size"] = [3, 8, 8]
    with pytest.raises(DataError, match="'sea_surface_temperature' has no pressure levels"):
        sampler_for(analytic_store, from_dict(ModelConfig, d))
