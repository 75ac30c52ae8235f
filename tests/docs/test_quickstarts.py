"""The quickstarts in ``docs/quickstart/`` run as written.

Every ```bash block of a quickstart is parsed, and each ``netinvert ...`` command in it runs in order, through
``netinvert.cli.main``, in an empty working directory (so the pages' relative ``runs/...`` paths land there),
as a reader pasting the page into a shell would. Each command must exit 0, and every file the page tells the
reader to look at (an inline-code span such as ``runs/digits-inv/samples.png`` or ``invert.html``; ``*``
globs) must exist afterwards. The budgets are the pages' own, small enough to run as written: no substitution.
The pages must stay plain: one command per line (a trailing backslash continues it), no pipes, redirections,
variables or other programs, since the test runs each line without a shell.

The whole module is marked ``slow`` (70 s on 2 idle cores, 3 minutes when they are shared): it is *not* deselected by default,
so ``make test`` and CI run it; ``-m 'not slow'`` skips it locally.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from netinvert.cli import main

pytestmark = pytest.mark.slow

QUICKSTART_DIR = Path(__file__).resolve().parents[2] / "docs" / "quickstart"
WORKFLOWS = ("invert", "ood", "reconstruct", "adversarial", "explain", "bnn")

_FENCE = re.compile(r"^```bash\n(.*?)^```", re.MULTILINE | re.DOTALL)
_ANY_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_SHELL_OPERATORS = set("();<>|&")


def bash_commands(markdown: str) -> list[str]:
    """The commands of every ```bash block, in order; backslash continuations joined, comments kept for shlex."""
    commands: list[str] = []
    for block in _FENCE.findall(markdown):
        pending = ""
        for raw in block.splitlines():
            line = raw.rstrip()
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            line = pending + line
            pending = ""
            if line.strip() and not line.lstrip().startswith("#"):
                commands.append(line.strip())
        if pending:
            raise AssertionError(f"a ```bash block ends in a line continuation: {pending!r}")
    return commands


def netinvert_argv(command: str) -> list[str]:
    """The arguments after ``netinvert`` of a plain command line; refuses anything a shell would interpret."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    tokens = list(lexer)
    operators = [t for t in tokens if t and set(t) <= _SHELL_OPERATORS]
    if operators:
        raise AssertionError(f"not a plain command (shell operators {operators}): {command!r}")
    if any("$" in t or "*" in t or "~" in t for t in tokens):
        raise AssertionError(f"not a plain command (variables, globs or ~ need a shell): {command!r}")
    if not tokens or tokens[0] != "netinvert":
        raise AssertionError(f"every quickstart line must be a 'netinvert ...' command: {command!r}")
    return tokens[1:]


def pointed_files(markdown: str) -> list[str]:
    """Inline-code spans outside code blocks that name files the reader is told to look at."""
    prose = _ANY_FENCE.sub("", markdown)
    spans = _INLINE_CODE.findall(prose)
    return [s for s in spans if re.fullmatch(r"runs/[\w./*-]*|[\w-]+\.html", s)]


def _read(workflow: str) -> str:
    return (QUICKSTART_DIR / f"{workflow}.md").read_text(encoding="utf-8")


# --------------------------------------------------------------------------- the parser itself


def test_parser_joins_continuations_and_refuses_shell_syntax():
    md = "text `runs/a/b.png` and `x.html`\n```bash\nnetinvert train \\\n    --out runs/a   # comment\n```\n" \
         "```python\nnetinvert not-bash\n```\n"
    (cmd,) = bash_commands(md)
    assert netinvert_argv(cmd) == ["train", "--out", "runs/a"]
    assert netinvert_argv("netinvert train --model-param 'hidden=[256,256]'")[-1] == "hidden=[256,256]"
    assert pointed_files(md) == ["runs/a/b.png", "x.html"]
    for bad in ("netinvert report runs/a | tee log", "FOO=1 netinvert train", "netinvert train --out $OUT",
                "python -m netinvert train", "netinvert train > log", "netinvert a && netinvert b"):
        with pytest.raises(AssertionError, match="plain command|must be a 'netinvert"):
            netinvert_argv(bad)


# --------------------------------------------------------------------------- the pages


def test_every_workflow_has_a_quickstart_linked_from_the_index():
    pages = {p.stem for p in QUICKSTART_DIR.glob("*.md")} - {"README"}
    assert pages == set(WORKFLOWS)
    index = (QUICKSTART_DIR / "README.md").read_text(encoding="utf-8")
    for workflow in WORKFLOWS:
        assert f"]({workflow}.md)" in index
    readme = (QUICKSTART_DIR.parents[1] / "README.md").read_text(encoding="utf-8")
    assert "docs/quickstart/" in readme


@pytest.mark.parametrize("workflow", WORKFLOWS)
def test_quickstart_runs_as_written(workflow: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]):
    markdown = _read(workflow)
    commands = [netinvert_argv(c) for c in bash_commands(markdown)]
    assert len(commands) >= 2, "a quickstart is a sequence of commands"
    report = commands[-1]
    assert report[0] == "report" and report[report.index("--out") + 1].endswith(".html"), \
        "a quickstart ends with 'netinvert report RUN... --out FILE.html'"
    written = [c[c.index("--out") + 1] for c in commands[:-1] if "--out" in c]
    shown = set(report[1:report.index("--out")])
    assert set(written) <= shown, f"runs the page writes but its report leaves out: {sorted(set(written) - shown)}"

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NETINVERT_THREADS", "1")  # 2 shared cores: one torch thread each
    for argv in commands:
        code = main(["--debug", *argv])  # --debug: a failure raises with its traceback instead of one line
        assert code == 0, f"netinvert {shlex.join(argv)} exited {code}:\n{capsys.readouterr().err[-2000:]}"

    files = pointed_files(markdown)
    assert any(f.endswith(".html") for f in files), "the page must tell the reader which HTML file to open"
    missing = [f for f in files if not (list(tmp_path.glob(f)) if "*" in f else (tmp_path / f).exists())]
    assert not missing, f"files {workflow}.md points to that its commands did not write: {missing}"
