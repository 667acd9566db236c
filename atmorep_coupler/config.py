"""Strict loading of YAML and mappings into typed dataclasses.

Every config kind in the package (model, training, coupling) is a tree of frozen dataclasses built
by :func:`from_dict`. Unknown keys, missing keys and values of the wrong type are errors whose
message names the file and the key path (``model.fields[2].tokens``), so a typo never turns
silently into a default. Dataclasses may define ``validate(self, path)`` for cross-field checks.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import os
import re
import reprlib
import types

from collections.abc import Hashable
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from atmorep_coupler.errors import ConfigError, UnitError

__all__ = ["Validated", "from_dict", "load_yaml", "parse_yaml", "read_yaml_file", "check_name", "check_relative_path", "check_grid_side", "clip", "to_dict", "show", "ConfigError"]

T = TypeVar("T")

_EXPONENT_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


#: Limits on what one YAML document may hold, checked while it is read and before anything is built from
#: it: a config is small, and YAML's aliases let a few hundred bytes stand for billions of values.
MAX_YAML_BYTES = 4 * 2**20
MAX_YAML_DEPTH = 64
"""Nesting levels, aliases expanded."""
MAX_YAML_NODES = 200_000
"""Values (scalars, lists and mappings) in the document with every alias expanded."""
MAX_INT = 2**63 - 1
"""Integers must fit 64 bits (numpy, zarr and torch take them)."""
MAX_GRID_SIDE = 100_000
"""Most latitudes or longitudes a configured grid may have (finer than 0.004°): a grid is built with its
cell corners in memory, so a larger count is a typo that would otherwise end in a memory error."""
_SHOW = reprlib.Repr()
_SHOW.maxlevel, _SHOW.maxlist, _SHOW.maxdict, _SHOW.maxstring, _SHOW.maxother = 3, 6, 6, 80, 80


class Validated:
    """Base of every config dataclass: :meth:`validate` runs when the object is built (``__post_init__``),
    whatever builds it -- the YAML loader, Python code, ``dataclasses.replace`` -- so no config reaches the
    code that uses it unchecked. The loader prefixes the messages with the file and key path."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the offending key relative to this object; subclasses extend it."""


def show(value: Any) -> str:
    """A bounded ``repr`` for messages: a 100,000-character string or an aliased list of a billion items
    must not make a message of that size (or take minutes to build)."""
    return _SHOW.repr(value)


def clip(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters (with '...') for a message."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader with the checks a config needs.

    A key given twice in one mapping is an error (plain YAML keeps the last one silently, so an edited
    config could lose a setting without anyone noticing); a key must be a plain value (``? [a, b]`` is
    not); nesting, and the number of values once aliases are expanded, are bounded
    (:data:`MAX_YAML_DEPTH`, :data:`MAX_YAML_NODES`), so an alias bomb or a recursive alias fails at
    once instead of when a message or a copy expands it.
    """

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_YAML_DEPTH} levels", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return self.construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, Hashable) or isinstance(key, (list, dict)):
                raise yaml.constructor.ConstructorError(
                    None, None, f"a key must be a plain value such as a name, got {show(key)}", key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {show(key)} appears twice in one mapping (lines {seen[key]} and {line})",
                    key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a node graph that refers to itself, or that expands to more than :data:`MAX_YAML_NODES`
    values or :data:`MAX_YAML_DEPTH` levels. One pass over the distinct nodes (aliases share them), with
    an explicit stack: the expanded sizes are counted, never built."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        children = _children(node)
        if children_done:
            active.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            if size[key] > MAX_YAML_NODES or depth[key] > MAX_YAML_DEPTH:
                what = (f"more than {MAX_YAML_NODES} values" if size[key] > MAX_YAML_NODES
                        else f"deeper than {MAX_YAML_DEPTH} levels")
                raise yaml.composer.ComposerError(
                    None, None, f"expands to {what} once its aliases (*name) are replaced", node.start_mark)
            continue
        if key in size:
            continue
        if key in active:
            raise yaml.composer.ComposerError(None, None, "an alias (*name) refers to a value that contains it",
                                              node.start_mark)
        active.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in active:
                raise yaml.composer.ComposerError(
                    None, None, "an alias (*name) refers to a value that contains it", child.start_mark)
            if id(child) not in size:
                stack.append((child, False))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def check_name(value: str, what: str) -> str:
    """``value`` if it is safe as one file or folder name on every file system; else ``ConfigError``.

    Letters, digits, '_', '-' and '.', starting with a letter or digit (so never ``.``, ``..`` or a hidden
    file), at most 100 characters (far below the 255 bytes file systems allow)."""
    if not isinstance(value, str) or not _SAFE_NAME.match(value):
        raise ConfigError(
            f"{what}: {show(value)} is not a safe file name: use letters, digits, '_', '-' and '.', start with a "
            "letter or digit, at most 100 characters (it names folders and files)")
    return value


def check_grid_side(value: int | None, what: str) -> None:
    """A configured number of latitudes or longitudes: positive and at most :data:`MAX_GRID_SIDE`."""
    if value is not None and not 0 < value <= MAX_GRID_SIDE:
        raise ConfigError(f"{what}: must be between 1 and {MAX_GRID_SIDE}, got {value}")


def check_relative_path(value: Path, what: str) -> Path:
    """``value`` if, relative, it stays inside the folder it is relative to (no ``..`` steps out, not the
    folder itself); absolute paths pass (the caller decides whether they are allowed)."""
    if value.is_absolute():
        return value
    normal = os.path.normpath(value)
    if normal == "." or normal == ".." or normal.startswith(".." + os.sep):
        raise ConfigError(
            f"{what}: {show(str(value))} leaves the output folder (or is the folder itself); give a path inside it")
    return value


def parse_yaml(text: str, origin: str) -> Any:
    """The parsed content of YAML ``text`` (``None`` when empty); ``ConfigError`` naming ``origin``
    when it is not valid YAML, too big, too deep, aliased out of bounds, or gives a key twice."""
    if len(text) > MAX_YAML_BYTES:
        raise ConfigError(f"{origin}: {len(text)} characters is more than a config may have ({MAX_YAML_BYTES})")
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 -- a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: not valid YAML: {_one_line(exc, text)}") from None
    except ValueError as exc:  # PyYAML turns 2001-02-29 into a date and fails; quoting keeps it a string
        raise ConfigError(f"{origin}: not valid YAML: {exc} (quote dates of non-standard calendars)") from None
    except (TypeError, OverflowError) as exc:
        raise ConfigError(f"{origin}: not valid YAML: {exc}") from None


def _one_line(exc: yaml.YAMLError, text: str) -> str:
    """PyYAML's message on one line, without its source excerpt (the line and column stay)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        parts = [p for p in (exc.context, exc.problem) if p]
        return "; ".join(parts) + where
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        return f"character {exc.character!r} is not allowed in YAML (line {line})"
    return " ".join(str(exc).split())


def read_yaml_file(file: Path) -> Any:
    """The parsed content of YAML ``file`` (``{}`` when empty); ``ConfigError`` naming the file when it is
    missing, unreadable, not valid YAML, out of bounds (:func:`parse_yaml`), or gives a key twice."""
    if not file.is_file():
        raise ConfigError(f"{file}: config file not found")
    try:
        if file.stat().st_size > MAX_YAML_BYTES:
            raise ConfigError(f"{file}: {file.stat().st_size} bytes is more than a config may have ({MAX_YAML_BYTES})")
        raw = file.read_bytes()
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{file}: not a UTF-8 text file ({exc.reason} at byte {exc.start}, line {line})") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read ({exc.strerror or exc})") from None
    data = parse_yaml(text, str(file))
    return {} if data is None else data


