"""PNG plots of a scorecard: RMSE and ACC against lead, one line per forecast system, one figure per field."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from atmorep_coupler.verification.scorecard import Scorecard  # noqa: E402

__all__ = ["plot_scorecard"]

_STYLES = {"multiformer_coupled": ("C0", "-"), "multiformer_one_way": ("C0", "--"), "multiformer_perfect": ("C0", ":"),
           "coarse_model": ("C3", "-"), "persistence": ("0.4", "--"), "climatology": ("C2", "-."), "climatology_in_sample": ("C2", ":")}


def plot_scorecard(card: Scorecard, out: str | Path) -> list[Path]:
    """Write ``scorecard_<field>.png`` into ``out`` (RMSE left, ACC right, a row per level); return the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    days = np.asarray(card.leads_hours, dtype=np.float64) / 24.0
    scores = card.scores()
    paths = []
    for name, levels in card.fields.items():
        fig, axes = plt.subplots(len(levels), 2, figsize=(10, 2.6 * len(levels)), squeeze=False, sharex=True,
                                 constrained_layout=True)
        for row, level in enumerate(levels):
            for col, metric in enumerate(("rmse", "acc")):
                ax = axes[row, col]
                for key, system in card.systems.items():
                    values = np.asarray(scores.get(key, {}).get(name, {}).get(level, {}).get(metric, []), dtype=float)
                    if values.size and np.isfinite(values).any():
                        color, style = _STYLES.get(key, (None, "-"))
                        ax.plot(days, values, style, color=color, label=system.label)
                unit = f" ({card.units.get(name, '')})" if metric == "rmse" else ""
                ax.set_ylabel(f"{metric.upper()} {level}{unit}", fontsize=8)
                if metric == "acc":
                    ax.axhline(0.6, color="0.8", lw=0.8, zorder=0)  # the usual limit of useful skill
                    ax.set_ylim(top=1.0)
                else:
                    ax.set_ylim(bottom=0)
        for ax in axes[-1]:
            ax.set_xlabel("lead (days)")
        axes[0, 0].set_title(f"{name}: RMSE (lower is better)", fontsize=10)
        axes[0, 1].set_title(f"{name}: ACC (higher is better)", fontsize=10)
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", fontsize=7, ncol=2)
        path = out / f"scorecard_{name}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths
