"""The adversarial workflows: train a perturbation generator (:func:`run_adversarial_training`) and
measure it against PGD, torchattacks' PGD and the independent verifiers (:func:`run_attack`).

Both keep the pipeline contract of ``docs/architecture.md``: a frozen config, ``out`` checked before any
work, a run folder that appears whole or not at all, a frozen result. ``netinvert adversarial train`` /
``netinvert adversarial attack`` call them.

Success is counted over the images the classifier gets right before the attack (an image it already
misclassifies is no success of the attack). Untargeted: the prediction leaves the true label; targeted:
it becomes the target, drawn per image uniformly among the other labels (seeded) or fixed by
``target``. Every attack is timed in the same process, at the same thread count and batch size.
"""

from __future__ import annotations

import importlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from ..._checkpoint import CHECKPOINT_NAME, check_resume, discard_checkpoint, resume_point
from ..._checks import bad_param
from ..._device import resolve_device, seed_everything
from ..._threads import restores_threads, set_threads
from ...data import DATASETS, Dataset, load_dataset
from ...exceptions import RunFormatError, UnsafeCheckpointError
from ...models import load_classifier_run, path_for_card, resolve_recorded_path
from ...runs import (WEIGHTS_NAME, check_out, file_sha256, load_weights, read_card, save_weights, staged_run, write_card,
                     write_json)
from ._attacks import PGD, Norm, check_eps, list_norms, make_norm
from ._generator import (GENERATOR_CONDITIONINGS, GENERATOR_DRAWS, GENERATOR_LOSSES, GENERATOR_OUTPUTS,
                         AdversarialGenerator, list_generator_draws, list_generator_losses, list_generator_outputs)

__all__ = ["AdversarialRunConfig", "AdversarialTrainingResult", "AttackConfig", "AttackResult", "run_adversarial_training",
           "run_attack", "load_generator_run", "SPLITS", "TORCHATTACKS_CLASSES", "GENERATOR_KIND"]

log = logging.getLogger(__name__)

#: The card's ``kind`` of a generator run.
GENERATOR_KIND = "adversarial-generator"
#: Generator steps when neither ``steps`` nor ``seconds`` is given.
DEFAULT_STEPS = 2000
#: The data an attack can run on.
SPLITS: dict[str, Callable[[Dataset], tuple[torch.Tensor, torch.Tensor]]] = {
    "train": lambda d: (d.x_train, d.y_train),
    "test": lambda d: (d.x_test, d.y_test),
}
#: torchattacks' PGD class per norm (the library users would run; compared at equal settings).
TORCHATTACKS_CLASSES = {"linf": "PGD", "l2": "PGDL2"}
#: PGD step count of the reference row (speed ratio, targeted baseline, grid).
REFERENCE_STEPS = 20


