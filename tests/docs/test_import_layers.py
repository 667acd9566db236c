"""Imports follow the data flow: the layer table of docs/architecture.md against the package's imports.

Every ``import`` and ``from ... import`` of the package and of ``components/`` is parsed (``ast``; those
inside functions and under ``TYPE_CHECKING`` too: a deferred import is still a dependency), resolved to
the module it names, and checked two ways:

- across units (a sub-package, a top-level module, ``components/``): a unit imports only units of lower
  layers in the table under "## Layers" (so no cycle between units, and nothing against the flow);
- inside a unit: the modules import each other without a cycle.

And the diagram of the page draws exactly these imports: a solid arrow ``A --> B`` for every unit B that
imports unit A, leaving out the shared services (:data:`SERVICES`), which everything may import.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "architecture.md"
PACKAGE = "atmorep_coupler"
ROOTS = (PACKAGE, "components")
#: Imported from everywhere; drawn as dotted arrows, not as imports.
SERVICES = {"__init__.py", "errors.py", "timeutil.py", "units.py", "config.py"}


def module_files(repo: Path = REPO) -> dict[str, Path]:
    """``{dotted module name: file}`` of the package and of components/ (``pkg.__init__`` as ``pkg``)."""
    files = {}
    for root in ROOTS:
        for path in sorted((repo / root).rglob("*.py")):
            parts = list(path.relative_to(repo).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            files[".".join(parts)] = path
    return files


def imports(files: Mapping[str, Path]) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}``; ``from pkg import sub`` names the submodule."""
    edges: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in files:  # `import pkg.sub.x` where only pkg.sub is a module
                    target = target.rpartition(".")[0]
                if target and target != name:
                    found.add(target)
        edges[name] = found
    return edges


def unit(module: str) -> str:
    """The layer-table unit of a module: ``data/``, ``run.py``, ``components/``, ``__init__.py``."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return f"{parts[0]}/"
    if len(parts) == 1:
        return "__init__.py"
    return f"{parts[1]}/" if (REPO / PACKAGE / parts[1]).is_dir() else f"{parts[1]}.py"


def layer_table(text: str) -> dict[str, int]:
    """``{unit: layer}`` from the table under "## Layers" (``| 3 | `regrid/` | ... |`` rows)."""
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    layers = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].isdigit():
            for name in re.findall(r"`([^`]+)`", cells[1]):
                layers[name.removeprefix(f"{PACKAGE}/")] = int(cells[0])
    return layers


def cycles(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(edges.get(root, ())))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges.get(child, ()))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def problems(edges: Mapping[str, set[str]], layers: Mapping[str, int]) -> list[str]:
    """Units missing from the table, imports against the flow, and cycles inside a unit."""
    found = []
    units = {unit(m) for m in edges}
    if missing := units - set(layers):
        found.append(f"no layer for {sorted(missing)} in docs/architecture.md ## Layers")
    if extra := set(layers) - units:
        found.append(f"layers for what does not exist: {sorted(extra)}")
    for module, targets in sorted(edges.items()):
        for target in sorted(targets):
            a, b = unit(module), unit(target)
            if a != b and a in layers and b in layers and layers[b] >= layers[a]:
                found.append(f"{module} (layer {layers[a]}) imports {target} (layer {layers[b]}): against the flow")
    inside = {m: {t for t in targets if unit(t) == unit(m)} for m, targets in edges.items()}
    found += [f"import cycle inside {unit(c[0])}: {' <-> '.join(c)}" for c in cycles(inside)]
    return found


def unit_imports(edges: Mapping[str, set[str]]) -> set[tuple[str, str]]:
    """``(imported unit, importing unit)`` pairs between different units, shared services left out."""
    pairs = {(unit(t), unit(m)) for m, targets in edges.items() for t in targets}
    return {(a, b) for a, b in pairs if a != b and a not in SERVICES and b not in SERVICES}


def diagram_arrows(text: str) -> set[tuple[str, str]]:
    """``(A, B)`` for every solid arrow ``A --> B`` of the page's Mermaid block, as units."""
    block = re.findall(r"```mermaid\n(.*?)```", text, flags=re.S)[0]
    labels = {node: label.removeprefix(f"{PACKAGE}/") for node, label in re.findall(r'\b(\w+)\["([^"]+)"\]', block)}
    arrows = set()
    for line in block.splitlines():
        line = re.sub(r'\["[^"]*"\]|\|"[^"]*"\|', " ", line)
        if "-->" in line and "-.->" not in line:
            a, b = (part.strip() for part in line.split("-->"))
            arrows.add((labels[a], labels[b]))
    return arrows


def test_the_diagram_draws_the_imports():
    edges = imports(module_files())
    assert diagram_arrows(PAGE.read_text()) == unit_imports(edges)


def test_imports_follow_the_layers():
    assert problems(imports(module_files()), layer_table(PAGE.read_text())) == []


def test_the_check_catches_a_back_import_and_a_cycle():
    """It can fail: an import against the flow, a cycle inside a sub-package and an unlisted unit are reported."""
    edges = imports(module_files())
    layers = layer_table(PAGE.read_text())
    assert layers["data/"] < layers["model/"] < layers["training/"] and layers["component/"] < layers["coupling/"]
    back = {**edges, f"{PACKAGE}.data.sampler": edges[f"{PACKAGE}.data.sampler"] | {f"{PACKAGE}.model.config"}}
    assert any("data.sampler (layer" in p and "against the flow" in p for p in problems(back, layers))
    loop = {**edges, f"{PACKAGE}.data.normalization": edges[f"{PACKAGE}.data.normalization"] | {f"{PACKAGE}.data.store"}}
    assert any(p.startswith("import cycle inside data/") for p in problems(loop, layers))
    assert any("no layer for ['model/']" in p for p in problems(edges, {k: v for k, v in layers.items() if k != "model/"}))


def test_a_missing_or_extra_arrow_is_caught():
    edges, text = imports(module_files()), PAGE.read_text()
    assert ("training/", "schema_docs.py") in unit_imports(edges)
    assert ("training/", "schema_docs.py") not in diagram_arrows(text.replace("    training --> schema_docs\n", ""))
    extra = text.replace("    training --> schema_docs\n", "    training --> schema_docs\n    training --> component\n")
    assert ("training/", "component/") in diagram_arrows(extra) - unit_imports(edges)
