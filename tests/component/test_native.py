"""The native layer over BMI: calendar-aware stepping, xarray fields with units, exchange items,
exact restarts, and the host-memory contract of get_value_ptr."""

from __future__ import annotations

import datetime as dt

import cftime
import numpy as np
import pytest
import xarray as xr

from atmorep_coupler.component import ExchangeItem
from atmorep_coupler.errors import CheckpointError, ComponentError
from components.forcing import CO2Scenario, PrescribedField

DAY = 86400.0


def test_current_datetime_follows_the_calendar(sst):
    assert sst.current_datetime == cftime.datetime(2000, 2, 27, calendar="noleap")
    sst.step(8)  # two days of 6 h steps across the missing 29 February
    assert sst.current_datetime == cftime.datetime(2000, 3, 1, calendar="noleap")
    assert sst.get_current_time() == 2 * DAY


def test_advance_to_a_date_and_step_counts(sst):
    sst.advance_to("2000-02-28T09:00:00")
    assert sst.get_current_time() == DAY + 9 * 3600.0
    sst.advance_to(dt.datetime(2000, 3, 1, 12))
    assert sst.get_current_time() == 2.5 * DAY
    with pytest.raises(ComponentError, match="whole number"):
        sst.step(1.5)
    with pytest.raises(ComponentError, match="360_day|noleap"):
        sst.advance_to("2000-02-29")  # not a date of the noleap calendar


def test_get_field_is_a_labelled_copy_with_unit_conversion(sst, sst_truth):
    field = sst.get_field("sst")
    assert field.dims == ("latitude", "longitude") and field.attrs["units"] == "K"
    assert field.attrs["standard_name"] == "sea_surface_temperature"
    assert field["time"].item() == cftime.datetime(2000, 2, 27, calendar="noleap")
    assert field["latitude"].values[0] == 89.5 and field["longitude"].values[-1] == 359.5
    celsius = sst.get_field("sst", units="degC")
    expected = sst_truth.records_K[0].astype(np.float32).astype(np.float64) - 273.15
    np.testing.assert_allclose(celsius.values, expected, atol=1e-12, equal_nan=True)
    assert celsius.attrs["units"] == "degC"
    field.values[...] = 0.0  # a copy
    assert np.nanmin(sst.get_field("sst").values) > 270.0


def test_set_field_converts_units_and_orders_dims(ocean):
    t_eq = xr.DataArray(
        np.linspace(5.0, 25.0, 36)[:, None] * np.ones(18), dims=("longitude", "latitude"), attrs={"units": "degC"}
    ).expand_dims(
        time=1
    )  # transposed dims and a size-1 time dim
    ocean.set_field("t_eq", t_eq)
    stored = ocean.get_field("t_eq").values
    np.testing.assert_allclose(stored, t_eq.isel(time=0).values.T + 273.15, rtol=0, atol=1e-12)
    ocean.set_field("t_eq", np.full((18, 36), 77.0), units="degF")
    np.testing.assert_allclose(ocean.get_field("t_eq", units="degC").values, 25.0, atol=1e-9)


def test_set_field_needs_units_and_the_grid_shape(ocean):
    with pytest.raises(ComponentError, match="needs units"):
        ocean.set_field("t_eq", xr.DataArray(np.full((18, 36), 280.0), dims=("latitude", "longitude")))
    with pytest.raises(ComponentError, match="expected \\('latitude', 'longitude'\\)"):
        ocean.set_field("t_eq", xr.DataArray(np.full((18, 36), 280.0), dims=("y", "x"), attrs={"units": "K"}))
    with pytest.raises(ComponentError, match="shape \\(36, 18\\), expected \\(18, 36\\)"):
        ocean.set_field("t_eq", np.full((36, 18), 280.0), units="K")
    from atmorep_coupler.errors import UnitError

    with pytest.raises(UnitError, match="cannot convert 'm s-1' to 'K'"):
        ocean.set_field("t_eq", np.full((18, 36), 280.0), units="m s-1")


