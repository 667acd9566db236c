"""Public exception types.

Every error the package raises on purpose derives from :class:`AtmoRepError`, so a host model can
catch one type. Messages name the file, key, field or value at fault and say what to change.
"""

from __future__ import annotations


class AtmoRepError(Exception):
    """Base class of all deliberate errors in atmorep_coupler."""


class ConfigError(AtmoRepError, ValueError):
    """A configuration file or mapping is invalid (unknown key, wrong type, bad value)."""


class DataError(AtmoRepError, ValueError):
    """A data store or array does not have the expected layout, variables, levels or values."""


class UnitError(AtmoRepError, ValueError):
    """A unit string cannot be parsed, or two units cannot be converted into each other."""


class RegridError(AtmoRepError, ValueError):
    """Grids, weights or fields given to the regridder do not fit together."""


class CheckpointError(AtmoRepError, ValueError):
    """A checkpoint does not match the configuration it is loaded into."""


class ComponentError(AtmoRepError, RuntimeError):
    """A component was used against its contract (wrong time, bad imported field, NaNs)."""


def package_error(exc: BaseException | None) -> AtmoRepError | None:
    """The package error behind ``exc``: ``exc`` itself, or the first one down its chain of causes (Ray
    wraps an error raised in an actor or a training worker in its own exceptions, with a ``cause``)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, AtmoRepError) and type(exc).__module__ == __name__:
            return exc
        cause = getattr(exc, "cause", None)
        exc = cause if isinstance(cause, BaseException) else exc.__cause__
    return None
