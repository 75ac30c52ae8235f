"""Config files: ``--config FILE.toml`` for every command, and the resolved ``config.toml`` every run records.

Why in the CLI layer and not in each pipeline: the options a user can set are exactly the argparse actions of
the command, so one generic mapping (TOML key -> action, by ``dest`` or by the flag's spelling) serves all
commands, including the nested ones (``bnn train``, ``ood evaluate``, ``reconstruct evaluate``), and a new
option is configurable the day it is added. A config value goes through the same ``type`` and ``choices`` as
the flag, so a file cannot hold what the command line would refuse.

Semantics (``docs/config.md``):

- The config's values become the parser's defaults before the real parse, so a flag on the command line
  overrides them; a flag also clears the config's value of the options it is mutually exclusive with, and a
  repeatable flag (``--loss``) replaces the config's list instead of appending to it.
- A value is what the flag takes, typed: ``epochs = 3``, ``lr = 0.003``, ``dataset = "digits"``; an on/off
  flag is ``true``/``false``; a comma-separated option (``--classes 0,1``, ``--input-shape 1,8,8``) and a
  repeatable one (``--loss``, ``--ood``) take a list.
- Relative paths are relative to the folder holding the config file. The resolved ``config.toml`` a run
  writes stores a path beside the run (under the run folder's parent, e.g. ``runs/clf`` for ``runs/inv``)
  relative to the run folder (``../clf``) and any other path absolute, so ``netinvert rerun RUN`` works from
  any working directory, and after a folder of runs is moved as a whole.
- The resolved config records every option of the command except those that say where or how a run is
  written rather than what it computes (:data:`NOT_RECORDED`), plus the reserved key ``command``.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from .. import __version__
from ..runs import atomic_write_bytes, before_commit
from ._common import _model_param

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    try:
        import tomli as tomllib  # type: ignore[no-redef]
    except ModuleNotFoundError:
        tomllib = None  # type: ignore[assignment]

__all__ = ["CONFIG_NAME", "COMMAND_KEY", "NOT_RECORDED", "ParsedCommand", "add_config_option", "parse_args",
           "load_config", "config_values", "recorded_values", "record_config", "dumps_toml", "find_command"]

#: The file a run folder holds its resolved options in.
CONFIG_NAME = "config.toml"
#: Reserved key naming the sub-command a config was written for (``"bnn train"``); never an option.
COMMAND_KEY = "command"
#: Options a resolved config leaves out: where and how a run is written or shown, not what it computes.
#: A rerun must not replace a folder (``force``), continue another one's checkpoint (``resume``), or write into
#: the original (``out``); ``no_progress`` only changes the display.
NOT_RECORDED = frozenset({"help", "config", "out", "force", "resume", "debug", "verbose", "no_progress"})
#: Options without ``type=Path`` whose values are paths nonetheless (they are passed on as strings).
PATH_DESTS = frozenset({"data_root"})

#: How the error messages name a type.
_TYPE_NAMES: dict[Any, str] = {int: "an int", float: "a number", Path: "a path (a string)", None: "a string", str: "a string"}
#: Inverses of option types whose parsed value is not a string, a number or a comma-separated list of those.
_UNPARSERS: dict[Any, Any] = {_model_param: lambda kv: f"{kv[0]}={json.dumps(kv[1])}"}


@dataclass(frozen=True)
class ParsedCommand:
    """The parsed namespace, the sub-command's words (``("bnn", "train")``) and its parser."""

    args: argparse.Namespace
    command: tuple[str, ...]
    parser: argparse.ArgumentParser
    config: Path | None = None
    applied: Mapping[str, Any] = field(default_factory=dict)


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """Give every runnable command (a parser that sets ``func``) ``--config FILE.toml``."""
    for sub in _children(parser):
        add_config_option(sub)
    if parser.get_default("func") is not None and "--config" not in parser._option_string_actions:
        parser.add_argument("--config", type=Path, default=None, metavar="FILE.toml",
                            help="read option values from this TOML file (keys are the option names, e.g. "
                                 "batch_size = 64); options given on the command line override it")


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str]) -> ParsedCommand:
    """Parse ``argv`` with the values of its ``--config`` file (if any) as the command's defaults.

    Raises ``ValueError``/``OSError`` for a bad config (before any work), and ``SystemExit`` as argparse does.
    """
    argv = list(argv)
    config_path = _config_argument(argv)
    words, leaf, given = _walk(parser, argv)
    applied: dict[str, Any] = {}
    if config_path is not None and leaf.get_default("func") is not None:
        applied = config_values(leaf, load_config(config_path), words, config_path, given=given)
        _set_defaults(leaf, applied)
    args = parser.parse_args(argv)
    command, parsed_leaf = find_command(parser, args)
    if getattr(args, "config", None) is not None and (config_path is None or Path(args.config) != Path(config_path)):
        raise ValueError("Spell the option --config in full (--config FILE.toml), once, after the sub-command.")
    if config_path is not None and parsed_leaf is not leaf:
        raise ValueError(f"Put --config after the sub-command: netinvert {' '.join(command)} --config FILE.toml.")
    return ParsedCommand(args, command, parsed_leaf, None if config_path is None else Path(config_path), applied)