def _int(owner: str, name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise bad_param(owner, name, f"an int in [{low}, inf)", value)


def _real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


@dataclass(frozen=True)
class AdversarialRunConfig:
    """What :func:`run_adversarial_training` trains: an :class:`AdversarialGenerator` against a classifier run.

    Parameters
    ----------
    classifier : path
        A classifier run folder (``netinvert train``); only read. The generator trains on its
        dataset's training split.
    eps : float, default=0.1
        Budget radius in [0, 1] pixel units: in (0, 1] for ``linf``, in (0, sqrt(pixels)] for ``l2``.
    norm : {"linf", "l2"}, default="linf"
    steps, seconds : optional
        Training budget (whichever ends first); neither: 2,000 steps. ``steps`` is reproducible.
    targeted_fraction, conditioning, hidden, latent_dim, dropout, output, loss, kappa, diversity, true_label, lr, batch_size
        As :class:`AdversarialGenerator` (``output``: :func:`list_generator_outputs`; ``loss``:
        :func:`list_generator_losses`).
    seed : int, default=0
    device : {"cpu", "cuda", "auto"}
    threads : int, optional
    """

    classifier: str | Path
    eps: float = 0.1
    norm: str = "linf"
    steps: int | None = None
    seconds: float | None = None
    targeted_fraction: float = 0.5
    conditioning: str = "vector"
    hidden: tuple[int, ...] = (256, 256)
    latent_dim: int = 16
    dropout: float = 0.2
    output: str = "squash"
    loss: str = "margin"
    kappa: float = 2.0
    diversity: float = 0.1
    true_label: bool = False
    lr: float = 1e-3
    batch_size: int = 128
    seed: int = 0
    device: str = "auto"
    threads: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.hidden, list):
            object.__setattr__(self, "hidden", tuple(self.hidden))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values: what the card records as ``config``."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    def generator_params(self) -> dict[str, Any]:
        """The :class:`AdversarialGenerator` arguments this config sets."""
        return {"eps": self.eps, "norm": self.norm, "targeted_fraction": self.targeted_fraction,
                "conditioning": self.conditioning, "hidden": self.hidden, "latent_dim": self.latent_dim,
                "dropout": self.dropout, "output": self.output, "loss": self.loss, "kappa": self.kappa, "diversity": self.diversity,
                "true_label": self.true_label, "lr": self.lr, "batch_size": self.batch_size, "seed": self.seed}

    def validate(self) -> AdversarialRunConfig:
        """Raise ``ValueError`` on the first invalid field that needs no model (sklearn's message shape); returns ``self``."""
        owner = type(self).__name__
        if self.norm not in list_norms():
            raise bad_param(owner, "norm", f"one of {list_norms()}", self.norm)
        check_eps(self.eps, make_norm(self.norm), None, owner)
        if self.conditioning not in GENERATOR_CONDITIONINGS:
            raise bad_param(owner, "conditioning", f"one of {list(GENERATOR_CONDITIONINGS)}", self.conditioning)
        if self.output not in GENERATOR_OUTPUTS:
            raise bad_param(owner, "output", f"one of {list_generator_outputs()}", self.output)
        if self.loss not in GENERATOR_LOSSES:
            raise bad_param(owner, "loss", f"one of {list_generator_losses()}", self.loss)
        if self.steps is not None:
            _int(owner, "steps", self.steps, 1)
        if self.seconds is not None and (not _real(self.seconds) or not self.seconds > 0):
            raise bad_param(owner, "seconds", "a finite float > 0 or None", self.seconds)
        if self.threads is not None:
            _int(owner, "threads", self.threads, 1)
        if self.device not in ("cpu", "cuda", "auto"):
            raise bad_param(owner, "device", "one of ['cpu', 'cuda', 'auto']", self.device)
        return self


@dataclass(frozen=True)
class AdversarialTrainingResult:
    """What :func:`run_adversarial_training` wrote: the run folder and its headline numbers."""

    run_dir: Path
    eps: float
    norm: str
    steps: int
    seconds: float
    train_success: float | None
    test_success: float
    weights_sha256: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["run_dir"] = str(self.run_dir)
        return d


def _dataset_of(card: Mapping[str, Any], run: Path) -> tuple[str, str | None]:
    dataset = card.get("dataset")
    if not isinstance(dataset, str):
        raise RunFormatError(f"{run} names no dataset in its card; an adversarial run needs the data it was trained on.")
    return dataset, card.get("data_root")


