"""The embedded default dataset: a dinosaur Held–Suarez climate written in the ERA5 layout.

``python -m atmorep_coupler.data make-default`` spins the model up (>= 100 days, not written),
then writes two years of 3-hourly vorticity, divergence, temperature, geopotential, u and v on
pressure levels, surface pressure, and the slow forcings (SST proxy, insolation, CO2-equivalent) to a
zarr v3 store with CF metadata, and computes its normalization statistics. The first year is the
default training period, the second is held out (verification, climate runs).

Beside the truth it runs the coarse classical model (T15, :mod:`.coarse_run`) relaxed toward the
truth as a two-way coupled run relaxes it toward the multiformer, and writes its state as
``coarse_temperature``, ``coarse_geopotential``, ``coarse_u_component_of_wind``,
``coarse_v_component_of_wind`` and ``coarse_surface_pressure`` (on the truth's grid): the conditioning
the default model trains on. The coarse run is nudged over each output interval toward the truth at
the interval's start, so it never sees a future truth.

Resumable: the time axis is laid out when the store is created, blocks of output are written into
their fixed time slots, and after each block the model state and the number of written times are
saved atomically (``generator/state.npz`` inside the store). An interrupted run restarts from the
last saved block and rewrites it identically, so no time is missing or duplicated. Deterministic:
the model clock is an integer step counter and the initial state depends only on the seed.

Only :func:`generate` imports JAX/dinosaur (through :mod:`.held_suarez`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec
from tqdm.auto import tqdm

from atmorep_coupler.config import Validated, to_dict
from atmorep_coupler.data.cache import cache_dir
from atmorep_coupler.data import forcings
from atmorep_coupler.data.forcings import ClimateScenario
from atmorep_coupler.errors import ConfigError, DataError

__all__ = ["CoarseRunConfig", "DefaultDataConfig", "cache_dir", "default_store_path", "generate", "is_complete"]

#: Version of what the generator writes for a given config; part of the fingerprint and of the saved
#: config, so a store (or cache entry) written by an older generator is never taken for a current one.
#: 2: Gaussian -> lat-lon regridding through atmorep_coupler.regrid (ESMF great-circle cells).
#: 3: sigma -> pressure linear in log-pressure with linear extrapolation below ground (was NaN).
#: 4: the nudged coarse classical model's state (coarse_*) beside the truth; two years by default.
GENERATOR_VERSION = 4
STATE_GROUP = "generator"
STATE_FILE = "state.npz"
#: Default size of one written block (as float32); sets the checkpoint granularity.
BLOCK_BYTES = 64 * 2**20
SPINUP_CHECKPOINT_DAYS = 20.0
#: Byte shuffle + zstd: 1.2-1.7x smaller than zarr's default zstd on these float32 fields, and faster to read.
COMPRESSOR = BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")

VARIABLE_ATTRS = {
    "vorticity": {
        "units": "s-1",
        "standard_name": "atmosphere_relative_vorticity",
        "long_name": "Vorticity (relative)",
    },
    "divergence": {"units": "s-1", "standard_name": "divergence_of_wind", "long_name": "Divergence"},
    "temperature": {"units": "K", "standard_name": "air_temperature", "long_name": "Temperature"},
    "geopotential": {"units": "m2 s-2", "standard_name": "geopotential", "long_name": "Geopotential"},
    "u_component_of_wind": {
        "units": "m s-1",
        "standard_name": "eastward_wind",
        "long_name": "U component of wind",
    },
    "v_component_of_wind": {
        "units": "m s-1",
        "standard_name": "northward_wind",
        "long_name": "V component of wind",
    },
    "surface_pressure": {
        "units": "Pa",
        "standard_name": "surface_air_pressure",
        "long_name": "Surface pressure",
    },
    "sea_surface_temperature": {
        "units": "K",
        "long_name": "Held-Suarez surface equilibrium temperature (SST proxy)",
        "comment": "T0 + warming(t) - dTy sin^2(lat - heating_latitude(t)) at p = p0 (Held & Suarez 1994 "
        "eq. 3 with a seasonal cycle and a warming ramp); prescribed, not simulated. "
        "See atmorep_coupler.data.forcings.surface_equilibrium_temperature.",
    },
    "toa_incident_solar_radiation": {
        "units": "W m-2",
        "standard_name": "toa_incoming_shortwave_flux",
        "long_name": "Daily-mean TOA incident solar radiation (insolation proxy)",
        "comment": "Daily mean (the dynamics have no diurnal cycle), Hartmann (2016) eq. 2.15. A flux in "
        "W m-2, unlike ERA5's tisr, which is accumulated energy in J m-2.",
    },
    "co2_equivalent": {
        "units": "ppm",
        "long_name": "CO2-equivalent concentration",
        "comment": "C0 * 2**(warming / S), S = climate_sensitivity_K per doubling: the concentration "
        "whose equilibrium warming equals the prescribed surface warming ramp.",
    },
}
PRESSURE_FIELDS = (
    "vorticity",
    "divergence",
    "temperature",
    "geopotential",
    "u_component_of_wind",
    "v_component_of_wind",
)
#: The coarse classical model's fields written beside the truth (``coarse_run.COARSE_FIELDS``, prefixed).
COARSE_PRESSURE_FIELDS = (
    "coarse_temperature",
    "coarse_geopotential",
    "coarse_u_component_of_wind",
    "coarse_v_component_of_wind",
)
COARSE_SURFACE_FIELDS = ("coarse_surface_pressure",)
for _name in (*COARSE_PRESSURE_FIELDS, *COARSE_SURFACE_FIELDS):
    _truth = VARIABLE_ATTRS[_name.removeprefix("coarse_")]
    VARIABLE_ATTRS[_name] = {
        "units": _truth["units"],
        "long_name": f"{_truth['long_name']} of the coarse classical model (nudged toward the truth)",
        "comment": "dinosaur Held-Suarez at the coarse resolution (default T15), relaxed over each output "
        "interval toward the truth's temperature and winds at the interval's start, regridded conservatively "
        "to this grid; see atmorep_coupler.data.coarse_run.",
    }


@dataclass(frozen=True)
class CoarseRunConfig:
    """The coarse classical model run beside the truth and nudged toward it (:mod:`.coarse_run`); its
    settings are those of the classical component (``components/classical.py``) in a two-way coupled run."""

    enabled: bool = True
    """Run it and write ``coarse_*``; false: a store of the truth alone."""
    resolution: str = "T15"
    """Spectral truncation (the classical component's default)."""
    sigma_levels: int = 8
    """Sigma levels of its dynamical core (the classical component's default)."""
    tau_hours: float = 6.0
    """Relaxation time scale toward the truth (the classical component's ``nudging.tau``)."""
    levels_hPa: tuple[float, ...] = (250.0, 500.0, 700.0, 850.0)
    """Pressure levels of the nudging target: the multiformer's levels, what a two-way run hands the model."""
    reach_hPa: float = 100.0
    """Sigma levels this far beyond the target's levels are nudged too (the classical component's ``nudging.reach_hPa``)."""


@dataclass(frozen=True)
class DefaultDataConfig(Validated):
    """Everything that determines the default dataset (its hash names the cached store)."""

    resolution: str = "T21"
    years: float = 2.0
    seed: int = 0
    spinup_days: float = 100.0
    output_hours: float = 3.0
    pressure_levels_hPa: tuple[float, ...] = (200.0, 250.0, 300.0, 500.0, 700.0, 850.0, 1000.0)
    sigma_levels: int = 8
    scenario: ClimateScenario = field(default_factory=ClimateScenario)
    #: Output length in days; 0 means ``years`` of the scenario's year length, rounded up.
    output_days: float = 0.0
    #: Days written (and checkpointed) per block; 0 sizes blocks to about 64 MiB.
    block_days: int = 0
    #: A test-size store: allows a spin-up shorter than 100 days.
    tiny: bool = False
    #: The nudged coarse classical model written as ``coarse_*``.
    coarse: CoarseRunConfig = field(default_factory=CoarseRunConfig)

    @classmethod
    def tiny_store(cls, seed: int = 0, resolution: str = "T21") -> DefaultDataConfig:
        """A small store for tests: same code path, 2-day spin-up, 4 days of 3-hourly output."""
        return cls(
            resolution=resolution, seed=seed, spinup_days=2.0, output_days=4.0, block_days=1, tiny=True
        )

    def validate(self, path: str = "") -> None:
        where = path or "default data"
        if not self.tiny and self.spinup_days < 100:
            raise ConfigError(
                f"{where}.spinup_days: the default data needs >= 100 days of spin-up "
                f"(the Held-Suarez climate is steady after ~80 days), got {self.spinup_days}"
            )
        if self.record_days <= 0:
            raise ConfigError(f"{where}.years: the record must be longer than 0 days, got {self.years}")
        if self.output_hours <= 0:
            raise ConfigError(f"{where}.output_hours: must be positive, got {self.output_hours}")
        if self.coarse.enabled:
            if not self.coarse.tau_hours > 0:
                raise ConfigError(f"{where}.coarse.tau_hours: must be positive, got {self.coarse.tau_hours}")
            missing = sorted(set(self.coarse.levels_hPa) - set(self.pressure_levels_hPa))
            if len(self.coarse.levels_hPa) < 2 or missing:
                raise ConfigError(
                    f"{where}.coarse.levels_hPa: need at least two of the output levels {list(self.pressure_levels_hPa)}, "
                    f"got {list(self.coarse.levels_hPa)}"
                )

    @property
    def record_days(self) -> float:
        if self.output_days > 0:
            return self.output_days
        return float(math.ceil(self.years * self.scenario.year_length_days))

    @property
    def n_times(self) -> int:
        return int(round(self.record_days * 24.0 / self.output_hours))

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(_jsonable(self), sort_keys=True).encode()).hexdigest()[:10]