def test_exchange_items(sst, co2, ocean):
    sst_items = {item.name: item for item in sst.exchange_items()}
    assert sst_items["sst"] == ExchangeItem(
        "sst", "sea_surface_temperature", "K", 0, "forcing", intent="out", dtype="float32"
    )
    assert sst_items["sst_mask"].role == "static" and sst_items["sst_mask"].standard_name == "sea_binary_mask"
    (item,) = co2.exchange_items()
    assert (item.name, item.role, item.grid, item.units) == ("co2", "forcing", 0, "ppm")
    roles = {item.name: (item.role, item.intent) for item in ocean.exchange_items()}
    assert roles == {"sst": ("prognostic", "inout"), "t_eq": ("forcing", "in")}
    assert ocean.get_input_var_names() == ("sst", "t_eq") and ocean.get_output_var_names() == ("sst",)


def test_published_grid_has_bounds_and_areas_for_conservative_regridding(sst):
    grid = sst.grids[0].horizontal
    assert grid.is_global
    assert grid.corner_lat.shape == (180, 360, 4)
    np.testing.assert_allclose(grid.area.sum(), 4 * np.pi, rtol=1e-12)
    # the cell just north of the equator (row 89, 0..1°N) is nearly a latitude band; its great-circle
    # north edge bulges poleward by ~(dlon/2)^2 sin(lat) cos(lat) / 2, about 2.5e-5 of the area
    band = 2 * np.pi / 360 * (np.sin(np.deg2rad(1.0)) - np.sin(np.deg2rad(0.0)))
    np.testing.assert_allclose(grid.area[89, 0], band, rtol=5e-5)


# ----------------------------------------------------------------------------------- restarts
def _run(component, steps: int) -> list[np.ndarray]:
    out = []
    for _ in range(steps):
        component.update()
        out.append(
            np.concatenate(
                [np.atleast_1d(component.get_field(n).values).ravel() for n in component.get_output_var_names()]
            )
        )
    return out


def test_save_then_load_continues_bit_identically(ocean, doc_example, tmp_path):
    ocean.set_field("t_eq", np.linspace(270.0, 300.0, 648).reshape(18, 36), units="K")
    _run(ocean, 3)
    ocean.update_until(ocean.get_current_time() + 0.3 * DAY)  # an off-step time in the file
    path = ocean.save_state(tmp_path / "ocean.npz")
    uninterrupted = _run(ocean, 5)

    restarted = doc_example.SlabOcean.from_config(
        {"name": "ocean", "start": "2000-01-01", "time_step": "PT12H", "calendar": "360_day", "relaxation_time": "P5D"}
    )
    restarted.load_state(path)
    assert restarted.get_current_time() == 1.8 * DAY
    assert restarted.current_datetime == cftime.datetime(2000, 1, 2, 19, 12, calendar="360_day")
    resumed = _run(restarted, 5)
    for a, b in zip(uninterrupted, resumed):
        assert a.tobytes() == b.tobytes()


def test_was_imported_follows_the_public_setters_and_restarts(ocean, doc_example, tmp_path):
    """Optional imports fall back to defaults until set; restoring a restart (which writes every item
    internally) must restore exactly which imports had arrived, not mark them all."""
    assert not ocean.was_imported("t_eq") and not ocean.was_imported("sst")
    fresh = ocean.save_state(tmp_path / "fresh.npz")
    ocean.set_value("t_eq", np.full(648, 280.0))
    assert ocean.was_imported("t_eq") and not ocean.was_imported("sst")
    after = ocean.save_state(tmp_path / "after.npz")
    other = doc_example.SlabOcean.from_config(
        {"name": "ocean", "start": "2000-01-01", "time_step": "PT12H", "calendar": "360_day", "relaxation_time": "P5D"}
    )
    other.load_state(fresh)
    assert not other.was_imported("t_eq")
    other.load_state(after)
    assert other.was_imported("t_eq") and not other.was_imported("sst")