@torch.no_grad()
def _predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    device = next(model.parameters()).device
    return torch.cat([model(x[i:i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(x), batch_size)])


def _other_labels(y: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """One target per image, uniform among the labels other than its own (seeded)."""
    return (y + torch.randint(1, k, (len(y),), generator=torch.Generator().manual_seed(seed))) % k


def _comparison_grid(rows: Mapping[str, torch.Tensor], path: Path, title: str) -> None:
    """One row per kind of image (clean, each attack, the perturbation), the same inputs in every column."""
    from ...report import save_class_grid

    images = torch.cat([r.cpu() for r in rows.values()])
    labels = torch.cat([torch.full((len(r),), i) for i, r in enumerate(rows.values())])
    save_class_grid(images, labels, path, class_names=list(rows), title=title)


def _perturbation_image(delta: torch.Tensor) -> torch.Tensor:
    """A perturbation shown as grey 0.5 plus the perturbation scaled to fill [0, 1]."""
    scale = delta.abs().amax().clamp_min(1e-12)
    return (0.5 + 0.5 * delta / scale).clamp(0, 1)


@restores_threads
def run_adversarial_training(config: AdversarialRunConfig, out: str | Path, *, force: bool = False, resume: bool = False,
                             progress: bool = True, checkpoint_steps: int | None = None,
                             checkpoint_seconds: float | None = 60.0) -> AdversarialTrainingResult:
    """Train a perturbation generator against the classifier run ``config.classifier``; write the run folder ``out``.

    ``out`` receives ``card.json`` (kind ``adversarial-generator``, config, seed, device, threads, versions,
    the generator's parameters and the sha256 of the classifier and of the generator weights),
    ``weights.safetensors`` (the generator), ``history.json`` (per step: loss, margin, diversity, batch
    success), ``metrics.json`` (steps, seconds, training success over the last 50 steps, and untargeted /
    targeted success on the first 500 test images) and ``examples.png`` (clean test images, their
    untargeted and targeted adversarial examples and the perturbations).

    Parameters
    ----------
    resume : bool, default=False
        The run is written into the hidden sibling ``.OUT.partial`` (:func:`netinvert.runs.partial_dir`);
        training writes its checkpoint ``checkpoint.safetensors`` there every ``checkpoint_steps`` steps and/or
        ``checkpoint_seconds`` seconds, when training ends and when interrupted (Ctrl-C, or SIGTERM under the
        CLI), which keeps that folder; an error removes it. With ``resume`` training continues from its
        checkpoint to the weights an uninterrupted run ends with (a ``steps`` budget; bit for bit on the same
        device and thread count); without a checkpoint it starts afresh (a log line says so); without ``resume``
        a left-over one is refused unless ``force``, which discards it. A checkpoint of another config (but
        ``device`` and ``threads``) or classifier is refused. An ``out`` that already holds a run is refused
        unless ``force``. The finished run folder holds no checkpoint.
    checkpoint_steps : int, optional
        Steps between checkpoints (``None``: by time only).
    checkpoint_seconds : float, optional, default=60
        Seconds between checkpoints (``None``: by steps only).

    Raises
    ------
    ValueError, UnknownNameError
        On an invalid config (e.g. ``eps`` outside the input range, an unknown ``norm``) or ``out``.
    RunFormatError
        If ``config.classifier`` is not a classifier run (before any work); with ``resume``, if the checkpoint
        was written for another config or classifier.
    RunExistsError
        If ``out`` holds a run (unless ``force``), or a checkpoint left by an interrupted run (unless ``resume``
        or ``force``).
    """
    if not isinstance(config, AdversarialRunConfig):
        raise ValueError(f"run_adversarial_training takes an AdversarialRunConfig. Got {type(config).__name__} instead.")
    config.validate()
    if checkpoint_steps is not None:
        _int("run_adversarial_training", "checkpoint_steps", checkpoint_steps, 1)
    if checkpoint_seconds is not None and (not _real(checkpoint_seconds) or not checkpoint_seconds > 0):
        raise bad_param("run_adversarial_training", "checkpoint_seconds", "a finite float > 0 or None", checkpoint_seconds)
    check_resume(out, force=force, resume=resume)
    out = check_out(out, force=force, inputs=[config.classifier])
    kind = read_card(config.classifier).get("kind", "classifier")
    if kind != "classifier":
        raise RunFormatError(f"The 'classifier' parameter of AdversarialRunConfig must be a classifier run (netinvert "
                             f"train). Got {str(config.classifier)!r}, which holds a {kind!r} run, instead.")
    device = resolve_device(config.device)
    classifier, clf_card = load_classifier_run(config.classifier, device)
    check_eps(config.eps, make_norm(config.norm), math.prod(classifier.input_shape), type(config).__name__)
    attacker = AdversarialGenerator(classifier, device=device, **config.generator_params()).validate()
    dataset, data_root = _dataset_of(clf_card, Path(config.classifier))
    threads = set_threads(config.threads)
    data = load_dataset(dataset, data_root)
    steps = config.steps if config.steps is not None or config.seconds is not None else DEFAULT_STEPS
    classifier_sha = file_sha256(Path(config.classifier) / WEIGHTS_NAME)
    resume_info = {"config": config.to_dict(), "classifier_sha256": classifier_sha}
    resume_from = resume_point(out, resume_info, resume=resume, force=force)  # before the staging folder is entered
    with staged_run(out, force=force, resume=resume, keep_on_interrupt=True, inputs=[config.classifier]) as tmp:
        attacker.fit(data.x_train, data.y_train, steps=steps, seconds=config.seconds, progress=progress,
                     checkpoint=tmp / CHECKPOINT_NAME, checkpoint_steps=checkpoint_steps,
                     checkpoint_seconds=checkpoint_seconds, checkpoint_info=resume_info, resume_from=resume_from)
        history = attacker.history_
        n_steps = len(history["step"])
        x, y = data.x_test[:500], data.y_test[:500]
        ok = _predict(classifier, x) == y
        target = _other_labels(y, data.n_classes, config.seed)
        adv_u = attacker(x, y, seed=config.seed).cpu() if config.targeted_fraction < 1 else None
        adv_t = attacker(x, y, target=target, seed=config.seed).cpu() if config.targeted_fraction > 0 else None
        n_ok = max(int(ok.sum()), 1)
        if n_steps == 0:  # a seconds budget spent before the first step (e.g. by an interrupted run): say so
            log.warning("The generator trained no step within its budget; its figures are those of an untrained one.")
        last = history["success"][-50:]
        metrics = {"steps": n_steps, "seconds": history["seconds"][-1] if n_steps else 0.0,
                   "train_success": sum(last) / len(last) if last else None,
                   "test_n": len(x), "test_clean_accuracy": float(ok.float().mean()),
                   "test_success": None if adv_u is None else int(((_predict(classifier, adv_u) != y) & ok).sum()) / n_ok,
                   "test_targeted_success": None if adv_t is None else
                   int(((_predict(classifier, adv_t) == target) & ok).sum()) / n_ok}
        rows = {"clean": x[:10]}
        if adv_u is not None:
            rows.update({"untargeted": adv_u[:10], "perturbation": _perturbation_image(adv_u[:10] - x[:10])})
        if adv_t is not None:
            rows["targeted"] = adv_t[:10]
        _comparison_grid(rows, tmp / "examples.png",
                         f"{config.norm} eps={config.eps:g}: test images and the generator's adversarial examples")
        save_weights(tmp / WEIGHTS_NAME, {k: v.detach().cpu().contiguous()
                                          for k, v in attacker.generator_.state_dict().items()})
        sha = file_sha256(tmp / WEIGHTS_NAME)
        write_json(tmp / "history.json", history)
        write_json(tmp / "metrics.json", metrics)
        write_card(tmp, {"kind": GENERATOR_KIND, "config": config.to_dict(), "dataset": dataset, "data_root": data_root,
                         "seed": config.seed, "device": str(device), "threads": threads,
                         "generator": {"params": {**attacker.get_params(), "hidden": list(config.hidden)},
                                       "architecture": "PerturbationNet"},
                         "classifier": path_for_card(out, config.classifier),
                         "classifier_sha256": classifier_sha,
                         "classifier_path": str(Path(config.classifier).absolute()),
                         "weights_sha256": sha, **metrics})
        discard_checkpoint(tmp)
    log.info("wrote %s (%d steps, test success %s)", out, n_steps, metrics["test_success"])
    return AdversarialTrainingResult(run_dir=out, eps=float(config.eps), norm=config.norm, steps=n_steps,
                                     seconds=metrics["seconds"], train_success=metrics["train_success"],
                                     test_success=metrics["test_success"] if metrics["test_success"] is not None
                                     else metrics["test_targeted_success"], weights_sha256=sha)


def load_generator_run(run: str | Path, device: str | torch.device = "cpu") -> tuple[AdversarialGenerator, dict[str, Any]]:
    """Rebuild the generator of a run written by :func:`run_adversarial_training`, with its classifier.

    The classifier's weights must have the sha256 the card recorded, and so must the generator's.

    Raises
    ------
    RunFormatError
        If ``run`` holds another kind of run.
    UnsafeCheckpointError
        If a weights file changed since the run was written.
    """
    run = Path(run)
    kind = read_card(run).get("kind", "classifier")
    if kind != GENERATOR_KIND:
        raise RunFormatError(f"{run} holds a {kind!r} run, not an adversarial generator run written by "
                             "'netinvert adversarial train'; pass that run's folder.")
    card = read_card(run, required=("classifier", "generator", "weights_sha256"))
    classifier, _ = load_classifier_run(resolve_recorded_path(run, card["classifier"]), device,
                                        expected_sha256=card.get("classifier_sha256"))
    weights = run / WEIGHTS_NAME
    sha = file_sha256(weights) if weights.is_file() else None
    if sha != card["weights_sha256"]:
        raise UnsafeCheckpointError(f"{weights} changed since {run / 'card.json'} was written (sha256 {sha}, the card "
                                    f"records {card['weights_sha256']}); retrain the generator.")
    params = dict(card["generator"]["params"])
    params["hidden"] = tuple(params["hidden"])
    attacker = AdversarialGenerator(classifier, device=device, **params).load_state(load_weights(weights))
    return attacker, card


# --------------------------------------------------------------------------- attack and measure


@dataclass(frozen=True)
class AttackConfig:
    """What :func:`run_attack` measures on a generator run.

    Parameters
    ----------
    generator_run : path
        A run folder of :func:`run_adversarial_training`; only read.
    dataset, data_root : optional
        The images to attack (default: the classifier's dataset); their shape and classes must fit.
    split : {"train", "test"}, default="test"
    n : int, optional
        The first ``n`` images of the split (default all).
    pgd_steps : tuple of int, default=(10, 20, 40)
        PGD baselines (ours, and torchattacks' when installed), at the generator's eps and norm, random start,
        step ``2.5 eps / steps``. 20 must be among them: it is the speed reference and the targeted baseline.
    target : int, optional
        Targeted attacks towards this label for every image of another class (default: one random other
        label per image, seeded); images of that class are left out of the targeted figures.
    batch_size : int, default=250
        Images per attack call, the same for every attack (what ms/example is measured at).
    samples_per_input : int, default=4
        Draws per image for the generator's diversity figures (always ``random`` draws).
    draw : {"random", "mean"}, default="random"
        The noise of the generator's ``generator`` and ``generator-targeted`` rows (:func:`list_generator_draws`):
        one random draw per image, or ``z = 0`` with dropout off. One forward pass either way.
    counterfeit_steps : int, default=300
        Inversion steps for the counterfeits (no budget); 0 skips them.
    counterfeit_per_label : int, default=20
    counterfeit_confidence : float, default=0.9
        The classifier's softmax probability a counterfeit must reach for its label.
    verifier_epochs : int, optional
        Override the verifiers' epochs (quick checks only).
    verifier_cache : path, optional
        Where :func:`netinvert.metrics.train_verifiers` keeps and reuses its verifiers.
    seed, device, threads
    """

    generator_run: str | Path
    dataset: str | None = None
    data_root: str | None = None
    split: str = "test"
    n: int | None = None
    pgd_steps: tuple[int, ...] = (10, 20, 40)
    target: int | None = None
    batch_size: int = 250
    samples_per_input: int = 4
    draw: str = "random"
    counterfeit_steps: int = 300
    counterfeit_per_label: int = 20
    counterfeit_confidence: float = 0.9
    verifier_epochs: int | None = None
    verifier_cache: str | Path | None = None
    seed: int = 0
    device: str = "auto"
    threads: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.pgd_steps, list):
            object.__setattr__(self, "pgd_steps", tuple(self.pgd_steps))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    def validate(self) -> AttackConfig:
        owner = type(self).__name__
        if self.split not in SPLITS:
            raise bad_param(owner, "split", f"one of {sorted(SPLITS)}", self.split)
        if self.dataset is not None:
            DATASETS.get(self.dataset)
        if self.draw not in GENERATOR_DRAWS:
            raise bad_param(owner, "draw", f"one of {list_generator_draws()}", self.draw)
        for name, low in (("batch_size", 1), ("samples_per_input", 2), ("counterfeit_steps", 0),
                          ("counterfeit_per_label", 1), ("seed", 0)):
            _int(owner, name, getattr(self, name), low)
        for name in ("n", "verifier_epochs", "threads"):
            if getattr(self, name) is not None:
                _int(owner, name, getattr(self, name), 1)
        if self.target is not None:
            _int(owner, "target", self.target, 0)
        steps = self.pgd_steps
        if not isinstance(steps, tuple) or REFERENCE_STEPS not in steps or not all(
                isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in steps):
            raise bad_param(owner, "pgd_steps", f"a tuple of ints >= 1 that holds {REFERENCE_STEPS}", steps)
        if not _real(self.counterfeit_confidence) or not 0 < self.counterfeit_confidence < 1:
            raise bad_param(owner, "counterfeit_confidence", "a float in (0, 1)", self.counterfeit_confidence)
        if self.device not in ("cpu", "cuda", "auto"):
            raise bad_param(owner, "device", "one of ['cpu', 'cuda', 'auto']", self.device)
        return self


@dataclass(frozen=True)
class AttackResult:
    """What :func:`run_attack` measured; ``run_dir`` is None when nothing was written.

    ``attacks[name]`` holds per attack: ``success`` (share of the correctly classified images the attack
    turns), ``mean_norm``/``max_norm`` (of ``x_adv - x`` in the budget's norm), ``ms_per_example``,
    ``transfer_plain``/``transfer_robust`` (share of the successful examples that also fool each
    verifier, counted where the verifier was right on the clean image) and, for targeted attacks,
    ``per_target``. ``speedup`` is PGD-20's ms/example over the generator's, measured in this process at
    ``threads`` threads (None for a targeted-only generator).
    """

    run_dir: Path | None
    generator_run: str
    eps: float
    norm: str
    n: int
    clean_accuracy: float
    threads: int
    speedup: float | None
    attacks: dict[str, dict[str, Any]]
    generator_extras: dict[str, float]
    counterfeits: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["run_dir"] = None if self.run_dir is None else str(self.run_dir)
        return d


def _torchattacks() -> Any | None:
    """torchattacks when installed (it is optional: its package metadata pulls in torchvision)."""
    try:
        return importlib.import_module("torchattacks")
    except ImportError:
        log.warning("torchattacks is not installed; its PGD rows are skipped (pip install --no-deps torchattacks).")
        return None


def _timed(attack: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor], x: torch.Tensor,
           y: torch.Tensor, target: torch.Tensor | None, batch_size: int) -> tuple[torch.Tensor, float]:
    """Run ``attack`` batch by batch; return the adversarial images and the wall milliseconds per image.

    One untimed call on a small batch first, so one-off costs (allocations, lazy imports) are not counted.
    """
    attack(x[:2], y[:2], None if target is None else target[:2])
    out = []
    t0 = time.perf_counter()
    for i in range(0, len(x), batch_size):
        sl = slice(i, i + batch_size)
        out.append(attack(x[sl], y[sl], None if target is None else target[sl]).detach().cpu())
    return torch.cat(out), 1000 * (time.perf_counter() - t0) / len(x)


