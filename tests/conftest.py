"""Session-wide fixtures shared by every test area.

``one_torch_thread`` (every test): torch on one thread.

``tiny_store``: the ``--tiny`` default dataset (dinosaur Held–Suarez, T21, 4 days of 3-hourly
output on 7 pressure levels, 32x64 grid, normalization statistics included), generated once per
test session into a temporary folder by the real command line in a subprocess (so JAX never loads
into the test process just for this). Open it with ``atmorep_coupler.data.open_store(tiny_store)``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TINY_STORE_TIMEOUT_S = 600


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread, and the test machine is shared: no spin-waiting pools."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_tiny_store(out: Path, *, seed: int = 0, extra_env: dict | None = None) -> Path:
    """Run ``python -m atmorep_coupler.data make-default --tiny`` into ``out`` and return it."""
    cmd = [
        sys.executable,
        "-m",
        "atmorep_coupler.data",
        "make-default",
        "--tiny",
        "--quiet",
        "--seed",
        str(seed),
        "--out",
        str(out),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=TINY_STORE_TIMEOUT_S, env=extra_env)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return out


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory) -> Path:
    """Path of the tiny default store (read it; do not modify it -- other tests share it)."""
    return make_tiny_store(tmp_path_factory.mktemp("default_data") / "tiny.zarr")


@pytest.fixture(scope="session")
def make_default_cli():
    """The function behind ``tiny_store``, for tests that need another generator run."""
    return make_tiny_store


def tiny_default_run_dict(store: Path) -> dict:
    """The default training config's field set (4 predicted, 4 coarse, 2 forcings) made small, on the
    tiny store: what docs and examples run against as ``$CKPT`` (the recipe of ``quickstart --tiny``)."""
    from atmorep_coupler.quickstart import tiny_training_config

    return tiny_training_config(store, steps=3)


@pytest.fixture(scope="session")
def tiny_default_checkpoint(tiny_store, tmp_path_factory) -> Path:
    """A trainer checkpoint of :func:`tiny_default_run_dict`, trained 3 steps on ``tiny_store``."""
    import torch

    from atmorep_coupler.training.config import load_run_config
    from atmorep_coupler.training.trainer import Trainer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = Trainer(load_run_config(tiny_default_run_dict(tiny_store)))
        for _ in range(3):
            trainer.train_step()
        return trainer.save_checkpoint(tmp_path_factory.mktemp("tiny_default") / "trainer.pt")
    finally:
        torch.set_num_threads(threads)


def flip_tensor_bytes(path: Path, out: Path, n: int = 64) -> Path:
    """Copy the checkpoint ``path`` to ``out`` with ``n`` bytes flipped in the middle of its largest tensor's
    stored data: the zip bookkeeping stays intact, so the file still loads and only a checksum can tell."""
    import zipfile

    data = bytearray(Path(path).read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    header = info.header_offset  # the local header: 30 bytes, then the name and its own extra field
    name_length = int.from_bytes(data[header + 26:header + 28], "little")
    extra_length = int.from_bytes(data[header + 28:header + 30], "little")
    start = header + 30 + name_length + extra_length + info.file_size // 2
    data[start:start + n] = bytes(b ^ 0xFF for b in data[start:start + n])
    Path(out).write_bytes(bytes(data))
    return Path(out)


@pytest.fixture(scope="session")
def flipped_checkpoint():
    """:func:`flip_tensor_bytes`, for tests of damaged checkpoint files."""
    return flip_tensor_bytes
