"""Coupled runs killed with SIGKILL at random instants (``bench/kill.py`` does 20 and more): after every
kill every output store opens; resuming finishes; the outputs are bitwise those of an uninterrupted run;
no temporary file is left. Once with analytic components, once with the AtmoRep component."""

from __future__ import annotations

import random

import pytest

from .conftest import bench_module

pytestmark = pytest.mark.slow


def _check(result: dict, kills: int) -> None:
    assert result["tried"] == kills, result
    assert result["failed"] == 0 and result["clean"] == kills, result["failures"]
    assert result["kills_with_outputs"] >= 1, result["kills"]  # at least one kill after outputs were written


def test_killed_analytic_runs_resume_bitwise(tmp_path):
    kill = bench_module("kill")
    _check(kill.campaign(kill.analytic_case(tmp_path), tmp_path, 3, random.Random(3)), 3)


def test_killed_atmorep_runs_resume_bitwise(tiny_store, tmp_path):
    kill = bench_module("kill")
    checkpoint = kill.tiny_checkpoint(tiny_store, tmp_path / "tiny.pt")
    _check(kill.campaign(kill.atmorep_case(tmp_path, tiny_store, checkpoint), tmp_path, 2, random.Random(5)), 2)
