"""Every command in README.md and docs/**/*.md is exercised (issue 8: "doc examples run in CI").

The convention (``tests/docs/README.md``), per fenced block, one test id per block
(``docs/data.md:51``), collected anew from the files at every run:

- ```bash: run with ``bash -eEuo pipefail`` in a fresh folder where ``coupling_configs/``,
  ``examples/`` and ``scripts/`` are symlinked, ``python`` = the venv's, and ``$STORE`` (tiny default
  store, a private copy), ``$CKPT`` (tiny trainer checkpoint of the default config's field set) and
  ``$REPO`` set (``tests/docs/conftest.py``).
- ``<!-- doc-test: parse-only (reason) -->`` above a bash block: not run, but every
  ``python -m atmorep_coupler.X ...`` in it (also after ``ray job submit ... --``, inside ``srun`` or
  ``$( )``) is parsed by ``X.build_parser()``, and ``bash scripts/...`` files must exist and be
  executable.
- ``<!-- doc-test: slow (reason) -->`` above a bash block: run, marked ``slow``.
- ```python: all blocks of a page run in order in one namespace (one process per page, cwd and
  environment as for bash); ``<!-- doc-test: skip (reason) -->`` compiles a block without running it.
- A directive without a reason, an unknown one, or one not directly above a fence fails the page.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .doc_blocks import (
    REPO,
    Block,
    cli_calls,
    doc_files,
    logical_lines,
    parse_call,
    parse_document,
    script_references,
)

BLOCK_TIMEOUT_S = 300  # the convention asks for seconds, at most ~1 min per block
PAGE_TIMEOUT_S = 600
STDERR_TAIL_LINES = 40
# pages whose python blocks another test already runs: compiled here, not run twice
PYTHON_RUN_ELSEWHERE = {"docs/components.md": "tests/component/test_docs.py"}
# what $VAR means when a parse-only command is parsed (nothing is built for parsing)
PARSE_ENV = {"STORE": "/doc-test/store.zarr", "CKPT": "/doc-test/trainer.pt", "REPO": str(REPO),
             "PWD": "/doc-test/cwd", "HOME": "/doc-test/home"}

DOCUMENTS = [parse_document(path) for path in doc_files()]
BLOCKS = [block for doc in DOCUMENTS for block in doc.blocks]


def _params(lang: str, modes: tuple[str, ...]) -> list:
    return [pytest.param(b, id=b.id, marks=[pytest.mark.slow] if b.mode == "slow" else [])
            for b in BLOCKS if b.lang == lang and b.mode in modes]


# ---------------------------------------------------------------------------------------------
# the pages


@pytest.mark.parametrize("doc", DOCUMENTS, ids=[d.path.relative_to(REPO).as_posix() for d in DOCUMENTS])
def test_directives(doc):
    assert not doc.problems, "\n".join(doc.problems)


def _refuse_invalid(block: Block) -> None:
    if block.mode == "invalid":
        pytest.fail(f"{block.id}: not run: {block.directive.problem}", pytrace=False)


@pytest.mark.parametrize("block", _params("bash", ("run", "slow", "invalid")))
def test_bash(block: Block, doc_env):
    _refuse_invalid(block)
    env = doc_env.environ(block.code)
    result = run_bash(block, doc_env.workspace(), env)
    if result is not None:
        pytest.fail(result, pytrace=False)


@pytest.mark.parametrize("block", _params("bash", ("parse-only",)))
def test_parse_only(block: Block):
    errors = []
    for call in cli_calls(block.code):
        error = parse_call(call, PARSE_ENV)
        if error:
            errors.append(f"{block.rel}:{block.line + call.line.first}: {call}\n    {error}")
    for line, path in script_references(block.code):
        target = REPO / path
        if not (target.is_file() and os.access(target, os.X_OK)):
            errors.append(f"{block.rel}:{block.line + line.first}: {path} is not an executable file of the repository")
    assert not errors, f"{block.id} (parse-only: {block.directive.reason}):\n" + "\n".join(errors)


_PAGE_RESULTS: dict[Path, dict] = {}


@pytest.mark.parametrize("block", _params("python", ("run", "skip", "invalid")))
def test_python(block: Block, page_env_factory):
    _refuse_invalid(block)
    compile(block.code, block.rel, "exec")  # every block, skipped ones too, is valid Python
    if block.mode == "skip":
        return
    covering = PYTHON_RUN_ELSEWHERE.get(block.rel)
    if covering:
        text = (REPO / covering).read_text() if (REPO / covering).exists() else ""
        assert Path(block.rel).name in text, f"{covering} should run the python blocks of {block.rel}"
        return
    result = _PAGE_RESULTS.get(block.doc)
    if result is None:
        result = _PAGE_RESULTS[block.doc] = run_python_page(block.doc, page_env_factory)
    if block.line in result["done"]:
        return
    if result["failed"] == block.line:
        pytest.fail(f"{block.id}: python block failed\n{result['error']}", pytrace=False)
    failed = result["failed"]
    pytest.fail(f"{block.id}: not reached: " + (f"the page's block at line {failed} failed first" if failed
                                                 else result["error"] or "the page's run stopped"), pytrace=False)


def test_every_cli_module_has_build_parser():
    """Convention rule 2: every ``python -m`` entry point of the package exposes ``build_parser()``,
    so the parse-only checks can reach it."""
    missing = []
    for path in sorted((REPO / "atmorep_coupler").rglob("*.py")):
        source = path.read_text()
        if path.name == "__main__.py" or "__name__ == \"__main__\"" in source:
            functions = {n.name for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)}
            if "build_parser" not in functions:
                missing.append(path.relative_to(REPO).as_posix())
    assert not missing, "CLI modules without build_parser(): " + ", ".join(missing)


# ---------------------------------------------------------------------------------------------
# runners


def run_bash(block: Block, cwd: Path, env: dict[str, str], timeout: float = BLOCK_TIMEOUT_S) -> str | None:
    """Run a bash block; None on success, else a message with the doc line, the command and stderr."""
    trap = "trap 'printf \"\\ndoc-test-failed-at %s\\n\" \"$LINENO\" >&2' ERR"
    script = cwd.parent / "block.sh"
    script.write_text(f"set -eEuo pipefail; {trap}\n{block.code}")
    proc = subprocess.Popen(["bash", "--noprofile", "--norc", str(script)], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the block's own process group (start_new_session)
        stdout, stderr = proc.communicate()
        return _failure(block, f"timed out after {timeout:.0f} s (doc blocks should take seconds)", stderr, None)
    if proc.returncode == 0:
        return None
    lineno = None
    for text in stderr.splitlines():
        if text.startswith("doc-test-failed-at "):
            lineno = int(text.split()[1]) - 1  # line 1 of the script is the prelude
            break
    stderr = "\n".join(t for t in stderr.splitlines() if not t.startswith("doc-test-failed-at "))
    return _failure(block, f"exit status {proc.returncode}", stderr, lineno)


def _failure(block: Block, what: str, stderr: str, lineno: int | None) -> str:
    where = ""
    for line in logical_lines(block.code):
        if lineno is not None and line.first <= lineno <= line.last:
            where = f"\n  command at {block.rel}:{block.line + line.first}: {' '.join(line.text.split())}"
    tail = "\n".join(stderr.rstrip().splitlines()[-STDERR_TAIL_LINES:])
    return f"{block.id}: bash block failed: {what}{where}\n--- stderr (last {STDERR_TAIL_LINES} lines) ---\n{tail}"


def run_python_page(doc: Path, page_env_factory) -> dict:
    """Run every non-skipped python block of ``doc`` in one process; the runner's result record."""
    blocks = [b for b in parse_document(doc).blocks if b.lang == "python" and b.mode == "run"]
    env_maker = page_env_factory(doc.stem)
    env = env_maker.environ("".join(b.code for b in blocks))
    cwd = env_maker.workspace()
    spec, result_file = cwd.parent / "blocks.json", cwd.parent / "result.json"
    spec.write_text(json.dumps({"doc": str(doc), "blocks": [{"line": b.line, "code": b.code} for b in blocks]}))
    runner = Path(__file__).with_name("run_python_blocks.py")
    try:
        proc = subprocess.run([sys.executable, str(runner), str(spec), str(result_file)], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=PAGE_TIMEOUT_S)
        stderr = proc.stderr
    except subprocess.TimeoutExpired as exc:
        stderr = f"timed out after {PAGE_TIMEOUT_S} s\n{exc.stderr or ''}"
    result = json.loads(result_file.read_text()) if result_file.exists() else {"done": [], "failed": None}
    if result.get("error") is None:
        result["error"] = "\n".join(str(stderr).splitlines()[-STDERR_TAIL_LINES:])
    return result


