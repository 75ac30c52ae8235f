"""``netinvert train`` and ``netinvert evaluate``, run in-process exactly as the console script runs them."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors.torch import load_file

from netinvert.cli import main
from netinvert.exceptions import UnknownNameError

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*torch.jit.*deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
]

#: A small CNN and a short schedule: the smoke runs take about a second each.
FAST = ["--model-param", "channels=[8,16]", "--model-param", "hidden=32", "--epochs", "3", "--lr", "0.003",
        "--no-progress", "--device", "cpu"]


def run_cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_train_then_evaluate(tmp_path, capsys):
    run = tmp_path / "run"
    rc, out, err = run_cli(capsys, "train", "--dataset", "digits", "--model", "cnn", "--out", run, *FAST)
    assert rc == 0, err
    printed = json.loads(out)
    card = json.loads((run / "card.json").read_text())
    assert (run / "weights.safetensors").is_file()
    assert card["dataset"] == "digits" and card["model"] == "cnn"
    assert card["test_accuracy"] == printed["test_accuracy"] >= 0.9
    assert card["model_params"]["channels"] == [8, 16] and card["seed"] == 0
    assert card["train_config"]["epochs"] == 3 and card["device"] == "cpu"

    before = sorted(p.name for p in run.iterdir())
    rc, out, err = run_cli(capsys, "evaluate", "--classifier", run, "--device", "cpu")
    assert rc == 0, err
    metrics = json.loads(out)
    assert metrics["test_accuracy"] == card["test_accuracy"]
    assert metrics["dataset"] == "digits" and metrics["model"] == "cnn" and metrics["n_test"] == 360
    assert metrics["weights_sha256"] == card["weights_sha256"] and metrics["run_dir"] is None
    assert sorted(p.name for p in run.iterdir()) == before  # evaluate never writes into its input

    rc, out, err = run_cli(capsys, "evaluate", "--classifier", run / "weights.safetensors", "--device", "cpu",
                           "--out", tmp_path / "ev")
    assert rc == 0, err
    assert json.loads(out)["test_accuracy"] == card["test_accuracy"]
    assert json.loads((tmp_path / "ev" / "card.json").read_text())["source"].endswith("weights.safetensors")
    assert sorted(p.name for p in run.iterdir()) == before


def test_same_seed_gives_identical_weights(tmp_path, capsys):
    def train(seed, name):
        run = tmp_path / name
        rc, _, err = run_cli(capsys, "train", "--model", "mlp", "--model-param", "hidden=[16]", "--epochs", "1",
                             "--no-progress", "--device", "cpu", "--seed", seed, "--out", run)
        assert rc == 0, err
        return load_file(str(run / "weights.safetensors"))

    a, b, c = train(7, "a"), train(7, "b"), train(8, "c")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_adversarial_training_flag(tmp_path, capsys):
    run = tmp_path / "adv"
    rc, out, err = run_cli(capsys, "train", "--model", "mlp", "--model-param", "hidden=[16]", "--epochs", "1",
                           "--adv-eps", "0.1", "--adv-steps", "2", "--no-progress", "--device", "cpu", "--out", run)
    assert rc == 0, err
    config = json.loads((run / "card.json").read_text())["train_config"]
    assert config["adv_eps"] == 0.1 and config["adv_steps"] == 2


def test_evaluate_torchscript_and_factory_sources(digits_cnn, digits, tmp_path, capsys):
    from netinvert.models import evaluate_classifier

    expected = evaluate_classifier(digits_cnn, digits.x_test, digits.y_test)
    traced = torch.jit.trace(copy.deepcopy(digits_cnn), digits.x_test[:2])
    traced.save(str(tmp_path / "net.pt"))
    rc, out, err = run_cli(capsys, "evaluate", "--classifier", tmp_path / "net.pt", "--dataset", "digits",
                           "--device", "cpu", "--out", tmp_path / "m")
    assert rc == 0, err
    metrics = json.loads(out)
    assert metrics["format"] == "torchscript" and metrics["test_accuracy"] == pytest.approx(expected)
    assert json.loads((tmp_path / "m" / "metrics.json").read_text())["test_accuracy"] == metrics["test_accuracy"]

    # the same weights as a bare state dict, rebuilt by a factory named on the command line
    from safetensors.torch import save_file

    save_file(digits_cnn.state_dict(), str(tmp_path / "w.safetensors"))
    (tmp_path / "w.json").write_text(json.dumps({"factory_kwargs": digits_cnn.get_params()}))
    rc, out, err = run_cli(capsys, "evaluate", "--classifier", tmp_path / "w.safetensors", "--factory", "netinvert.models:SmallCNN",
                           "--dataset", "digits", "--device", "cpu")
    assert rc == 0, err
    assert json.loads(out)["test_accuracy"] == pytest.approx(expected)

    rc, _, err = run_cli(capsys, "evaluate", "--classifier", tmp_path / "net.pt", "--device", "cpu")
    assert rc == 2 and "--dataset" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--dataset", "no-such-set", "--out", "{tmp}/r"], "Unknown dataset 'no-such-set'. Valid names:"),
        (["train", "--model", "no-such-net", "--out", "{tmp}/r"], "Unknown model 'no-such-net'. Valid names:"),
        (["train", "--model", "mlp", "--model-param", "depth=3", "--out", "{tmp}/r"], "Bad model_params (--model-param)"),
        (["train", "--epochs", "0", "--out", "{tmp}/r"], "'epochs' parameter"),
        (["evaluate", "--classifier", "{tmp}/missing-run"], "missing-run does not exist"),
        (["evaluate"], "Name the classifier once: evaluate --classifier SOURCE"),
        (["evaluate", "--classifier", "{tmp}/a", "{tmp}/b"], "give one, not both"),
    ],
)
def test_errors_are_one_line_without_traceback(tmp_path, capsys, argv, message):
    rc, out, err = run_cli(capsys, *[a.format(tmp=tmp_path) for a in argv], *([] if argv[0] == "evaluate" else ["--no-progress"]))
    assert rc != 0
    assert message in err
    assert err.startswith("netinvert: error:") and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_missing_weights_in_run_folder(digits_cnn_run, tmp_path, capsys):
    run = tmp_path / "broken"
    run.mkdir()
    (run / "card.json").write_text((digits_cnn_run / "card.json").read_text())
    rc, _, err = run_cli(capsys, "evaluate", "--classifier", run)
    assert rc == 2 and "weights.safetensors does not exist" in err


def test_cuda_without_gpu_is_a_clean_error(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    rc, _, err = run_cli(capsys, "train", "--device", "cuda", "--out", tmp_path / "r", "--no-progress")
    assert rc == 2 and "no CUDA GPU" in err


def test_debug_shows_the_exception(tmp_path):
    with pytest.raises(UnknownNameError):
        main(["--debug", "train", "--dataset", "no-such-set", "--out", str(tmp_path / "r")])


def test_train_and_evaluate_take_device_seed_threads(tmp_path, capsys):
    run = tmp_path / "run"
    rc, out, err = run_cli(capsys, "train", "--model", "mlp", "--model-param", "hidden=[16]", "--epochs", "1",
                           "--no-progress", "--device", "cpu", "--seed", "1", "--threads", "1", "--out", run)
    assert rc == 0, err
    card = json.loads((run / "card.json").read_text())
    assert card["seed"] == 1 and card["threads"] == 1 and card["device"] == "cpu"
    assert card["config"]["seed"] == 1 and card["config"]["threads"] == 1 and card["config"]["device"] == "cpu"
    assert json.loads(out)["run_dir"] == str(run.absolute())

    rc, out, err = run_cli(capsys, "evaluate", "--classifier", run, "--device", "cpu", "--seed", "1", "--threads", "1",
                           "--out", tmp_path / "ev")
    assert rc == 0, err
    ev = json.loads((tmp_path / "ev" / "card.json").read_text())
    assert ev["kind"] == "evaluation" and ev["seed"] == 1 and ev["threads"] == 1 and ev["device"] == "cpu"


def test_evaluate_positional_source_is_a_hidden_alias(tmp_path, capsys, digits_cnn_run):
    from netinvert.cli import build_parser

    rc, out, err = run_cli(capsys, "evaluate", digits_cnn_run, "--device", "cpu")
    assert rc == 0, err
    assert json.loads(out)["source"] == str(digits_cnn_run)
    sub = next(a for a in build_parser()._actions if hasattr(a, "choices") and a.choices and "evaluate" in a.choices)
    assert "source" not in sub.choices["evaluate"].format_help().lower().replace("--classifier source", "")


@pytest.mark.parametrize("where", ["file", "below-file"])
@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_bad_out_fails_before_any_work(tmp_path, capsys, digits_cnn_run, command, where):
    import time

    blocker = tmp_path / "blocker"
    blocker.write_text("keep me")
    out_dir = blocker if where == "file" else blocker / "run"
    args = (["train", "--no-progress"] if command == "train" else ["evaluate", "--classifier", digits_cnn_run])
    t0 = time.perf_counter()
    rc, out, err = run_cli(capsys, *args, "--device", "cpu", "--out", out_dir)
    seconds = time.perf_counter() - t0
    assert rc == 2 and out == ""
    assert err.startswith("netinvert: error:") and err.count("\n") == 1 and "Traceback" not in err
    assert str(blocker) in err
    assert blocker.read_text() == "keep me"
    assert seconds < 0.5, f"{command} took {seconds:.2f}s to refuse a bad --out: it did work first"


def test_train_refuses_a_full_out_without_force(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "old.txt").write_text("old")
    argv = ["train", "--model", "mlp", "--model-param", "hidden=[8]", "--epochs", "1", "--no-progress",
            "--device", "cpu", "--out", run]
    rc, _, err = run_cli(capsys, *argv)
    assert rc == 2 and "--force" in err
    assert sorted(p.name for p in run.iterdir()) == ["old.txt"]
    rc, _, err = run_cli(capsys, *argv, "--force")
    assert rc == 0, err
    assert sorted(p.name for p in run.iterdir()) == ["card.json", "config.toml", "metrics.json", "weights.safetensors"]
