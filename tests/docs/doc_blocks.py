"""Fenced code blocks of the Markdown docs and the ``python -m atmorep_coupler...`` commands in them.

The rules these functions implement are in ``tests/docs/README.md`` (summarised in
``tests/docs/test_doc_commands.py``): a block's fate is set by its info string (``bash``, ``python``,
anything else is not run) and by an optional ``<!-- doc-test: DIRECTIVE (reason) -->`` on the line
directly above its opening fence.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# the directives a block may carry, and the block languages each one applies to
DIRECTIVES = {"parse-only": ("bash",), "skip": ("python",), "slow": ("bash", "python")}
# info strings of shell code that would escape the harness: write ```bash (runs) or ```text (shown)
SHELL_ALIASES = {"sh", "shell", "console", "zsh", "shell-session", "bash-session", "shellsession"}

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_DIRECTIVE = re.compile(r"^\s*<!--\s*doc-test:\s*(?P<body>.*?)\s*-->\s*$")
_DIRECTIVE_BODY = re.compile(r"^(?P<name>[\w-]+)\s*(?:\((?P<reason>.*)\))?$")
_DOC_TEST_MENTION = re.compile(r"<!--\s*doc-test\b")


@dataclass(frozen=True)
class Directive:
    name: str
    reason: str
    line: int  # 1-based line of the comment
    problem: str | None = None  # a malformed or misplaced directive: its block is not run, its test fails


@dataclass(frozen=True)
class Block:
    """One fenced block: ``line`` is the 1-based line of its opening fence, ``code`` its body."""

    doc: Path
    line: int
    lang: str
    code: str
    directive: Directive | None = None

    @property
    def rel(self) -> str:
        return self.doc.relative_to(REPO).as_posix() if self.doc.is_relative_to(REPO) else str(self.doc)

    @property
    def id(self) -> str:
        return f"{self.rel}:{self.line}"

    @property
    def mode(self) -> str:
        """``run``, ``parse-only``, ``skip``, ``slow`` (slow blocks run too) or ``invalid`` (the
        directive above it is malformed: whatever its writer meant, it is not run)."""
        if self.directive is None:
            return "run"
        return "invalid" if self.directive.problem else self.directive.name


@dataclass
class Document:
    path: Path
    blocks: list[Block] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # malformed directives and fences, with their lines


def doc_files(repo: Path = REPO) -> list[Path]:
    """README.md and every docs/**/*.md, found anew at each collection (new pages are picked up)."""
    files = [repo / "README.md"] if (repo / "README.md").exists() else []
    return files + sorted((repo / "docs").rglob("*.md"))


def parse_document(path: Path) -> Document:
    """The fenced blocks of ``path`` with their directives; malformed directives become ``problems``
    of the page and make the block below them ``invalid``."""
    doc = Document(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    rel = path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)
    pending: Directive | None = None  # the last directive, until a fence or other text
    blank_since = False  # blank lines between the directive and here
    i = 0
    while i < len(lines):
        text, number = lines[i], i + 1
        fence = _FENCE.match(text)
        if fence:
            marker, lang = fence["fence"], (fence["info"].strip().split() or [""])[0].lower()
            body, j = [], i + 1
            while j < len(lines) and not re.match(rf"^ {{0,3}}{re.escape(marker[0])}{{{len(marker)},}}\s*$", lines[j]):
                body.append(lines[j])
                j += 1
            if j == len(lines):
                doc.problems.append(f"{rel}:{number}: code fence {marker} is never closed")
            if lang in SHELL_ALIASES:
                doc.problems.append(f"{rel}:{number}: ```{lang} block: write ```bash (it runs) or ```text (shown only)")
            if pending is not None and pending.problem is None:
                if blank_since:
                    pending = _invalid(pending, f"{rel}:{pending.line}: doc-test directive not directly above "
                                                f"the opening code fence (remove the blank line)")
                elif lang not in DIRECTIVES[pending.name]:
                    pending = _invalid(pending, f"{rel}:{pending.line}: doc-test: {pending.name} applies to "
                                                f"{' and '.join(DIRECTIVES[pending.name])} blocks, "
                                                f"not to a ```{lang or '(plain)'} block")
            if pending is not None and pending.problem:
                doc.problems.append(pending.problem)
            doc.blocks.append(Block(path, number, lang, "\n".join(body) + "\n", pending))
            pending, blank_since, i = None, False, j + 1
            continue
        if pending is not None and not text.strip():
            blank_since = True
        elif pending is not None:
            doc.problems.append(pending.problem or f"{rel}:{pending.line}: doc-test directive not directly above "
                                                   f"an opening code fence")
            pending = None
        directive = _DIRECTIVE.match(text)
        if directive:
            pending, blank_since = _directive(directive["body"], number, rel), False
        elif _DOC_TEST_MENTION.search(text):
            pending = Directive("?", "", number, f"{rel}:{number}: malformed doc-test comment "
                                                 f"(write <!-- doc-test: NAME (reason) --> on one line)")
        i += 1
    if pending is not None:
        doc.problems.append(pending.problem or f"{rel}:{pending.line}: doc-test directive not directly above "
                                               f"an opening code fence")
    return doc


def _invalid(directive: Directive, problem: str) -> Directive:
    return Directive(directive.name, directive.reason, directive.line, problem)


def _directive(body: str, number: int, rel: str) -> Directive:
    match = _DIRECTIVE_BODY.match(body)
    if not match or match["name"] not in DIRECTIVES:
        return Directive(body, "", number, f"{rel}:{number}: unknown doc-test directive {body!r} "
                                           f"(known: {', '.join(f'{n} (reason)' for n in DIRECTIVES)})")
    reason = (match["reason"] or "").strip()
    if not reason:
        return Directive(match["name"], "", number,
                         f"{rel}:{number}: doc-test: {match['name']} needs a reason in parentheses, "
                         f"e.g. <!-- doc-test: {match['name']} (needs a GPU) -->")
    return Directive(match["name"], reason, number)


# ---------------------------------------------------------------------------------------------
# shell text -> commands


@dataclass(frozen=True)
class LogicalLine:
    """A shell line with its ``\\``-continuations joined and its comment removed; lines are 1-based
    within the block."""

    first: int
    last: int
    text: str


@dataclass(frozen=True)
class CliCall:
    """``python -m MODULE ARGS`` (or the ``atmorep-train`` script) found in a shell line."""

    module: str
    args: list[str]
    line: LogicalLine

    def __str__(self) -> str:
        return shlex.join(["python", "-m", self.module, *self.args])


def logical_lines(code: str) -> list[LogicalLine]:
    out, parts, first = [], [], None
    for number, raw in enumerate(code.splitlines(), start=1):
        first = number if first is None else first
        if raw.endswith("\\") and _strip_comment(raw) == raw:  # a comment ending in \ continues nothing
            parts.append(raw[:-1])
            continue
        parts.append(raw)
        text = _strip_comment(" ".join(parts)).strip()
        if text:
            out.append(LogicalLine(first, number, text))
        parts, first = [], None
    if parts:
        out.append(LogicalLine(first, first + len(parts) - 1, _strip_comment(" ".join(parts)).strip()))
    return out


def _strip_comment(text: str) -> str:
    """``text`` without its shell comment: ``#`` starts one only at the start of a word, outside quotes."""
    quote, prev = None, " "
    for k, ch in enumerate(text):
        if quote:
            if ch == quote and (quote == "'" or text[k - 1] != "\\"):
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (prev.isspace() or prev in ";|&()"):
            return text[:k]
        prev = ch
    return text