# ---------------------------------------------------------------------------------------------
# the harness itself: it must catch what it promises to catch


def _page(tmp_path, text: str):
    path = tmp_path / "page.md"
    path.write_text(text)
    return parse_document(path)


def test_harness_rejects_bad_directives(tmp_path):
    doc = _page(tmp_path, "\n".join([
        "<!-- doc-test: parse-only -->", "```bash", "true", "```",                       # no reason
        "<!-- doc-test: maybe (why not) -->", "```bash", "true", "```",                  # unknown
        "<!-- doc-test: parse-only (needs a GPU) -->", "", "```bash", "true", "```",     # not directly above
        "<!-- doc-test: skip (slow) -->", "```bash", "true", "```",                      # skip is for python
        "<!--doc-test parse-only-->", "```sh", "ls", "```",                              # malformed, sh
        "<!-- doc-test: parse-only (a Ray cluster) -->", "```bash", "true", "```",       # fine
    ]))
    problems = "\n".join(doc.problems)
    assert "page.md:1: doc-test: parse-only needs a reason" in problems
    assert "page.md:5: unknown doc-test directive 'maybe (why not)'" in problems
    assert "page.md:9: doc-test directive not directly above the opening code fence" in problems
    assert "page.md:14: doc-test: skip applies to python blocks, not to a ```bash block" in problems
    assert "page.md:18: malformed doc-test comment" in problems and "page.md:19: ```sh block" in problems
    assert len(doc.problems) == 6
    # a block under a broken directive is not run, whatever its writer meant
    assert [b.mode for b in doc.blocks] == ["invalid"] * 5 + ["parse-only"]
    assert doc.blocks[-1].directive.reason == "a Ray cluster"
    dangling = _page(tmp_path, "<!-- doc-test: parse-only (GPU) -->\ntext\n```bash\ntrue\n```\n")
    assert dangling.problems == [f"{dangling.path}:1: doc-test directive not directly above an opening code fence"]
    assert dangling.blocks[0].mode == "run"


