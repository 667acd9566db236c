"""The Basic Model Interface, implemented once over the native component layer.

:class:`BmiAdapter` holds the BMI's information, variable, time, value and grid functions (the
``bmipy.Bmi`` methods besides the control functions ``initialize``/``update``/``update_until``/
``finalize``, which the native layer owns) and their argument checks. It reads a component only through
its native layer (:class:`~atmorep_coupler.component.base.Component`): the exchange items and grids
(``_item_named``, ``_input_item_named``, ``_item_map``, ``_grid_map``), the clock (``_require_clock``),
and values through ``_read``, ``_write`` and ``_host_view`` with imports checked by ``_check_import``.
So every component -- the multiformer, the classical model, the data components, one written by a user
-- has the same BMI without a line of its own; ``bmi-tester`` checks it (tests/component).

Conventions: BMI time is float seconds since the start (``get_time_units() == "s"``); arrays are
flattened in C order of ``(level, lat, lon)``, longitude fastest; cell centres are the BMI nodes
(see :mod:`atmorep_coupler.component.items`). BMI functions that do not apply to a grid type raise
``NotImplementedError``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from bmipy import Bmi

from atmorep_coupler.component.items import ComponentGrid, ExchangeItem
from atmorep_coupler.errors import ComponentError

__all__ = ["BmiAdapter"]


class BmiAdapter(Bmi):
    """The BMI functions over the native layer of a component (module docstring)."""

    # ------------------------------------------------------------------ BMI: model information
    def get_component_name(self) -> str:
        return self.name

    def get_input_item_count(self) -> int:
        return len(self.get_input_var_names())

    def get_output_item_count(self) -> int:
        return len(self.get_output_var_names())

    def get_input_var_names(self) -> tuple[str, ...]:
        self._require_config()
        return tuple(name for name, item in self._item_map.items() if item.is_input)

    def get_output_var_names(self) -> tuple[str, ...]:
        self._require_config()
        return tuple(name for name, item in self._item_map.items() if item.is_output)

    # ------------------------------------------------------------------ BMI: variable information
    def get_var_grid(self, name: str) -> int:
        return self._item_named(name).grid

    def get_var_type(self, name: str) -> str:
        return self._item_named(name).dtype

    def get_var_units(self, name: str) -> str:
        return self._item_named(name).units

    def get_var_itemsize(self, name: str) -> int:
        return np.dtype(self._item_named(name).dtype).itemsize

    def get_var_nbytes(self, name: str) -> int:
        item = self._item_named(name)
        return np.dtype(item.dtype).itemsize * self._grid_map[item.grid].size

    def get_var_location(self, name: str) -> str:
        """Always ``"node"``: cell centres are declared as the grid's nodes (module docstring)."""
        self._item_named(name)
        return "node"

    # ------------------------------------------------------------------ BMI: time
    def get_current_time(self) -> float:
        return float(self._require_clock().elapsed)

    def get_start_time(self) -> float:
        self._require_clock()
        return 0.0

    def get_end_time(self) -> float:
        return float(self._require_clock().end_seconds)

    def get_time_units(self) -> str:
        return "s"

    def get_time_step(self) -> float:
        return float(self._require_clock().step_seconds)

    # ------------------------------------------------------------------ BMI: getters and setters
    def get_value(self, name: str, dest: np.ndarray) -> np.ndarray:
        """Copy the values into the caller's flat buffer ``dest`` and return it."""
        item = self._item_named(name)
        self._check_buffer(item, dest, self._grid_map[item.grid].size, "dest")
        np.copyto(dest, np.asarray(self._read(item.name)).reshape(-1), casting="same_kind")
        return dest

    def get_value_ptr(self, name: str) -> np.ndarray:
        """A flat view of the live state: later updates show in it, writes into it change the model.

        Raises ``NotImplementedError`` for state outside host memory (a GPU tensor): use get_value, which copies.
        """
        item = self._item_named(name)
        view = self._host_view(item.name)
        flat = view.reshape(-1)
        if not np.shares_memory(flat, view):
            raise NotImplementedError(f"{self._var_label(item)}: the state array is not contiguous; no live flat view")
        return flat

    def get_value_at_indices(self, name: str, dest: np.ndarray, inds: np.ndarray) -> np.ndarray:
        """Copy the values at flat indices ``inds`` into ``dest`` and return it."""
        item = self._item_named(name)
        inds = self._check_indices(item, inds)
        self._check_buffer(item, dest, inds.size, "dest")
        np.copyto(dest, np.asarray(self._read(item.name)).reshape(-1)[inds], casting="same_kind")
        return dest

    def set_value(self, name: str, src: np.ndarray) -> None:
        """Import values (in the item's units) from a flat array; checked for NaN and range."""
        item = self._input_item_named(name)
        grid = self._grid_map[item.grid]
        src = np.asarray(src)
        if src.size != grid.size:
            raise ComponentError(f"{self._var_label(item)}: set_value got {src.size} values, expected {grid.size}")
        values = src.reshape(grid.shape)
        self._check_import(item, values)
        self._write(item.name, values)
        self._imported.add(item.name)

    def set_value_at_indices(self, name: str, inds: np.ndarray, src: np.ndarray) -> None:
        """Import values at flat indices ``inds``; checked like :meth:`set_value`."""
        item = self._input_item_named(name)
        inds = self._check_indices(item, inds)
        src = np.asarray(src).reshape(-1)
        if src.size != inds.size:
            raise ComponentError(
                f"{self._var_label(item)}: set_value_at_indices got {src.size} values for {inds.size} indices"
            )
        self._check_import(item, src)
        self._write(item.name, src, inds)
        self._imported.add(item.name)

    # ------------------------------------------------------------------ BMI: grids
    def get_grid_rank(self, grid: int) -> int:
        return self._grid_by_id(grid).rank

    def get_grid_size(self, grid: int) -> int:
        return self._grid_by_id(grid).size

    def get_grid_type(self, grid: int) -> str:
        return self._grid_by_id(grid).bmi_type

    def get_grid_shape(self, grid: int, shape: np.ndarray) -> np.ndarray:
        g = self._grid_by_id(grid)
        self._check_grid_buffer(grid, shape, g.rank, "shape")
        shape[:] = g.shape
        return shape

    def get_grid_spacing(self, grid: int, spacing: np.ndarray) -> np.ndarray:
        raise NotImplementedError(self._not_uniform(grid, "get_grid_spacing"))

    def get_grid_origin(self, grid: int, origin: np.ndarray) -> np.ndarray:
        raise NotImplementedError(self._not_uniform(grid, "get_grid_origin"))

    def get_grid_x(self, grid: int, x: np.ndarray) -> np.ndarray:
        return self._fill_coordinates(grid, "x", x)

    def get_grid_y(self, grid: int, y: np.ndarray) -> np.ndarray:
        return self._fill_coordinates(grid, "y", y)

    def get_grid_z(self, grid: int, z: np.ndarray) -> np.ndarray:
        return self._fill_coordinates(grid, "z", z)

    def get_grid_node_count(self, grid: int) -> int:
        return self._grid_by_id(grid).size

    def get_grid_edge_count(self, grid: int) -> int:
        raise NotImplementedError(self._not_unstructured(grid, "get_grid_edge_count"))

    def get_grid_face_count(self, grid: int) -> int:
        raise NotImplementedError(self._not_unstructured(grid, "get_grid_face_count"))

    def get_grid_edge_nodes(self, grid: int, edge_nodes: np.ndarray) -> np.ndarray:
        raise NotImplementedError(self._not_unstructured(grid, "get_grid_edge_nodes"))

    def get_grid_face_edges(self, grid: int, face_edges: np.ndarray) -> np.ndarray:
        raise NotImplementedError(self._not_unstructured(grid, "get_grid_face_edges"))

    def get_grid_face_nodes(self, grid: int, face_nodes: np.ndarray) -> np.ndarray:
        raise NotImplementedError(self._not_unstructured(grid, "get_grid_face_nodes"))

    def get_grid_nodes_per_face(self, grid: int, nodes_per_face: np.ndarray) -> np.ndarray:
        raise NotImplementedError(self._not_unstructured(grid, "get_grid_nodes_per_face"))

    # ------------------------------------------------------------------ argument checks
    def _grid_by_id(self, grid: int) -> ComponentGrid:
        self._require_config()
        try:
            return self._grid_map[int(grid)]
        except (KeyError, TypeError, ValueError):
            raise ComponentError(
                f"component {self.name!r}: unknown grid id {grid!r}; known: {sorted(self._grid_map)}"
            ) from None

    def _check_buffer(self, item: ExchangeItem, buffer: Any, size: int, what: str) -> None:
        if not isinstance(buffer, np.ndarray) or buffer.ndim != 1 or not buffer.flags.writeable:
            raise ComponentError(
                f"{self._var_label(item)}: {what} must be a writeable 1-D numpy array, got {type(buffer).__name__}"
            )
        if buffer.size != size:
            raise ComponentError(f"{self._var_label(item)}: {what} has {buffer.size} elements, expected {size}")

    def _check_indices(self, item: ExchangeItem, inds: Any) -> np.ndarray:
        inds = np.asarray(inds)
        size = self._grid_map[item.grid].size
        if inds.ndim != 1 or (inds.size and inds.dtype.kind not in "iu"):
            raise ComponentError(
                f"{self._var_label(item)}: indices must be a 1-D integer array, got {inds.dtype}{inds.shape}"
            )
        if inds.size and (inds.min() < 0 or inds.max() >= size):
            raise ComponentError(
                f"{self._var_label(item)}: indices span [{inds.min()}, {inds.max()}], outside [0, {size - 1}]"
            )
        return inds

    def _check_grid_buffer(self, grid: int, buffer: Any, size: int, what: str) -> None:
        if not isinstance(buffer, np.ndarray) or buffer.ndim != 1 or buffer.size != size:
            raise ComponentError(
                f"component {self.name!r}: grid {grid}: {what} must be a 1-D numpy array of {size} elements, "
                f"got {getattr(buffer, 'shape', type(buffer).__name__)}"
            )

    def _fill_coordinates(self, grid: int, axis: str, buffer: np.ndarray) -> np.ndarray:
        values = self._grid_by_id(grid).node_coordinates(axis)
        self._check_grid_buffer(grid, buffer, values.size, axis)
        buffer[:] = values
        return buffer

    def _not_uniform(self, grid: int, function: str) -> str:
        return (
            f"component {self.name!r}: {function} applies to uniform_rectilinear grids; grid {grid} is "
            f"{self._grid_by_id(grid).bmi_type} (use get_grid_x/get_grid_y)"
        )

    def _not_unstructured(self, grid: int, function: str) -> str:
        return (
            f"component {self.name!r}: {function} applies to unstructured grids; grid {grid} is "
            f"{self._grid_by_id(grid).bmi_type} (use get_grid_shape and get_grid_x/get_grid_y)"
        )