def test_forcing_component_restart_is_bit_identical(sst, sst_config, tmp_path):
    sst.update_until(0.7 * DAY)
    path = sst.save_state(tmp_path / "sst.npz")
    uninterrupted = _run(sst, 4)
    restarted = PrescribedField.from_config(str(sst_config))
    restarted.load_state(path)
    for a, b in zip(uninterrupted, _run(restarted, 4)):
        assert a.tobytes() == b.tobytes()


def test_load_state_keeps_get_value_ptr_live(ocean, tmp_path):
    path = ocean.save_state(tmp_path / "s.npz")
    ptr = ocean.get_value_ptr("sst")
    ptr[:] = 300.0
    ocean.load_state(path)
    assert np.all(ptr == 290.0)


def test_load_state_refuses_another_components_file(ocean, co2, tmp_path):
    path = co2.save_state(tmp_path / "co2.npz")
    with pytest.raises(CheckpointError, match=r"co2\.npz: state class .*CO2Scenario"):
        ocean.load_state(path)
    other = CO2Scenario.from_config(
        {
            "name": "co2",
            "start": "2000-01-02",
            "time_step": "P1D",
            "series": [["2000-01-01", 1.0], ["2001-01-01", 2.0]],
            "units": "ppm",
        }
    )
    with pytest.raises(CheckpointError, match="state start is '2000-01-01T00:00:00'"):
        other.load_state(path)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="junk.npz: not a component state file"):
        ocean.load_state(tmp_path / "junk.npz")


# ----------------------------------------------------------------------------------- host memory
def test_get_value_ptr_contract_for_torch_state(doc_example):
    """CPU tensors give a live zero-copy view; tensors off the host raise NotImplementedError."""
    torch = pytest.importorskip("torch")

    class TorchOcean(doc_example.SlabOcean):
        def _initialize(self, config):
            super()._initialize(config)
            self.sst = torch.from_numpy(self.sst)  # shares memory with the numpy state
            self.t_eq = torch.from_numpy(self.t_eq)

        def _advance(self, dt):
            self.sst.copy_(self.t_eq + (self.sst - self.t_eq) * float(np.exp(-dt / self.tau)))

    ocean = TorchOcean.from_config({"start": "2000-01-01", "time_step": "P1D"})
    ptr = ocean.get_value_ptr("sst")
    ocean.set_value("t_eq", np.full(648, 300.0))
    ocean.update()
    assert np.shares_memory(ptr, ocean.sst.numpy())
    np.testing.assert_allclose(ptr, 300.0 + (290.0 - 300.0) * np.exp(-1 / 30), rtol=1e-14)

    ocean.sst = torch.empty(18, 36, dtype=torch.float64, device="meta")  # state outside host memory
    with pytest.raises(NotImplementedError, match="outside host memory"):
        ocean.get_value_ptr("sst")


def test_rebinding_state_arrays_is_caught(doc_example):
    class Rebinding(doc_example.SlabOcean):
        def _advance(self, dt):
            self.sst = self.sst + 0.0  # a new array: old get_value_ptr views would go stale

    component = Rebinding.from_config({"start": "2000-01-01", "time_step": "P1D"})
    with pytest.raises(ComponentError, match="replaced the array of 'sst'"):
        component.update()


def test_components_in_process_and_in_ray_satisfy_the_driver_protocol(sst):
    """The driver holds components by ``NativeComponent``: a Component is one, and RayComponent has every
    member of the protocol (checked on the class: no Ray cluster needed)."""
    from atmorep_coupler.component.native import NativeComponent
    from atmorep_coupler.coupling.transport import RayComponent

    assert isinstance(sst, NativeComponent)
    members = [n for n in vars(NativeComponent) if not n.startswith("_")]
    assert len(members) == 9 and [m for m in members if not hasattr(RayComponent, m)] == []
    assert not isinstance(object(), NativeComponent)