def find_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[tuple[str, ...], argparse.ArgumentParser]:
    """The sub-command words a parsed namespace chose, and the innermost parser (by the sub-parsers' dests)."""
    words: list[str] = []
    while (sub := _subparsers(parser)) is not None:
        name = getattr(args, sub.dest, None) if sub.dest != argparse.SUPPRESS else None
        if name is None:
            break
        words.append(name)
        parser = sub.choices[name]
    return tuple(words), parser


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file; an unreadable or malformed file is a ``ValueError`` naming it."""
    if tomllib is None:
        raise ImportError("Reading --config files on Python 3.10 needs tomli: pip install tomli")
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ValueError(f"Cannot read the config file {path}: {exc.strerror or exc}. Pass a readable TOML file "
                         f"to --config.") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"The config file {path} is not valid TOML: {exc}. Write it as KEY = VALUE lines "
                         f"(e.g. epochs = 3).") from None


def config_values(leaf: argparse.ArgumentParser, values: Mapping[str, Any], command: Sequence[str],
                  source: str | Path, *, given: Iterable[argparse.Action] = ()) -> dict[str, Any]:
    """Map a config's keys to the command's ``dest``s and convert each value as its flag would be.

    ``given`` are the actions on the command line: their options (and the ones exclusive with them) keep
    the command line's value, so the config's value is dropped. Raises ``ValueError`` naming the key.
    """
    source = Path(source)
    base = source.parent.absolute()
    name = " ".join(command)
    values = dict(values)
    wanted = values.pop(COMMAND_KEY, name)
    if wanted != name:
        raise ValueError(f"The config file {source} was written for 'netinvert {wanted}', not 'netinvert {name}'. "
                         f"Run 'netinvert {wanted} --config {source}', or remove its '{COMMAND_KEY}' line.")
    out: dict[str, Any] = {}
    keys: dict[str, str] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            raise ValueError(f"The config file {source} has a table [{key}]; a config file holds KEY = VALUE lines for "
                             f"one command, without sections (e.g. epochs = 3).")
        action, via_flag = _find_action(leaf, key, source, name)
        converted = _convert(action, key, value, via_flag, base, source)
        if converted is _NOT_GIVEN:
            continue
        if action.dest in keys:
            raise ValueError(f"The config file {source} sets the option {_flag(_actions_by_dest(leaf)[action.dest])} twice, as "
                             f"{keys[action.dest]!r} and {key!r}; keep one.")
        keys[action.dest], out[action.dest] = key, converted
    for group in leaf._mutually_exclusive_groups:
        dests = [a.dest for a in group._group_actions]
        set_here = sorted({keys[d] for d in dests if d in keys})
        if len(set_here) > 1:
            raise ValueError(f"The config file {source} sets {' and '.join(repr(k) for k in set_here)}, which "
                             f"exclude each other ({' | '.join(_flag(a) for a in group._group_actions)}); keep one.")
    overridden = {a.dest for a in given}
    for group in leaf._mutually_exclusive_groups:
        if overridden & {a.dest for a in group._group_actions}:
            overridden |= {a.dest for a in group._group_actions}
    return {dest: value for dest, value in out.items() if dest not in overridden}


def recorded_values(leaf: argparse.ArgumentParser, args: argparse.Namespace, command: Sequence[str],
                    run_dir: str | Path) -> dict[str, Any]:
    """The command's resolved options as TOML values that :func:`config_values` reads back to the same ones.

    ``None`` (an option left to its built-in choice) is omitted; paths are written relative to ``run_dir``.
    """
    run_dir = Path(run_dir).absolute()
    out: dict[str, Any] = {COMMAND_KEY: " ".join(command)}
    for dest, action in _actions_by_dest(leaf).items():
        if dest in NOT_RECORDED or not hasattr(args, dest):
            continue
        value = getattr(args, dest)
        if value is None:
            continue
        out[dest] = _unparse(action, value, run_dir)
    return out


def record_config(parsed: ParsedCommand) -> contextlib.AbstractContextManager[None]:
    """A block within which the run the command writes to its ``--out`` gets ``config.toml`` before its rename.

    The file is written into the staging folder (:func:`netinvert.runs.before_commit`), so it is part of the
    same atomic rename as the run: a run that failed or was interrupted never appears, with or without it.
    Commands that set ``record_config=False`` (``rerun``, whose inner command records itself), commands
    without ``--out`` and ``--out`` files (not staged folders) record nothing.
    """
    out = getattr(parsed.args, "out", None)
    if out is None or not parsed.args.__dict__.get("record_config", True):
        return contextlib.nullcontext()
    return before_commit(out, lambda staging: _write_config(parsed, Path(out), staging))


def _write_config(parsed: ParsedCommand, out: Path, staging: Path) -> Path:
    """Write ``config.toml`` into ``staging``, the folder that becomes ``out`` (paths are relative to ``out``)."""
    values = recorded_values(parsed.parser, parsed.args, parsed.command, out)
    header = (f"Options of 'netinvert {' '.join(parsed.command)}' as this run used them (netinvert {__version__}).\n"
              f"Paths are relative to this folder. Run it again with 'netinvert rerun RUN [--out NEW]', or reuse it with\n"
              f"'netinvert {' '.join(parsed.command)} --config RUN/{CONFIG_NAME} --out NEW [--OPTION VALUE ...]'.")
    return atomic_write_bytes(staging / CONFIG_NAME, dumps_toml(values, header=header).encode("utf-8"))


def dumps_toml(values: Mapping[str, Any], *, header: str = "") -> str:
    """Flat TOML (``key = value`` lines) for strings, bools, ints, floats and (nested) lists of them."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- reading


