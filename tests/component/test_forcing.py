"""The forcing data components against independent references: the file data (numpy), the
insolation integral done numerically, the CO2 ramp written out from its definition."""

from __future__ import annotations

import cftime
import numpy as np
import pytest
import xarray as xr

from atmorep_coupler.errors import ComponentError, ConfigError, DataError
from components.forcing import CO2Scenario, Insolation, PrescribedField

DAY = 86400.0


# ----------------------------------------------------------------------------------- prescribed
def test_zarr_and_netcdf_give_the_same_series(sst_config, data_dir, yaml_writer):
    import yaml

    mapping = yaml.safe_load(sst_config.read_text())
    mapping["path"] = str(data_dir / "sst.zarr")
    from_zarr = PrescribedField.from_config(str(yaml_writer(sst_config.with_name("z.yaml"), mapping)))
    from_netcdf = PrescribedField.from_config(str(sst_config))
    for t in (0.0, 0.25 * DAY, 1.9 * DAY, 3 * DAY):
        from_zarr.update_until(t)
        from_netcdf.update_until(t)
        assert from_zarr.get_field("sst").values.tobytes() == from_netcdf.get_field("sst").values.tobytes()


def test_interpolation_across_the_missing_leap_day(sst, sst_truth):
    """Records are daily in the noleap calendar: 28 Feb and 1 Mar are one day apart."""
    sst.advance_to("2000-02-28T18:00:00")
    expected = 0.25 * sst_truth.records_K[1] + 0.75 * sst_truth.records_K[2]
    np.testing.assert_allclose(sst.get_field("sst").values, expected.astype(np.float32), rtol=1e-6, equal_nan=True)


def test_fill_value_and_mask_variable(data_dir, tmp_path, sst_truth):
    ds = xr.open_dataset(data_dir / "sst.nc", decode_times=xr.coders.CFDatetimeCoder(use_cftime=True))
    ocean = np.isfinite(ds["tos"].isel(time=0).values)
    ocean[:10] = False  # the mask variable also masks the northernmost 10 rows
    ds["sea"] = (("lat", "lon"), ocean.astype(np.int8))
    ds.to_netcdf(tmp_path / "masked.nc")
    component = PrescribedField.from_config(
        {
            "start": "2000-02-27",
            "time_step": "P1D",
            "calendar": "noleap",
            "path": str(tmp_path / "masked.nc"),
            "variable": "tos",
            "mask_variable": "sea",
            "fill_value": -999.0,
        }
    )
    values = component.get_field("tos").values
    assert np.all(values[~ocean] == -999.0)
    np.testing.assert_allclose(values[ocean], sst_truth.records_K[0][ocean] - 273.15, rtol=0, atol=1e-9)
    assert component.get_var_units("tos") == "degC"  # the file's units when none are asked for
    assert np.array_equal(component.grids[0].horizontal.mask, ocean)


def test_nan_at_an_active_cell_in_a_later_record_names_file_and_record(data_dir, tmp_path):
    ds = xr.open_dataset(data_dir / "sst.nc", decode_times=xr.coders.CFDatetimeCoder(use_cftime=True)).load()
    ds["tos"][2, 0, 0] = np.nan
    ds.to_netcdf(tmp_path / "holes.nc")
    component = PrescribedField.from_config(
        {
            "start": "2000-02-27",
            "time_step": "P1D",
            "calendar": "noleap",
            "path": str(tmp_path / "holes.nc"),
            "variable": "tos",
        }
    )
    with pytest.raises(DataError, match=r"holes\.nc: variable 'tos': record 2 \(2000-03-01 00:00:00\) has 1 NaN"):
        component.update_until(2 * DAY)


def test_time_outside_the_records_is_refused(data_dir):
    config = {
        "name": "sst",
        "time_step": "P1D",
        "calendar": "noleap",
        "path": str(data_dir / "sst.nc"),
        "variable": "tos",
    }
    with pytest.raises(
        ComponentError, match=r"component 'sst' .*sst\.nc.*2000-02-26T00:00:00 lies outside the records"
    ):
        PrescribedField.from_config({**config, "start": "2000-02-26"})  # the first record is on 27 Feb
    component = PrescribedField.from_config({**config, "start": "2000-03-01"})
    component.update()  # 2 March: the last record
    with pytest.raises(ComponentError, match="2000-03-03T00:00:00 lies outside the records, which span 2000-02-27"):
        component.update()


