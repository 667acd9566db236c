"""Figure for docs/concepts.md: the default config's neighbourhoods and tokens on the default grid.

Left: the 32 x 64 grid of the default data (5.625 degrees) with two neighbourhoods of
``configs/default.yaml`` (8 rows x 16 columns, cut into the 2 x 4 tokens of 4 x 4 points of the
temperature field), one of them wrapping across 0/360 degrees longitude. Right: the sampler's
probability of each start row (``data/sampler.py``: proportional to the area at the window centre)
against a uniform draw. Run: ``python docs/figures/neighbourhood.py [--out PATH]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from atmorep_coupler.data.sampler import row_areas  # noqa: E402
from atmorep_coupler.regrid.grids import LatLonGrid  # noqa: E402
from atmorep_coupler.training.config import load_run_config  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_suffix(".png"))
    args = parser.parse_args(argv)

    field = load_run_config(REPO / "atmorep_coupler" / "configs" / "default.yaml").model.field("temperature")
    _, ny, nx = field.neighbourhood
    _, ty, tx = field.token_size
    grid = LatLonGrid(32, 64)  # the default data's grid
    lat = grid.center_lat[:, 0]
    dlat, dlon = 180 / 32, 360 / 64

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(9, 3.2), gridspec_kw={"width_ratios": [2.2, 1]})
    ax.set_xlim(0, 360), ax.set_ylim(-90, 90)
    for x in np.arange(0, 361, dlon):
        ax.axvline(x, color="0.9", lw=0.4)
    for y in np.arange(-90, 91, dlat):
        ax.axhline(y, color="0.9", lw=0.4)
    for (row, col), colour in (((4, 20), "tab:blue"), ((14, 56), "tab:red")):
        top = 90 - row * dlat
        for part in range(2):  # a window that runs past 360 degrees continues at 0
            x0 = col * dlon - part * 360
            for j in range(0, nx + 1, tx):
                ax.plot([x0 + j * dlon] * 2, [top, top - ny * dlat], color=colour, lw=0.8)
            for i in range(0, ny + 1, ty):
                ax.plot([x0, x0 + nx * dlon], [top - i * dlat] * 2, color=colour, lw=0.8)
        label = f"{ny}x{nx} points, {ny // ty}x{nx // tx} tokens"
        ax.text(min(col * dlon, 360 - 120) + 2, top - ny * dlat - 3, label, color=colour,
                fontsize=7, va="top")
    ax.set_xlabel("longitude (°E)"), ax.set_ylabel("latitude (°N)")
    ax.set_title("neighbourhoods of configs/default.yaml", fontsize=9)

    area = row_areas(lat)
    starts = np.arange(lat.size - ny + 1)
    weight = 0.5 * (area[starts + (ny - 1) // 2] + area[starts + ny // 2])
    centre = 0.5 * (lat[starts + (ny - 1) // 2] + lat[starts + ny // 2])
    bx.plot(weight / weight.sum(), centre, "o-", ms=3, label="sampler (area)")
    bx.plot(np.full(starts.size, 1 / starts.size), centre, "--", label="uniform in latitude")
    bx.set_ylim(-90, 90), bx.set_xlabel("probability of the start row"), bx.set_ylabel("window centre (°N)")
    bx.legend(fontsize=7), bx.set_title("where windows are drawn", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out, dpi=90)
    print(args.out)
    return args.out


if __name__ == "__main__":
    main()