class _NotGiven:
    """A flag set to ``false`` by its own spelling (``dp = false``): as if it were not given."""


_NOT_GIVEN = _NotGiven()


def _config_argument(argv: Sequence[str]) -> str | None:
    """The value of the last ``--config`` (``--config X`` or ``--config=X``) before any ``--``."""
    found = None
    for i, tok in enumerate(argv):
        if tok == "--":
            break
        if tok == "--config" and i + 1 < len(argv):
            found = argv[i + 1]
        elif tok.startswith("--config="):
            found = tok.partition("=")[2]
    return found


def _walk(parser: argparse.ArgumentParser, argv: Sequence[str]) -> tuple[tuple[str, ...], argparse.ArgumentParser, list[argparse.Action]]:
    """Follow ``argv`` into the sub-command it names, as argparse will, without parsing values.

    Returns the command words, its parser, and the actions given on the command line at that level (so that
    they override the config). Option values are skipped by each action's ``nargs``, so a value that happens
    to be a command name is not taken for one.
    """
    words: list[str] = []
    given: list[argparse.Action] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        i += 1
        if tok == "--":
            break
        if tok.startswith("-") and tok != "-":
            action, attached = _match_option(parser, tok)
            if action is not None:
                given.append(action)
                if not attached:
                    i += _n_values(action, argv, i)
            continue
        sub = _subparsers(parser)
        if sub is not None and tok in sub.choices:
            parser, given = sub.choices[tok], []
            words.append(tok)
    return tuple(words), parser, given