def test_config_and_file_errors(data_dir, tmp_path):
    base = {"start": "2000-02-27", "time_step": "P1D", "calendar": "noleap"}
    with pytest.raises(DataError, match="nothere.nc: file or store not found"):
        PrescribedField.from_config({**base, "path": str(tmp_path / "nothere.nc"), "variable": "tos"})
    with pytest.raises(ConfigError, match=r"variable: 'sst' is not in .*sst\.nc \(it has \['tos'\]\)"):
        PrescribedField.from_config({**base, "path": str(data_dir / "sst.nc"), "variable": "sst"})
    with pytest.raises(ConfigError, match="<mapping>: path: required key is missing"):
        PrescribedField.from_config({**base, "variable": "tos"})


@pytest.mark.parametrize("units, fragment", [
    ("Kelvin degrees", "variable 'tos': cannot parse units 'Kelvin degrees'"),
    ("m", "variable 'tos': units 'm' do not fit its CF standard_name 'sea_surface_temperature'"),
    ("K", r"record 0 \(2000-02-27 00:00:00\) has -?\d+\.?\d* K, outside the plausible 200 .. 350 K"),  # degC data
])
def test_units_of_a_prescribed_file_are_checked(data_dir, tmp_path, units, fragment):
    ds = xr.open_dataset(data_dir / "sst.nc", decode_times=xr.coders.CFDatetimeCoder(use_cftime=True)).load()
    ds["tos"].attrs["units"] = units
    ds.to_netcdf(tmp_path / "relabelled.nc")
    with pytest.raises(DataError, match=fragment):
        PrescribedField.from_config({"start": "2000-02-27", "time_step": "P1D", "calendar": "noleap",
                                     "path": str(tmp_path / "relabelled.nc"), "variable": "tos", "units": "K"})


# ----------------------------------------------------------------------------------- insolation
def _daily_mean_insolation(lat_deg: np.ndarray, day_of_year: float, solar_constant: float) -> np.ndarray:
    """Independent reference: integrate S0 (d/d)^2 max(0, cos zenith) over the hour angle numerically,
    with Cooper's declination and the 0.033 eccentricity term written out here."""
    n = day_of_year + 1.0
    decl = np.deg2rad(23.44) * np.sin(2 * np.pi * (284.0 + n) / 365.2425)
    factor = 1.0 + 0.033 * np.cos(2 * np.pi * n / 365.2425)
    h = np.linspace(-np.pi, np.pi, 20001)
    phi = np.deg2rad(lat_deg)[:, None]
    cos_zenith = np.sin(phi) * np.sin(decl) + np.cos(phi) * np.cos(decl) * np.cos(h)[None, :]
    return solar_constant * factor * np.trapezoid(np.maximum(cos_zenith, 0.0), h, axis=1) / (2 * np.pi)


@pytest.mark.parametrize("calendar", ["standard", "noleap"])
def test_insolation_matches_the_numerical_daily_integral(calendar):
    ins = Insolation.from_config(
        {
            "start": "2001-01-01",
            "time_step": "PT6H",
            "calendar": calendar,
            "grid": {"type": "regular_latlon", "nlat": 36, "nlon": 8},
            "solar_constant": 1361.0,
        }
    )
    ins.advance_to("2001-06-21T12:00:00")
    # days since the 2000-01-01 epoch in this calendar, then the fixed-length seasonal phase
    epoch = cftime.datetime(2000, 1, 1, calendar=calendar)
    days = (ins.current_datetime - epoch).total_seconds() / DAY
    phase = days % 365.2425
    field = ins.get_field("insolation")
    reference = _daily_mean_insolation(field["latitude"].values, phase, 1361.0)
    np.testing.assert_allclose(field.values, np.broadcast_to(reference[:, None], field.shape), rtol=0, atol=1e-3)
    assert np.all(field.values[-3:] == 0.0)  # polar night in the south
    assert ins.get_var_units("insolation") == "W m-2"