_PYTHON = re.compile(r"^(?:\S*/)?python(?:3(?:\.\d+)?)?$")
_SCRIPTS = {"atmorep-train": "atmorep_coupler.train"}


def cli_calls(code: str) -> list[CliCall]:
    """Every ``python -m atmorep_coupler...`` call in ``code``, wherever it stands in a line: after
    ``VAR=value``, ``srun``/``ray job submit ... --``, inside ``$( ... )``, before a pipe."""
    calls = []
    for line in logical_lines(code):
        lexer = shlex.shlex(line.text, posix=True, punctuation_chars=True)
        lexer.whitespace_split, lexer.commenters = True, ""
        try:
            tokens = list(lexer)
        except ValueError as exc:  # unbalanced quotes
            raise ValueError(f"line {line.first}: cannot split {line.text!r}: {exc}") from None
        for k, token in enumerate(tokens):
            if _PYTHON.match(token) and tokens[k + 1:k + 2] == ["-m"] and k + 2 < len(tokens):
                module, start = tokens[k + 2], k + 3
            elif Path(token).name in _SCRIPTS:
                module, start = _SCRIPTS[Path(token).name], k + 1
            else:
                continue
            if module != "atmorep_coupler" and not module.startswith("atmorep_coupler."):
                continue
            args = []
            for arg in tokens[start:]:
                if _is_operator(arg):
                    if arg[0] in "<>" and args and args[-1].isdigit():
                        args.pop()  # the 2 of 2>&1
                    break
                args.append(arg)
            calls.append(CliCall(module, args, line))
    return calls


def _is_operator(token: str) -> bool:
    return bool(token) and all(ch in "();<>|&" for ch in token)


def expand(args: list[str], env: dict[str, str]) -> list[str]:
    """``$VAR`` and ``${VAR}`` replaced where ``env`` knows them; unknown ones stay as written."""
    pattern = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
    return [pattern.sub(lambda m: env.get(m[1] or m[2], m[0]), a) for a in args]


def parse_call(call: CliCall, env: dict[str, str]) -> str | None:
    """Parse ``call`` with its module's real ``build_parser()``; the error text, or None if it parses."""
    name = call.module
    try:
        module = importlib.import_module(name)
        if hasattr(module, "__path__"):  # a package run as python -m: its __main__
            module = importlib.import_module(f"{name}.__main__")
    except ImportError as exc:
        return f"python -m {name}: no such module ({exc})"
    build = getattr(module, "build_parser", None)
    if build is None:
        return (f"{module.__name__} has no build_parser(): every CLI module exposes "
                f"build_parser() -> argparse.ArgumentParser (docs/doc-test convention), so doc commands can be checked")
    stderr, stdout = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
            build().parse_args(expand(call.args, env))
    except SystemExit as exc:
        if exc.code not in (0, None):
            return stderr.getvalue().strip() or f"argparse exited with {exc.code}"
    return None


def script_references(code: str, repo: Path = REPO) -> list[tuple[LogicalLine, str]]:
    """``bash scripts/x.sh`` / ``./scripts/x.sh``-style references to files of the repository's
    ``scripts/`` and ``examples/`` folders, as (line, path)."""
    refs = []
    for line in logical_lines(code):
        for m in re.finditer(r"(?:^|[\s;&|(])(?:(?:ba)?sh\s+|\./)((?:scripts|examples)/[\w./-]+)", line.text):
            refs.append((line, m[1]))
    return refs
