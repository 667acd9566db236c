"""Ray Train end to end on a real local cluster, driven the way a user drives it.

One ``ray start --head`` cluster per module (loopback only, 2 CPUs, token auth, its own short temp
dir; stopped by signalling the process group it started -- never ``ray stop``, which would kill every
Ray process on the machine) and four ``ray job submit`` jobs of the packaged tiny config on the tiny
default store, 2 CPU workers each:

- a reference run: checkpoints, logs, status files, result, and its first loss against two
  single-process trainers of rank 0 and 1;
- a run that allows no restart, whose rank-1 worker is killed by PID after a checkpoint was
  registered: it fails; the same command again (same run name) continues from that checkpoint, its
  rank-1 worker is killed too, ``FailureConfig`` restarts the worker group from the newer checkpoint,
  and every logged loss equals the reference run's (exact resume, to 1e-6);
- an unsatisfiable request (2 workers of 1.5 CPUs on 2 CPUs) that fails fast with a clear message.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from pathlib import Path

import numpy as np
import pytest
import torch

from atmorep_coupler.train import config_path
from atmorep_coupler.training.config import load_run_config, run_config_to_yaml
from atmorep_coupler.training.trainer import Trainer

pytestmark = [pytest.mark.ray, pytest.mark.slow]

STEPS, EVERY, KEEP, WORKERS = 64, 4, 2, 2
RAY = str(Path(sys.executable).with_name("ray"))
JOB_TIMEOUT_S = 480


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalCluster:
    """``ray start --head --block`` in its own session; ``stop`` ends exactly that process group."""

    PORT_OPTIONS = ("port", "dashboard-port", "ray-client-server-port", "dashboard-agent-listen-port",
                    "dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port")

    def __init__(self, root: Path):
        self.root = root
        self.env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # every Ray listener on 127.0.0.1
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_DEDUP_LOGS": "0",
            "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
            "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "300",
            "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
            "RAY_AUTH_MODE": "token",  # the same token for the cluster and every CLI call
            "RAY_AUTH_TOKEN": secrets.token_hex(32),
        }
        ports = {name: _free_port() for name in self.PORT_OPTIONS}
        self.address = f"http://127.0.0.1:{ports['dashboard-port']}"
        cmd = [RAY, "start", "--head", "--block", "--num-cpus", "2", "--num-gpus", "0",
               "--dashboard-host", "127.0.0.1", "--temp-dir", str(root / "ray"),
               "--object-store-memory", str(200 * 2**20), "--disable-usage-stats"]
        cmd += [arg for name, port in ports.items() for arg in (f"--{name}", str(port))]
        self.log = (root / "ray_start.log").open("w")
        self.process = subprocess.Popen(cmd, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while self.cli("job", "list", check=False).returncode != 0:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"ray start failed:\n{(self.root / 'ray_start.log').read_text()[-3000:]}")
            time.sleep(1)

    def cli(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run([RAY, *args, "--address", self.address], env=self.env, capture_output=True,
                                text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"ray {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def submit(self, job_id: str, train_args: list[str], *, wait: bool) -> subprocess.CompletedProcess:
        entrypoint = [sys.executable, "-m", "atmorep_coupler.train", *train_args]
        options = ["--submission-id", job_id] + ([] if wait else ["--no-wait"])
        return subprocess.run([RAY, "job", "submit", "--address", self.address, *options, "--", *entrypoint],
                              env=self.env, capture_output=True, text=True, timeout=JOB_TIMEOUT_S)

    def status(self, job_id: str) -> str:
        done = self.cli("job", "status", job_id)
        out = done.stdout + done.stderr
        for state, text in (("SUCCEEDED", f"Job '{job_id}' succeeded"), ("STOPPED", f"Job '{job_id}' was stopped"),
                            ("FAILED", f"Job '{job_id}' failed"), ("RUNNING", f"'{job_id}': RUNNING"),
                            ("PENDING", f"'{job_id}': PENDING")):
            if text in out:
                return state
        raise RuntimeError(f"cannot read the status of job {job_id}:\n{out}")

    def wait(self, job_id: str, timeout: float = JOB_TIMEOUT_S) -> str:
        deadline = time.monotonic() + timeout
        while (state := self.status(job_id)) in ("PENDING", "RUNNING"):
            if time.monotonic() > deadline:
                self.cli("job", "stop", job_id, check=False)
                raise TimeoutError(f"job {job_id} still {state} after {timeout} s")
            time.sleep(3)
        return state

    def logs(self, job_id: str) -> str:
        return self.cli("job", "logs", job_id).stdout

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # ray start --block stops its own processes
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # anything of this cluster that is left
        except ProcessLookupError:
            pass
        self.process.wait()
        self.log.close()


@pytest.fixture(scope="module")
def cluster():
    root = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: AF_UNIX socket paths <= 107 bytes
    local = LocalCluster(root)
    local.wait_ready()
    yield local
    local.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def run_config_file(tiny_store, tmp_path_factory) -> Path:
    """The packaged tiny run with dropout: checkpoints every EVERY steps (KEEP kept), a log row per
    step, one validation at the end (its batches are split over the ranks and summed back)."""
    import dataclasses

    run = load_run_config(config_path("tiny")).with_overrides(store=str(tiny_store), steps=STEPS)
    run = dataclasses.replace(
        run,
        model=dataclasses.replace(run.model, dropout=0.1),  # per-rank RNG states matter on resume
        checkpoint=dataclasses.replace(run.checkpoint, every_steps=EVERY, keep=KEEP),
        logging=dataclasses.replace(run.logging, every_steps=1, tensorboard=False),
        validation=dataclasses.replace(run.validation, every_steps=STEPS, batches=2),
    )
    path = tmp_path_factory.mktemp("ray_config") / "tiny_ray.yaml"
    path.write_text(run_config_to_yaml(run))
    return path


@pytest.fixture(scope="module")
def storage(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ray_runs").resolve()


def train_args(config: Path, storage: Path, name: str, *extra: str, workers: int = WORKERS) -> list[str]:
    return ["--config", str(config), "--num-workers", str(workers), "--run-name", name,
            "--storage", str(storage), *extra]


def train_log(run_dir: Path) -> list[dict[str, float]]:
    with (run_dir / "logs" / "train.csv").open(newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def result(run_dir: Path) -> dict:
    return json.loads((run_dir / "result.json").read_text())


def worker(run_dir: Path, rank: int) -> dict | None:
    path = run_dir / "workers" / f"rank_{rank}.json"
    return json.loads(path.read_text()) if path.exists() else None


def registered_step(run_dir: Path) -> int | None:
    """Step of the latest checkpoint Ray Train has registered (its restore point), if any."""
    try:
        snapshot = json.loads((run_dir / "checkpoint_manager_snapshot.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    latest = snapshot.get("latest_checkpoint_result")
    return int(latest["metrics"]["step"]) if latest else None


def wait_for_registered_checkpoint(cluster: LocalCluster, job_id: str, run_dir: Path, after: int = 0) -> int:
    """Wait until Ray Train has registered a checkpoint of a step beyond ``after``; return its step."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while (step := registered_step(run_dir) or 0) <= after or worker(run_dir, 1) is None:
        assert time.monotonic() < deadline, f"no checkpoint registered in {run_dir}"
        if cluster.status(job_id) not in ("PENDING", "RUNNING"):
            pytest.fail(f"job {job_id} ended before a checkpoint was registered:\n{cluster.logs(job_id)[-4000:]}")
        time.sleep(0.2)
    return step


