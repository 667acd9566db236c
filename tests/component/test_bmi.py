"""BMI semantics, method by method, on the real forcing components (and, for imports, on the slab
ocean of docs/components.md: the forcing components import nothing)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from bmipy import Bmi

from atmorep_coupler.component import Component
from atmorep_coupler.errors import ComponentError, ConfigError
from atmorep_coupler.units import parse_units, ureg
from components.forcing import PrescribedField

DAY = 86400.0


# ----------------------------------------------------------------------------------- completeness
def test_component_defines_all_41_bmi_methods():
    abstract = sorted(Bmi.__abstractmethods__)
    assert len(abstract) == 41
    for name in abstract:
        method = getattr(Component, name)
        assert method is not getattr(Bmi, name), name
        assert not getattr(method, "__isabstractmethod__", False), name
        assert list(inspect.signature(method).parameters) == list(
            inspect.signature(getattr(Bmi, name)).parameters
        ), name
    assert PrescribedField.__abstractmethods__ == frozenset()


def test_methods_before_initialize_raise_clear_error():
    component = PrescribedField()
    with pytest.raises(ComponentError, match="initialize"):
        component.get_current_time()
    with pytest.raises(ComponentError, match="initialize"):
        component.get_output_var_names()


# ----------------------------------------------------------------------------------- control
def test_initialize_reads_yaml_and_names(sst):
    assert sst.get_component_name() == "sst_data"
    assert sst.get_input_var_names() == () and sst.get_input_item_count() == 0
    assert sst.get_output_var_names() == ("sst", "sst_mask") and sst.get_output_item_count() == 2


def test_initialize_rejects_unknown_key_with_file_and_key(sst_config, yaml_writer):
    import yaml

    mapping = yaml.safe_load(sst_config.read_text())
    mapping["time_stepp"] = "PT1H"
    bad = yaml_writer(sst_config.with_name("bad.yaml"), mapping)
    with pytest.raises(ConfigError, match=r"bad\.yaml: time_stepp: unknown key"):
        PrescribedField().initialize(str(bad))


def test_update_advances_by_time_step(sst):
    assert sst.get_start_time() == 0.0
    assert sst.get_time_units() == "s"
    dt = sst.get_time_step()
    assert dt == 6 * 3600.0
    for k in range(1, 6):
        assert sst.update() is None
        assert sst.get_current_time() == k * dt


def test_update_until_lands_exactly_between_steps(sst, sst_truth):
    """A data component interpolates exactly, so it takes a shorter last step and lands on t."""
    target = 1.3 * DAY + 17.25  # not a multiple of the 6 h step
    sst.update_until(target)
    assert sst.get_current_time() == target
    # values at the landing time equal linear interpolation between records 1 and 2 (numpy reference)
    w = (target - DAY) / DAY
    data = sst_truth.records_K
    expected = (1 - w) * data[1] + w * data[2]
    got = sst.get_value("sst", np.empty(sst.get_grid_size(0), dtype=sst.get_var_type("sst")))
    np.testing.assert_allclose(got.reshape(180, 360), expected.astype(np.float32), rtol=1e-6, equal_nan=True)
    sst.update_until(target)  # same time: no-op
    assert sst.get_current_time() == target


def test_update_until_at_a_record_is_bit_exact(sst, sst_truth):
    sst.update_until(2 * DAY)
    got = sst.get_value("sst", np.empty(180 * 360, dtype=np.float32)).reshape(180, 360)
    expected = sst_truth.records_K[2].astype(np.float32)
    assert np.array_equal(got, expected, equal_nan=True)


def test_update_until_rejects_the_past_and_beyond_end(sst):
    sst.update_until(DAY)
    with pytest.raises(ComponentError, match="before the current time"):
        sst.update_until(0.5 * DAY)
    assert sst.get_end_time() == 3 * DAY
    with pytest.raises(ComponentError, match="after its end"):
        sst.update_until(3 * DAY + 1)
    assert sst.get_current_time() == DAY  # a refused call moves nothing


def test_fixed_step_component_refuses_off_step_target(doc_example):
    class FixedStepOcean(doc_example.SlabOcean):
        partial_steps = False

    ocean = FixedStepOcean.from_config({"start": "2000-01-01", "time_step": "PT1H"})
    with pytest.raises(ComponentError, match="whole number"):
        ocean.update_until(5400.0)
    assert ocean.get_current_time() == 0.0
    ocean.update_until(7200.0)
    assert ocean.get_current_time() == 7200.0


def test_finalize_then_initialize_again(sst, sst_config):
    sst.update()
    sst.finalize()
    with pytest.raises(ComponentError):
        sst.get_current_time()
    sst.initialize(str(sst_config))
    assert sst.get_current_time() == 0.0


# ----------------------------------------------------------------------------------- variable info
def test_var_info(sst, co2):
    assert sst.get_var_grid("sst") == 0
    assert sst.get_var_type("sst") == "float32"  # the file's dtype
    assert sst.get_var_itemsize("sst") == 4
    assert sst.get_var_nbytes("sst") == 4 * 180 * 360
    assert sst.get_var_location("sst") == "node"
    assert co2.get_var_type("co2") == "float64" and co2.get_var_nbytes("co2") == 8
    assert co2.get_var_location("co2") == "node"


def test_unit_strings_are_valid_udunits(sst, co2, ocean):
    for component in (sst, co2, ocean):
        for name in component.get_output_var_names() + component.get_input_var_names():
            parse_units(component.get_var_units(name))
    assert sst.get_var_units("sst") == "K" and sst.get_var_units("sst_mask") == "1"
    assert co2.get_var_units("co2") == "ppm"
    time_units = ureg.Quantity(1.0, parse_units(sst.get_time_units()))
    assert time_units.to("s").magnitude == 1.0


def test_unit_strings_parse_with_real_udunits2(sst, co2, ocean):
    """The UDUNITS-2 C library itself (through gimli.units, in the test extra) accepts every unit."""
    udunits = pytest.importorskip("gimli.units").units
    for component in (sst, co2, ocean):
        for name in component.get_output_var_names() + component.get_input_var_names():
            udunits.Unit(component.get_var_units(name))
    assert udunits.Unit("ppm").to(udunits.Unit("1"))(1.0) == pytest.approx(1e-6)
    assert udunits.Unit(sst.get_time_units()).to(udunits.Unit("s"))(1.0) == 1.0


def test_unknown_variable_names_are_refused(sst):
    for call in (
        lambda: sst.get_var_units("sea_temp"),
        lambda: sst.get_value("sea_temp", np.empty(1)),
        lambda: sst.get_value_ptr("sea_temp"),
        lambda: sst.get_var_grid("sea_temp"),
    ):
        with pytest.raises(ComponentError, match=r"unknown variable 'sea_temp'.*\['sst', 'sst_mask'\]"):
            call()


def test_standard_names_are_accepted_as_aliases(sst):
    assert sst.get_var_units("sea_surface_temperature") == "K"


# ----------------------------------------------------------------------------------- getters
def test_get_value_copies_into_caller_buffer(sst):
    dest = np.full(180 * 360, -1.0, dtype=np.float32)
    out = sst.get_value("sst", dest)
    assert out is dest
    snapshot = dest.copy()
    sst.update()
    assert np.array_equal(dest, snapshot, equal_nan=True)  # a copy: later steps do not change it
    dest[:] = 0.0
    again = sst.get_value("sst", np.empty_like(dest))
    assert not np.array_equal(again, dest)  # and writing into the copy does not change the model


def test_get_value_flattens_lat_lon_with_longitude_fastest(sst, sst_truth):
    flat = sst.get_value("sst", np.empty(180 * 360, dtype=np.float32))
    expected = sst_truth.records_K[0].astype(np.float32).reshape(-1)  # C order (lat, lon)
    assert np.array_equal(flat, expected, equal_nan=True)
    # neighbours along longitude differ by the 0.01 K per degree of the data
    assert flat[1] - flat[0] == pytest.approx(0.01, abs=1e-4)


def test_get_value_rejects_wrong_buffers(sst):
    with pytest.raises(ComponentError, match="64799 elements, expected 64800"):
        sst.get_value("sst", np.empty(180 * 360 - 1, dtype=np.float32))
    with pytest.raises(ComponentError, match="1-D"):
        sst.get_value("sst", np.empty((180, 360), dtype=np.float32))
    with pytest.raises(ComponentError, match="1-D"):
        sst.get_value("sst", [0.0] * (180 * 360))


def test_get_value_ptr_is_live(sst):
    ptr = sst.get_value_ptr("sst")
    assert ptr.shape == (180 * 360,)
    before = ptr.copy()
    sst.update_until(DAY)
    now = sst.get_value("sst", np.empty(180 * 360, dtype=np.float32))
    assert np.array_equal(ptr, now, equal_nan=True)  # the model's step shows in the old pointer
    assert not np.array_equal(ptr, before, equal_nan=True)


def test_writing_through_get_value_ptr_changes_the_model(ocean):
    ptr = ocean.get_value_ptr("sst")
    ptr[:5] = 300.0
    assert np.all(ocean.get_field("sst").values.reshape(-1)[:5] == 300.0)
    ocean.update()  # relaxation starts from the written values
    t_eq, tau, dt = 290.0, 5 * DAY, 12 * 3600.0
    assert ptr[0] == pytest.approx(t_eq + (300.0 - t_eq) * np.exp(-dt / tau), rel=1e-12)


def test_get_value_at_indices(sst):
    full = sst.get_value("sst", np.empty(180 * 360, dtype=np.float32))
    inds = np.array([0, 359, 360, 64799, 1234], dtype=np.int64)
    dest = np.empty(inds.size, dtype=np.float32)
    out = sst.get_value_at_indices("sst", dest, inds)
    assert out is dest
    assert np.array_equal(dest, full[inds])
    with pytest.raises(ComponentError, match="outside"):
        sst.get_value_at_indices("sst", np.empty(1, dtype=np.float32), np.array([64800]))
    with pytest.raises(ComponentError, match="integer"):
        sst.get_value_at_indices("sst", np.empty(1, dtype=np.float32), np.array([1.5]))
    with pytest.raises(ComponentError, match="expected 5"):
        sst.get_value_at_indices("sst", np.empty(4, dtype=np.float32), inds)


# ----------------------------------------------------------------------------------- setters
def test_set_value_writes_the_state(ocean):
    n = ocean.get_grid_size(0)
    src = np.linspace(270.0, 300.0, n)
    ocean.set_value("t_eq", src)
    assert np.array_equal(ocean.get_value("t_eq", np.empty(n)), src)
    ocean.set_value("sst", src)  # prognostic items are inputs too
    ocean.update()
    expected = src  # T_eq == T: the relaxation keeps it
    np.testing.assert_allclose(ocean.get_value("sst", np.empty(n)), expected, rtol=1e-14)


def test_set_value_at_indices(ocean):
    n = ocean.get_grid_size(0)
    inds = np.array([3, 17, n - 1])
    ocean.set_value_at_indices("t_eq", inds, np.array([271.0, 272.0, 273.0]))
    values = ocean.get_value("t_eq", np.empty(n))
    assert values[inds].tolist() == [271.0, 272.0, 273.0]
    untouched = np.delete(values, inds)
    assert np.all(untouched == 290.0)
    with pytest.raises(ComponentError, match="2 values for 3 indices"):
        ocean.set_value_at_indices("t_eq", inds, np.array([1.0, 2.0]))


def test_set_value_rejects_outputs_and_wrong_sizes(sst, ocean):
    with pytest.raises(ComponentError, match="not an input"):
        sst.set_value("sst", np.zeros(180 * 360, dtype=np.float32))
    with pytest.raises(ComponentError, match="got 3 values, expected 648"):
        ocean.set_value("t_eq", np.zeros(3))


@pytest.mark.parametrize("setter", ["set_value", "set_value_at_indices", "set_field"])
def test_nan_import_names_field_time_and_component(ocean, setter):
    import xarray as xr

    ocean.update_until(1.5 * DAY)
    n = ocean.get_grid_size(0)
    values = np.full(n, 285.0)
    values[7] = np.nan
    before = ocean.get_value("t_eq", np.empty(n))
    with pytest.raises(ComponentError) as err:
        if setter == "set_value":
            ocean.set_value("t_eq", values)
        elif setter == "set_value_at_indices":
            ocean.set_value_at_indices("t_eq", np.arange(n), values)
        else:
            ocean.set_field("t_eq", xr.DataArray(values.reshape(18, 36), dims=("latitude", "longitude"), attrs={"units": "K"}))
    message = str(err.value)
    assert "component 'ocean'" in message and "'t_eq'" in message and "2000-01-02T12:00:00" in message
    assert "NaN" in message
    assert np.array_equal(ocean.get_value("t_eq", np.empty(n)), before)  # nothing written


def test_out_of_range_import_is_refused(ocean):
    n = ocean.get_grid_size(0)
    values = np.full(n, 285.0)
    values[0] = 12.0  # degC sent as K
    with pytest.raises(ComponentError, match=r"'t_eq' at 2000-01-01T00:00:00: values span \[12, 285\] K, outside"):
        ocean.set_value("t_eq", values)


# ----------------------------------------------------------------------------------- grids
def test_rectilinear_lat_lon_grid_functions(sst, data_dir):
    import xarray as xr

    with xr.open_dataset(data_dir / "sst.nc") as ds:
        lat, lon = ds["lat"].values, ds["lon"].values
    assert sst.get_grid_type(0) == "rectilinear"
    assert sst.get_grid_rank(0) == 2
    assert sst.get_grid_size(0) == 180 * 360 == sst.get_grid_node_count(0)
    shape = np.empty(2, dtype=np.int32)
    assert sst.get_grid_shape(0, shape) is shape and shape.tolist() == [180, 360]
    x, y = np.empty(360), np.empty(180)
    assert sst.get_grid_x(0, x) is x and np.array_equal(x, lon)
    assert sst.get_grid_y(0, y) is y and np.array_equal(y, lat)  # north to south, as the file
    with pytest.raises(NotImplementedError, match="no z"):
        sst.get_grid_z(0, np.empty(1))
    with pytest.raises(NotImplementedError, match="uniform_rectilinear"):
        sst.get_grid_spacing(0, np.empty(2))
    with pytest.raises(NotImplementedError, match="uniform_rectilinear"):
        sst.get_grid_origin(0, np.empty(2))
    for name in ("get_grid_edge_count", "get_grid_face_count"):
        with pytest.raises(NotImplementedError, match="unstructured"):
            getattr(sst, name)(0)
    with pytest.raises(ComponentError, match="1-D numpy array of 360"):
        sst.get_grid_x(0, np.empty(359))
    with pytest.raises(ComponentError, match="unknown grid id 3"):
        sst.get_grid_rank(3)


def test_gaussian_grid_is_rectilinear_with_gauss_latitudes():
    from components.forcing import Insolation

    ins = Insolation.from_config({"start": "2000-01-01", "time_step": "PT6H", "grid": {"type": "gaussian", "nlat": 16}})
    assert ins.get_grid_type(0) == "rectilinear"
    y, x = np.empty(16), np.empty(32)
    ins.get_grid_y(0, y)
    ins.get_grid_x(0, x)
    roots, _ = np.polynomial.legendre.leggauss(16)
    np.testing.assert_allclose(y, np.rad2deg(np.arcsin(roots))[::-1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(x, np.arange(32) * 11.25)


def test_curvilinear_grid_is_structured_quadrilateral_with_node_arrays(data_dir, tmp_path):
    import xarray as xr

    component = PrescribedField.from_config(
        {"start": "2000-01-01", "time_step": "PT6H", "path": str(data_dir / "curvilinear.nc"), "variable": "ts"}
    )
    with xr.open_dataset(data_dir / "curvilinear.nc") as ds:
        lat, lon = ds["latitude"].values, ds["longitude"].values
    assert component.get_grid_type(0) == "structured_quadrilateral"
    shape = component.get_grid_shape(0, np.empty(2, dtype=np.int64))
    assert shape.tolist() == [9, 13]
    x, y = np.empty(9 * 13), np.empty(9 * 13)
    np.testing.assert_array_equal(component.get_grid_x(0, x), lon.reshape(-1))
    np.testing.assert_array_equal(component.get_grid_y(0, y), lat.reshape(-1))
    field = component.get_field("ts")
    assert field.dims == ("y", "x") and field["latitude"].shape == (9, 13)
    np.testing.assert_allclose(field.values, 280.0 + lat)


def test_grid_with_levels_has_rank_3_and_z(data_dir):
    component = PrescribedField.from_config(
        {
            "start": "2000-01-01",
            "time_step": "PT6H",
            "calendar": "360_day",
            "path": str(data_dir / "levels.nc"),
            "variable": "ta",
        }
    )
    assert component.get_grid_rank(0) == 3
    assert component.get_grid_shape(0, np.empty(3, dtype=np.int32)).tolist() == [2, 4, 8]
    assert component.get_grid_z(0, np.empty(2)).tolist() == [850.0, 500.0]
    flat = component.get_value("ta", np.empty(2 * 4 * 8))
    ta0 = 250.0 + np.arange(64, dtype=np.float64) / 10.0  # record 0 in C order (level, lat, lon)
    np.testing.assert_array_equal(flat, ta0)


def test_scalar_grid_has_rank_0(co2):
    assert co2.get_grid_type(0) == "scalar"
    assert co2.get_grid_rank(0) == 0
    assert co2.get_grid_size(0) == 1
    shape = np.empty(0, dtype=np.int32)
    assert co2.get_grid_shape(0, shape) is shape
    with pytest.raises(NotImplementedError, match="scalar"):
        co2.get_grid_x(0, np.empty(1))
    assert co2.get_value("co2", np.empty(1)).tolist() == [280.0]
    ptr = co2.get_value_ptr("co2")
    co2.update_until(5 * DAY)
    assert co2.get_value("co2", np.empty(1)).tolist() == [285.0]
    assert ptr.tolist() == [285.0]  # the pointer to a 0-d state is live too


def test_land_mask_is_exported_and_on_the_grid(sst, sst_truth):
    mask = sst.get_value("sst_mask", np.empty(180 * 360, dtype=np.float32)).reshape(180, 360)
    expected = np.ones((180, 360), dtype=bool)
    expected[sst_truth.land] = False
    assert np.array_equal(mask == 1.0, expected)
    assert np.array_equal(sst.grids[0].horizontal.mask, expected)
    values = sst.get_field("sst").values
    assert np.all(np.isnan(values[~expected])) and np.all(np.isfinite(values[expected]))
