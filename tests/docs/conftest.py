"""Fixtures of the doc tests: the folder a doc block runs in and its environment.

A block runs in a fresh temporary folder in which the repository's ``coupling_configs/``,
``examples/`` and ``scripts/`` are symlinked, with ``python`` = the project venv's python first on
PATH and ``STORE`` (a private copy of the tiny default store, so a block may write statistics into
it), ``CKPT`` (a copy of the tiny trainer checkpoint of the default config's field set, the session
fixture ``tiny_default_checkpoint``) and ``REPO`` (the repository root). STORE and CKPT are only
built when a block mentions them, so a run of parse-only tests builds nothing.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from .doc_blocks import REPO

LINKED = ("coupling_configs", "examples", "scripts")
# set in every block's environment: a doc block that runs pytest must not run the doc tests again
NESTED = "ATMOREP_DOC_TEST_NESTED"


def pytest_collection_modifyitems(config, items):
    if os.environ.get(NESTED):
        skip = pytest.mark.skip(reason=f"inside a doc block ({NESTED} set): doc tests do not run themselves")
        for item in items:
            if Path(str(item.fspath)).parent == Path(__file__).parent:
                item.add_marker(skip)


class DocEnv:
    """Builds the working folder and environment of one doc block (or one page's python blocks)."""

    def __init__(self, request: pytest.FixtureRequest, root: Path):
        self.request, self.root = request, root

    def workspace(self) -> Path:
        work = self.root / "work"
        work.mkdir(parents=True)
        for name in LINKED:
            if (REPO / name).exists():
                (work / name).symlink_to(REPO / name, target_is_directory=True)
        return work

    def environ(self, code: str) -> dict[str, str]:
        venv_bin = Path(sys.executable).parent
        env = dict(os.environ)
        env.update(PATH=f"{venv_bin}{os.pathsep}{env.get('PATH', '')}", REPO=str(REPO), MPLBACKEND="Agg",
                   ATMOREP_COUPLER_CACHE=str(self.root / "cache"), PYTHONUNBUFFERED="1", **{NESTED: "1"})
        env.pop("VIRTUAL_ENV", None)
        inputs = self.root / "inputs"
        if "STORE" in code:
            store = self.request.getfixturevalue("tiny_store")
            env["STORE"] = str(shutil.copytree(store, inputs / store.name))
        if "CKPT" in code:
            checkpoint = self.request.getfixturevalue("tiny_default_checkpoint")
            inputs.mkdir(exist_ok=True)
            env["CKPT"] = str(shutil.copy2(checkpoint, inputs / "trainer.pt"))
        return env


@pytest.fixture()
def doc_env(request, tmp_path) -> DocEnv:
    return DocEnv(request, tmp_path)


@pytest.fixture(scope="session")
def page_env_factory(request, tmp_path_factory):
    """DocEnv for a whole page (its python blocks share one run); ``factory(name)``."""
    return lambda name: DocEnv(request, tmp_path_factory.mktemp(name))


# ---------------------------------------------------------------------------------------------
# how long the doc tests take, by kind (printed at the end of the session)

_TIMES: dict[str, list[float]] = defaultdict(list)


def pytest_runtest_logreport(report):
    if "test_doc_commands.py::" not in report.nodeid:
        return
    kind = report.nodeid.split("::")[1].split("[")[0]
    if report.when == "setup":
        _TIMES[kind].append(report.duration)
    else:
        _TIMES[kind][-1] += report.duration


def pytest_terminal_summary(terminalreporter):
    if not _TIMES:
        return
    parts = [f"{kind} {len(t)} ({sum(t):.1f} s)" for kind, t in sorted(_TIMES.items())]
    total = sum(sum(t) for t in _TIMES.values())
    terminalreporter.write_line(f"doc commands: {total:.1f} s in all (fixtures included): {', '.join(parts)}")