@pytest.fixture(scope="module")
def reference(cluster, run_config_file, storage) -> Path:
    """An uninterrupted 2-worker run submitted with ``ray job submit`` (waiting for it)."""
    done = cluster.submit("reference", train_args(run_config_file, storage, "reference"), wait=True)
    assert done.returncode == 0, f"job failed:\n{done.stdout[-5000:]}\n{done.stderr[-3000:]}"
    return storage / "reference"


def test_job_trains_checkpoints_and_logs(cluster, reference, run_config_file, tiny_store):
    assert cluster.status("reference") == "SUCCEEDED"
    # the KEEP latest checkpoints, each merged from rank 0's trainer state and every rank's RNG state
    checkpoints = sorted(p.name for p in reference.glob("checkpoint_*") if p.is_dir())
    assert checkpoints == [f"checkpoint_{s:08d}" for s in range(STEPS - (KEEP - 1) * EVERY, STEPS + 1, EVERY)]
    last = reference / checkpoints[-1]
    assert sorted(p.name for p in last.iterdir()) == ["rng_rank0000.pt", "rng_rank0001.pt", "trainer.pt"]
    rng = [torch.load(last / f"rng_rank{r:04d}.pt", weights_only=True)["torch"] for r in range(WORKERS)]
    assert not torch.equal(rng[0], rng[1])  # per-rank dropout streams
    # the checkpoint is an ordinary trainer checkpoint: a single process continues from it
    trainer = Trainer.from_checkpoint(last / "trainer.pt")
    assert trainer.step == STEPS
    # metrics: one row per step, averaged over ranks; the global batch is both ranks' batches
    rows = train_log(reference)
    assert [int(r["step"]) for r in rows] == list(range(1, STEPS + 1))
    batch = trainer.config.data.batch_size
    assert all(r["samples"] == WORKERS * batch for r in rows)
    assert all(np.isfinite(r["loss"]) and r["samples_per_s"] > 0 for r in rows)
    summary = result(reference)
    assert summary["step"] == STEPS and summary["world_size"] == WORKERS and summary["resumed_from"] == 0
    assert summary["metrics"]["loss"] == rows[-1]["loss"]
    assert np.isfinite(summary["metrics"]["val/loss"])
    with (reference / "logs" / "validation.csv").open() as handle:
        assert [int(r["step"]) for r in csv.DictReader(handle)] == [STEPS]
    # two workers in two processes, both at the end
    status = [worker(reference, r) for r in range(WORKERS)]
    assert {s["pid"] for s in status}.isdisjoint({os.getpid()}) and status[0]["pid"] != status[1]["pid"]
    assert all(s["step"] == STEPS and s["resumed_from"] == 0 for s in status)
    # independent check of the data-parallel stream and the all-reduce: before the first update both
    # ranks hold the initial weights, so the logged step-1 loss is the mean of what two
    # single-process trainers of rank 0 and 1 compute on their own (different) first batches
    config = load_run_config(run_config_file)
    losses = [Trainer(config, rank=r, world_size=WORKERS).train_step()["loss"] for r in range(WORKERS)]
    assert losses[0] != losses[1]
    assert rows[0]["loss"] == pytest.approx(np.mean(losses), abs=1e-6)


