"""The Ray transport (each component a Ray actor) gives exactly the in-process results."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import atmorep_coupler  # noqa: F401  (sets RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 before Ray is imported)

from .conftest import run_config
from .test_restart import assert_same_outputs, restart_config

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
def test_ray_transport_and_concurrent_stages_equal_the_sequential_order(tmp_path, local_ray):
    """Both couplings lagged by their period, so a and b step together in most stages (checked): in-process
    in stage order, in Ray actors at the same time, and one step after another in the sequence's order, the
    outputs, conservation diagnostics and restart files agree bit for bit."""
    config = restart_config()
    config["couplings"][0]["lag"] = "PT6H"
    config["run"]["concurrent"] = False
    reference = run_config(tmp_path / "sequential", config)
    assert max(len(stage.blocks) for stage in reference.stages) == 1
    config["run"]["concurrent"] = True
    together = run_config(tmp_path / "inprocess", config)
    assert sum(len(stage.blocks) == 2 for stage in together.stages) == 8  # b's 8 steps, each beside one of a
    config["run"]["transport"] = "ray"
    run = run_config(tmp_path / "ray", config)
    assert ray.is_initialized()  # the driver used the running instance and left it alone
    assert run.summary.restarts[-1].name == "20000102T000000"
    for other in ("inprocess", "ray"):
        assert_same_outputs(tmp_path / "sequential" / "out", tmp_path / other / "out")
        for label in ("20000101T120000", "20000102T000000"):
            folders = [tmp_path / name / "out/restarts/t" / label for name in ("sequential", other)]
            assert (folders[0] / "coupler.json").read_text() == (folders[1] / "coupler.json").read_text()
            for part in ("coupler", "components/a", "components/b"):  # the coupler's accumulators and lag buffers too
                with np.load(folders[0] / f"{part}.npz") as x, np.load(folders[1] / f"{part}.npz") as y:
                    assert x.files == y.files
                    for key in x.files:
                        np.testing.assert_array_equal(x[key], y[key], err_msg=f"{other}, {label}: {part}.{key}")
