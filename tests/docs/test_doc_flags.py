"""Every ``netinvert COMMAND ... --flag`` the README and ``docs/`` show names a flag that command has.

A renamed or removed option otherwise lingers in prose and examples that no test runs (only the quickstarts
run as written). Each ``netinvert`` span (a line, with backslash continuations, or an inline code span; a
shell comment ends it) is matched to its sub-command's parser, and each ``--flag`` in it must be one of that
parser's options or a top-level one (``--debug``, ``--verbose``).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from netinvert.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

_SPAN = re.compile(r"netinvert\s+([a-z][\w-]*(?:\s+[a-z][\w-]*)?)([^`\n]*(?:\\\n[^`\n]*)*)")
_FLAG = re.compile(r"(?<![\w-])(--[a-z][\w-]*)")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})


def unknown_flags(text: str, parser: argparse.ArgumentParser) -> list[str]:
    """``"netinvert CMD has no --flag"`` for each flag a ``netinvert CMD ...`` span of ``text`` gives wrongly."""
    top = set(parser._option_string_actions)
    found = []
    for match in _SPAN.finditer(text):
        leaf, words = parser, []
        for word in match.group(1).split():
            if word in _subcommands(leaf):
                leaf = _subcommands(leaf)[word]
                words.append(word)
        rest = match.group(2).split(" #")[0]  # a shell comment may mention other commands' flags
        found += [f"netinvert {' '.join(words)} has no {flag}" for flag in _FLAG.findall(rest)
                  if words and flag not in leaf._option_string_actions and flag not in top]
    return found


def test_the_checker_catches_a_wrong_flag() -> None:
    parser = build_parser()
    assert unknown_flags("`netinvert invert --classifier c --top-width 4` and `netinvert train --nope 1`", parser) == [
        "netinvert train has no --nope"]
    assert unknown_flags("netinvert bnn count --classifier r --label 1 --sampled   # then --ood", parser) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_flag_the_docs_give_a_command_exists(page: Path) -> None:
    assert unknown_flags(page.read_text(encoding="utf-8"), build_parser()) == []
