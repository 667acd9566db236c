"""Every socket a Ray training run on this machine listens on is on loopback: Ray's, and the
torch.distributed rendezvous Ray Train would bind to every interface (``training/loopback.py``)."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time

import pytest

psutil = pytest.importorskip("psutil", reason="psutil lists the sockets (pip install -e '.[test]')")

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _listeners(root: psutil.Process) -> dict[tuple[str, int], str]:
    """``{(address, port): process name}`` of the listening TCP sockets of ``root`` and its descendants."""
    found = {}
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return found
    for process in processes:
        try:
            name = process.name()
            for conn in process.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN:
                    found[(conn.laddr.ip, conn.laddr.port)] = name
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def test_every_listener_of_a_ray_training_run_is_on_loopback(tiny_store, tmp_path):
    cmd = [sys.executable, "-m", "atmorep_coupler.train", "--config", "tiny", "--store", str(tiny_store),
           "--steps", "6", "--num-workers", "2", "--cpus-per-worker", "0.5", "--storage", str(tmp_path / "runs"),
           "--no-progress"]
    process = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"})  # a private Ray
    root = psutil.Process(process.pid)
    seen: dict[tuple[str, int], str] = {}
    deadline = time.monotonic() + 600
    while process.poll() is None and time.monotonic() < deadline:
        seen.update(_listeners(root))
        time.sleep(0.2)
    output = process.communicate(timeout=60)[0]
    assert process.returncode == 0, output[-3000:]
    workers = {addr for addr, name in seen.items() if "RayTrainWorker" in name}
    assert workers, f"no listening socket of a training worker was seen: {seen}"  # the rendezvous was sampled
    assert any(name.startswith(("gcs_server", "raylet")) for name in seen.values()), seen
    exposed = {f"{ip}:{port}": name for (ip, port), name in seen.items() if not _is_loopback(ip)}
    assert not exposed, f"listening beyond loopback: {exposed}"