def _jsonable(config: DefaultDataConfig) -> dict:
    return json.loads(json.dumps({**to_dict(config), "generator_version": GENERATOR_VERSION}, default=str))


def default_store_path(config: DefaultDataConfig | None = None) -> Path:
    """Where :func:`generate` puts the store for ``config`` when no ``out`` is given."""
    config = config or DefaultDataConfig()
    size = "tiny" if config.tiny else f"{config.years:g}y"
    return (
        cache_dir() / f"held_suarez_{config.resolution}_{size}_seed{config.seed}_{config.fingerprint()}.zarr"
    )


def _read_checkpoint(path: Path) -> dict | None:
    file = path / STATE_GROUP / STATE_FILE
    if not file.exists():
        return None
    with np.load(file) as data:
        return {k: data[k] for k in data.files}


def _write_checkpoint(
    path: Path, state: dict, written: int, config_json: str, statistics: bool = False
) -> None:
    """Atomically replace the saved generator state (write a temp file, then rename).
    ``statistics`` marks the store complete: every time written and statistics saved."""
    folder = path / STATE_GROUP
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    with os.fdopen(fd, "wb") as fh:
        np.savez(
            fh,
            **state,
            written=np.asarray(written, dtype=np.int64),
            config=np.asarray(config_json),
            statistics=np.asarray(statistics),
        )
    os.replace(tmp, folder / STATE_FILE)


