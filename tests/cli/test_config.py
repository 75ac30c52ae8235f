"""``--config FILE.toml``: keys map to every command's options, flags override them, bad files name the key.

Parsing tests stop before any work (``_config.parse_args`` is what ``main`` parses with); the error tests go
through ``main`` as a user would and check the one-line message and exit code 2.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

import pytest

from netinvert.cli import build_parser, main
from netinvert.cli._config import (COMMAND_KEY, NOT_RECORDED, _actions_by_dest, config_values, dumps_toml, parse_args,
                                   recorded_values, tomllib)  # tomllib: tomli on Python 3.10


def _parse(tmp_path: Path, toml: str, *argv: str) -> argparse.Namespace:
    config = tmp_path / "c.toml"
    config.write_text(toml)
    return parse_args(build_parser(), [*argv, "--config", str(config)]).args


def _fails(tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str | bytes, *argv: str) -> str:
    config = tmp_path / "c.toml"
    config.write_bytes(toml if isinstance(toml, bytes) else toml.encode())
    capsys.readouterr()
    assert main([*argv, "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("netinvert: error: ") and err.count("\n") == 1 and str(config) in err
    assert not (tmp_path / "out").exists()
    return err


def test_config_sets_options_and_the_command_line_overrides_them(tmp_path: Path) -> None:
    toml = 'epochs = 2\nlr = 0.5\nmodel_param = ["hidden=[16]"]\nbatch-size = 32\nno_progress = true\nout = "o"\n'
    args = _parse(tmp_path, toml, "train", "--epochs", "5")
    assert args.epochs == 5 and args.lr == 0.5 and args.batch_size == 32 and args.no_progress is True
    assert args.model_param == [("hidden", [16])]
    assert args.out == tmp_path / "o"  # relative to the config file's folder, not the working directory
    args = _parse(tmp_path, toml, "train", "--model-param", "hidden=[8]", "--out", "here")
    assert args.model_param == [("hidden", [8])]  # a repeated flag replaces the config's list, never appends to it
    assert args.out == Path("here")  # the command line's own path stays as typed


def test_required_options_and_positionals_may_come_from_the_config(tmp_path: Path) -> None:
    args = _parse(tmp_path, 'classifier = "runs/clf"\nout = "/abs/inv"\nsteps = 5\ninput_shape = [1, 8, 8]\n', "invert")
    assert args.classifier == tmp_path / "runs/clf" and args.out == Path("/abs/inv") and args.input_shape == (1, 8, 8)
    args = _parse(tmp_path, 'run = "inv"\nlabel = "7"\nn = 4\nout = "s"\n', "sample")
    assert args.run == tmp_path / "inv" and args.label == "7" and args.n == 4
    args = _parse(tmp_path, 'run = "inv"\nlabel = "7"\nout = "s"\n', "sample", "other")
    assert args.run == Path("other")  # the command line's positional wins
    with pytest.raises(SystemExit):  # without the config, the same command line still misses --classifier
        build_parser().parse_args(["invert", "--out", "x"])


def test_nested_commands_read_their_own_options(tmp_path: Path) -> None:
    args = _parse(tmp_path, 'classifier = "bnn"\nlabel = 3\nmethod = "dp"\n', "bnn", "count")
    assert (args.query, args.method, args.label, args.classifier) == ("count", "dp", 3, tmp_path / "bnn")
    assert _parse(tmp_path, 'classifier = "bnn"\nlabel = 3\napprox = true\n', "bnn", "count").method == "approx"
    assert _parse(tmp_path, 'classifier = "bnn"\nlabel = 3\nmethod = "dp"\n', "bnn", "count", "--exact").method == "exact"
    args = _parse(tmp_path, 'classifier = "o"\nood = "uniform"\n', "ood", "evaluate")
    assert args.ood == ["uniform"] and args.classifier == tmp_path / "o"  # one value for a repeatable option
    args = _parse(tmp_path, 'run = "rec"\nseed = 3\n', "reconstruct", "evaluate")
    assert args.reconstruct_command == "evaluate" and args.run == tmp_path / "rec" and args.seed == 3
    args = _parse(tmp_path, 'run = "adv"\npgd-steps = [10, 20]\nsplit = "test"\n', "adversarial", "attack")
    assert args.pgd_steps == (10, 20) and args.split == "test"
    args = _parse(tmp_path, 'pair = [[3, 5], [1, 7]]\nn = 10\nrun = "inv"\nout = "e"\n', "explain")
    assert args.pairs == [(3, 5), (1, 7)] and args.samples_per_class == 10  # flag spellings: --pair, -n
    args = _parse(tmp_path, 'classes = [0, 1]\nclassifier = "c"\nout = "x"\n', "ood", "train")
    assert args.classes == (0, 1) and args.classifier == tmp_path / "c"  # the required group is met by the config


def test_a_flag_clears_the_config_value_of_the_options_it_excludes(tmp_path: Path) -> None:
    args = _parse(tmp_path, 'classifier = "c"\nout = "o"\nseconds = 30.0\n', "invert", "--steps", "7")
    assert args.steps == 7 and args.seconds is None


def test_toml_writer_round_trips_awkward_values() -> None:
    values = {"s": 'a"b\\c\n\t\x7f\x01é😀', "i": -3, "big": 2**62, "f": 1e-05, "g": 0.1, "h": 1e300, "neg0": -0.0,
              "inf": math.inf, "ninf": -math.inf, "t": True, "l": [1, [2.5, "x"], []], "dash-key": "", "quoted key": 1}
    back = tomllib.loads(dumps_toml(values, header="two\nlines"))
    assert math.isnan(tomllib.loads(dumps_toml({"n": math.nan}))["n"])
    assert back == values and math.copysign(1, back["neg0"]) == -1


def _leaves(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()):
    """Every runnable command (``reconstruct`` runs and has ``evaluate`` below it)."""
    if parser.get_default("func") is not None:
        yield words, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _leaves(sub, (*words, name))


LEAVES = dict(_leaves(build_parser()))


def test_every_command_takes_config() -> None:
    assert {("train",), ("bnn", "count"), ("reconstruct",), ("reconstruct", "evaluate"), ("rerun",)} <= set(LEAVES)
    assert [w for w, p in LEAVES.items() if "--config" not in p._option_string_actions] == []


@pytest.mark.parametrize("words", sorted(LEAVES), ids=" ".join)
def test_every_default_is_recorded_so_that_it_reads_back_the_same(words: tuple[str, ...], tmp_path: Path) -> None:
    """Registry-style contract: a new option whose values TOML cannot hold fails here, not in a user's rerun."""
    leaf = LEAVES[words]
    defaults = {dest: a.default for dest, a in _actions_by_dest(leaf).items() if a.default is not argparse.SUPPRESS}
    recorded = recorded_values(leaf, argparse.Namespace(**defaults), words, tmp_path)
    assert recorded[COMMAND_KEY] == " ".join(words) and not set(recorded) & NOT_RECORDED
    config = tmp_path / "config.toml"
    config.write_text(dumps_toml(recorded))
    back = config_values(leaf, tomllib.loads(config.read_text()), words, config)
    assert back == {k: defaults[k] for k in recorded if k != COMMAND_KEY}