def test_run_resumes_by_name_and_restarts_killed_worker(cluster, reference, run_config_file, storage):
    run_dir = storage / "resumed"
    # run 1 allows no restart: killing a worker ends it, with a message that says how to continue
    args = train_args(run_config_file, storage, "resumed")
    assert cluster.submit("resumed-1", [*args, "--max-failures", "0"], wait=False).returncode == 0
    wait_for_registered_checkpoint(cluster, "resumed-1", run_dir)
    first = worker(run_dir, 1)
    assert first["step"] < STEPS, "run 1 ended before the kill; raise STEPS"
    os.kill(first["pid"], signal.SIGKILL)
    assert cluster.wait("resumed-1") == "FAILED"
    assert "re-run the same command to continue" in cluster.logs("resumed-1")
    assert not (run_dir / "result.json").exists()
    restore_point = registered_step(run_dir)

    # run 2, same name: continues from run 1's last registered checkpoint; its rank-1 worker is killed
    # too, after a newer checkpoint, and FailureConfig restarts the worker group from that one
    assert cluster.submit("resumed-2", [*args, "--max-failures", "2"], wait=False).returncode == 0
    newer = wait_for_registered_checkpoint(cluster, "resumed-2", run_dir, after=restore_point)
    second = worker(run_dir, 1)
    assert second["resumed_from"] == restore_point > 0
    assert second["step"] < STEPS, "run 2 ended before the kill; raise STEPS"
    os.kill(second["pid"], signal.SIGKILL)
    assert cluster.wait("resumed-2") == "SUCCEEDED", cluster.logs("resumed-2")[-5000:]
    logs = cluster.logs("resumed-2")
    assert "already holds training state" in logs and "continuing from" in logs
    third = worker(run_dir, 1)
    assert third["pid"] not in (first["pid"], second["pid"]) and third["step"] == STEPS
    assert third["resumed_from"] >= newer > restore_point and third["resumed_from"] % EVERY == 0

    # exact continuation across both interruptions: every step's loss as in the uninterrupted
    # reference run, each step logged once, and the same final loss
    rows, ref = train_log(run_dir), train_log(reference)
    assert [int(r["step"]) for r in rows] == list(range(1, STEPS + 1))
    np.testing.assert_allclose([r["loss"] for r in rows], [r["loss"] for r in ref], rtol=0, atol=1e-6)
    assert result(run_dir)["metrics"]["loss"] == pytest.approx(result(reference)["metrics"]["loss"], abs=1e-6)


def test_unsatisfiable_request_fails_fast(cluster, run_config_file, storage):
    start = time.monotonic()
    args = train_args(run_config_file, storage, "too-many", "--cpus-per-worker", "1.5")  # 2 x 1.5 CPUs > 2
    done = cluster.submit("too-many", args, wait=True)
    assert done.returncode != 0
    logs = cluster.logs("too-many")
    assert "hold 1 worker(s) of 1.5 CPU" in logs and "--num-workers is 2" in logs and "forever" in logs
    assert time.monotonic() - start < 120
    assert not (storage / "too-many" / "checkpoint_manager_snapshot.json").exists()
