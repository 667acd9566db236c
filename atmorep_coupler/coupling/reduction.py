"""Time reduction of samples taken over a window (OASIS ``LOCTRANS``, YAC ``time_reduction``).

Shared by exchanges (coupling period) and outputs (output interval). Samples are accumulated in
float64 in the order they arrive, and the running state is plain arrays, so a window interrupted by
a restart continues to exactly the same bits.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["TimeReduction", "Reduction"]

Reduction = Literal["instant", "average", "accumulate", "min", "max"]


class TimeReduction:
    """Running reduction of one array-valued sample stream over a window.

    ``instant``: the last sample; ``average``: arithmetic mean of the samples; ``accumulate``: their
    sum (no multiplication by a time step, as OASIS ``ACCUMUL``); ``min``/``max``: elementwise.
    """

    def __init__(self, kind: Reduction) -> None:
        if kind not in ("instant", "average", "accumulate", "min", "max"):
            raise ValueError(f"unknown time reduction {kind!r}")
        self.kind = kind
        self.count = 0
        self.value: np.ndarray | None = None

    def add(self, sample: np.ndarray) -> None:
        sample = np.asarray(sample, dtype=np.float64)
        if self.value is None or self.kind == "instant":
            self.value = sample.copy()
        elif self.kind in ("average", "accumulate"):
            self.value += sample
        elif self.kind == "min":
            np.minimum(self.value, sample, out=self.value)
        else:
            np.maximum(self.value, sample, out=self.value)
        self.count += 1

    def result(self) -> np.ndarray:
        """The reduced window; resets for the next one."""
        if self.value is None:
            raise RuntimeError("time reduction of an empty window")
        value = self.value / self.count if self.kind == "average" else self.value
        self.value, self.count = None, 0
        return value

    def state_dict(self) -> dict:
        return {"kind": self.kind, "count": self.count, "value": self.value}

    def load_state_dict(self, state: dict) -> None:
        if state["kind"] != self.kind:
            raise ValueError(f"restart holds a {state['kind']!r} reduction, this run uses {self.kind!r}")
        self.count = int(state["count"])
        self.value = None if state["value"] is None else np.array(state["value"], dtype=np.float64)
