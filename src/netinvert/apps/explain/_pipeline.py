"""``netinvert explain``: what an inverted classifier has learnt, beside a standard attribution, with sanity checks.

:func:`run_explain` reads an inversion run (``netinvert invert``) and writes one folder with

- ``gallery.png``: samples of every class;
- ``mean_maps.png`` / ``variance_maps.png``: per class, the pixel mean and variance over
  ``samples_per_class`` samples (where the model looks: what every sample of the class has; and what
  it ignores: where samples vary freely);
- ``boundary_A_B.png``: paths between two labels by mixing their hidden conditioning
  (:meth:`~netinvert.inversion.Inverter.sample_between`), with the classifier's probabilities;
- ``attribution_maps.png``: Captum's Integrated Gradients (or saliency) averaged over the test
  images of each class, the standard explanation to read ours against;
- ``sanity.png`` and ``metrics.json["sanity"]``: the model randomisation test and the label
  randomisation test of Adebayo et al. (2018) for both kinds of map: our maps of a model whose output
  layer (then every layer) was re-initialised, and of the same architecture trained on shuffled
  labels, each re-inverted with the run's own settings and budget; SSIM to the trained model's maps
  (below 0.5 after the output layer is randomised: the map explains the model, not the data);
- ``maps.safetensors`` (every map), ``metrics.json`` and ``card.json``.

For a BNN run (``netinvert bnn train``) it writes ``marginals.png``: per label, the share of
near-uniform SAT preimages with each input bit on (where the label's whole preimage set is, not just
one preimage).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from ..._checks import bad_param
from ..._device import resolve_device, seed_everything
from ..._threads import restores_threads, set_threads
from ...data import load_dataset
from ...exceptions import RunFormatError
from ...runs import check_out, read_card, save_weights, staged_run, weights_sha256, write_card, write_json
from ._attribution import ATTRIBUTIONS, class_attribution_maps
from ._figures import save_boundary_path, save_map_rows
from ._sanity import cascading_randomisation, map_ssim, parameter_layers

__all__ = ["ExplainConfig", "ExplainResult", "run_explain"]

log = logging.getLogger(__name__)

#: The randomisation test's pass mark: SSIM to the trained model's maps below this after randomising.
SSIM_PASS = 0.5


@dataclass(frozen=True)
class ExplainConfig:
    """What :func:`run_explain` computes.

    Parameters
    ----------
    run : path
        An inversion run folder (``netinvert invert``; its classifier is the one it recorded, sha256
        checked), or a BNN run (``netinvert bnn train``): then the explanation is the per-label pixel
        marginals of near-uniform SAT preimages (``bnn_samples`` per label, CMSGen), and the
        generator-only settings below are unused.
    samples_per_class : int, default=1000
        Samples per class behind the mean and variance maps.
    attribution : str, default="integrated-gradients"
        The Captum method (:func:`~netinvert.apps.explain.list_attributions`).
    attribution_images : int, default=100
        Test images per class averaged into the attribution maps.
    pairs : sequence of (a, b), optional
        Label pairs for boundary paths; default: the three pairs whose mean maps are most alike
        (where the model must draw its finest boundaries).
    path_steps, path_n : int, default=9, 6
        Steps along each boundary path and paths per pair.
    sanity : bool, default=True
        Run the randomisation tests (re-inverts three models: the slow part).
    sanity_steps : int, optional
        Generator steps of each re-inversion (default: the steps the run itself trained).
    shuffle_epochs : int, optional
        Epochs of the shuffled-label model (default: the classifier run's own).
    bnn_samples : int, default=50
        Preimages per label of a BNN run.
    bnn_seconds : float, optional
        Sampling budget per label of a BNN run (default: the ``sample`` query's).
    seed : int, default=0
    device : {"cpu", "cuda", "auto"}
    threads : int, optional
    """

    run: str | Path
    samples_per_class: int = 1000
    attribution: str = "integrated-gradients"
    attribution_images: int = 100
    pairs: tuple[tuple[int, int], ...] | None = None
    path_steps: int = 9
    path_n: int = 6
    sanity: bool = True
    sanity_steps: int | None = None
    shuffle_epochs: int | None = None
    bnn_samples: int = 50
    bnn_seconds: float | None = None
    seed: int = 0
    device: str = "auto"
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.pairs is not None:
            object.__setattr__(self, "pairs", tuple(tuple(p) for p in self.pairs))

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["run"] = str(self.run)
        d["pairs"] = None if self.pairs is None else [list(p) for p in self.pairs]
        return d

    def validate(self) -> ExplainConfig:
        """Raise ``ValueError`` on the first invalid field; returns ``self``."""
        for name, low in (("samples_per_class", 2), ("attribution_images", 1), ("path_steps", 2), ("path_n", 1),
                          ("bnn_samples", 1), ("seed", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise bad_param("ExplainConfig", name, f"an int in [{low}, inf)", v)
        for name in ("sanity_steps", "shuffle_epochs", "threads"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise bad_param("ExplainConfig", name, "None or an int in [1, inf)", v)
        if self.bnn_seconds is not None and (isinstance(self.bnn_seconds, bool) or not isinstance(self.bnn_seconds, (int, float))
                                             or not self.bnn_seconds > 0):
            raise bad_param("ExplainConfig", "bnn_seconds", "None or a float > 0", self.bnn_seconds)
        ATTRIBUTIONS.get(self.attribution)
        if self.device not in ("cpu", "cuda", "auto"):
            raise bad_param("ExplainConfig", "device", "one of ['cpu', 'cuda', 'auto']", self.device)
        if self.pairs is not None and (not self.pairs or any(
                len(p) != 2 or any(isinstance(v, bool) or not isinstance(v, int) for v in p) or p[0] == p[1]
                for p in self.pairs)):
            raise bad_param("ExplainConfig", "pairs", "None or pairs (a, b) of two different class indices", self.pairs)
        return self


@dataclass(frozen=True)
class ExplainResult:
    """What :func:`run_explain` wrote, and the sanity checks' verdicts (``None`` when not run)."""

    run_dir: Path
    n_classes: int
    pairs: tuple[tuple[int, int], ...]
    ours_last_layer_ssim: float | None
    attribution_last_layer_ssim: float | None
    ours_passes: bool | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["run_dir"] = str(self.run_dir)
        d["pairs"] = [list(p) for p in self.pairs]
        return d


def _generator_maps(inverter: Any, k: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class pixel mean and variance ``(K, C, H, W)`` over ``n`` samples of each class."""
    means, variances = [], []
    for c in range(k):
        x = inverter.sample(c, n, seed=seed + c).double()
        means.append(x.mean(0))
        variances.append(x.var(0))
    return torch.stack(means).float(), torch.stack(variances).float()


def _default_pairs(means: torch.Tensor, count: int = 3) -> tuple[tuple[int, int], ...]:
    """The ``count`` label pairs whose mean maps are most alike (SSIM)."""
    k = len(means)
    pairs = [(a, b) for a in range(k) for b in range(a + 1, k)]
    a_idx = torch.tensor([p[0] for p in pairs])
    b_idx = torch.tensor([p[1] for p in pairs])
    sims = map_ssim(means[a_idx], means[b_idx])
    order = sims.argsort(descending=True)[:count].tolist()
    return tuple(pairs[i] for i in order)


def _reinvert_maps(inverter: Any, model: torch.nn.Module, steps: int, k: int, n: int, seed: int, progress: bool) -> torch.Tensor:
    """Mean maps of ``model`` inverted with ``inverter``'s settings for ``steps`` steps."""
    from ...inversion import Inverter

    params = {key: v for key, v in inverter.get_params().items() if key not in ("seed", "device")}
    fresh = Inverter(model, **params, seed=seed, device=next(model.parameters()).device).fit(steps=steps, progress=progress)
    return _generator_maps(fresh, k, n, seed)[0]


def _shuffled_model(classifier_card: dict[str, Any], data: Any, epochs: int | None, seed: int, device: torch.device,
                    progress: bool) -> tuple[torch.nn.Module | None, str]:
    """The classifier's architecture trained on labels shuffled once (seeded); ``None`` and why when it cannot be."""
    from ...models import TrainConfig, build_model, train_classifier
    from ...data import Dataset

    model_name, params, train = classifier_card.get("model"), classifier_card.get("model_params"), classifier_card.get("train_config")
    if not isinstance(model_name, str) or not isinstance(params, dict):
        return None, "the classifier's card names no netinvert architecture (e.g. a TorchScript file)"
    cfg = dict(train) if isinstance(train, dict) else {}
    known = {f.name for f in fields(TrainConfig)}
    cfg = {key: v for key, v in cfg.items() if key in known}
    cfg.update(seed=seed, device=str(device), adv_eps=0.0)
    if epochs is not None:
        cfg["epochs"] = epochs
    perm = torch.randperm(len(data.y_train), generator=torch.Generator().manual_seed(seed))
    shuffled = Dataset(data.name, data.x_train, data.y_train[perm], data.x_test, data.y_test, data.class_names, data.source,
                       data.mean, data.std)
    torch.manual_seed(seed)
    model = build_model(model_name, **params)
    train_classifier(model, shuffled, TrainConfig(**cfg), progress=progress)
    return model.to(device).eval(), ""


@torch.no_grad()
def _path_probs(classifier: torch.nn.Module, path: torch.Tensor, a: int, b: int) -> torch.Tensor:
    steps, n = path.shape[:2]
    device = next(classifier.parameters()).device
    p = torch.softmax(classifier(path.reshape(steps * n, *path.shape[2:]).to(device)).float(), 1).cpu()
    return p[:, [a, b]].reshape(steps, n, 2).mean(1)


def _explain_bnn(run: Path, config: ExplainConfig, out: Path, force: bool) -> ExplainResult:
    """Per-label pixel marginals of near-uniform SAT preimages of a BNN run (the ``sample`` query for every label)."""
    from ...bnn import load_bnn_run, run_bnn_query

    t0 = time.perf_counter()
    threads = set_threads(config.threads)
    params: dict[str, Any] = {"n": config.bnn_samples, "seed": config.seed}
    if config.bnn_seconds is not None:
        params["seconds"] = config.bnn_seconds
    answer = run_bnn_query("sample", run, params)
    bnn = load_bnn_run(run)
    h, w = bnn.image_shape
    rows = answer.result["results"]
    maps = torch.stack([torch.tensor(r["marginals"], dtype=torch.float32).reshape(1, h, w) if r["n_samples"]
                        else torch.full((1, h, w), float("nan")) for r in rows])
    names = [f"label {r['label']} ({r['n_samples']})" for r in rows]
    seconds = time.perf_counter() - t0
    with staged_run(out, force=force, inputs=[run]) as tmp:
        save_map_rows([("P(bit = 1)", torch.nan_to_num(maps, nan=0.0))], names, tmp / "marginals.png", cmap="viridis",
                      title="per-label share of near-uniform SAT preimages with each input bit on (count in brackets)")
        save_weights(tmp / "maps.safetensors", {"marginals": maps.contiguous()})
        metrics = {"labels": [{k: r[k] for k in ("label", "status", "n_samples", "seconds")} for r in rows],
                   "seconds": seconds}
        write_json(tmp / "metrics.json", metrics)
        write_card(tmp, {"kind": "explanation", "config": config.to_dict(), "bnn_run": str(run.absolute()),
                         "bnn_weights_sha256": answer.weights_sha256, "seed": config.seed, "device": "cpu",
                         "threads": threads, "seconds": seconds})
    return ExplainResult(run_dir=out, n_classes=len(rows), pairs=(), ours_last_layer_ssim=None,
                         attribution_last_layer_ssim=None, ours_passes=None, seconds=seconds)


@restores_threads
def run_explain(config: ExplainConfig, out: str | Path, *, force: bool = False, progress: bool = True) -> ExplainResult:
    """Explain the classifier an inversion run inverted; write the run folder ``out`` (see the module docstring).

    Raises
    ------
    ValueError, UnknownNameError
        On an invalid config, a pair naming a class the classifier does not have, or a bad ``out``
        (before any work).
    RunFormatError
        If ``config.inversion`` is not an inversion run.
    """
    from ...inversion import Inverter, load_inversion_classifier
    from ...report import save_class_grid

    if not isinstance(config, ExplainConfig):
        raise ValueError(f"run_explain takes an ExplainConfig. Got {type(config).__name__} instead.")
    config.validate()
    run = Path(config.run)
    card = read_card(run, required=("kind",))
    if card["kind"] == "bnn":
        return _explain_bnn(run, config, check_out(out, force=force, inputs=[run]), force)
    if card["kind"] != "inverter":
        raise RunFormatError(f"{run} holds a {card['kind']!r} run; 'netinvert explain' reads a run of 'netinvert invert' "
                             "or 'netinvert bnn train'.")
    out = check_out(out, force=force, inputs=[run])
    device = resolve_device(config.device)
    threads = set_threads(config.threads)
    t0 = time.perf_counter()
    classifier, info = load_inversion_classifier(run, card, device=device)
    classifier.eval()
    k = int(classifier.n_classes)
    if config.pairs is not None:
        for a, b in config.pairs:
            if not (0 <= a < k and 0 <= b < k):
                raise bad_param("ExplainConfig", "pairs", f"pairs of class indices in [0, {k - 1}]", config.pairs)
    clf_card = info.get("card") or {}
    dataset = (card.get("config") or {}).get("dataset") or clf_card.get("dataset")
    if not isinstance(dataset, str):
        raise RunFormatError(f"Neither {run} nor its classifier names a dataset; explain needs its test images.")
    data = load_dataset(dataset, (card.get("config") or {}).get("data_root") or clf_card.get("data_root"))
    names = list(clf_card.get("class_names") or data.class_names)[:k]
    inverter = Inverter.load(run, classifier, device=device)
    seed_everything(config.seed)

    means, variances = _generator_maps(inverter, k, config.samples_per_class, config.seed)
    gallery_x, gallery_y = inverter.sample_classes(8, seed=config.seed)
    pairs = config.pairs or _default_pairs(means)
    gen = torch.Generator().manual_seed(config.seed)
    picks = torch.cat([torch.nonzero(data.y_test == c).flatten()[torch.randperm(int((data.y_test == c).sum()), generator=gen)
                                                                 [:config.attribution_images]] for c in range(k)])
    x_attr, y_attr = data.x_test[picks], data.y_test[picks]
    attr = class_attribution_maps(classifier, x_attr, y_attr, k, config.attribution)
    paths = {(a, b): inverter.sample_between(a, b, n=config.path_n, steps=config.path_steps, seed=config.seed) for a, b in pairs}

    sanity: dict[str, Any] = {}
    rows_ours: list[tuple[str, torch.Tensor]] = [("trained", means)]
    rows_attr: list[tuple[str, torch.Tensor]] = [("trained", attr)]
    if config.sanity:
        steps = config.sanity_steps or int((card.get("fit") or {}).get("steps") or 1000)
        layers = parameter_layers(classifier)
        cascade = list(cascading_randomisation(classifier, seed=config.seed + 1))
        per_level = []
        for i, (layer, model) in enumerate(cascade):
            theirs = class_attribution_maps(model, x_attr, y_attr, k, config.attribution)
            level = {"randomised_from": layer, "layers_randomised": i + 1, "attribution_ssim": map_ssim(attr, theirs).tolist()}
            if i in (0, len(cascade) - 1):  # our maps need a re-inversion each: the two ends of the cascade
                mine = _reinvert_maps(inverter, model, steps, k, config.samples_per_class, config.seed, progress)
                level["ours_ssim"] = map_ssim(means, mine).tolist()
                rows_ours.append((f"random {i + 1}/{len(cascade)}", mine))
                rows_attr.append((f"random {i + 1}/{len(cascade)}", theirs))
            per_level.append(level)
        sanity["cascade"] = per_level
        sanity["layers"] = layers
        sanity["reinversion_steps"] = steps
        shuffled, why = _shuffled_model(clf_card, data, config.shuffle_epochs, config.seed + 2, device, progress)
        if shuffled is None:
            sanity["label_randomisation"] = {"skipped": why}
        else:
            with torch.no_grad():
                acc = float((shuffled(data.x_test.to(device)).argmax(1).cpu() == data.y_test).float().mean())
            mine = _reinvert_maps(inverter, shuffled, steps, k, config.samples_per_class, config.seed, progress)
            theirs = class_attribution_maps(shuffled, x_attr, y_attr, k, config.attribution)
            sanity["label_randomisation"] = {"test_accuracy": acc, "ours_ssim": map_ssim(means, mine).tolist(),
                                             "attribution_ssim": map_ssim(attr, theirs).tolist()}
            rows_ours.append(("shuffled labels", mine))
            rows_attr.append(("shuffled labels", theirs))
        first = per_level[0]
        sanity["ours_last_layer_mean_ssim"] = sum(first["ours_ssim"]) / k
        sanity["attribution_last_layer_mean_ssim"] = sum(first["attribution_ssim"]) / k
        sanity["ours_passes"] = sanity["ours_last_layer_mean_ssim"] < SSIM_PASS
        sanity["attribution_passes"] = sanity["attribution_last_layer_mean_ssim"] < SSIM_PASS
        sanity["pass_mark"] = SSIM_PASS

    with staged_run(out, force=force, inputs=[run]) as tmp:
        save_class_grid(gallery_x, gallery_y, tmp / "gallery.png", class_names=names, title="inverted samples per class")
        save_map_rows([("mean", means)], names, tmp / "mean_maps.png",
                      title=f"pixel mean over {config.samples_per_class} samples per class (where the model looks)")
        save_map_rows([("variance", variances)], names, tmp / "variance_maps.png", cmap="viridis",
                      title="pixel variance per class (high: the model lets it vary)")
        save_map_rows([(config.attribution, attr)], names, tmp / "attribution_maps.png",
                      title=f"{config.attribution} (|attribution|), mean over {config.attribution_images} test images per class")
        path_probs = {}
        for (a, b), path in paths.items():
            probs = _path_probs(classifier, path, a, b)
            path_probs[f"{a}-{b}"] = probs.tolist()
            save_boundary_path(path, probs, (names[a], names[b]), tmp / f"boundary_{a}_{b}.png")
        if config.sanity:
            def notes(rows: list[tuple[str, torch.Tensor]]) -> list[list[str]]:
                return [[""] * k if r == 0 else [f"SSIM {v:.2f}" for v in map_ssim(rows[0][1], m).tolist()]
                        for r, (_, m) in enumerate(rows)]

            save_map_rows(rows_ours, names, tmp / "sanity_ours.png", notes=notes(rows_ours),
                          title="sanity: our mean maps of the trained, randomised and shuffled-label models")
            save_map_rows(rows_attr, names, tmp / "sanity_attribution.png", notes=notes(rows_attr),
                          title=f"sanity: {config.attribution} of the trained, randomised and shuffled-label models")
        tensors = {"mean": means, "variance": variances, "attribution": attr}
        tensors.update({f"sanity.{name.replace(' ', '_').replace('/', 'of')}": m for name, m in rows_ours[1:]})
        save_weights(tmp / "maps.safetensors", {key: v.contiguous() for key, v in tensors.items()})
        seconds = time.perf_counter() - t0
        metrics = {"pairs": [list(p) for p in pairs], "boundary_probabilities": path_probs, "sanity": sanity,
                   "samples_per_class": config.samples_per_class, "seconds": seconds}
        write_json(tmp / "metrics.json", metrics)
        write_card(tmp, {"kind": "explanation", "config": config.to_dict(), "inversion_run": str(run.absolute()),
                         "inversion_weights_sha256": weights_sha256(run), "classifier_sha256": info.get("weights_sha256"),
                         "dataset": data.name, "seed": config.seed, "device": str(device), "threads": threads,
                         "attribution": ATTRIBUTIONS.get(config.attribution).description, "seconds": seconds})
    log.info("wrote %s in %.0f s", out, seconds)
    return ExplainResult(run_dir=out, n_classes=k, pairs=tuple(pairs),
                         ours_last_layer_ssim=sanity.get("ours_last_layer_mean_ssim"),
                         attribution_last_layer_ssim=sanity.get("attribution_last_layer_mean_ssim"),
                         ours_passes=sanity.get("ours_passes"), seconds=seconds)