def is_complete(path: str | os.PathLike, config: DefaultDataConfig | None = None) -> bool:
    """True when the store at ``path`` holds every time of its record and its statistics."""
    path = Path(path)
    saved = _read_checkpoint(path)
    if saved is None or not bool(saved.get("statistics", False)):
        return False
    return config is None or json.loads(str(saved["config"])) == _jsonable(config)


def _pressure_fields(config: DefaultDataConfig) -> tuple[str, ...]:
    return PRESSURE_FIELDS + (COARSE_PRESSURE_FIELDS if config.coarse.enabled else ())


def _surface_fields(config: DefaultDataConfig) -> tuple[str, ...]:
    return ("surface_pressure",) + (COARSE_SURFACE_FIELDS if config.coarse.enabled else ())


def _times(config: DefaultDataConfig) -> np.ndarray:
    step = np.timedelta64(int(round(config.output_hours * 3600)), "s")
    return np.datetime64(config.scenario.epoch, "s") + np.arange(config.n_times) * step


def _create(path: Path, config: DefaultDataConfig, model, source: str) -> None:
    """Lay out the whole store: coordinates, CF attributes and empty (NaN) data arrays."""
    if path.exists() and any(path.iterdir()):
        try:
            ours = "generator_config" in zarr.open_group(path, mode="r").attrs
        except Exception:  # not a zarr store at all
            ours = False
        if not ours:
            raise DataError(
                f"{str(path)!r} exists and is not a default-data store; refusing to overwrite it. "
                "Choose another --out or remove it yourself"
            )
        shutil.rmtree(path)  # a store whose creation was interrupted before its first checkpoint
    root = zarr.open_group(path, mode="w", zarr_format=3)
    epoch = np.datetime_as_string(np.datetime64(config.scenario.epoch, "s"))
    minutes = np.arange(config.n_times, dtype=np.int64) * int(round(config.output_hours * 60))
    levels = np.asarray(config.pressure_levels_hPa)
    levels = levels.astype(np.int64) if np.all(levels == np.round(levels)) else levels
    coords = {
        "time": (
            minutes,
            {
                "units": f"minutes since {epoch.replace('T', ' ')}",
                "calendar": "proleptic_gregorian",
                "standard_name": "time",
                "axis": "T",
                "long_name": "valid time",
            },
        ),
        "level": (
            levels,
            {
                "units": "hPa",
                "standard_name": "air_pressure",
                "positive": "down",
                "axis": "Z",
                "long_name": "pressure level",
            },
        ),
        "latitude": (model.latitudes, {"units": "degrees_north", "standard_name": "latitude", "axis": "Y"}),
        "longitude": (model.longitudes, {"units": "degrees_east", "standard_name": "longitude", "axis": "X"}),
    }
    for name, (values, attrs) in coords.items():
        arr = root.create_array(
            name,
            shape=values.shape,
            dtype=values.dtype,
            chunks=values.shape,
            dimension_names=[name],
            attributes=attrs,
        )
        arr[:] = values
    per_day = int(round(24.0 / config.output_hours))
    ny, nx = model.latitudes.size, model.longitudes.size
    layouts = {
        **{k: ("time", "level", "latitude", "longitude") for k in _pressure_fields(config)},
        **{k: ("time", "latitude", "longitude") for k in _surface_fields(config)},
        "sea_surface_temperature": ("time", "latitude", "longitude"),
        "toa_incident_solar_radiation": ("time", "latitude", "longitude"),
        "co2_equivalent": ("time",),
    }
    sizes = {"time": config.n_times, "level": levels.size, "latitude": ny, "longitude": nx}
    for name, dims in layouts.items():
        shape = tuple(sizes[d] for d in dims)
        chunks = (min(per_day, config.n_times), *shape[1:]) if dims != ("time",) else (config.n_times,)
        root.create_array(
            name,
            shape=shape,
            dtype="float32",
            chunks=chunks,
            compressors=COMPRESSOR,
            fill_value=np.nan,
            dimension_names=list(dims),
            attributes=VARIABLE_ATTRS[name],
        )
    root.attrs.update(
        {
            "Conventions": "CF-1.10",
            "title": "atmorep_coupler default dataset: Held-Suarez climate with seasonal cycle and warming ramp",
            "source": source,
            "history": f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ} created by "
            "`python -m atmorep_coupler.data make-default`",
            "references": "Held & Suarez (1994) BAMS 75, 1825-1830; dinosaur (Google, Apache-2.0)",
            "comment": f"{config.spinup_days:g} days of spin-up before the first time (not written); "
            "fields conservatively regridded from the Gaussian grid to regular cell centres; "
            "no moisture (no specific_humidity) and no diurnal cycle."
            + (f" coarse_*: the coarse classical model ({config.coarse.resolution}) nudged toward the truth "
               f"(tau {config.coarse.tau_hours:g} h, levels {list(config.coarse.levels_hPa)} hPa)."
               if config.coarse.enabled else ""),
            "generator_config": json.dumps(_jsonable(config), sort_keys=True),
        }
    )
    group = root.create_group(STATE_GROUP)
    group.attrs["description"] = (
        "generator restart state (state.npz: model state and the number of "
        "written times), replaced atomically after every written block"
    )