def _match_option(parser: argparse.ArgumentParser, tok: str) -> tuple[argparse.Action | None, bool]:
    """The action ``tok`` names (exactly, as ``--opt=value``, ``-nVALUE``, or a unique abbreviation)."""
    actions = parser._option_string_actions
    if tok in actions:
        return actions[tok], False
    if tok.startswith("--") and "=" in tok:
        name = tok.partition("=")[0]
        if name in actions:
            return actions[name], True
        tok = name
    elif not tok.startswith("--") and tok[:2] in actions:
        return actions[tok[:2]], True
    if tok.startswith("--") and parser.allow_abbrev:
        matches = {actions[s] for s in actions if s.startswith(tok)}
        if len(matches) == 1:
            return matches.pop(), "=" in tok
    return None, False


def _n_values(action: argparse.Action, argv: Sequence[str], i: int) -> int:
    """How many of the tokens from ``argv[i]`` on are the option's values."""
    nargs = action.nargs
    if isinstance(nargs, int):
        return nargs
    if nargs is None:
        return 1
    if nargs == argparse.OPTIONAL:
        return int(i < len(argv) and not argv[i].startswith("-"))
    n = 0  # '*', '+', REMAINDER: up to the next option
    while i + n < len(argv) and not argv[i + n].startswith("-"):
        n += 1
    return n


def _find_action(leaf: argparse.ArgumentParser, key: str, source: Path, command: str) -> tuple[argparse.Action, bool]:
    """The action a key names: its ``dest`` (``batch_size``) first, else a flag's spelling (``batch-size``, ``n``)."""
    if not isinstance(key, str) or key in ("help", "config"):
        raise ValueError(f"The config file {source} sets {key!r}, which is not an option of 'netinvert {command}'.")
    by_dest = _actions_by_dest(leaf)
    if key in by_dest:
        return by_dest[key], False
    for flag in (f"--{key}", f"-{key}"):
        action = leaf._option_string_actions.get(flag)
        if action is not None and action.dest not in ("help", "config"):
            return action, True
    names = sorted(set(by_dest) - {"help", "config"})
    close = difflib.get_close_matches(key, names + [s.lstrip("-") for s in leaf._option_string_actions], n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"The config file {source} sets {key!r}, which no option of 'netinvert {command}' has.{hint} "
                     f"Its keys: {', '.join(names)}.")


def _actions_by_dest(leaf: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """One action per ``dest``, in parser order: the visible value-taking one where several share it."""
    out: dict[str, argparse.Action] = {}
    for action in leaf._actions:
        if isinstance(action, (argparse._SubParsersAction, argparse._HelpAction, argparse._VersionAction)):
            continue
        if action.dest == argparse.SUPPRESS:
            continue
        old = out.get(action.dest)
        if old is None or _rank(action) < _rank(old):
            out[action.dest] = action
    return out


def _rank(action: argparse.Action) -> tuple[bool, bool]:
    return action.nargs == 0, action.help == argparse.SUPPRESS


def _convert(action: argparse.Action, key: str, value: Any, via_flag: bool, base: Path, source: Path) -> Any:
    """A config value as the parsed value of ``action``; a wrong type is a ``ValueError`` naming the key."""
    if action.nargs == 0:
        if not isinstance(value, bool):
            raise _type_error(key, action, value, "true or false", source)
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)) and not via_flag:
            return value
        if not isinstance(action, argparse._StoreConstAction):
            raise ValueError(f"The config file {source} sets {key!r}, but {_flag(action)} cannot be set from a "
                             f"config file; give it on the command line.")
        return action.const if value else _NOT_GIVEN
    if isinstance(action, (argparse._AppendAction, argparse._ExtendAction)) or action.nargs in ("*", "+") or isinstance(action.nargs, int):
        items = value if isinstance(value, list) else [value]
        return [_convert_one(action, key, item, base, source) for item in items]
    return _convert_one(action, key, value, base, source)


def _convert_one(action: argparse.Action, key: str, value: Any, base: Path, source: Path) -> Any:
    """One value through the option's own ``type`` and ``choices``, as its command-line text would go."""
    text = _text(action, key, value, source)
    if _is_path(action):
        path = Path(text).expanduser()
        text = path if path.is_absolute() else os.path.normpath(base / path)  # "../clf" beside the config's folder
    convert = action.type if action.type is not None else str
    try:
        parsed = convert(text)
    except argparse.ArgumentTypeError as exc:
        raise ValueError(f"The key {key!r} in the config file {source} ({_flag(action)}): {exc}") from None
    except (TypeError, ValueError):
        raise _type_error(key, action, value, _TYPE_NAMES.get(action.type, "a valid value"), source) from None
    if action.choices is not None and parsed not in action.choices:
        raise ValueError(f"The key {key!r} in the config file {source} must be one of "
                         f"{', '.join(map(repr, action.choices))}. Got {value!r} instead.")
    return parsed


