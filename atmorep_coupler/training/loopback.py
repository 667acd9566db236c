"""The torch.distributed rendezvous of a Ray Train run on this machine, listening on loopback only.

Ray's own processes listen on 127.0.0.1 when the package starts a private Ray instance (it sets
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``). Ray Train's torch backend does not: rank 0 serves the
rendezvous ``TCPStore``, and torch binds that server to every interface (``::``, ``0.0.0.0``), whatever
address the workers connect to; gloo's and NCCL's own sockets follow the interface the host name
resolves to. :class:`LoopbackTorchConfig` replaces the backend's start for runs without a cluster
address: rank 0 binds a socket to ``127.0.0.1`` itself and hands its descriptor to the ``TCPStore``
(``master_listen_fd``), every rank joins through it, and gloo and NCCL are pinned to the loopback
interface. With ``--address`` (a cluster) Ray's usual backend runs: other nodes must reach rank 0.

Imported only by :func:`~atmorep_coupler.training.distributed.train_distributed` (it imports Ray Train).
"""

from __future__ import annotations

import datetime as _dt
import os
import socket
from dataclasses import dataclass

import ray
import torch.distributed as dist
from ray.train._internal.worker_group import WorkerGroup as V1WorkerGroup
from ray.train.torch.config import TorchConfig, _set_torch_distributed_env_vars, _TorchBackend

__all__ = ["LoopbackTorchConfig", "LOOPBACK"]

LOOPBACK = "127.0.0.1"


def loopback_interface() -> str:
    """The name of the loopback interface (``lo`` on Linux, ``lo0`` on macOS)."""
    names = [name for _, name in socket.if_nameindex()]
    return next((n for n in names if n in ("lo", "lo0")), next((n for n in names if n.startswith("lo")), "lo"))


def _listen() -> tuple[int, int]:
    """On rank 0: a socket listening on loopback; ``(descriptor, port)`` (the descriptor now belongs to the
    TCPStore that :func:`_join` creates in this process)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LOOPBACK, 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    return sock.detach(), port


def _join(backend: str, world_rank: int, world_size: int, port: int, listen_fd: int | None, timeout_s: int) -> None:
    """Every rank: the process group over a loopback TCPStore (rank 0 serves it on ``listen_fd``)."""
    interface = loopback_interface()
    os.environ.setdefault("GLOO_SOCKET_IFNAME", interface)
    os.environ.setdefault("NCCL_SOCKET_IFNAME", interface)
    timeout = _dt.timedelta(seconds=timeout_s)
    store = dist.TCPStore(LOOPBACK, port, world_size, is_master=world_rank == 0, timeout=timeout,
                          wait_for_workers=False, master_listen_fd=listen_fd if world_rank == 0 else None)
    dist.init_process_group(backend=backend, store=store, rank=world_rank, world_size=world_size, timeout=timeout)


class _LoopbackTorchBackend(_TorchBackend):
    """Ray Train's torch backend with the rendezvous above (shutdown and the rest unchanged)."""

    def on_start(self, worker_group, backend_config: LoopbackTorchConfig) -> None:
        backend = backend_config.backend or "gloo"
        fd, port = worker_group.execute_single(0, _listen)
        if not isinstance(worker_group, V1WorkerGroup):
            worker_group.execute(_set_torch_distributed_env_vars)
        ray.get([
            worker_group.execute_single_async(i, _join, backend=backend, world_rank=i, world_size=len(worker_group),
                                              port=port, listen_fd=fd if i == 0 else None,
                                              timeout_s=backend_config.timeout_s)
            for i in range(len(worker_group))
        ])


@dataclass
class LoopbackTorchConfig(TorchConfig):
    """``TorchConfig`` whose process group rendezvous and sockets stay on loopback (module docstring)."""

    @property
    def backend_cls(self):
        return _LoopbackTorchBackend
