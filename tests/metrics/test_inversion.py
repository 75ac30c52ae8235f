import json

import pytest
import torch

from netinvert.metrics import InversionMetrics, inversion_metrics
from netinvert.models import evaluate_classifier

TOP_KEYS = {"validity", "confidence", "verifier_accuracy", "frechet", "nn_ssim", "diversity", "real_diversity", "per_class"}
CLASS_KEYS = {
    "label", "name", "n", "validity", "confidence", "verifier_plain", "verifier_robust", "nn_ssim",
    "diversity_classifier", "diversity_verifier", "diversity_pixel", "n_real",
    "real_diversity_classifier", "real_diversity_verifier", "real_diversity_pixel",
}
SPACES = ("classifier", "verifier", "pixel")


@pytest.fixture(scope="module")
def real_report(split, digits_cnn, verifiers):
    reference, x, y = split
    return inversion_metrics(x, y, classifier=digits_cnn, data=reference, verifiers=verifiers)


def test_report_keys_are_stable_and_json_ready(real_report):
    assert set(real_report) == TOP_KEYS
    assert set(real_report["verifier_accuracy"]) == {"plain", "robust"}
    assert {"generated", "real_vs_real"} <= set(real_report["frechet"])
    assert set(real_report["diversity"]) == set(real_report["real_diversity"]) == set(SPACES)
    assert [row["label"] for row in real_report["per_class"]] == list(range(10))
    assert all(set(row) == CLASS_KEYS for row in real_report["per_class"])
    json.dumps(real_report, allow_nan=False)


def test_real_images_score_like_real_images(real_report, split, digits_cnn):
    _, x, y = split
    r = real_report
    assert r["validity"] == pytest.approx(evaluate_classifier(digits_cnn, x, y))
    assert r["verifier_accuracy"]["plain"] > 0.9 and r["verifier_accuracy"]["robust"] > 0.9
    fd = r["frechet"]
    assert fd["n_generated"] == fd["n_real"] > 50
    assert fd["generated"] < 2.0 * fd["real_vs_real"]
    assert r["nn_ssim"] > 0.8
    for space in SPACES:
        assert r["diversity"][space] == pytest.approx(r["real_diversity"][space], rel=0.15)
    assert sum(row["n"] for row in r["per_class"]) == len(y)


def test_uniform_noise_fails_the_verifiers_and_is_far_in_frechet(real_report, split, digits_cnn, verifiers):
    reference, _, y = split
    noise = torch.rand(len(y), 1, 8, 8, generator=torch.Generator().manual_seed(0))
    r = inversion_metrics(noise, y, classifier=digits_cnn, data=reference, verifiers=verifiers)
    assert r["verifier_accuracy"]["robust"] < 0.3
    assert r["frechet"]["generated"] > 5 * real_report["frechet"]["generated"]
    assert r["frechet"]["real_vs_real"] == pytest.approx(real_report["frechet"]["real_vs_real"])
    assert r["nn_ssim"] < 0.5


def test_one_template_repeated_reads_as_collapse_in_every_space(split, digits_cnn, verifiers):
    reference, x, y = split
    with torch.no_grad():
        pred = digits_cnn(x).argmax(1)
    # per class, the first real image the classifier gets right: each template's decision is known
    templates = torch.stack([x[(y == c) & (pred == c)][0] for c in range(3)])
    samples = templates.repeat_interleave(20, dim=0)
    labels = torch.arange(3).repeat_interleave(20)
    r = inversion_metrics(samples, labels, classifier=digits_cnn, data=reference, verifiers=verifiers)
    for space in SPACES:
        assert r["diversity"][space] == pytest.approx(1.0, abs=1e-6)
        assert r["real_diversity"][space] < 0.95
    assert r["validity"] == 1.0 and [row["validity"] for row in r["per_class"]] == [1.0, 1.0, 1.0]
    with torch.no_grad():
        conf = torch.softmax(digits_cnn(templates), 1).diagonal()
    assert [row["confidence"] for row in r["per_class"]] == pytest.approx(conf.tolist(), abs=1e-6)
    assert [row["label"] for row in r["per_class"]] == [0, 1, 2]
    assert r["per_class"][1]["name"] == "1"
    # the same images under another template's label: not one is valid
    wrong = inversion_metrics(samples, (labels + 1) % 3, classifier=digits_cnn, data=reference, verifiers=verifiers)
    assert wrong["validity"] == 0.0 and [row["validity"] for row in wrong["per_class"]] == [0.0, 0.0, 0.0]