def _forcing_block(times: np.ndarray, latitudes: np.ndarray, nx: int, scenario: ClimateScenario) -> dict:
    days = forcings.days_since_epoch(times, scenario.epoch)[:, None]
    phase = forcings.seasonal_phase(days, scenario)
    sst = forcings.surface_equilibrium_temperature(latitudes[None, :], days, scenario)
    insolation = forcings.toa_insolation(
        latitudes[None, :], phase, year_length_days=scenario.year_length_days
    )
    return {
        "sea_surface_temperature": np.repeat(sst[:, :, None], nx, axis=2).astype(np.float32),
        "toa_incident_solar_radiation": np.repeat(insolation[:, :, None], nx, axis=2).astype(np.float32),
        "co2_equivalent": forcings.co2_equivalent(days[:, 0], scenario).astype(np.float32),
    }


def generate(
    config: DefaultDataConfig | None = None,
    out: str | os.PathLike | None = None,
    *,
    progress: bool = True,
    statistics: bool = True,
) -> Path:
    """Generate (or resume, or reuse) the default dataset; returns the store's path."""
    config = config or DefaultDataConfig()  # checked when built (Validated)
    path = Path(out).expanduser() if out is not None else default_store_path(config)
    if is_complete(path, config):
        return path
    config_json = json.dumps(_jsonable(config), sort_keys=True)
    saved = _read_checkpoint(path) if path.exists() else None
    if saved is not None and json.loads(str(saved["config"])) != json.loads(config_json):
        raise DataError(
            f"store {str(path)!r} was generated with other settings ({str(saved['config'])}); delete it or "
            "choose another --out"
        )
    pair = _Models(config)
    if saved is None:
        import dinosaur

        path.parent.mkdir(parents=True, exist_ok=True)
        _create(
            path,
            config,
            pair.truth,
            f"dinosaur {getattr(dinosaur, '__version__', '')} primitive equations, {config.resolution} "
            f"L{config.sigma_levels} sigma, dt {pair.truth.dt_seconds / 60:g} min, Held-Suarez forcing",
        )
        pair.initialize(config.seed, -config.spinup_days * 86400.0)
        written = 0
        _write_checkpoint(path, pair.get_state(), written, config_json)
    else:
        pair.set_state(saved)
        written = int(saved["written"])
    _run(path, config, pair, written, config_json, progress)
    if statistics:
        from atmorep_coupler.data.statistics import compute_normalization
        from atmorep_coupler.data.store import open_store

        store = open_store(path)
        compute_normalization(store, progress=progress).save(store)
        _write_checkpoint(path, pair.get_state(), config.n_times, config_json, statistics=True)
    return path


