"""Command-line interface: a thin layer over the Python API.

Each concern adds its sub-commands from its own module (``_core``, ``_invert``, ``_bnn``, ...):
a module exposes ``register(subparsers)`` and each sub-command sets ``func(args) -> int``.
Errors a user can cause are printed to stderr without a traceback (unless ``--debug``).
Every runnable command takes ``--config FILE.toml`` and every run folder it writes gets the resolved
``config.toml`` (``_config``; ``docs/config.md``), which ``netinvert rerun RUN`` replays.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from .._progress import PROGRESS_LOGGER
from .._threads import set_threads
from ..exceptions import NetinvertError
from ._config import add_config_option, parse_args, record_config

__all__ = ["main", "build_parser"]

#: Modules that contribute sub-commands, in the order they appear in --help.
COMMAND_MODULES = ("_core", "_data", "_invert", "_bnn", "_ood", "_reconstruct", "_adversarial", "_explain", "_report", "_demo",
                   "_rerun")

#: Errors reported as one clean line; anything else is a bug and keeps its traceback.
USER_ERRORS = (NetinvertError, OSError, ValueError, KeyError, ImportError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netinvert", description="Open trained neural networks by inverting them.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                continue  # that concern has no commands yet
            raise
        module.register(sub)
    add_config_option(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:  # a bad config file is a user error like a bad flag, refused before any work
        parsed = parse_args(parser, argv)
    except USER_ERRORS as exc:
        if "--debug" in argv:
            raise
        return _user_error(exc)
    args = parsed.args
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger(PROGRESS_LOGGER).setLevel(logging.INFO)  # progress lines show without -v where no bar can
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    in_main = threading.current_thread() is threading.main_thread()  # signal handlers live in the main thread only
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main else None  # a killed job cleans up like Ctrl-C
    try:
        if hasattr(args, "threads"):
            args.threads = set_threads(args.threads)  # before any torch work; the run card records it
        with record_config(parsed):  # the options the run used, inside the run it writes, for `netinvert rerun`
            return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        if args.debug:
            raise
        return _user_error(exc)
    except KeyboardInterrupt:
        sys.stderr.write("netinvert: interrupted; --out was not written (commands with --resume continue from "
                         "their last checkpoint).\n")
        return 130
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


def _user_error(exc: BaseException) -> int:
    msg = str(exc) if not isinstance(exc, KeyError) or not exc.args else str(exc.args[0])
    sys.stderr.write(f"netinvert: error: {msg}\n")
    return 2


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