def test_recorded_paths_beside_the_run_are_relative_and_read_back_absolute(tmp_path: Path) -> None:
    leaf = LEAVES[("invert",)]
    args = argparse.Namespace(classifier=tmp_path / "runs/clf", verifiers=Path("/elsewhere/v"), data_root=str(tmp_path / "data"),
                              input_shape=(1, 8, 8), loss=["ce:1", "bn:0.2"], out=tmp_path / "runs/inv", force=True, seed=3)
    recorded = recorded_values(leaf, args, ("invert",), tmp_path / "runs/inv")
    assert recorded == {"command": "invert", "classifier": "../clf", "verifiers": "/elsewhere/v",
                        "data_root": str(tmp_path / "data"),
                        "input_shape": [1, 8, 8], "loss": ["ce:1", "bn:0.2"], "seed": 3}  # no out, no force
    config = tmp_path / "runs/inv/config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(dumps_toml(recorded))
    back = config_values(leaf, tomllib.loads(config.read_text()), ("invert",), config)
    assert back["classifier"] == tmp_path / "runs/clf" and back["verifiers"] == Path("/elsewhere/v")
    assert back["data_root"] == str(tmp_path / "data") and back["input_shape"] == (1, 8, 8)


@pytest.mark.parametrize("toml, argv, match", [
    ("epoch = 3", ["train"], r"sets 'epoch', which no option of 'netinvert train' has\. Did you mean 'epochs'\?"),
    ("epochs = 2.5", ["train"], r"key 'epochs' .* must be an int \(as --epochs takes\)\. Got 2\.5 \(float\)"),
    ("lr = \"fast\"", ["train"], r"key 'lr' .* must be a number \(as --lr takes\)\. Got 'fast'"),
    ("dataset = true", ["train"], r"key 'dataset' .* must be a string \(as --dataset takes\)\. Got True \(bool\)"),
    ("no_progress = 1", ["train"], r"key 'no_progress' .* must be true or false \(as --no-progress takes\)"),
    ("device = \"tpu\"", ["train"], r"key 'device' .* must be one of 'cpu', 'cuda', 'auto'\. Got 'tpu'"),
    ("threads = 0", ["train"], r"key 'threads' .* \(--threads\): expected a positive int\. Got '0'"),
    ("[train]\nepochs = 3", ["train"], r"has a table \[train\]; a config file holds KEY = VALUE lines for one command"),
    ("model_param = {hidden = 3}", ["train"], r"has a table \[model_param\]"),
    ("command = \"invert\"", ["train"], r"written for 'netinvert invert', not 'netinvert train'"),
    ("seconds = 1.0\nsteps = 3", ["invert", "--classifier", "c", "--out", "o"],
     r"sets 'seconds' and 'steps', which exclude each other \(--seconds \| --steps\)"),
    ("n = 3\nn-per-class = 4", ["invert", "--classifier", "c"], r"sets the option -n twice, as 'n' and 'n-per-class'"),
    ("label = \"3\"\nmethod = \"fast\"", ["bnn", "count", "--classifier", "b"], r"key 'method' .* must be one of 'approx'"),
    ("epochs = 3\nx = \n", ["train"], r"is not valid TOML: Invalid value \(at line 2, column 5\)"),
    (b"epochs = 3\n\xff\xfe", ["train"], r"is not valid TOML"),
])
def test_bad_config_is_one_clear_line_naming_the_key(toml, argv, match, tmp_path, capsys) -> None:
    err = _fails(tmp_path, capsys, toml, *argv, "--out", str(tmp_path / "out"))
    assert re.search(match, err), err


def test_an_unreadable_config_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for path, why in ((tmp_path / "missing.toml", "No such file"), (tmp_path, "Is a directory")):
        assert main(["train", "--config", str(path), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert f"Cannot read the config file {path}: {why}" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_an_abbreviated_config_flag_is_refused_rather_than_ignored(tmp_path: Path, capsys) -> None:
    """argparse accepts ``--conf``; the config is read before parsing, so it must be spelt in full."""
    config = tmp_path / "c.toml"
    config.write_text("epochs = 1\n")
    assert main(["train", "--conf", str(config), "--out", str(tmp_path / "out")]) == 2
    assert "Spell the option --config in full" in capsys.readouterr().err and not (tmp_path / "out").exists()