def load_yaml(cls: type[T], source: str | Path | dict, *, prefix: str = "", origin: str = "<mapping>") -> T:
    """Read a YAML file (or an already parsed mapping, named ``origin`` in messages) into dataclass
    ``cls``, strictly; ``prefix`` is the key path of ``source`` in a larger file (messages give the full
    path, ``components.sst.config.grid``)."""
    if isinstance(source, dict):
        return from_dict(cls, source, path=prefix, origin=origin)
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
    where = ": ".join(part for part in (origin, path) if part)
    return ConfigError(f"{where}: {message}" if where else message)


_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_][\w-]*$")


def _join(path: str, key: str | int) -> str:
    """``path.key``; list indices as ``[3]``, keys that are not plain names quoted (``grids['']``)."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    if not _PLAIN_KEY.match(key):
        return f"{path}[{clip(repr(key))}]"
    key = clip(key)
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
        raise _fail(origin, path, f"{show(value)} matches none of {_type_name(tp)}")
    if origin_tp is Literal:
        allowed = get_args(tp)
        if not any(value == a and type(value) is type(a) for a in allowed):  # true is not 1
            raise _fail(origin, path, f"{show(value)} is not one of {list(allowed)}")
        return value
    if origin_tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _fail(origin, path, f"expected a list, got {show(value)}")
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
            raise _fail(origin, path, f"expected a mapping, got {show(value)}")
        key_tp, val_tp = get_args(tp) or (Any, Any)
        return {
            _convert(key_tp, k, path, origin): _convert(val_tp, v, _join(path, str(k)), origin)
            for k, v in value.items()
        }
    return _convert_scalar(tp, value, path, origin)


def _convert_scalar(tp: Any, value: Any, path: str, origin: str) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise _fail(origin, path, f"expected true or false, got {show(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(origin, path, f"expected an integer, got {show(value)}")
        if abs(value) > MAX_INT:
            raise _fail(origin, path, f"{show(value)} is out of range (at most {MAX_INT} in magnitude)")
        return value
    if tp is float:
        if isinstance(value, str) and _EXPONENT_FLOAT.match(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-10 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(origin, path, f"expected a number, got {show(value)}")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise _fail(origin, path, f"expected a finite number, got {show(value)}")
        return number
    if tp is str:
        if not isinstance(value, str):
            raise _fail(origin, path, f"expected a string, got {show(value)}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)) or not str(value) or "\0" in str(value):
            raise _fail(origin, path, f"expected a path, got {show(value)}")
        return Path(value)
    if tp is _dt.datetime:
        if isinstance(value, _dt.datetime):
            return value
        if isinstance(value, _dt.date):
            return _dt.datetime(value.year, value.month, value.day)
        try:
            return _dt.datetime.fromisoformat(str(value))
        except (ValueError, OverflowError):
            raise _fail(origin, path, f"expected an ISO date-time, got {show(value)}") from None
    if tp is _dt.timedelta:
        if isinstance(value, _dt.timedelta):
            return value
        from atmorep_coupler.timeutil import parse_duration

        try:
            return parse_duration(value)
        except ConfigError as exc:
            raise _fail(origin, path, str(exc)) from None
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise _fail(origin, path, f"expected {_type_name(tp)}, got {show(value)}")


def _build_dataclass(cls: Any, value: Any, path: str, origin: str) -> Any:
    if isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise _fail(origin, path, f"expected a mapping for {cls.__name__}, got {show(value)}")
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
        obj = cls(**kwargs)  # a Validated config checks itself here
    except (ValueError, TypeError) as exc:  # ConfigError and UnitError are ValueErrors
        # the messages are relative to this object; prefix origin and path.
        raise _fail(origin, path, str(exc)) from None
    return obj



