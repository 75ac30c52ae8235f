"""netinvert explain: attribution maps against Captum called directly, the randomisation cascade, map SSIM,
boundary paths, and the command end to end on digits in a test-sized budget."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from netinvert.apps.explain import (ExplainConfig, cascading_randomisation, class_attribution_maps, list_attributions,
                                    map_ssim, parameter_layers, run_explain, scale_maps)
from netinvert.cli import main
from netinvert.exceptions import RunFormatError, UnknownNameError
from netinvert.inversion import Inverter, InversionRunConfig, run_inversion


def test_attribution_maps_are_captum_averaged_per_class(digits_cnn, digits) -> None:
    from captum.attr import IntegratedGradients

    x, y = digits.x_test[:40], digits.y_test[:40]
    maps = class_attribution_maps(digits_cnn, x, y, 10, "integrated-gradients", batch_size=16)
    ig = IntegratedGradients(digits_cnn).attribute(x, baselines=torch.zeros_like(x), target=y, n_steps=32).abs()
    for c in y.unique().tolist():
        assert torch.allclose(maps[c], ig[y == c].mean(0), atol=1e-5)
    absent = sorted(set(range(10)) - set(y.tolist()))
    assert all(maps[c].abs().sum() == 0 for c in absent)
    assert set(list_attributions()) == {"integrated-gradients", "saliency"}
    with pytest.raises(UnknownNameError, match="Valid names"):
        class_attribution_maps(digits_cnn, x, y, 10, "lime")


def test_cascade_randomises_from_the_output_back_and_leaves_the_model_alone(digits_cnn) -> None:
    before = copy.deepcopy(digits_cnn.state_dict())
    layers = parameter_layers(digits_cnn)
    assert layers[-1] == "head" and len(layers) == 6  # 4 convolutions, 1 hidden linear, the head
    steps = list(cascading_randomisation(digits_cnn, seed=0))
    assert [name for name, _ in steps] == list(reversed(layers))
    for i, (_, model) in enumerate(steps):
        state = model.state_dict()
        changed = {name for name in layers if not torch.equal(state[f"{name}.weight"], before[f"{name}.weight"])}
        assert changed == set(layers[len(layers) - 1 - i:])  # exactly this layer and every one after it
    assert all(torch.equal(v, digits_cnn.state_dict()[k]) for k, v in before.items())


def test_map_ssim_known_cases() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 1, 8, 8, generator=g)
    assert map_ssim(a, a).tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert map_ssim(a, 5 * a + 2).tolist() == pytest.approx([1.0, 1.0, 1.0])  # units do not matter, where is high does
    assert (map_ssim(a, 1 - a) < 0).all()  # an inverted map is anti-correlated
    s = scale_maps(a)
    assert s.amin((1, 2, 3)).tolist() == pytest.approx([0, 0, 0]) and s.amax((1, 2, 3)).tolist() == pytest.approx([1, 1, 1])


@pytest.fixture(scope="module")
def inversion_run(digits_cnn_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("explain") / "inv"
    run_inversion(InversionRunConfig(classifier=digits_cnn_run, steps=60, n_per_class=20, verifier_epochs=1, device="cpu",
                                     threads=1), out, progress=False)
    return out


def test_sample_between_is_a_deterministic_path(inversion_run: Path, digits_cnn) -> None:
    inv = Inverter.load(inversion_run, digits_cnn)
    path = inv.sample_between(3, 5, n=4, steps=5, seed=1)
    assert path.shape == (5, 4, 1, 8, 8) and 0 <= path.min() and path.max() <= 1
    assert torch.equal(path, inv.sample_between(3, 5, n=4, steps=5, seed=1))
    assert not torch.equal(path[0], path[-1])
    with pytest.raises(ValueError, match="two different labels"):
        inv.sample_between(3, 3)
    with pytest.raises(ValueError, match="'b' parameter of sample_between"):
        inv.sample_between(3, 10)


def test_explain_end_to_end(inversion_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "explained"
    assert main(["explain", str(inversion_run), "--out", str(out), "-n", "20", "--attribution-images", "5",
                 "--pair", "3,5", "--sanity-steps", "20", "--shuffle-epochs", "1", "--threads", "1", "--device", "cpu",
                 "--no-progress"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["pairs"] == [[3, 5]] and printed["n_classes"] == 10
    for name in ("gallery.png", "mean_maps.png", "variance_maps.png", "attribution_maps.png", "boundary_3_5.png",
                 "sanity_ours.png", "sanity_attribution.png", "maps.safetensors", "metrics.json", "card.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    cascade = metrics["sanity"]["cascade"]
    assert [c["randomised_from"] for c in cascade] == ["head", "fc.0", "body.10", "body.7", "body.3", "body.0"]
    assert "ours_ssim" in cascade[0] and "ours_ssim" in cascade[-1] and "ours_ssim" not in cascade[1]
    assert all(-1 <= v <= 1 for c in cascade for v in c["attribution_ssim"])
    assert metrics["sanity"]["ours_passes"] == (metrics["sanity"]["ours_last_layer_mean_ssim"] < 0.5)
    assert 0 <= metrics["sanity"]["label_randomisation"]["test_accuracy"] <= 1
    probs = metrics["boundary_probabilities"]["3-5"]
    assert len(probs) == 9 and all(0 <= p <= 1 for step in probs for p in step)
    card = json.loads((out / "card.json").read_text())
    assert card["kind"] == "explanation" and len(card["classifier_sha256"]) == 64


def test_bad_inputs_refused_before_work(inversion_run: Path, digits_cnn_run: Path, tmp_path: Path) -> None:
    with pytest.raises(RunFormatError, match="reads a run of 'netinvert invert'"):
        run_explain(ExplainConfig(run=digits_cnn_run), tmp_path / "a")
    with pytest.raises(ValueError, match="'pairs' parameter of ExplainConfig"):
        run_explain(ExplainConfig(run=inversion_run, pairs=((3, 3),)), tmp_path / "a")
    with pytest.raises(ValueError, match="'pairs' parameter of ExplainConfig must be pairs of class indices in \\[0, 9\\]"):
        run_explain(ExplainConfig(run=inversion_run, pairs=((3, 12),), device="cpu"), tmp_path / "a")
    with pytest.raises(ValueError, match="'samples_per_class' parameter"):
        run_explain(ExplainConfig(run=inversion_run, samples_per_class=1), tmp_path / "a")
    with pytest.raises(UnknownNameError):
        run_explain(ExplainConfig(run=inversion_run, attribution="lime"), tmp_path / "a")
    with pytest.raises(ValueError, match="overlaps the input"):
        run_explain(ExplainConfig(run=inversion_run), inversion_run / "sub")
    assert not (tmp_path / "a").exists()


def test_explain_a_bnn_run_gives_preimage_marginals(tmp_path: Path) -> None:
    from netinvert.bnn import BNNRunConfig, load_bnn_run, run_bnn_training

    bnn = tmp_path / "bnn"
    run_bnn_training(BNNRunConfig(dataset="digits", hidden=(8,), epochs=3, threads=1), bnn, progress=False)
    result = run_explain(ExplainConfig(run=bnn, bnn_samples=8, bnn_seconds=20, threads=1), tmp_path / "ex")
    assert result.n_classes == 10 and result.ours_passes is None
    metrics = json.loads((tmp_path / "ex" / "metrics.json").read_text())
    from netinvert.runs import load_weights

    maps = load_weights(tmp_path / "ex" / "maps.safetensors")["marginals"]
    assert maps.shape == (10, 1, 8, 8)
    net = load_bnn_run(bnn).net
    for row in metrics["labels"]:
        if row["n_samples"]:  # a marginal is a share of preimages: in [0, 1]
            m = maps[row["label"]]
            assert 0 <= float(m.min()) and float(m.max()) <= 1
    assert any(r["n_samples"] for r in metrics["labels"]) and net.n_classes == 10
    assert (tmp_path / "ex" / "marginals.png").is_file()
