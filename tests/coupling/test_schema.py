"""The coupling YAML schema: every bad file is rejected with the file, the key path and the reason."""

from __future__ import annotations

import copy
import datetime as dt

import numpy as np
import pytest
import yaml

from atmorep_coupler.config import from_dict, to_dict
from atmorep_coupler.coupling.driver import CoupledRun
from atmorep_coupler.coupling.schema import CoupledRunConfig, load_coupling_config
from atmorep_coupler.errors import ConfigError, DataError
from atmorep_coupler.regrid.grids import GaussianGrid, LatLonGrid
from atmorep_coupler.regrid.regridder import Regridder

from .conftest import ANALYTIC, open_run, write_config

# A small valid file, section by section; each bad case replaces one or more sections.
SECTIONS = {
    "version": "version: 1",
    "run": "run: {name: t, start: 2000-01-01, end: 2000-01-02, calendar: noleap}",
    "grids": "grids: {g6: {type: regular_latlon, nlat: 6, nlon: 12}, g8: {type: gaussian, nlat: 8}}",
    "components": "components: {a: {kind: 'x.y:A', grid: g6, timestep: PT1H}, b: {kind: 'x.y:B', grid: g8, timestep: PT3H}}",
    "couplings": "couplings: [{from: a, to: b, fields: [{src: s, dst: r}], period: PT6H, remap: {method: conservative}}]",
    "outputs": "outputs: [{component: b, variables: [r], interval: PT6H, path: b.zarr}]",
}


def document(**replace: str) -> str:
    parts = {**SECTIONS, **replace}
    return "\n".join(text for text in parts.values() if text)


def coupling(**changes: str) -> str:
    """The default coupling with some keys replaced (values are YAML flow text)."""
    keys = {"from": "a", "to": "b", "fields": "[{src: s, dst: r}]", "period": "PT6H", "remap": "{method: conservative}"}
    keys.update(changes)
    body = ", ".join(f"{k}: {v}" for k, v in keys.items() if v is not None)
    return f"couplings: [{{{body}}}]"