def test_validity_report_and_the_full_report_agree(split, digits_cnn):
    """Validity is computed in one place: the quick report and inversion_metrics give the same figures."""
    from netinvert.metrics import validity_from_logits, validity_report

    _, x, y = split
    quick = validity_report(digits_cnn, x, y)
    assert quick["validity"] == pytest.approx(evaluate_classifier(digits_cnn, x, y))
    assert [row["label"] for row in quick["per_class"]] == list(range(10))
    assert sum(row["n"] for row in quick["per_class"]) == len(y)
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
    r = validity_from_logits(logits, torch.tensor([0, 1, 1, 2]))
    assert r["validity"] == 0.75 and [(row["label"], row["n"], row["validity"]) for row in r["per_class"]] == [
        (0, 1, 1.0), (1, 2, 0.5), (2, 1, 1.0)]


def test_full_report_validity_matches_validity_report(real_report, split, digits_cnn):
    from netinvert.metrics import validity_report

    _, x, y = split
    quick = validity_report(digits_cnn, x, y)
    # Validity is a count: equal. Confidence is a mean of probabilities from logits computed in other batch sizes, whose
    # float sums may differ in the last bits on some CPUs (seen on an AMD EPYC): equal to float32 precision.
    assert real_report["validity"] == quick["validity"]
    assert real_report["confidence"] == pytest.approx(quick["confidence"], rel=1e-6)
    assert [r["validity"] for r in real_report["per_class"]] == [r["validity"] for r in quick["per_class"]]
    assert [r["confidence"] for r in real_report["per_class"]] == pytest.approx([r["confidence"] for r in quick["per_class"]],
                                                                               rel=1e-6)


def test_accumulator_matches_one_call(real_report, split, digits_cnn, verifiers):
    reference, x, y = split
    metrics = InversionMetrics(classifier=digits_cnn, data=reference, verifiers=verifiers)
    assert metrics.update(x[:100], y[:100]) is metrics
    metrics.update(x[100:].numpy(), y[100:].numpy())
    assert metrics.compute() == real_report
    metrics.reset()
    with pytest.raises(ValueError, match="before any update"):
        metrics.compute()


def test_classifier_mode_is_restored(split, digits, verifiers):
    import copy

    from netinvert.models import build_model

    reference, x, y = split
    model = build_model("mlp", input_shape=digits.input_shape, n_classes=10, mean=digits.mean, std=digits.std)
    model.train()
    r1 = inversion_metrics(x[:40], y[:40], classifier=model, data=reference, verifiers=verifiers)
    assert model.training
    r2 = inversion_metrics(x[:40], y[:40], classifier=copy.deepcopy(model), data=reference, verifiers=verifiers)
    assert r1["confidence"] == r2["confidence"]  # dropout off during measurement: deterministic


def test_n_real_caps_the_frechet_sets(split, digits_cnn, verifiers):
    reference, x, y = split
    r = inversion_metrics(x, y, classifier=digits_cnn, data=reference, verifiers=verifiers, n_real=40)
    assert r["frechet"]["n_real"] == r["frechet"]["n_generated"] <= 40


@pytest.mark.parametrize(
    ("samples", "labels", "match"),
    [
        (torch.rand(0, 1, 8, 8), torch.zeros(0, dtype=torch.long), "no samples"),
        (torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 10]), r"in \[0, 10\)"),
        (torch.rand(4, 1, 8, 8), torch.tensor([0, -1, 2, 3]), r"in \[0, 10\)"),
        (torch.rand(4, 1, 7, 7), torch.tensor([0, 1, 2, 3]), r"shape \(N, 1, 8, 8\)"),
        (torch.rand(4, 8, 8), torch.tensor([0, 1, 2, 3]), r"shape \(N, 1, 8, 8\)"),
        (torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2]), r"labels must have shape \(4,\)"),
        (torch.rand(4, 1, 8, 8), torch.tensor([0.0, 1.0, 2.0, 3.0]), "integers"),
        (torch.full((4, 1, 8, 8), float("nan")), torch.tensor([0, 1, 2, 3]), "NaN"),
        (torch.rand(4, 1, 8, 8) * 255, torch.tensor([0, 1, 2, 3]), r"in \[0, 1\]"),
    ],
)
def test_invalid_inputs_raise(samples, labels, match, digits, digits_cnn, verifiers):
    with pytest.raises(ValueError, match=match):
        inversion_metrics(samples, labels, classifier=digits_cnn, data=digits, verifiers=verifiers)
    with pytest.raises(ValueError, match=match):
        InversionMetrics(classifier=digits_cnn, data=digits, verifiers=verifiers).update(samples, labels)


def test_invalid_n_real_raises(split, digits_cnn, verifiers):
    reference, x, y = split
    with pytest.raises(ValueError, match="'n_real' parameter"):
        inversion_metrics(x, y, classifier=digits_cnn, data=reference, verifiers=verifiers, n_real=1)
