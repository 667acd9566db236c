"""The generated configuration references (docs/reference/) match the config dataclasses, every
field has a description, and every key the packaged configs use is documented."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from atmorep_coupler import schema_docs
from atmorep_coupler.coupling.schema import COMPONENT_KINDS

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "docs" / "reference"
RUN_CONFIGS = sorted((REPO / "atmorep_coupler" / "configs").glob("*.yaml"))
COUPLING_CONFIGS = sorted((REPO / "coupling_configs").glob("*.yaml"))


@pytest.fixture(scope="module")
def pages():
    return schema_docs.pages()


def test_committed_reference_is_up_to_date(pages):
    for page in pages:
        file = REFERENCE / page.file
        assert file.is_file(), f"{file} is missing; {schema_docs.UPDATE_HINT}"
        assert file.read_text() == schema_docs.render(page), f"{file} is out of date; {schema_docs.UPDATE_HINT}"


def test_check_flags_a_stale_page(tmp_path, capsys):
    assert schema_docs.main(["--out", str(tmp_path)]) == 0
    assert schema_docs.main(["--check", "--out", str(tmp_path)]) == 0
    stale = tmp_path / "model_config.md"
    stale.write_text(stale.read_text().replace("| `model.heads` |", "| `model.head_count` |"))
    capsys.readouterr()
    assert schema_docs.main(["--check", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert str(stale) in err and schema_docs.UPDATE_HINT in err


def test_every_field_has_a_description():
    assert schema_docs.missing_descriptions() == []


# ----------------------------------------------------------------------------- parsing the pages
def _documented(files: list[str]) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """``({path: type}, {kind: {path: type}})`` from the tables of the committed reference pages."""
    general: dict[str, str] = {}
    kinds: dict[str, dict[str, str]] = {}
    for name in files:
        target, kind = general, None
        for line in (REFERENCE / name).read_text().splitlines():
            heading = re.match(r"^(#+) (.*)", line)
            if heading:
                level, title = len(heading.group(1)), heading.group(2)
                if level == 2:
                    match = re.match(r"kind `([^`]+)`", title)
                    kind = match.group(1) if match else None
                    skip = title in (schema_docs.CLOCK_TITLE, schema_docs.KINDS_TITLE)
                    target = kinds.setdefault(kind, {}) if kind else ({} if skip else general)
                continue
            row = re.match(r"^\| `([^`]+)` \| ([^|]*) \|", line)
            if row:
                target[row.group(1)] = row.group(2).strip()
    return general, kinds


def _pattern(path: str) -> re.Pattern:
    return re.compile(re.escape(path).replace(re.escape("<name>"), r"[^.\[\]]+"))


def _covered(path: str, documented: dict[str, str]) -> bool:
    """Documented exactly, or inside a documented free-form mapping (``losses.<loss name>``)."""
    for doc_path, doc_type in documented.items():
        pattern = _pattern(doc_path)
        if pattern.fullmatch(path):
            return True
        if doc_type.startswith("mapping of string to") and doc_type != "mapping of string to mapping":
            if re.match(pattern.pattern + r"\.", path):
                return True
    return False


def _leaf_paths(value, path: str = ""):
    """Key paths of the leaves of a YAML document; list items are ``[]``; lists of scalars are leaves."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from _leaf_paths(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list) and any(isinstance(v, dict) for v in value):
        for item in value:
            yield from _leaf_paths(item, path + "[]")
    else:
        yield path


@pytest.mark.parametrize("config", RUN_CONFIGS, ids=lambda p: p.name)
def test_training_config_keys_are_documented(config):
    general, _ = _documented(["model_config.md", "training_config.md"])
    missing = [p for p in _leaf_paths(yaml.safe_load(config.read_text())) if not _covered(p, general)]
    assert not missing, f"{config.name}: keys not in docs/reference: {missing}"


@pytest.mark.parametrize("config", COUPLING_CONFIGS, ids=lambda p: p.name)
def test_coupling_config_keys_are_documented(config):
    general, kinds = _documented(["coupling_yaml.md"])
    data = yaml.safe_load(config.read_text())
    missing = []
    for name, component in data["components"].items():
        kind = component["kind"]
        assert kind in kinds, f"{config.name}: kind {kind!r} of component {name!r} is not documented"
        block = component.pop("config", None)
        if isinstance(block, dict):
            prefix = f"components.{name}.config"
            missing += [p for p in _leaf_paths(block, prefix) if not _covered(p, kinds[kind])]
    missing += [p for p in _leaf_paths(data) if not _covered(p, general)]
    assert not missing, f"{config.name}: keys not in docs/reference/coupling_yaml.md: {missing}"


def test_every_registered_kind_is_documented():
    _, kinds = _documented(["coupling_yaml.md"])
    assert set(COMPONENT_KINDS) <= set(kinds)


def test_an_undocumented_key_is_caught():
    """The coverage check itself can fail: a misspelt key and a key of another kind are reported."""
    general, kinds = _documented(["coupling_yaml.md"])
    assert not _covered("couplings[].remap.methd", general)
    assert not _covered("components.model.config.spinup_days", kinds["insolation"])
    assert _covered("components.model.config.spinup_days", kinds["classical"])
    assert _covered("grids.ocean.nlat", general)


@dataclasses.dataclass(frozen=True)
class _Example:
    """An example config."""

    #: Read from a ``#:`` comment,
    #: over two lines.
    first: int
    second: dict[str, float] | None = None
    """Read from the attribute docstring."""
    third: tuple[int, int] = (1, 2)


def test_descriptions_types_and_defaults_of_a_walk():
    (section,) = schema_docs.walk(_Example, "example")
    rows = {row.path: row for row in section.rows}
    assert section.intro == "An example config."
    assert rows["example.first"].description == "Read from a `#:` comment, over two lines."
    assert rows["example.first"].default == "required"
    assert rows["example.second"].description == "Read from the attribute docstring."
    assert rows["example.second"].type == "mapping of string to number or null"
    assert rows["example.third"].type == "[integer, integer]" and rows["example.third"].default == "`[1, 2]`"
    assert rows["example.third"].description == ""