def _row(x: torch.Tensor, y: torch.Tensor, adv: torch.Tensor, ms: float | None, ok: torch.Tensor, norm: Norm,
         classifier: torch.nn.Module, verifiers: Any, target: torch.Tensor | None, k: int) -> dict[str, Any]:
    pred = _predict(classifier, adv)
    hit = (pred == target) if target is not None else (pred != y)
    won = hit & ok
    n_ok = max(int(ok.sum()), 1)
    size = norm.measure(adv - x)
    row: dict[str, Any] = {"success": int(won.sum()) / n_ok, "mean_norm": float(size.mean()), "max_norm": float(size.max()),
                           "ms_per_example": ms}
    for role in ("plain", "robust"):
        model = getattr(verifiers, role)
        right = _predict(model, x) == y
        vpred = _predict(model, adv)
        fooled = (vpred == target) if target is not None else (vpred != y)
        base = won & right
        row[f"transfer_{role}"] = int((fooled & base).sum()) / max(int(base.sum()), 1)
    if target is not None:
        row["per_target"] = {str(c): int((won & (target == c)).sum()) / max(int((ok & (target == c)).sum()), 1)
                             for c in range(k) if bool((target == c).any())}
    return row


def _counterfeits(classifier: torch.nn.Module, verifiers: Any, config: AttackConfig, device: torch.device,
                  names: list[str], png: Path | None, progress: bool) -> dict[str, Any]:
    """Inverted samples the classifier gives label ``a`` confidently while both verifiers agree on ``b != a``."""
    from ...inversion import Inverter

    inverter = Inverter(classifier, seed=config.seed, device=device).fit(steps=config.counterfeit_steps, progress=progress)
    xs, labels = inverter.sample_classes(config.counterfeit_per_label, seed=config.seed)
    with torch.no_grad():
        prob = torch.cat([torch.softmax(classifier(xs[i:i + 500].to(device)), 1).cpu() for i in range(0, len(xs), 500)])
    conf = prob.gather(1, labels[:, None]).squeeze(1)
    confident = (prob.argmax(1) == labels) & (conf >= config.counterfeit_confidence)
    plain, robust = _predict(verifiers.plain, xs), _predict(verifiers.robust, xs)
    fake = confident & (plain == robust) & (plain != labels)
    per_label = {names[c]: int((fake & (labels == c)).sum()) / max(int((labels == c).sum()), 1)
                 for c in range(len(names))}
    pairs: dict[str, int] = {}
    for a, b in zip(labels[fake].tolist(), plain[fake].tolist()):
        key = f"{names[a]} -> {names[b]}"
        pairs[key] = pairs.get(key, 0) + 1
    if png is not None and bool(fake.any()):
        from ...report import save_class_grid

        notes = [" ".join(names[b] for b in plain[fake & (labels == c)][:8].tolist())
                 for c in labels[fake].unique().tolist()]
        keep = torch.cat([torch.nonzero(fake & (labels == c)).flatten()[:8] for c in labels[fake].unique().tolist()])
        save_class_grid(xs[keep], labels[keep], png, class_names=names, row_notes=notes,
                        title=f"counterfeits\nrow: classifier (p>={config.counterfeit_confidence:g})\nright: verifiers")
    return {"n": len(xs), "confident": float(confident.float().mean()), "success": float(fake.float().mean()),
            "per_label": per_label, "pairs": dict(sorted(pairs.items(), key=lambda kv: -kv[1])),
            "inversion_steps": config.counterfeit_steps, "confidence": config.counterfeit_confidence}