class _Models:
    """The truth model and, when configured, the coarse run nudged toward it, stepped in lockstep.

    Invariant between calls: the coarse run relaxes toward the truth at the current time (set again
    after every load, so a resumed run continues exactly as an uninterrupted one)."""

    COARSE_KEY = "coarse/"

    def __init__(self, config: DefaultDataConfig) -> None:
        from atmorep_coupler.data.held_suarez import HeldSuarezModel, ModelConfig

        self.truth = HeldSuarezModel(
            ModelConfig(
                resolution=config.resolution,
                sigma_levels=config.sigma_levels,
                pressure_levels_hPa=tuple(config.pressure_levels_hPa),
            ),
            config.scenario,
        )
        self.coarse = None
        if config.coarse.enabled:
            from atmorep_coupler.data.coarse_run import NudgedCoarseRun

            self.coarse = NudgedCoarseRun(
                config.coarse, config.scenario, self.truth.latlon_grid, config.pressure_levels_hPa
            )

    @property
    def seconds(self) -> float:
        """Model time in seconds since the scenario epoch."""
        return self.truth.step_index * self.truth.dt_seconds

    def initialize(self, seed: int, seconds: float) -> None:
        self.truth.initialize(seed, step_index=self.truth.steps_per(seconds))
        if self.coarse is not None:
            self.coarse.model.initialize(seed, step_index=self.coarse.model.steps_per(seconds))
            self.coarse.nudge_toward(self.truth.diagnose("latlon"))

    def get_state(self) -> dict[str, np.ndarray]:
        state = self.truth.get_state()
        if self.coarse is not None:
            state.update({self.COARSE_KEY + k: v for k, v in self.coarse.model.get_state().items()})
        return state

    def set_state(self, saved: dict[str, np.ndarray]) -> None:
        self.truth.set_state({k: v for k, v in saved.items() if "/" not in k})
        if self.coarse is not None:
            n = len(self.COARSE_KEY)
            self.coarse.model.set_state({k[n:]: v for k, v in saved.items() if k.startswith(self.COARSE_KEY)})
            self.coarse.nudge_toward(self.truth.diagnose("latlon"))

    def advance(self, seconds: float) -> dict[str, np.ndarray] | None:
        """Step both to ``seconds``; with a coarse run, return the truth's fields there (lat-lon) and make
        them the coarse run's target for the next interval. The coarse run reaches ``seconds`` relaxing
        toward the truth of the previous call: it never sees the truth it arrives at."""
        self.truth.step(self.truth.steps_per(seconds) - self.truth.step_index)
        if self.coarse is None:
            return None
        self.coarse.step_to(seconds)
        truth = self.truth.diagnose("latlon")
        self.coarse.nudge_toward(truth)
        return truth


