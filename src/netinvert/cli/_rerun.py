"""``netinvert rerun RUN [--out NEW]``: run a command again from the ``config.toml`` its run folder recorded.

A rerun is the recorded sub-command invoked with ``--config RUN/config.toml --out NEW``, through the same
``main`` a user calls, so it parses, validates and records exactly as the original did (the new folder gets
its own ``config.toml``, equal to the original's when the paths it names are reachable the same way). It
never writes into RUN: ``--out`` defaults to a new sibling folder (``RUN-rerun``, ``RUN-rerun2``, ...).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..exceptions import RunFormatError
from ..runs import paths_overlap
from ._common import _positive_int
from ._config import COMMAND_KEY, CONFIG_NAME, load_config

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rerun", help="run a command again from the config.toml its run folder recorded",
                       description=f"Reproduce RUN: invoke the command it records in RUN/{CONFIG_NAME} with the same "
                                   f"options into a new folder. --device, --seed and --threads override the recorded "
                                   f"ones (the result then differs only by them); for other changes run "
                                   f"'netinvert COMMAND --config RUN/{CONFIG_NAME} --out NEW --OPTION VALUE'.")
    p.add_argument("run", type=Path, metavar="RUN", help=f"run folder holding {CONFIG_NAME}")
    p.add_argument("--out", type=Path, default=None, metavar="NEW",
                   help="new folder to write (default: the first free sibling RUN-rerun, RUN-rerun2, ...); never RUN")
    p.add_argument("--force", action="store_true", help="replace an --out that already holds files, once the new run is complete")
    # None: as recorded. Own dests, so that main() does not resolve --threads before the rerun reads it.
    p.add_argument("--device", dest="rerun_device", default=None, choices=("cpu", "cuda", "auto"),
                   help="compute here instead of the recorded device")
    p.add_argument("--seed", dest="rerun_seed", type=int, default=None, metavar="SEED", help="use this seed instead of the recorded one")
    p.add_argument("--threads", dest="rerun_threads", type=_positive_int, default=None, metavar="N",
                   help="torch threads instead of the recorded count")
    p.set_defaults(func=cmd_rerun, record_config=False)  # the inner command records its own config


def cmd_rerun(args: argparse.Namespace) -> int:
    from . import build_parser, main  # the package imports this module while building its parser

    run: Path = args.run
    config = run / CONFIG_NAME
    if not run.is_dir():
        raise FileNotFoundError(f"Run folder {run} does not exist; rerun takes a folder a netinvert command wrote.")
    if not config.is_file():
        raise FileNotFoundError(f"{run} holds no {CONFIG_NAME}, so there is nothing to rerun: only runs written by a "
                                f"netinvert command with --out record their options (older runs do not).")
    command = load_config(config).get(COMMAND_KEY)
    if not isinstance(command, str) or not command.split() or command.split()[0] == "rerun":
        raise RunFormatError(f"{config} must name the command it was written for, e.g. {COMMAND_KEY} = \"train\". "
                             f"Got {command!r} instead.")
    words = command.split()
    leaf = _command_parser(build_parser(), words, config)
    out = args.out if args.out is not None else _sibling(run)
    if paths_overlap(out, run):
        raise ValueError(f"--out {out} is or overlaps the run {run}; a rerun never writes into the run it "
                         f"reproduces. Pass another --out (or leave it out for a new sibling folder).")
    argv = [*words, "--config", str(config), "--out", str(out)]
    for flag, value in (("--device", args.rerun_device), ("--seed", args.rerun_seed), ("--threads", args.rerun_threads)):
        if value is None:
            continue
        if flag not in leaf._option_string_actions:
            raise ValueError(f"'netinvert {command}' takes no {flag}; rerun {run} without it.")
        argv += [flag, str(value)]
    if args.force:
        argv.append("--force")
    top = ["--debug"] * bool(args.debug) + ["--verbose"] * bool(args.verbose)
    return main([*top, *argv])


def _command_parser(parser: argparse.ArgumentParser, words: list[str], config: Path) -> argparse.ArgumentParser:
    """The parser of the recorded command; a name this netinvert does not have is a clear error."""
    for i, word in enumerate(words):
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None or word not in sub.choices:
            raise RunFormatError(f"{config} names the command 'netinvert {' '.join(words[:i + 1])}', which this "
                                 f"version of netinvert does not have.")
        parser = sub.choices[word]
    if "--out" not in parser._option_string_actions:
        raise RunFormatError(f"{config} names 'netinvert {' '.join(words)}', which writes no run folder to rerun into.")
    return parser


def _sibling(run: Path) -> Path:
    """The first of ``RUN-rerun``, ``RUN-rerun2``, ... that does not exist yet."""
    run = run.absolute()
    n = 1
    while True:
        candidate = run.with_name(f"{run.name}-rerun{n if n > 1 else ''}")
        if not candidate.exists() and not candidate.is_symlink():
            return candidate
        n += 1