def _random_baseline(x: torch.Tensor, norm: Norm, eps: float, seed: int) -> torch.Tensor:
    """Random perturbations on the ball's surface (a norm step of length ``eps`` along Gaussian noise:
    random signs for L-inf, a random direction for L2), the budget an attack may use, spent blindly."""
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    return (x + norm.project(norm.step(noise, eps), eps)).clamp(0, 1)


@restores_threads
def run_attack(config: AttackConfig, out: str | Path | None = None, *, force: bool = False,
               progress: bool = True) -> AttackResult:
    """Attack images with a generator run and with PGD baselines; measure success, norms, speed and transfer.

    Rows of ``attacks``: ``generator`` (untargeted, one draw per image), ``random`` (random perturbations
    filling the same budget), ``pgd-K`` (ours) and ``torchattacks-pgd-K`` (when torchattacks is installed)
    for each ``K`` in ``pgd_steps``, then the targeted ``generator-targeted`` and ``pgd-20-targeted``
    (rows present as the generator was trained for them). ``generator_extras``: ``success_any_of_k`` (some
    of ``samples_per_input`` draws succeeds) and ``distinct`` (mean L2 distance between two draws for the
    same image over the mean L2 perturbation size). ``counterfeits`` (unless ``counterfeit_steps`` is 0):
    inverted samples the classifier accepts with high confidence while both independent verifiers
    (:func:`netinvert.metrics.train_verifiers`) agree on another label.

    With ``out``: ``card.json``, ``metrics.json``, ``examples.png`` (clean images, the generator's and
    PGD-20's adversarial examples) and ``counterfeits.png``.

    Raises
    ------
    RunFormatError
        If ``generator_run`` is not a generator run (before any work).
    ValueError, UnknownNameError
        On an invalid config, a dataset that does not fit the classifier, or ``target`` out of range.
    """
    from ...metrics import train_verifiers

    if not isinstance(config, AttackConfig):
        raise ValueError(f"run_attack takes an AttackConfig. Got {type(config).__name__} instead.")
    config.validate()
    run = Path(config.generator_run)
    if out is not None:
        out = check_out(out, force=force, inputs=[run])
    device = resolve_device(config.device)
    attacker, card = load_generator_run(run, device)
    classifier = attacker.classifier
    k = int(classifier.n_classes)
    if config.target is not None and config.target >= k:
        raise bad_param(type(config).__name__, "target", f"an int in [0, {k - 1}] (a label of the classifier)", config.target)
    if config.target is not None and attacker.targeted_fraction == 0:
        raise ValueError(f"The 'target' parameter of AttackConfig needs a generator trained for targeted attacks; {run} "
                         "was trained with targeted_fraction=0.")
    dataset = config.dataset or card["dataset"]
    data = load_dataset(dataset, config.data_root if config.dataset else (config.data_root or card.get("data_root")))
    if tuple(data.input_shape) != tuple(classifier.input_shape) or data.n_classes != k:
        raise ValueError(f"The 'dataset' parameter of AttackConfig names {dataset!r} with images {tuple(data.input_shape)} "
                         f"and {data.n_classes} classes, but the classifier takes {tuple(classifier.input_shape)} and "
                         f"{k} classes. Pass its own dataset ({card['dataset']!r}).")
    threads = set_threads(config.threads)
    seed_everything(config.seed)
    x, y = SPLITS[config.split](data)
    if config.n is not None:
        x, y = x[:config.n], y[:config.n]
    norm, eps = make_norm(attacker.norm), float(attacker.eps)
    verifier_data = load_dataset(card["dataset"], card.get("data_root")) if dataset != card["dataset"] else data
    verifiers = train_verifiers(verifier_data, seed=config.seed + 1, device=device, progress=False,
                                epochs=config.verifier_epochs, cache_dir=config.verifier_cache)
    ok = _predict(classifier, x) == y

    def row(adv: torch.Tensor, ms: float | None, target: torch.Tensor | None = None) -> dict[str, Any]:
        return _row(x, y, adv, ms, ok, norm, classifier, verifiers, target, k)

    attacks: dict[str, dict[str, Any]] = {}
    adversarial: dict[str, torch.Tensor] = {}
    untargeted = attacker.targeted_fraction < 1
    targeted = attacker.targeted_fraction > 0
    if untargeted:
        adv, ms = _timed(lambda a, b, t: attacker(a.to(device), b.to(device), seed=config.seed, draw=config.draw), x, y,
                         None, config.batch_size)
        attacks["generator"], adversarial["generator"] = row(adv, ms), adv
    attacks["random"] = row(_random_baseline(x, norm, eps, config.seed), None)
    ta = _torchattacks()
    for steps in config.pgd_steps:
        pgd = PGD(classifier, eps=eps, norm=norm, steps=steps)
        gen = torch.Generator().manual_seed(config.seed)
        adv, ms = _timed(lambda a, b, t: pgd(a.to(device), b.to(device), generator=gen), x, y, None, config.batch_size)
        attacks[f"pgd-{steps}"], adversarial[f"pgd-{steps}"] = row(adv, ms), adv
        if ta is not None:
            lib = getattr(ta, TORCHATTACKS_CLASSES[norm.name])(classifier, eps=eps, alpha=pgd.alpha, steps=steps,
                                                               random_start=True)
            torch.manual_seed(config.seed)
            adv, ms = _timed(lambda a, b, t: lib(a.to(device), b.to(device)), x, y, None, config.batch_size)
            attacks[f"torchattacks-pgd-{steps}"] = row(adv, ms)
    if targeted:
        if config.target is None:
            keep = torch.ones(len(y), dtype=torch.bool)
            target = _other_labels(y, k, config.seed)
        else:
            keep = y != config.target
            target = torch.full_like(y, config.target)
        xt, yt, tt, okt = x[keep], y[keep], target[keep], ok[keep]
        adv, ms = _timed(lambda a, b, t: attacker(a.to(device), b.to(device), target=t.to(device), seed=config.seed,
                                                  draw=config.draw), xt, yt, tt, config.batch_size)
        attacks["generator-targeted"] = _row(xt, yt, adv, ms, okt, norm, classifier, verifiers, tt, k)
        adversarial["generator-targeted"] = adv
        pgd = PGD(classifier, eps=eps, norm=norm, steps=REFERENCE_STEPS)
        gen = torch.Generator().manual_seed(config.seed)
        adv, ms = _timed(lambda a, b, t: pgd(a.to(device), b.to(device), target=t.to(device), generator=gen), xt, yt, tt,
                         config.batch_size)
        attacks[f"pgd-{REFERENCE_STEPS}-targeted"] = _row(xt, yt, adv, ms, okt, norm, classifier, verifiers, tt, k)
    extras: dict[str, float] = {}
    if untargeted:
        draws = torch.cat([attacker.samples(x[i:i + config.batch_size].to(device), y[i:i + config.batch_size].to(device),
                                            config.samples_per_input, seed=config.seed).cpu()
                           for i in range(0, len(x), config.batch_size)], 1)
        any_hit = torch.stack([_predict(classifier, d) != y for d in draws]).any(0) & ok
        flat = (draws - x).flatten(2)
        spread = (flat[0] - flat[1]).norm(dim=1).mean() / flat.norm(dim=2).mean().clamp_min(1e-12)
        extras = {"samples_per_input": config.samples_per_input,
                  "success_any_of_k": int(any_hit.sum()) / max(int(ok.sum()), 1), "distinct": float(spread)}
    ref = f"pgd-{REFERENCE_STEPS}"
    speedup = attacks[ref]["ms_per_example"] / attacks["generator"]["ms_per_example"] if untargeted else None
    names = list(data.class_names)
    fakes = None
    result_kwargs = dict(generator_run=str(run), eps=eps, norm=norm.name, n=len(x), clean_accuracy=float(ok.float().mean()),
                         threads=threads, speedup=speedup, attacks=attacks, generator_extras=extras)
    if out is None:
        if config.counterfeit_steps:
            fakes = _counterfeits(classifier, verifiers, config, device, names, None, progress)
        return AttackResult(run_dir=None, counterfeits=fakes, **result_kwargs)
    with staged_run(out, force=force, inputs=[run]) as tmp:
        if config.counterfeit_steps:
            fakes = _counterfeits(classifier, verifiers, config, device, names, tmp / "counterfeits.png", progress)
        result = AttackResult(run_dir=Path(out), counterfeits=fakes, **result_kwargs)
        rows = {"clean": x[:10]}
        rows.update({name: adversarial[name][:10] for name in ("generator", ref) if name in adversarial})
        if "generator-targeted" in adversarial:
            rows["generator-targeted"] = adversarial["generator-targeted"][:10]
        _comparison_grid(rows, tmp / "examples.png", f"{norm.name} eps={eps:g}: clean, generator (one pass), PGD-20")
        write_json(tmp / "metrics.json", {key: v for key, v in result.to_dict().items() if key != "run_dir"})
        write_card(tmp, {"kind": "adversarial-attack", "config": config.to_dict(), "generator_run": path_for_card(out, run),
                         "generator_sha256": card["weights_sha256"], "classifier_sha256": card.get("classifier_sha256"),
                         "dataset": dataset, "split": config.split, "seed": config.seed, "device": str(device),
                         "threads": threads, "verifiers": verifiers.info, "speedup": speedup,
                         "torchattacks": None if ta is None else ta.__version__})
    return result