def _run(
    path: Path, config: DefaultDataConfig, pair: _Models, written: int, config_json: str, progress: bool
) -> None:
    """Finish the spin-up, then write the record block by block; checkpoint after each piece."""
    _spin_up(path, config, pair, config_json, progress)
    _write_record(path, config, pair, written, config_json, progress)


def _spin_up(path: Path, config: DefaultDataConfig, pair: _Models, config_json: str, progress: bool) -> None:
    """Step from the (negative) current time to the epoch -- an output interval at a time when the coarse
    run is nudged along, else a day at a time -- saving the state every ``SPINUP_CHECKPOINT_DAYS``."""
    stride = 3600.0 * config.output_hours if pair.coarse is not None else 86400.0
    checkpoint_every = SPINUP_CHECKPOINT_DAYS * 86400.0
    epoch = np.datetime64(config.scenario.epoch, "s")
    remaining_days = round(-min(pair.seconds, 0.0) / 86400.0, 3)
    with tqdm(
        total=remaining_days, desc="spin-up", unit="day", disable=not progress or remaining_days == 0
    ) as bar:
        since_checkpoint = 0.0
        while pair.seconds < 0:
            before = pair.seconds
            pair.advance(min(0.0, before + stride))
            since_checkpoint += pair.seconds - before
            if since_checkpoint >= checkpoint_every or pair.seconds == 0:
                _write_checkpoint(path, pair.get_state(), 0, config_json)
                since_checkpoint = 0.0
            bar.update(round((pair.seconds - before) / 86400.0, 3))
            date = epoch + np.timedelta64(int(round(pair.seconds)), "s")
            bar.set_postfix_str(np.datetime_as_string(date, unit="h"))


def _write_record(
    path: Path, config: DefaultDataConfig, pair: _Models, written: int, config_json: str, progress: bool
) -> None:
    """Diagnose every output time from ``written`` on and write blocks of whole days (aligned with
    the one-day chunks) into their slots of the pre-laid-out time axis."""
    root = zarr.open_group(path, mode="r+")
    times = _times(config)
    output_seconds = config.output_hours * 3600.0
    per_day = int(round(24.0 / config.output_hours))
    model = pair.truth
    nx = model.longitudes.size
    layers = len(_pressure_fields(config)) * len(config.pressure_levels_hPa) + len(_surface_fields(config)) + 2
    bytes_per_day = per_day * 4 * model.latitudes.size * nx * layers
    block = per_day * (config.block_days or max(1, BLOCK_BYTES // bytes_per_day))
    with tqdm(
        total=config.n_times, initial=written, desc="default data", unit="time", disable=not progress
    ) as bar:
        while written < config.n_times:
            stop = min(written + block, config.n_times)
            fields: dict[str, list] = {k: [] for k in (*_pressure_fields(config), *_surface_fields(config))}
            for k in range(written, stop):
                truth = pair.advance(k * output_seconds)
                if truth is None:
                    truth = model.diagnose("latlon")
                else:
                    truth.update(pair.coarse.diagnose())
                for name in fields:
                    values = truth[name]
                    fields[name].append(values[0] if name == "surface_pressure" else values)
                bar.update(1)
                bar.set_postfix_str(np.datetime_as_string(times[k], unit="h"))
            data = {k: np.stack(v) for k, v in fields.items()}
            data.update(_forcing_block(times[written:stop], model.latitudes, nx, config.scenario))
            for name, values in data.items():
                root[name][written:stop] = values
            written = stop
            _write_checkpoint(path, pair.get_state(), written, config_json)