BAD = [
    # (id, sections to replace, expected fragment)
    ("unknown-top-key", {"extra": "extra: 1"}, "extra: unknown key"),
    ("version-2", {"version": "version: 2"}, "version: 2 is not one of [1]"),
    ("no-run", {"run": ""}, "run: required key is missing"),
    ("no-components", {"components": ""}, "components: required key is missing"),
    ("empty-components", {"components": "components: {}", "couplings": "", "outputs": ""}, "at least one component"),
    ("not-yaml", {"outputs": "outputs: [ {"}, "not valid YAML"),
    ("impossible-date-unquoted", {"run": "run: {name: t, start: 2001-02-29, end: 2001-03-02}"}, "not valid YAML"),
    ("run-unknown-key", {"run": "run: {name: t, start: 2000-01-01, end: 2000-01-02, stop: 2000-01-03}"},
     "run.stop: unknown key"),
    ("calendar", {"run": "run: {name: t, start: 2000-01-01, end: 2000-01-02, calendar: lunar}"},
     "run.calendar: 'lunar' is not one of"),
    ("date-not-in-calendar", {"run": "run: {name: t, start: '2001-02-29T00:00', end: 2001-03-02, calendar: noleap}"},
     "start: '2001-02-29T00:00' is not a date of the 'noleap' calendar"),
    ("date-garbage", {"run": "run: {name: t, start: yesterday, end: 2000-01-02}"}, "start: 'yesterday' is not an ISO date"),
    ("end-before-start", {"run": "run: {name: t, start: 2000-01-02, end: 2000-01-01}"}, "end: 2000-01-01T00:00:00 is not after start"),
    ("name-with-slash", {"run": "run: {name: a/b, start: 2000-01-01, end: 2000-01-02}"}, "run: name: 'a/b' is not a safe file name"),
    ("seed-string", {"run": "run: {name: t, start: 2000-01-01, end: 2000-01-02, seed: zero}"}, "run.seed: expected an integer"),
    ("transport", {"run": "run: {name: t, start: 2000-01-01, end: 2000-01-02, transport: mpi}"},
     "run.transport: 'mpi' is not one of ['inprocess', 'ray']"),
    ("restart-every-missing", {"run": "run: {name: t, start: 2000-01-01, end: 2000-01-02, restart: {dir: r}}"},
     "run.restart.every: required key is missing"),
    ("restart-resume", {"run": "run: {name: t, start: 2000-01-01, end: 2000-01-02, restart: {every: P1D, resume: yes}}"},
     "run.restart.resume: True is not one of ['auto', 'never', 'require']"),
    ("restart-every-off-sync", {"run": "run: {name: t, start: 2000-01-01, end: 2000-01-02, restart: {every: PT9H}}"},
     "run.restart.every: PT9H is not a multiple of the synchronisation interval PT6H"),
    ("grid-type", {"grids": "grids: {g6: {type: hexagonal, nlat: 6}, g8: {type: gaussian, nlat: 8}}"},
     "grids.g6.type: 'hexagonal' is not one of"),
    ("grid-missing-nlon", {"grids": "grids: {g6: {type: regular_latlon, nlat: 6}, g8: {type: gaussian, nlat: 8}}"},
     "grids.g6: nlon: required for type 'regular_latlon'"),
    ("grid-odd-gaussian", {"grids": "grids: {g6: {type: regular_latlon, nlat: 6, nlon: 12}, g8: {type: gaussian, nlat: 7}}"},
     "grids.g8: nlat: a Gaussian grid has an even number of latitudes, got 7"),
    ("grid-negative", {"grids": "grids: {g6: {type: regular_latlon, nlat: -6, nlon: 12}, g8: {type: gaussian, nlat: 8}}"},
     "grids.g6: nlat: must be between 1 and 100000, got -6"),
    ("grid-curvilinear-no-file", {"grids": "grids: {g6: {type: curvilinear}, g8: {type: gaussian, nlat: 8}}"},
     "grids.g6: file: a curvilinear grid needs a SCRIP grid file"),
    ("grid-file-on-latlon", {"grids": "grids: {g6: {type: regular_latlon, nlat: 6, nlon: 12, file: g.nc}, g8: {type: gaussian, nlat: 8}}"},
     "grids.g6: file: not allowed for type 'regular_latlon'"),
    ("grid-unknown-key", {"grids": "grids: {g6: {type: regular_latlon, nlat: 6, nlon: 12, resolution: 30}, g8: {type: gaussian, nlat: 8}}"},
     "grids.g6.resolution: unknown key"),
    ("grid-lat-order", {"grids": "grids: {g6: {type: regular_latlon, nlat: 6, nlon: 12, lat_order: up}, g8: {type: gaussian, nlat: 8}}"},
     "grids.g6.lat_order: 'up' is not one of ['descending', 'ascending']"),
    ("grid-poles-on-gaussian", {"grids": "grids: {g6: {type: regular_latlon, nlat: 6, nlon: 12}, g8: {type: gaussian, nlat: 8, poles: true}}"},
     "grids.g8: poles, first_lon: only for regular_latlon grids, not 'gaussian'"),
    ("grid-first-lon-on-file", {"grids": "grids: {g6: {type: curvilinear, file: g.nc, first_lon: 0}, g8: {type: gaussian, nlat: 8}}"},
     "grids.g6: first_lon: not allowed for a curvilinear grid"),
    ("grid-poles-one-row", {"grids": "grids: {g6: {type: regular_latlon, nlat: 1, nlon: 12, poles: true}, g8: {type: gaussian, nlat: 8}}"},
     "grids.g6: nlat: a grid with rows on both poles needs at least 2 latitudes, got 1"),
    ("mask-no-variable", {"grids": "grids: {g6: {type: regular_latlon, nlat: 6, nlon: 12, mask: {file: m.nc}}, g8: {type: gaussian, nlat: 8}}"},
     "grids.g6.mask.variable: required key is missing"),
    ("component-unknown-grid", {"components": "components: {a: {kind: 'x.y:A', grid: g7, timestep: PT1H}, b: {kind: 'x.y:B', grid: g8, timestep: PT3H}}"},
     "components.a.grid: unknown grid 'g7' (defined: g6, g8)"),
    ("component-kind", {"components": "components: {a: {kind: not a kind, grid: g6, timestep: PT1H}, b: {kind: 'x.y:B', grid: g8, timestep: PT3H}}"},
     "components.a: kind: 'not a kind' is neither a registered kind"),
    ("component-no-timestep", {"components": "components: {a: {kind: 'x.y:A', grid: g6}, b: {kind: 'x.y:B', grid: g8, timestep: PT3H}}"},
     "components.a.timestep: required key is missing"),
    ("timestep-fraction", {"components": "components: {a: {kind: 'x.y:A', grid: g6, timestep: PT0.5S}, b: {kind: 'x.y:B', grid: g8, timestep: PT3H}}"},
     "components.a: timestep: 0.5 s is not a whole number of seconds"),
    ("timestep-zero", {"components": "components: {a: {kind: 'x.y:A', grid: g6, timestep: PT0S}, b: {kind: 'x.y:B', grid: g8, timestep: PT3H}}"},
     "components.a: timestep: must be positive, got PT0S"),
    ("timestep-words", {"components": "components: {a: {kind: 'x.y:A', grid: g6, timestep: 6 hours}, b: {kind: 'x.y:B', grid: g8, timestep: PT3H}}"},
     "components.a.timestep: '6 hours' is not an ISO 8601 duration"),
    ("component-id", {"components": "components: {'a b': {kind: 'x.y:A', grid: g6, timestep: PT1H}, b: {kind: 'x.y:B', grid: g8, timestep: PT3H}}"},
     "components: a component id: 'a b' is not a safe file name"),
    ("ensemble-zero", {"components": "components: {a: {kind: 'x.y:A', grid: g6, timestep: PT1H, ensemble: {members: 0}}, b: {kind: 'x.y:B', grid: g8, timestep: PT3H}}"},
     "components.a.ensemble: members: must be between 1 and 1024, got 0"),
    ("config-list", {"components": "components: {a: {kind: 'x.y:A', grid: g6, timestep: PT1H, config: [1]}, b: {kind: 'x.y:B', grid: g8, timestep: PT3H}}"},
     "components.a.config: [1] matches none of"),
    ("coupling-from-unknown", {"couplings": coupling(**{"from": "c"})}, "couplings[0].from: unknown component 'c' (defined: a, b)"),
    ("coupling-to-unknown", {"couplings": coupling(to="c")}, "couplings[0].to: unknown component 'c'"),
    ("coupling-self", {"couplings": coupling(to="a")}, "couplings[0].to: a component cannot be coupled to itself ('a')"),
    ("coupling-misspelled-from", {"couplings": "couplings: [{source: a, to: b, fields: [{src: s, dst: r}], period: PT6H}]"},
     "couplings[0].source: unknown key (allowed here: conservation, fields, from, lag, period, remap, time_reduction, to)"),
    ("coupling-no-from", {"couplings": "couplings: [{to: b, fields: [{src: s, dst: r}], period: PT6H}]"},
     "couplings[0].from: required key is missing"),
    ("coupling-no-period", {"couplings": coupling(period=None)}, "couplings[0].period: required key is missing"),
    ("coupling-transform", {"couplings": coupling(transform="{scale: 2}")}, "couplings[0].transform: unknown key"),
    ("period-off-timestep", {"couplings": coupling(period="PT2H")},
     "couplings[0].period: PT2H is not a multiple of component 'b' timestep PT3H"),
    ("lag-off-period", {"couplings": coupling(lag="PT3H")},
     "couplings[0].lag: PT3H is not a whole number of periods (PT6H)"),
    ("lag-negative", {"couplings": coupling(lag="-PT6H")}, "couplings[0].lag: '-PT6H' is not an ISO 8601 duration"),
    ("remap-missing", {"couplings": coupling(remap=None)},
     "couplings[0].remap: required, because 'a' (grid 'g6') and 'b' (grid 'g8') are on different grids"),
    ("remap-method", {"couplings": coupling(remap="{method: cubic}")}, "couplings[0].remap.method: 'cubic' is not one of"),
    ("remap-patch-computed", {"couplings": coupling(remap="{method: patch}")},
     "couplings[0].remap.method: 'patch' weights are not computed here"),
    ("remap-unknown-key", {"couplings": coupling(remap="{method: bilinear, order: 2}")}, "couplings[0].remap.order: unknown key"),
    ("fallback-fixed-first", {"couplings": coupling(remap="{method: bilinear, fallback: [{fixed: 0}, nearest_s2d]}")},
     "couplings[0].remap: fallback[0]: a fixed fill fills everything; it must come last"),
    ("fallback-method", {"couplings": coupling(remap="{method: bilinear, fallback: [nnn]}")},
     "couplings[0].remap: fallback[0]: 'nnn' is not one of ['conservative', 'conservative_normed', 'bilinear', 'nearest_s2d', 'nearest_d2s'] or {fixed: value}"),
    ("fraction-accumulate", {"couplings": coupling(time_reduction="accumulate", remap="{method: conservative, fraction: f}")},
     "couplings[0].remap.fraction: fraction-weighted mapping needs time_reduction instant or average"),
    ("fraction-is-field", {"couplings": coupling(remap="{method: conservative, fraction: s}")},
     "couplings[0].remap.fraction: 's' is one of the mapped fields"),
    ("conservation-bilinear", {"couplings": coupling(remap="{method: bilinear}", conservation="{check: true}")},
     "couplings[0].conservation.check: remap method 'bilinear' does not conserve area integrals"),
    ("conservation-rtol", {"couplings": coupling(conservation="{check: true, rtol: -1}")},
     "couplings[0].conservation: rtol: must be positive, got -1.0"),
    ("conservation-rtol-word", {"couplings": coupling(conservation="{rtol: tiny}")},
     "couplings[0].conservation.rtol: expected a number, got 'tiny'"),
    ("reduction", {"couplings": coupling(time_reduction="median")},
     "couplings[0].time_reduction: 'median' is not one of ['instant', 'average', 'accumulate', 'min', 'max']"),
    ("fields-empty", {"couplings": coupling(fields="[]")}, "couplings[0].fields: at least one field is needed"),
    ("field-unknown-key", {"couplings": coupling(fields="[{src: s, dst: r, role: forcing}]")},
     "couplings[0].fields[0].role: unknown key"),
    ("field-no-dst", {"couplings": coupling(fields="[{src: s}]")}, "couplings[0].fields[0].dst: required key is missing"),
    ("vector-half", {"couplings": coupling(fields="[{src: [u, v], dst: r}]")},
     "couplings[0].fields[0]: dst: a vector needs [u, v] pairs in both src and dst, got 'r'"),
    ("vector-three", {"couplings": coupling(fields="[{src: [u, v, w], dst: [x, y, z]}]")},
     "couplings[0].fields[0]: src: a vector needs [u, v] pairs"),
    ("vector-same", {"couplings": coupling(fields="[{src: [u, u], dst: [x, y]}]")},
     "couplings[0].fields[0]: src: the two components of a vector must differ"),
    ("vector-max", {"couplings": coupling(fields="[{src: [u, v], dst: [x, y]}]", time_reduction="max")},
     "couplings[0].time_reduction: 'max' of vector components ['u', 'v'] is not a vector operation"),
    ("units-unparsable", {"couplings": coupling(fields="[{src: s, dst: r, units: 'furlongs per'}]")},
     "couplings[0].fields[0]: units: cannot parse units 'furlongs per'"),
    ("two-producers", {"couplings": "couplings: [" + coupling()[12:-1] + ", " + coupling(fields="[{src: t, dst: r}]")[12:-1] + "]"},
     "couplings[1].fields[0].dst: field 'r' of component 'b' is already imported by couplings[0]"),
    ("zero-lag-cycle", {"couplings": "couplings: [" + coupling()[12:-1] + ", "
                        + coupling(**{"from": "b", "to": "a"}, fields="[{src: s, dst: q}]")[12:-1] + "]"},
     "couplings: the zero-lag couplings a -> b -> a form a cycle"),
    ("output-unknown-component", {"outputs": "outputs: [{component: c, variables: [r], interval: PT6H, path: c.zarr}]"},
     "outputs[0].component: unknown component 'c'"),
    ("output-interval", {"outputs": "outputs: [{component: b, variables: [r], interval: PT4H, path: b.zarr}]"},
     "outputs[0].interval: PT4H is not a multiple of component 'b' timestep PT3H"),
    ("output-run-length", {"outputs": "outputs: [{component: b, variables: [r], interval: PT15H, path: b.zarr}]"},
     "outputs[0].interval: the run length P1D is not a whole number of output intervals (PT15H)"),
    ("output-duplicate-variable", {"outputs": "outputs: [{component: b, variables: [r, r], interval: PT6H, path: b.zarr}]"},
     "outputs[0].variables[1]: 'r' is listed twice"),
    ("output-no-variables", {"outputs": "outputs: [{component: b, variables: [], interval: PT6H, path: b.zarr}]"},
     "outputs[0].variables: at least one variable is needed"),
    ("output-same-path", {"outputs": "outputs: [{component: b, variables: [r], interval: PT6H, path: b.zarr}, "
                                     "{component: a, variables: [s], interval: PT6H, path: b.zarr}]"},
     "outputs[1].path: 'b.zarr' is already written by outputs[0]"),
    ("output-reduction", {"outputs": "outputs: [{component: b, variables: [r], interval: PT6H, path: b.zarr, reduction: sum}]"},
     "outputs[0].reduction: 'sum' is not one of ['mean', 'instant', 'min', 'max']"),
    ("output-every", {"outputs": "outputs: [{component: b, variables: [r], every: PT6H, path: b.zarr}]"},
     "outputs[0].every: unknown key"),
    ("duplicate-key", {"outputs": "outputs: [{component: b, variables: [r], interval: PT6H, interval: P1D, path: b.zarr}]"},
     "not valid YAML: key 'interval' appears twice in one mapping"),
    ("run-length-off-sync", {"run": "run: {name: t, start: 2000-01-01T00:00:00, end: 2000-01-01T09:00:00}", "outputs": ""},
     "run.end: the run length PT9H is not a whole number of synchronisation intervals (PT6H"),
]


