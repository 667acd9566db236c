"""The Ray transport (each component a Ray actor) gives exactly the in-process results."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import atmorep_coupler  # noqa: F401  (sets RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 before Ray is imported)

from .conftest import open_output, run_config
from .test_restart import restart_config

ray = pytest.importorskip("ray")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def local_ray():
    """A private local Ray instance: loopback listeners, no dashboard, small object store.

    Workers import the test component by module path, so they get the repository on PYTHONPATH.
    Only this instance is shut down afterwards (never ``ray stop``). The temp folder is short:
    Ray's socket paths must stay under 107 bytes.
    """
    assert os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
    temp = Path("/tmp") / f"rc{os.getpid()}"
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=150 * 2**20,
             _temp_dir=str(temp), runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    yield
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.ray
def test_ray_transport_equals_inprocess(tmp_path, local_ray):
    config = restart_config()
    run_config(tmp_path / "inprocess", config)
    config["run"]["transport"] = "ray"
    run = run_config(tmp_path / "ray", config)
    assert ray.is_initialized()  # the driver used the running instance and left it alone
    for name in ("b6h.zarr", "a1d.zarr"):
        a = open_output(tmp_path / "inprocess" / "out" / name)
        b = open_output(tmp_path / "ray" / "out" / name)
        for var in a.variables:
            np.testing.assert_array_equal(a[var].values, b[var].values, err_msg=f"{name}: {var}")
    assert run.summary.restarts[-1].name == "20000102T000000"
    for component in ("a", "b"):
        with np.load(tmp_path / "inprocess/out/restarts/t/20000102T000000/components" / f"{component}.npz") as x, \
             np.load(run.summary.restarts[-1] / "components" / f"{component}.npz") as y:
            for key in x.files:
                np.testing.assert_array_equal(x[key], y[key])
