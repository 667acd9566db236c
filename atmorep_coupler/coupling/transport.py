"""How the driver reaches its components: in this process, or each in its own Ray actor.

The driver holds components by the :class:`~atmorep_coupler.component.native.NativeComponent` protocol
(``name``, ``grids``, ``exchange_items``, ``step``, ``get_field``, ``set_field``, ``save_state``,
``load_state``, ``finalize``). ``inprocess`` hands it the component itself; ``ray`` hands it a
:class:`RayComponent`, which satisfies the same protocol, each a blocking
call to an actor that holds the component, so components can sit on other nodes or GPUs. Ray is
imported only when the ray transport is used.

:func:`call_batches` runs one batch of calls per component (a stage of the run sequence: imports, a
step, the fields its puts and outputs take): each batch is one remote call, and the batches of Ray
components are all submitted before any is awaited, so the components step at the same time.
In-process batches run one after another.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atmorep_coupler.component.native import NativeComponent
from atmorep_coupler.errors import package_error

__all__ = ["Call", "call_batches", "create_component", "RayComponent", "RayCluster"]


def _instantiate(class_path: str, mapping: dict[str, Any], config_dir: str, source: tuple[str, str]):
    module_name, _, class_name = class_path.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls.from_config(mapping, config_dir=config_dir, origin=source[0], prefix=source[1])


def create_component(transport: str, class_path: str, mapping: dict[str, Any], config_dir: Path, *, device: str = "cpu",
                     origin: tuple[str, str] = ("<mapping>", "")) -> NativeComponent:
    """A component handle for ``transport`` (``inprocess`` or ``ray``); ``origin``: (file, key path) that
    errors in ``mapping`` name (:func:`~atmorep_coupler.coupling.build.component_config`)."""
    if transport == "inprocess":
        return _instantiate(class_path, mapping, str(config_dir), origin)
    return RayComponent(class_path, mapping, str(config_dir), device=device, origin=origin)


@dataclass(frozen=True)
class Call:
    """One call of a method of the :class:`NativeComponent` protocol, made as part of a batch."""

    method: str
    args: tuple = ()


def _run_calls(component, calls: Sequence[Call]) -> tuple[list, float]:
    """The calls in order on ``component``; their results and the seconds they took."""
    start = time.perf_counter()
    results = [getattr(component, call.method)(*call.args) for call in calls]
    return results, time.perf_counter() - start


def call_batches(batches: Sequence[tuple[NativeComponent, Sequence[Call]]]) -> list[tuple[list, float]]:
    """Each batch's calls in order on its component (distinct components); per batch, the results and the
    seconds the component spent. Batches of :class:`RayComponent` s are all submitted first, then awaited."""
    pending = [component.submit(calls) if isinstance(component, RayComponent) else None
               for component, calls in batches]
    return [component.gather(ref) if ref is not None else _run_calls(component, calls)
            for (component, calls), ref in zip(batches, pending, strict=True)]


class _ComponentActor:
    """Runs inside a Ray worker: owns one component and forwards calls to it."""

    def __init__(self, class_path: str, mapping: dict[str, Any], config_dir: str, source: tuple[str, str]) -> None:
        self.component = _instantiate(class_path, mapping, config_dir, source)

    def call(self, method: str, *args, **kwargs):
        return getattr(self.component, method)(*args, **kwargs)

    def attribute(self, name: str):
        return getattr(self.component, name)

    def batch(self, calls: Sequence[Call]) -> tuple[list, float]:
        return _run_calls(self.component, calls)


class RayComponent:
    """The :class:`NativeComponent` protocol over a component living in a Ray actor (blocking calls)."""

    def __init__(self, class_path: str, mapping: dict[str, Any], config_dir: str, *, device: str = "cpu",
                 origin: tuple[str, str] = ("<mapping>", "")) -> None:
        import ray

        options: dict[str, Any] = {"num_cpus": 0}
        if device.startswith("cuda"):
            options["num_gpus"] = 1
        self._actor = ray.remote(_ComponentActor).options(**options).remote(class_path, mapping, config_dir, origin)
        self._ray = ray
        self._name = self._wait(self._actor.attribute.remote("name"))  # an error in the set-up surfaces here

    def _wait(self, ref):
        """``ray.get``, with the component's own :class:`AtmoRepError` raised as it is (not Ray's wrapper)."""
        from ray.exceptions import RayActorError, RayTaskError

        try:
            return self._ray.get(ref)
        except (RayTaskError, RayActorError) as exc:
            cause = package_error(exc)
            if cause is None:
                raise
            raise cause from None

    def _call(self, method: str, *args, **kwargs):
        return self._wait(self._actor.call.remote(method, *args, **kwargs))

    def _get(self, name: str):
        return self._wait(self._actor.attribute.remote(name))

    def submit(self, calls: Sequence[Call]):
        """Start ``calls`` in the actor without waiting (:func:`call_batches`); a reference for :meth:`gather`."""
        return self._actor.batch.remote(list(calls))

    def gather(self, ref) -> tuple[list, float]:
        return self._wait(ref)

    @property
    def name(self) -> str:
        return self._name

    @property
    def grids(self):
        return self._get("grids")

    def exchange_items(self):
        return self._call("exchange_items")

    def step(self, n: int = 1) -> None:
        self._call("step", n)

    def get_field(self, name: str, units: str | None = None):
        return self._call("get_field", name, units)

    def set_field(self, name: str, data, units: str | None = None) -> None:
        self._call("set_field", name, data, units)

    def save_state(self, path):
        return self._call("save_state", path)

    def load_state(self, path) -> None:
        self._call("load_state", path)

    def finalize(self) -> None:
        self._call("finalize")
        self._ray.kill(self._actor)


class RayCluster:
    """Starts a local Ray instance for the run unless one is already running (then it is left alone).

    Listeners stay on loopback (the package sets ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``); the
    dashboard is off. Only an instance started here is shut down by :meth:`close`.
    """

    def __init__(self) -> None:
        import ray

        self._started = not ray.is_initialized()
        if self._started:
            ray.init(address="local", include_dashboard=False)

    def close(self) -> None:
        import ray

        if self._started and ray.is_initialized():
            ray.shutdown()
