"""docs/architecture.md names exactly the folders and modules that exist: the Mermaid diagram has one
box per folder and top-level module, and the table one row per module of each folder."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "architecture.md"
PACKAGE = "atmorep_coupler"
#: Folders of configuration files: their "modules" are the YAML files.
YAML_FOLDERS = {f"{PACKAGE}/configs/", "coupling_configs/"}
OUTSIDE_FOLDERS = ("components/", "coupling_configs/")


def expected_boxes(repo: Path = REPO) -> set[str]:
    """Every sub-folder and top-level module of the package, plus components/ and coupling_configs/."""
    root = repo / PACKAGE
    folders = {f"{PACKAGE}/{p.name}/" for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))}
    modules = {f"{PACKAGE}/{p.name}" for p in root.glob("*.py") if p.name != "__init__.py"}
    return folders | modules | set(OUTSIDE_FOLDERS)


def expected_modules(folder: str, repo: Path = REPO) -> set[str]:
    path = repo / folder
    if folder in YAML_FOLDERS:
        return {p.name for p in path.glob("*.yaml")}
    return {p.name for p in path.glob("*.py") if p.name != "__init__.py"}


def mermaid_boxes(text: str) -> tuple[list[str], set[str], set[str]]:
    """Labels of the boxes, ids with a label, and every id used in an edge of the Mermaid block."""
    blocks = re.findall(r"```mermaid\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1, "docs/architecture.md needs exactly one ```mermaid block"
    block = blocks[0]
    defined = re.findall(r"\b(\w+)\[\"([^\"]+)\"\]", block)
    body = re.sub(r"\|\"[^\"]*\"\|", " ", block)  # drop edge labels
    body = re.sub(r"\[\"[^\"]*\"\]", " ", body)  # and box labels
    used = set()
    for line in body.splitlines()[1:]:
        if "--" in line:
            used |= set(re.findall(r"\b(\w+)\b", line.replace("-.->", " ").replace("-->", " ")))
    return [label for _, label in defined], {node for node, _ in defined}, used


def module_table(text: str) -> dict[str, list[tuple[str, str]]]:
    """``{folder: [(module, job), ...]}`` from the table under "## Folders and modules"."""
    section = text.split("## Folders and modules", 1)[1].split("\n## ", 1)[0]
    table: dict[str, list[tuple[str, str]]] = {}
    folder = None
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if len(cells) != 3 or cells[0] == "folder" or set(cells[0]) <= {"-"} and cells[1].startswith("-"):
            continue
        folder = cells[0].strip("`") or folder
        table.setdefault(folder, []).append((cells[1].strip("`"), cells[2]))
    return table


def problems(text: str, repo: Path = REPO) -> list[str]:
    """Everything in which the page and the repository disagree."""
    found = []
    labels, defined, used = mermaid_boxes(text)
    boxes = expected_boxes(repo)
    duplicates = {label for label in labels if labels.count(label) > 1}
    if duplicates:
        found.append(f"diagram: boxes named twice: {sorted(duplicates)}")
    if missing := boxes - set(labels):
        found.append(f"diagram: no box for {sorted(missing)}")
    if extra := set(labels) - boxes:
        found.append(f"diagram: boxes for what does not exist: {sorted(extra)}")
    if unlabelled := used - defined:
        found.append(f"diagram: nodes without a folder label: {sorted(unlabelled)}")
    table = module_table(text)
    folders = {b for b in boxes if b.endswith("/")} | {f"{PACKAGE}/"}
    if set(table) != folders:
        found.append(f"table: folders {sorted(set(table) ^ folders)} differ from the repository")
    for folder in set(table) & folders:
        listed = [m for m, _ in table[folder]]
        have = ({b.removeprefix(f"{PACKAGE}/") for b in boxes if b.endswith(".py")} if folder == f"{PACKAGE}/"
                else expected_modules(folder, repo))
        if set(listed) != have or len(listed) != len(set(listed)):
            found.append(f"table: {folder} lists {sorted(listed)}, the folder has {sorted(have)}")
        found += [f"table: {folder}{m} has no job" for m, job in table[folder] if not job]
    return found


def test_page_matches_the_repository():
    assert problems(PAGE.read_text()) == []


def test_a_missing_module_or_folder_is_caught(tmp_path):
    """The check can fail: a new module, a removed folder and a stray box are all reported."""
    text = PAGE.read_text()
    assert any("no box for ['atmorep_coupler/regrid/']" in p
               for p in problems(text.replace('regrid["atmorep_coupler/regrid/"]', 'regrid["x"]')))
    assert any("stochastic.py" in p for p in problems(text.replace("| | `tail.py` |", "| | `stochastic.py` |")))
    ghost = text.replace("    training --> schema_docs", "    training --> ghost")
    assert any("without a folder label" in p for p in problems(ghost))