def _text(action: argparse.Action, key: str, value: Any, source: Path) -> str:
    """The command-line spelling of a TOML value: a list is comma-separated (``[1, 28, 28]`` -> ``1,28,28``)."""
    if isinstance(value, list) and value and all(_is_scalar(v) for v in value):
        return ",".join(_scalar_text(v) for v in value)
    if _is_scalar(value):
        return _scalar_text(value)
    expected = "a path (a string)" if _is_path(action) else _TYPE_NAMES.get(action.type, "a string, a number or a list of them")
    raise _type_error(key, action, value, expected, source)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def _scalar_text(value: str | int | float) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _type_error(key: str, action: argparse.Action, value: Any, expected: str, source: Path) -> ValueError:
    return ValueError(f"The key {key!r} in the config file {source} must be {expected} (as {_flag(action)} takes). "
                      f"Got {value!r} ({type(value).__name__}) instead.")


def _flag(action: argparse.Action) -> str:
    longs = [s for s in action.option_strings if s.startswith("--")]
    return (longs or action.option_strings or [action.metavar or action.dest.upper()])[0]


def _is_path(action: argparse.Action) -> bool:
    t = action.type
    return (isinstance(t, type) and issubclass(t, PurePath)) or action.dest in PATH_DESTS


def _set_defaults(leaf: argparse.ArgumentParser, values: Mapping[str, Any]) -> None:
    """Make config values the parser's defaults; an option (or group) the config fills is no longer required."""
    if not values:
        return
    leaf.set_defaults(**values)
    for action in leaf._actions:
        if action.dest not in values:
            continue
        action.required = False
        if not action.option_strings:  # a positional the config names may be left out
            action.nargs = {None: argparse.OPTIONAL, "+": "*"}.get(action.nargs, action.nargs)  # type: ignore[arg-type]
    for group in leaf._mutually_exclusive_groups:
        if any(a.dest in values for a in group._group_actions):
            group.required = False


def _children(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    sub = _subparsers(parser)
    return [] if sub is None else list(dict.fromkeys(sub.choices.values()))


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


# ---------------------------------------------------------------------------------------------- writing


def _unparse(action: argparse.Action, value: Any, run_dir: Path) -> Any:
    """A parsed value as the TOML value :func:`_convert` turns back into it."""
    if isinstance(value, bool) or action.nargs == 0:
        return value
    many = isinstance(action, (argparse._AppendAction, argparse._ExtendAction)) or action.nargs in ("*", "+")
    if many and isinstance(value, (list, tuple)):
        return [_unparse_one(action, v, run_dir) for v in value]
    return _unparse_one(action, value, run_dir)


def _unparse_one(action: argparse.Action, value: Any, run_dir: Path) -> Any:
    if action.type in _UNPARSERS:
        return _UNPARSERS[action.type](value)
    if _is_path(action) or isinstance(value, PurePath):
        return _path_text(value, run_dir)
    if isinstance(value, (list, tuple)):
        return [_unparse_one(argparse.Action([], "item"), v, run_dir) for v in value]
    if isinstance(value, (str, int, float)):
        return value
    raise TypeError(f"Cannot record {_flag(action)}={value!r} ({type(value).__name__}) in {CONFIG_NAME}; give "
                    f"its type an entry in netinvert.cli._config._UNPARSERS.")


def _path_text(value: str | PurePath, run_dir: Path) -> str:
    """Relative to the run folder where the path lies beside it (``../clf``), so a tree of runs can move together;
    absolute elsewhere (``/data/mnist``), so that it survives the move."""
    target = Path(os.path.abspath(value))
    if target == run_dir.parent or run_dir.parent in target.parents:
        return os.path.relpath(target, run_dir)
    return str(target)


def _toml_key(key: str) -> str:
    return key if key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key) else _toml_string(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"TOML cannot hold {value!r} ({type(value).__name__}) here.")


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml_string(text: str) -> str:
    """A TOML basic string: quote, backslash and control characters escaped (DEL too, as TOML requires)."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'
