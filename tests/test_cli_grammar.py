"""One CLI grammar: the README's commands parse, and every command takes the shared options it should."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from netinvert.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"
#: Commands that compute nothing take none of --device/--seed/--threads.
NO_COMPUTE = {"datasets", "report"}
#: Commands that compute on the CPU only (SAT solvers; SSIM matching in scikit-image): no --device.
CPU_ONLY = re.compile(r"^(bnn |reconstruct evaluate$)")
#: Old spellings that must not show in --help any more (they may stay as hidden aliases).
OLD_SPELLINGS = {"--time-s", "--n-per-class", "--samples", "--limit", "--n"}


def _leaves(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    out = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.update(_leaves(sub, f"{prefix}{name} "))
    return out or {prefix.strip(): parser}


def _visible_flags(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions if a.help != argparse.SUPPRESS for s in a.option_strings}


LEAVES = _leaves(build_parser())


def _readme_commands() -> list[str]:
    text = README.read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == "netinvert":
                commands.append(words[1:])
    return commands


def test_readme_has_commands() -> None:
    assert len(_readme_commands()) >= 12


@pytest.mark.parametrize("argv", _readme_commands(), ids=lambda a: " ".join(a[:2]))
def test_readme_commands_parse(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert callable(args.func)


@pytest.mark.parametrize("name", sorted(LEAVES))
def test_every_command_takes_the_shared_options(name: str) -> None:
    flags = _visible_flags(LEAVES[name])
    if "--out" in flags:
        assert "--force" in flags, f"{name}: --out without --force"
    if name in NO_COMPUTE:
        assert not flags & {"--device", "--seed", "--threads"}
        return
    assert {"--seed", "--threads"} <= flags, f"{name} lacks --seed/--threads"
    if not CPU_ONLY.match(name):
        assert "--device" in flags, f"{name} lacks --device"
    assert not flags & OLD_SPELLINGS, f"{name} still shows {flags & OLD_SPELLINGS}"


def test_the_writing_commands_take_out_and_force() -> None:  # each refusal is tested with its command
    writers = sorted(n for n, p in LEAVES.items() if "--out" in _visible_flags(p))
    assert {"train", "invert", "prior", "sample", "demo", "bnn train", "bnn count"} <= set(writers)


@pytest.mark.parametrize("threads", ["0", "-1", "two"])
def test_bad_threads_are_refused_by_the_parser(threads: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["train", "--out", "x", "--threads", threads])
    assert info.value.code == 2 and "expected a positive int" in capsys.readouterr().err