@pytest.mark.parametrize("replace, fragment", [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_yaml_is_rejected_with_file_and_key(tmp_path, replace, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(document(**replace))
    with pytest.raises(ConfigError) as info:
        load_coupling_config(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert fragment in message, message


def test_good_yaml_loads_with_durations_and_paths(tmp_path):
    path = tmp_path / "good.yaml"
    remap = "{method: conservative, weights: w.nc, fallback: [nearest_s2d, {fixed: 271.35}]}"
    path.write_text(document(couplings=coupling(lag="PT6H", remap=remap, conservation="{check: true, rtol: 1e-10}")))
    config, base = load_coupling_config(path)
    assert isinstance(config, CoupledRunConfig)
    c = config.couplings[0]
    assert (c.from_, c.to, c.period, c.lag) == ("a", "b", dt.timedelta(hours=6), dt.timedelta(hours=6))
    assert c.remap.weights == tmp_path / "w.nc"  # relative input paths resolve against the YAML's folder
    assert c.remap.fallback[0] == "nearest_s2d" and c.remap.fallback[1].fixed == 271.35
    assert config.outputs[0].path.as_posix() == "b.zarr"  # outputs resolve against --out, later
    assert config.sync_seconds == 6 * 3600
    assert c.conservation.rtol == 1e-10  # YAML 1.1 reads 1e-10 as a string; the loader takes it as a number
    assert base == tmp_path
    # 'from' is a Python keyword: the field is from_, the key stays 'from' both ways
    mapping = to_dict(config)
    assert mapping["couplings"][0]["from"] == "a" and "from_" not in mapping["couplings"][0]
    assert from_dict(CoupledRunConfig, mapping) == config


# ------------------------------------------------------------------ checks against built components
def runtime_config(**changes) -> dict:
    """Two analytic components; ``changes`` patch the first coupling, output, or component b."""
    config = {
        "version": 1,
        "run": {"name": "t", "start": "2000-01-01T00:00:00", "end": "2000-01-01T12:00:00"},
        "grids": {"g6": {"type": "regular_latlon", "nlat": 6, "nlon": 12},
                  "g8": {"type": "gaussian", "nlat": 8, "nlon": 16}},
        "components": {
            "a": {"kind": ANALYTIC, "grid": "g6", "timestep": "PT1H"},
            "b": {"kind": ANALYTIC, "grid": "g8", "timestep": "PT3H", "config": {"nlat": 8, "nlon": 16, "gaussian": True}},
        },
        "couplings": [{"from": "a", "to": "b", "fields": [{"src": "signal", "dst": "received"}], "period": "PT6H",
                       "remap": {"method": "conservative"}}],
        "outputs": [{"component": "b", "variables": ["received"], "interval": "PT6H", "path": "b.zarr"}],
    }
    for key, value in changes.items():
        section, _, name = key.partition("__")
        target = config["couplings"][0] if section == "coupling" else (
            config["outputs"][0] if section == "output" else config["components"][section])
        target[name] = value
    return config


def weights_for_other_grids(folder):
    path = folder / "w.nc"
    Regridder(LatLonGrid(6, 12), GaussianGrid(4, 8), "conservative").to_netcdf(path)
    return str(path)


RUNTIME_BAD = [
    ("src-not-export", {"coupling__fields": [{"src": "nonexistent", "dst": "received"}]},
     "couplings[0].fields[0].src: 'nonexistent' is not an export of component 'a'"),
    ("dst-not-import", {"coupling__fields": [{"src": "signal", "dst": "signal"}]},
     "couplings[0].fields[0].dst: 'signal' is not an import of component 'b' (imports: received, u_received, v_received)"),
    ("units-not-convertible", {"coupling__fields": [{"src": "signal", "dst": "received", "units": "m s-1"}]},
     "couplings[0].fields[0].units: signal -> received: cannot convert 'K' to 'm s-1'"),
    ("dst-units-not-convertible", {"b__config": {"nlat": 8, "nlon": 16, "gaussian": True, "received_units": "Pa"}},
     "cannot convert 'K' to 'Pa'"),
    ("fraction-not-export", {"coupling__remap": {"method": "conservative", "fraction": "ocean"}},
     "couplings[0].remap.fraction: 'ocean' is not an export of component 'a'"),
    ("output-variable", {"output__variables": ["nonsense"]},
     "outputs[0].variables[0]: 'nonsense' is not an exchange item of component 'b'"),
    ("component-grid-differs", {"b__grid": "g6"},
     "components.b.grid: component 'b' has a grid of shape (8, 16), grid 'g6' has (6, 12)"),
    ("component-config-sets-clock", {"b__config": {"nlat": 8, "nlon": 16, "gaussian": True, "time_step": "PT1H"}},
     "key 'time_step' is set by the coupling YAML"),
    ("component-device-unsupported", {"b__device": "cuda"}, "components.b.device: Analytic has no 'device' setting"),
    ("component-kind-missing", {"b__kind": "tests.coupling.nowhere:Model"}, "components.b.kind: cannot import 'tests.coupling.nowhere'"),
    ("component-kind-not-component", {"b__kind": "atmorep_coupler.coupling.clock:RunClock"},
     "components.b.kind: 'atmorep_coupler.coupling.clock:RunClock' is not a Component subclass"),
]


@pytest.mark.parametrize("changes, fragment", [case[1:] for case in RUNTIME_BAD], ids=[case[0] for case in RUNTIME_BAD])
def test_pre_run_checks_against_components(tmp_path, changes, fragment):
    path = write_config(tmp_path, runtime_config(**copy.deepcopy(changes)))
    with pytest.raises(ConfigError) as info:
        open_run(path, out_dir=tmp_path / "out", progress=False)
    assert str(info.value).startswith(f"{path}: "), str(info.value)
    assert fragment in str(info.value), str(info.value)
    assert not (tmp_path / "out" / "b.zarr").exists()  # nothing ran


def test_weight_file_for_other_grids_is_rejected(tmp_path):
    weights = weights_for_other_grids(tmp_path)
    path = write_config(tmp_path, runtime_config(coupling__remap={"method": "conservative", "weights": weights}))
    with pytest.raises(ConfigError) as info:
        open_run(path, out_dir=tmp_path / "out", progress=False)
    message = str(info.value)
    assert "couplings[0].remap.weights" in message and "made for a destination grid of 32 cells" in message


def test_weight_file_of_other_method_is_rejected(tmp_path):
    weights = tmp_path / "bilinear.nc"
    Regridder(LatLonGrid(6, 12), GaussianGrid(8, 16), "bilinear").to_netcdf(weights)
    path = write_config(tmp_path, runtime_config(coupling__remap={"method": "conservative", "weights": str(weights)}))
    with pytest.raises(ConfigError, match=r"couplings\[0\]\.remap: .*holds 'bilinear' weights, remap.method is 'conservative'"):
        open_run(path, out_dir=tmp_path / "out", progress=False)


def test_import_without_producer_is_rejected(tmp_path):
    config = runtime_config()
    config["components"]["sink"] = {
        "kind": "receiver", "grid": "g6", "timestep": "PT6H",
        "config": {"grid": {"type": "regular_latlon", "nlat": 6, "nlon": 12},
                   "fields": [{"name": "sst", "units": "K"}]},
    }
    path = write_config(tmp_path, config)
    with pytest.raises(ConfigError, match="import 'sst' of component 'sink' has no producer; add a coupling"):
        open_run(path, out_dir=tmp_path / "out", progress=False)


def test_weight_file_that_fits_is_used(tmp_path):
    """A weight file for these grids gives the same imports as weights computed at start-up."""
    weights = tmp_path / "w.nc"
    Regridder(LatLonGrid(6, 12), GaussianGrid(8, 16), "conservative").to_netcdf(weights)
    results = []
    for name, remap in (("file", {"method": "conservative", "weights": str(weights)}), ("computed", {"method": "conservative"})):
        path = write_config(tmp_path / name, runtime_config(coupling__remap=remap))
        with open_run(path, out_dir=tmp_path / name / "out", progress=False) as run:
            run.run()
            results.append(run.components["b"].get_field("received").values)
    np.testing.assert_allclose(results[0], results[1], rtol=1e-13)


def test_component_config_errors_name_the_full_key_path_or_file(tmp_path):
    sink = {"kind": "receiver", "grid": "g6", "timestep": "PT6H",
            "config": {"grid": {"type": "regular_latlon", "nlat": 6, "nlon": 12, "lat_order": "up"},
                       "fields": [{"name": "sst", "units": "K"}]}}
    config = runtime_config()
    config["components"]["sink"] = sink
    path = write_config(tmp_path, config)
    with pytest.raises(ConfigError) as info:
        open_run(path, out_dir=tmp_path / "out", progress=False)
    assert str(info.value).startswith(f"{path}: components.sink.config.grid.lat_order: 'up' is not one of"), str(info.value)

    (tmp_path / "sink.yaml").write_text(yaml.safe_dump(sink["config"]))
    config["components"]["sink"] = {**sink, "config": "sink.yaml"}
    path = write_config(tmp_path, config)
    with pytest.raises(ConfigError) as info:
        open_run(path, out_dir=tmp_path / "out", progress=False)
    assert str(info.value).startswith(f"{path}: components.sink: {tmp_path / 'sink.yaml'}: grid.lat_order: 'up'"), \
        str(info.value)


def test_a_missing_component_store_names_the_coupling_file_and_component(tmp_path):
    config = runtime_config()
    config["components"]["sst"] = {"kind": "prescribed", "grid": "g6", "timestep": "PT6H",
                                   "config": {"path": "nowhere.nc", "variable": "tos"}}
    path = write_config(tmp_path, config)
    with pytest.raises(DataError) as info:
        open_run(path, out_dir=tmp_path / "out", progress=False)
    assert str(info.value) == f"{path}: components.sst: {tmp_path / 'nowhere.nc'}: file or store not found"


def test_kind_imports_only_what_is_trusted(tmp_path, capsys):
    from atmorep_coupler.run import main

    config = runtime_config()
    config["components"]["b"]["kind"] = "this:Nope"  # importing `this` prints the Zen of Python
    path = write_config(tmp_path, config)
    assert main([str(path), "--out", str(tmp_path / "out"), "--no-progress", "--allow-import", "tests"]) == 2
    captured = capsys.readouterr()
    assert "Beautiful is better than ugly" not in captured.out + captured.err  # nothing was imported
    assert f"error: {path}: components.b.kind: 'this:Nope' would import module 'this' and run its code" in captured.err
    assert "pass --allow-import this" in captured.err
    config["components"]["b"]["kind"] = "components.sst_proxy:SSTProxy"  # a registered kind's package: trusted
    with pytest.raises(ConfigError, match=r"components\.a\.kind: 'tests.coupling.analytic:Analytic' would import "
                                          "module 'tests.coupling.analytic'"):  # ... the test package is not
        CoupledRun.from_file(write_config(tmp_path, config), out_dir=tmp_path / "out", progress=False)


def test_a_shadowing_components_package_is_refused(tmp_path, monkeypatch):
    """Another distribution's ``components`` earlier on sys.path would run its code for a built-in kind:
    the kind is refused, naming where the module came from."""
    import sys

    from atmorep_coupler.coupling.build import OWN_COMPONENTS, resolve_kind

    assert resolve_kind("sst", "prescribed").__module__ == "components.forcing"  # the project's own
    fake = tmp_path / "components"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "forcing.py").write_text("raise SystemExit('the shadowing package was run')\n")
    for name in [m for m in sys.modules if m == "components" or m.startswith("components.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(tmp_path))
    import re

    with pytest.raises(ConfigError, match=rf"components\.sst\.kind: 'prescribed' would import 'components\.forcing' from "
                                          rf"{re.escape(str(fake))}, not from this project's {re.escape(str(OWN_COMPONENTS))}"):
        resolve_kind("sst", "prescribed")