def test_insolation_global_annual_mean_is_a_quarter_of_the_solar_constant():
    ins = Insolation.from_config({"start": "2000-01-01", "time_step": "P1D", "grid": {"type": "gaussian", "nlat": 32}})
    weights = ins.grids[0].horizontal.area
    means = []
    for _ in range(365):
        means.append(float((ins.get_field("insolation").values * weights).sum() / weights.sum()))
        ins.update()
    assert np.mean(means) == pytest.approx(1361.0 / 4, rel=2e-3)


# ----------------------------------------------------------------------------------- CO2
def test_csv_series_interpolates_linearly(data_dir):
    co2 = CO2Scenario.from_config(
        {"start": "2000-01-01", "time_step": "P1D", "path": str(data_dir / "co2.csv"), "units": "ppm"}
    )
    expected = {0: 300.0, 5: 305.0, 10: 310.0, 25: 280.0, 40: 250.0}
    for day, value in expected.items():
        co2.update_until(day * DAY)
        assert co2.get_value("co2", np.empty(1))[0] == pytest.approx(value, abs=1e-12)
    with pytest.raises(ComponentError, match="outside the records"):
        co2.update()


def test_netcdf_series_converts_cf_units(data_dir):
    co2 = CO2Scenario.from_config(
        {"start": "2000-01-01", "time_step": "P1D", "path": str(data_dir / "co2.nc"), "variable": "xco2"}
    )
    assert co2.get_var_units("co2") == "ppm"
    assert co2.get_value("co2", np.empty(1))[0] == pytest.approx(300.0, rel=1e-12)
    co2.update_until(2.5 * DAY)
    assert co2.get_value("co2", np.empty(1))[0] == pytest.approx(302.5, rel=1e-12)


def test_ramp_follows_the_logarithmic_forcing_law():
    """C = C0 2^(dT/S) with dT = offset + rate * years since the epoch."""
    co2 = CO2Scenario.from_config(
        {"start": "2001-01-01", "time_step": "P1D", "ramp": {"warming_offset_K": 4.0, "warming_rate_K_per_year": 0.5}}
    )
    warming = CO2Scenario.from_config(
        {
            "start": "2001-01-01",
            "time_step": "P1D",
            "quantity": "warming",
            "ramp": {"warming_offset_K": 4.0, "warming_rate_K_per_year": 0.5},
        }
    )
    for comp in (co2, warming):
        comp.update_until(100 * DAY)
    years = (366 + 100) / 365.2425  # 2000 is a leap year
    dT = 4.0 + 0.5 * years
    assert warming.get_value("warming", np.empty(1))[0] == pytest.approx(dT, rel=1e-12)
    assert warming.get_var_units("warming") == "K"
    assert co2.get_value("co2", np.empty(1))[0] == pytest.approx(280.0 * 2 ** (dT / 3.0), rel=1e-12)


def test_scenario_config_errors():
    base = {"start": "2000-01-01", "time_step": "P1D"}
    with pytest.raises(ConfigError, match="exactly one of 'series'"):
        CO2Scenario.from_config({**base, "series": [["2000-01-01", 1.0]], "path": "x.csv"})
    with pytest.raises(ConfigError, match="exactly one of 'series'"):
        CO2Scenario.from_config(base)
    with pytest.raises(ConfigError, match=r"series\[1\]\[0\]|2000-02-30"):
        CO2Scenario.from_config({**base, "series": [["2000-01-01", 1.0], ["2000-02-30", 2.0]]})
    with pytest.raises(DataError, match="record times must increase"):
        CO2Scenario.from_config({**base, "series": [["2000-01-02", 1.0], ["2000-01-01", 2.0]]})
    with pytest.raises(ConfigError, match=r"series\[1\]\[1\]: expected a finite number, got nan"):
        CO2Scenario.from_config({**base, "series": [["2000-01-01", 1.0], ["2000-01-02", float("nan")]]})