def test_harness_finds_cli_calls_in_shell_text():
    code = "\n".join([
        "# python -m atmorep_coupler.train --in-a-comment",
        "STORE=$(python -m atmorep_coupler.data make-default | tail -1)",
        "ray job submit --address http://HEAD:8265 --working-dir . -- \\",
        "    python -m atmorep_coupler.train --config default \\",
        "    --num-workers 16   # trailing comment",
        "srun --nodes=1 .venv/bin/python -m atmorep_coupler.run coupling_configs/x.yaml --set 'a=b c' 2>&1 | tee log",
        "RAY_ADDRESS=\"$head_ip:6379\" python3 -m atmorep_coupler.train --store $STORE --steps 3; echo done",
        "atmorep-train --config tiny && python -m pytest -q",
        "echo a#b",
    ])
    calls = [(c.module, c.args, c.line.first) for c in cli_calls(code)]
    assert calls == [
        ("atmorep_coupler.data", ["make-default"], 2),
        ("atmorep_coupler.train", ["--config", "default", "--num-workers", "16"], 3),
        ("atmorep_coupler.run", ["coupling_configs/x.yaml", "--set", "a=b c"], 6),
        ("atmorep_coupler.train", ["--store", "$STORE", "--steps", "3"], 7),
        ("atmorep_coupler.train", ["--config", "tiny"], 8),
    ]
    assert logical_lines(code)[-1].text == "echo a#b"


def test_harness_parses_with_the_real_parser():
    ok, bad, unknown = (next(iter(cli_calls(line))) for line in (
        "python -m atmorep_coupler.train --config tiny --store $STORE --steps 3",
        "python -m atmorep_coupler.train --config tiny --stepz 3",
        "python -m atmorep_coupler.data make-default --resolution T99"))
    assert parse_call(ok, PARSE_ENV) is None
    assert "unrecognized arguments: --stepz 3" in parse_call(bad, PARSE_ENV)
    assert "argument --resolution: invalid choice: 'T99'" in parse_call(unknown, PARSE_ENV)
    missing = next(iter(cli_calls("python -m atmorep_coupler.nonexistent --x")))
    assert "no such module" in parse_call(missing, PARSE_ENV)
    assert isinstance(__import__("atmorep_coupler.run", fromlist=["build_parser"]).build_parser(),
                      argparse.ArgumentParser)


def test_harness_reports_the_failing_line_and_stderr(tmp_path):
    block = _page(tmp_path, "intro\n```bash\necho one\nls \\\n  /no/such/dir\necho never\n```\n").blocks[0]
    cwd = tmp_path / "work"
    cwd.mkdir()
    message = run_bash(block, cwd, dict(os.environ))
    assert "page.md:2: bash block failed: exit status 2" in message
    assert "page.md:4: ls /no/such/dir" in message
    assert "No such file or directory" in message and "doc-test-failed-at" not in message
    unset = _page(tmp_path, "```bash\necho $NOT_SET_ANYWHERE\n```\n").blocks[0]
    assert "NOT_SET_ANYWHERE: unbound variable" in run_bash(unset, cwd, {"PATH": os.environ["PATH"]})
    assert run_bash(_page(tmp_path, "```bash\ntrue\n```\n").blocks[0], cwd, dict(os.environ)) is None
