"""Regridding between the grids of coupled components, compatible with ESMF/SCRIP weight files.

Grids (:mod:`.grids`) describe cells on the unit sphere; the methods (:mod:`.bilinear`,
:mod:`.conservative`, :mod:`.nearest`) each return sparse weights (:mod:`.weights`);
:class:`Regridder` builds them once, or reads an ESMF/SCRIP weight file (:mod:`.weightfile`), and
applies them to numpy, xarray and torch data. See docs/regridding.md.
"""

from atmorep_coupler.regrid.grids import CurvilinearGrid, GaussianGrid, Grid, LatLonGrid
from atmorep_coupler.regrid.regridder import METHODS, Regridder
from atmorep_coupler.regrid.weightfile import read_weight_file, write_weight_file
from atmorep_coupler.regrid.weights import RegridWeights

__all__ = [
    "METHODS",
    "CurvilinearGrid",
    "GaussianGrid",
    "Grid",
    "LatLonGrid",
    "Regridder",
    "RegridWeights",
    "read_weight_file",
    "write_weight_file",
]
