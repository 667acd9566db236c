"""Strict loading of YAML and mappings into typed dataclasses.

Every config kind in the package (model, training, coupling) is a tree of frozen dataclasses built
by :func:`from_dict`. Unknown keys, missing keys and values of the wrong type are errors whose
message names the file and the key path (``model.fields[2].tokens``), so a typo never turns
silently into a default. Dataclasses may define ``validate(self, path)`` for cross-field checks.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import re
import types

from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from atmorep_coupler.errors import ConfigError

__all__ = ["from_dict", "load_yaml", "to_dict", "ConfigError"]

T = TypeVar("T")

_EXPONENT_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error: plain YAML keeps
    the last one silently, so an edited config could lose a setting without anyone noticing."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping (lines {seen[key]} and {line})",
                    key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml_file(file: Path) -> Any:
    """The parsed content of YAML ``file`` (``{}`` when empty); ``ConfigError`` naming the file when it is
    missing, not valid YAML, or gives a key twice."""
    if not file.is_file():
        raise ConfigError(f"{file}: config file not found")
    try:
        data = yaml.load(file.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 -- a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from None
    except ValueError as exc:  # PyYAML turns 2001-02-29 into a date and fails; quoting keeps it a string
        raise ConfigError(f"{file}: not valid YAML: {exc} (quote dates of non-standard calendars)") from None
    return {} if data is None else data


def load_yaml(cls: type[T], source: str | Path | dict, *, prefix: str = "") -> T:
    """Read a YAML file (or an already parsed mapping) into dataclass ``cls``, strictly."""
    if isinstance(source, dict):
        return from_dict(cls, source, path=prefix, origin="<mapping>")
    file = Path(source)
    return from_dict(cls, read_yaml_file(file), path=prefix, origin=str(file))


def from_dict(cls: type[T], data: Any, *, path: str = "", origin: str = "<mapping>") -> T:
    """Build dataclass ``cls`` from ``data``; errors are ``ConfigError('<origin>: <path>: ...')``."""
    return _convert(cls, data, path, origin)


def to_dict(obj: Any) -> Any:
    """The inverse of :func:`from_dict`: plain dicts, lists and scalars, ready for YAML."""
    if dataclasses.is_dataclass(obj):
        return {_key(f): to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _key(field: dataclasses.Field) -> str:
    """The mapping key of a field: its name, or ``metadata["key"]`` for keys Python reserves (``from``)."""
    return field.metadata.get("key", field.name)


def _fail(origin: str, path: str, message: str) -> ConfigError:
    where = f"{origin}: {path}" if path else origin
    return ConfigError(f"{where}: {message}")


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(tp: Any, value: Any, path: str, origin: str) -> Any:
    if tp is Any:
        return value
    origin_tp = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build_dataclass(tp, value, path, origin)
    if origin_tp in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, path, origin)
            except ConfigError as exc:
                errors.append(str(exc))
        if len(errors) == 1:
            raise ConfigError(errors[0])
        raise _fail(origin, path, f"{value!r} matches none of {_type_name(tp)}")
    if origin_tp is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise _fail(origin, path, f"{value!r} is not one of {list(allowed)}")
        return value
    if origin_tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _fail(origin, path, f"expected a list, got {value!r}")
        args = get_args(tp)
        if origin_tp is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise _fail(origin, path, f"expected {len(args)} items, got {len(value)}")
            return tuple(_convert(a, v, _join(path, i), origin) for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        items = [_convert(item, v, _join(path, i), origin) for i, v in enumerate(value)]
        return tuple(items) if origin_tp is tuple else items
    if origin_tp is dict:
        if not isinstance(value, dict):
            raise _fail(origin, path, f"expected a mapping, got {value!r}")
        key_tp, val_tp = get_args(tp) or (Any, Any)
        return {
            _convert(key_tp, k, path, origin): _convert(val_tp, v, _join(path, str(k)), origin)
            for k, v in value.items()
        }
    return _convert_scalar(tp, value, path, origin)


def _convert_scalar(tp: Any, value: Any, path: str, origin: str) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise _fail(origin, path, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(origin, path, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _EXPONENT_FLOAT.match(value.strip()):
            return float(value)  # YAML 1.1 reads 1e-10 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(origin, path, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _fail(origin, path, f"expected a string, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise _fail(origin, path, f"expected a path, got {value!r}")
        return Path(value)
    if tp is _dt.datetime:
        if isinstance(value, _dt.datetime):
            return value
        if isinstance(value, _dt.date):
            return _dt.datetime(value.year, value.month, value.day)
        try:
            return _dt.datetime.fromisoformat(str(value))
        except ValueError:
            raise _fail(origin, path, f"expected an ISO date-time, got {value!r}") from None
    if tp is _dt.timedelta:
        if isinstance(value, _dt.timedelta):
            return value
        from atmorep_coupler.timeutil import parse_duration

        try:
            return parse_duration(value)
        except ValueError as exc:
            raise _fail(origin, path, str(exc)) from None
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise _fail(origin, path, f"expected {_type_name(tp)}, got {value!r}")


def _build_dataclass(cls: Any, value: Any, path: str, origin: str) -> Any:
    if isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise _fail(origin, path, f"expected a mapping for {cls.__name__}, got {value!r}")
    hints = get_type_hints(cls)
    fields = {_key(f): f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in value if k not in fields]
    if unknown:
        known = ", ".join(sorted(fields))
        raise _fail(origin, _join(path, str(unknown[0])), f"unknown key (allowed here: {known})")
    kwargs = {}
    for key, field in fields.items():
        if key in value:
            kwargs[field.name] = _convert(hints[field.name], value[key], _join(path, key), origin)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise _fail(origin, _join(path, key), "required key is missing")
    try:
        obj = cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise _fail(origin, path, str(exc)) from None
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ConfigError as exc:
            # validate() raises messages relative to this object; prefix origin and path.
            raise _fail(origin, path, str(exc)) from None
    return obj



