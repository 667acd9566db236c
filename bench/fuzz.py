"""Fuzz the coupling-YAML entry point with mutated configs and ``--set`` values; print JSON.

Every case is one packaged coupling YAML (``coupling_configs/*.yaml``) changed by one seeded mutation
and handed to ``python -m atmorep_coupler.run`` in-process, as a user would: a change of a value at a
key path (huge, infinite, negative, wrongly typed, deeply nested, file-system-unsafe, escaping the
output folder), a key added, removed or made a list, a change of the text (characters inserted or
deleted, lines duplicated, an alias bomb, deep nesting, a list as a key), or a ``--set KEY=VALUE``.
Each case must end in a project error (an ``AtmoRepError``: one ``error:`` line, exit status 2) or
start the run; a case counts as **failed** when it raises anything else (a traceback), when its
message names neither the file nor a key path or line, or when it takes longer than ``--slow``
seconds. Cases whose config stays valid are stopped at the first step of the run (``--build`` builds
their components first: slower, and it needs the tiny checkpoint only the tests have).

    python bench/fuzz.py [--cases 5000] [--seed 0] [--build]

The output: cases tried, clean (a project error or a valid config) and failed, per mutation kind,
with the first failures (kind, mutation, what was raised).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import random
import re
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "coupling_configs").glob("*.yaml"))

#: Values a mutation puts at a key path (YAML text, so they go through the real parser).
NASTY = [
    "P99999999999D", "PT0S", "-PT6H", "PT0.5S", "P1Y", "1e400", ".inf", "-.inf", ".nan", "99999999999999999999999",
    "-1", "0", "1.5", "true", "null", "~", "''", "'..'", "'.'", "/", "'/etc'", "'../../escape'", "'/tmp/abs.zarr'",
    "[]", "{}", "[a, b]", "{a: 1}", "'x' ", "'" + "n" * 100_000 + "'", "'a/b'", "'a\\x00b'", "\"\\0\"", "'\\t'",
    "2000-02-30", "'2000-02-30'", "10000-01-01", "'0001-01-01'", "2000-13-01", "1999-12-31T23:59:59",
    "'this:Nope'", "'os:system'", "'x.y:Z'", "insolation", "conservative", "[[[[[[[[[[]]]]]]]]]]",
    "!!binary aGVsbG8=", "!!set {a, b}", "!!omap [{a: 1}]", "&a [*a]", "'K'", "'Kelvin degrees'", "'m s-1'",
    "'degC'", "Infinity", "0x10", "0o17", "1_000", "+12", "'\\u00e9t\\u00e9'", "'🙂'",
]
BOMB = ("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
        "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n")
SPECIAL = list(":[]{}&*!|>'\"%@#,-?\n\t ") + ["\\", "\x00", "\u00e9", "0", "a"]
KINDS = ("value", "key", "text", "set")
PLACEHOLDER = "__FUZZED_VALUE__"


@dataclass
class Case:
    kind: str
    base: str
    mutation: str
    text: str
    sets: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    status: str  # clean | failed
    reason: str = ""
    seconds: float = 0.0


# ------------------------------------------------------------------------------------------ mutations
def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a parsed config (dict keys and list indices)."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, prefix + (i,))
    return out


def _parent(root: Any, path: tuple) -> Any:
    for part in path[:-1]:
        root = root[part]
    return root


def _value_text(rng: random.Random) -> str:
    """A nasty value as YAML text (read by the real parser), sometimes nested thousands deep."""
    if rng.random() < 0.15:
        depth = rng.choice([50, 70, 3000])
        return "[" * depth + "]" * depth
    return rng.choice(NASTY)


def mutate(rng: random.Random, base: Path) -> Case:
    """One seeded mutation of ``base`` (a coupling YAML)."""
    text = base.read_text()
    data = yaml.safe_load(text)
    kind = rng.choice(KINDS)
    paths = _paths(data)
    if kind == "value":
        path = rng.choice(paths)
        value = _value_text(rng)
        _parent(data, path)[path[-1]] = PLACEHOLDER
        return Case(kind, base.name, f"{_dotted(path)} = {_short(value)}", _dump(data).replace(PLACEHOLDER, value, 1))
    if kind == "key":
        path = rng.choice(paths)
        parent = _parent(data, path)
        op = rng.choice(["delete", "unknown", "listify", "dictify", "rename"])
        if isinstance(parent, list):
            op = "delete" if op == "rename" else op
        if op == "delete":
            del parent[path[-1]]
        elif op == "unknown" and isinstance(parent, dict):
            parent[rng.choice(["extra", "Name", "kind ", "", "1", "null"])] = rng.choice(["x", 1, None, [1]])
        elif op == "listify":
            parent[path[-1]] = [parent[path[-1]]]
        elif op == "dictify":
            parent[path[-1]] = {"value": parent[path[-1]]}
        elif op == "rename" and isinstance(parent, dict):
            parent[str(path[-1]) + rng.choice(["s", "_", "X"])] = parent.pop(path[-1])
        return Case(kind, base.name, f"{op} {_dotted(path)}", _dump(data))
    if kind == "text":
        return Case(kind, base.name, *_text_mutation(rng, text))
    # --set
    path = rng.choice(paths) if rng.random() < 0.8 else ("run", rng.choice(["nonexistent", "name.x", "0"]))
    value = rng.choice(NASTY + ["[", "]", "{", "a: b: c", "*x", "&a", "!!python/object:os.system ls", "", "=", "? [a]"])
    key = ".".join(map(str, path)) if rng.random() < 0.9 else rng.choice(["", ".", "run..name", "couplings.9.period"])
    return Case(kind, base.name, f"--set {_short(key)}={_short(value)}", text, [f"{key}={value}"])


def _text_mutation(rng: random.Random, text: str) -> tuple[str, str]:
    lines = text.splitlines(keepends=True)
    op = rng.choice(["insert", "delete", "duplicate-line", "swap-lines", "truncate", "bomb", "deep", "list-key",
                     "replace-scalar", "anchor", "binary"])
    if op == "insert":
        at = rng.randrange(len(text) + 1)
        chunk = "".join(rng.choice(SPECIAL) for _ in range(rng.randint(1, 4)))
        return f"insert {chunk!r} at {at}", text[:at] + chunk + text[at:]
    if op == "delete":
        at = rng.randrange(len(text))
        n = rng.randint(1, 40)
        return f"delete {n} chars at {at}", text[:at] + text[at + n:]
    if op == "duplicate-line":
        k = rng.randrange(len(lines))
        return f"duplicate line {k + 1}", "".join(lines[:k + 1] + lines[k:])
    if op == "swap-lines":
        k = rng.randrange(len(lines) - 1)
        lines[k], lines[k + 1] = lines[k + 1], lines[k]
        return f"swap lines {k + 1}, {k + 2}", "".join(lines)
    if op == "truncate":
        at = rng.randrange(len(text))
        return f"truncate at {at}", text[:at]
    if op == "bomb":
        return "alias bomb (9^8 values)", text + "\nbomb:\n" + "".join("  " + line + "\n" for line in BOMB.splitlines())
    if op == "deep":
        depth = rng.choice([100, 1000, 20000])
        return f"nesting {depth} deep", text + "\ndeep: " + "[" * depth + "]" * depth + "\n"
    if op == "list-key":
        return "a list as a key", text + "\n? [a, b]\n: 1\n"
    if op == "anchor":
        return "recursive alias", text + "\nloop: &loop [*loop]\n"
    if op == "binary":
        at = rng.randrange(len(text))
        return f"bytes at {at}", text[:at] + "\udcff\x00\x01" + text[at:]
    scalar = re.compile(r"(?<=: )[^\s{}\[\],#]+")
    matches = list(scalar.finditer(text))
    m = rng.choice(matches)
    new = rng.choice(NASTY)
    return f"replace {m.group()!r} at {m.start()} by {_short(new)}", text[:m.start()] + new + text[m.end():]


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, width=10**9, allow_unicode=True)


def _dotted(path: tuple) -> str:
    return ".".join(map(str, path))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ------------------------------------------------------------------------------------------ running
_LOCATED = re.compile(r"(\w+(\.[\w-]+|\[[^\]]*\])+|\bline \d+|--set|\w+: )")


def run_case(case: Case, folder: Path, *, build: bool = False, slow: float = 10.0) -> Outcome:
    """Hand ``case`` to ``python -m atmorep_coupler.run`` (in-process); classify what happened."""
    from atmorep_coupler.coupling import driver
    from atmorep_coupler.errors import AtmoRepError
    from atmorep_coupler.run import main

    path = folder / case.base
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(case.text, encoding="utf-8", errors="surrogateescape")
    argv = [str(path), "--out", str(folder / "out"), "--no-progress"] + [a for s in case.sets for a in ("--set", s)]
    err = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), _patched(driver.CoupledRun, build):
        try:
            code = main(argv)
        except _Stopped:
            return Outcome("clean", "valid", time.perf_counter() - start)
        except (Exception, RecursionError) as exc:  # noqa: BLE001 -- a traceback is the finding
            tb = traceback.format_exception(exc)
            return Outcome("failed", f"{type(exc).__name__}: {_short(str(exc))} at {tb[-2].strip()[:200]}",
                           time.perf_counter() - start)
    seconds = time.perf_counter() - start
    message = err.getvalue().strip()
    if code == 0:
        return Outcome("clean", "valid", seconds)
    if not message.startswith("error: ") or "\n" in message:
        return Outcome("failed", f"not one error line: {_short(message)}", seconds)
    if str(path) not in message:
        return Outcome("failed", f"no file named: {_short(message)}", seconds)
    if not _LOCATED.search(message.split(str(path), 1)[1]):
        return Outcome("failed", f"no key path or line: {_short(message)}", seconds)
    if seconds > slow:
        return Outcome("failed", f"took {seconds:.1f} s", seconds)
    return Outcome("clean", "error", seconds)


class _Stopped(Exception):
    """Raised instead of running a config that passed every check."""


@contextlib.contextmanager
def _patched(cls, build: bool):
    """Valid configs stop before the run: after the checks that precede building (default), or after
    the components are built and checked (``build``)."""
    original_build, original_run = cls._build, cls.run

    def stop(self, *args, **kwargs):
        raise _Stopped

    cls.run = stop
    if not build:
        cls._build = stop
    try:
        yield
    finally:
        cls._build, cls.run = original_build, original_run


def fuzz(cases: int, seed: int, *, build: bool = False, slow: float = 10.0,
         progress: Callable[[int], None] | None = None) -> dict:
    """Run ``cases`` seeded mutations; return the counts per kind and the failures."""
    rng = random.Random(seed)
    tried, clean, failed = Counter(), Counter(), Counter()
    failures: list[dict] = []
    valid = Counter()
    slowest = 0.0
    with tempfile.TemporaryDirectory(prefix="atmorep_fuzz_") as tmp:
        for k in range(cases):
            case = mutate(rng, rng.choice(CONFIGS))
            folder = Path(tmp) / f"case{k}"
            outcome = run_case(case, folder, build=build, slow=slow)
            tried[case.kind] += 1
            slowest = max(slowest, outcome.seconds)
            if outcome.status == "clean":
                clean[case.kind] += 1
                valid[case.kind] += outcome.reason == "valid"
            else:
                failed[case.kind] += 1
                failures.append({"case": k, "kind": case.kind, "base": case.base, "mutation": case.mutation,
                                 "sets": case.sets, "reason": outcome.reason})
            if progress is not None:
                progress(k)
    return {
        "cases": cases, "seed": seed, "build": build,
        "tried": dict(tried), "clean": dict(clean), "failed": dict(failed), "still_valid": dict(valid),
        "tracebacks": sum(1 for f in failures if not f["reason"].startswith(("not one", "no file", "no key", "took"))),
        "slowest_case_s": round(slowest, 3),
        "failures": failures[:50],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--build", action="store_true", help="build the components of valid configs too")
    parser.add_argument("--slow", type=float, default=10.0, help="seconds after which a case counts as failed")
    args = parser.parse_args()
    from tqdm.auto import tqdm

    start = time.perf_counter()
    with tqdm(total=args.cases, desc="fuzz", unit="case", file=sys.stderr) as bar:
        result = fuzz(args.cases, args.seed, build=args.build, slow=args.slow, progress=lambda _: bar.update())
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                         "note": "shared machine; time per case is indicative only"}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
