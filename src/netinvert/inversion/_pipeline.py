"""The inversion workflows as library functions: the CLI, ``netinvert demo`` and ``bench/`` all call these.

Each takes a frozen config and an ``out`` folder, refuses a bad ``out`` before any work, writes its run folder
whole or not at all (:func:`netinvert.runs.staged_run`) and returns a frozen result (``docs/architecture.md``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .._device import resolve_device
from .._distributed import World, on_rank0, process_group, rank0_first
from .._threads import set_threads, restores_threads
from ..exceptions import RunFormatError, TrainingDivergedError, UnsafeCheckpointError
from ..models import path_for_card, resolve_recorded_path
from ..runs import WEIGHTS_NAME, check_out, paths_overlap, file_sha256, weights_sha256, read_card, staged_run, write_card, write_json
from .._checkpoint import CHECKPOINT_NAME, check_resume, discard_checkpoint, resume_point
from ._augment import Augmentation, list_augmentations
from ._conditioning import list_conditionings, make_conditioning
from ._generators import list_generators
from ._inverter import PAIR_SOURCES, Inverter, _check_int, _check_positive
from ._presets import list_lr_schedules, list_presets, preset

__all__ = ["InversionRunConfig", "InversionResult", "run_inversion", "PriorRunConfig", "PriorResult", "run_image_prior",
           "SamplingResult", "run_sampling", "load_inversion_classifier", "HEADLINE_METRICS"]

log = logging.getLogger(__name__)

#: Samples per class in the run folder's image grid.
GRID_PER_CLASS = 10

#: Keys of ``metrics.json`` that the card and the result repeat.
HEADLINE_METRICS = ("validity", "confidence", "verifier_accuracy", "frechet", "nn_ssim", "diversity", "real_diversity")


def _plain(value: Any) -> Any:
    """A config field as the card records it: paths as strings, tuples as lists, an augmentation by name and params."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Augmentation):
        return {"name": value.name, "params": dict(value.params)}
    return value


def _config_dict(config: Any) -> dict[str, Any]:
    return {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def _check_optional_int(owner: str, name: str, value: Any, low: int) -> None:
    if value is not None:
        _check_int(owner, name, value, low)


def _check_choice(owner: str, name: str, value: Any, choices: list[str]) -> None:
    if value not in choices:
        raise ValueError(f"The '{name}' parameter of {owner} must be one of {choices}. Got {value!r} instead.")


# ---------------------------------------------------------------------------------------------------------- invert
@dataclass(frozen=True)
class InversionRunConfig:
    """What ``netinvert invert`` runs: a generator trained against a frozen classifier, then measured.

    ``None`` in a setting of the generator (``losses`` to ``ema``) leaves it to the preset, else to
    :class:`Inverter`'s default; an explicit value beats the preset's.

    Parameters
    ----------
    classifier : path
        A classifier run folder (``netinvert train``) or a model file :func:`netinvert.models.load_classifier` reads.
    dataset, data_root : str, optional
        The classifier's data set, when its card does not name it; without one, ``metrics.json`` holds validity
        and confidence only. For a model file (TorchScript, state dict) that does not carry its input shape and
        class count (no JSON card beside it), they are the data set's.
    input_shape : (C, H, W), optional
        The input shape of a model file that neither carries it nor has a ``dataset``; checked against a run
        folder's.
    n_classes : int, optional
        Likewise, the number of classes.
    preset : str, default="default"
        See :func:`netinvert.inversion.list_presets`.
    conditioning : str, default="vector"
    temperature : float, optional
        Sharpness ``T`` of the vector conditioning ``p = softmax(v / T)`` (default 0.05).
    generator : str, default="auto"
    image_prior : path, optional
        A folder written by :func:`run_image_prior`; the generator then picks the decoder's codes.
    losses : tuple of str, optional
        ``"name:weight[:key=value,...]"`` terms replacing the default objective.
    dropout, latent_dim, width, top_width, lr, batch_size, pairs, lr_schedule, augment, ema
        As in :class:`Inverter`.
    seconds, steps : optional
        Training budget, whichever ends first; neither: 1,000 steps. ``steps`` makes a run reproducible.
    n_per_class : int, default=100
        Samples per class scored for ``metrics.json``.
    verifiers : path, optional
        Folder caching the plain and robust verifiers (default ``OUT/verifiers``); trained when missing.
    verifier_epochs : int, optional
        Override the verifiers' epochs (quick checks only).
    seed : int, default=0
    device : str, default="auto"
    threads : int, optional
        Torch threads (None: ``$NETINVERT_THREADS``, else half the usable cores).
    """

    classifier: str | Path
    dataset: str | None = None
    data_root: str | None = None
    input_shape: tuple[int, ...] | None = None
    n_classes: int | None = None
    preset: str = "default"
    conditioning: str = "vector"
    temperature: float | None = None
    generator: str = "auto"
    image_prior: str | Path | None = None
    losses: tuple[str, ...] | None = None
    dropout: float | None = None
    latent_dim: int | None = None
    width: int | None = None
    top_width: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    pairs: str | None = None
    lr_schedule: str | None = None
    augment: str | Augmentation | None = None
    ema: float | None = None
    seconds: float | None = None
    steps: int | None = None
    n_per_class: int = 100
    verifiers: str | Path | None = None
    verifier_epochs: int | None = None
    seed: int = 0
    device: str = "auto"
    threads: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.losses, (list, str)):  # a list is not hashable; a lone string is one term
            object.__setattr__(self, "losses", (self.losses,) if isinstance(self.losses, str) else tuple(self.losses))
        if isinstance(self.input_shape, list):
            object.__setattr__(self, "input_shape", tuple(self.input_shape))

    def to_dict(self) -> dict[str, Any]:
        """The config as the card records it (JSON values)."""
        return _config_dict(self)

    def validate(self) -> InversionRunConfig:
        """Raise ``ValueError`` (sklearn's message shape) on the first invalid field; returns ``self``."""
        owner = type(self).__name__
        if self.classifier is None or str(self.classifier) == "":
            raise ValueError(f"The 'classifier' parameter of {owner} must be a classifier run folder or model file. Got "
                             f"{self.classifier!r} instead.")
        _check_int(owner, "n_per_class", self.n_per_class, 1)
        _check_optional_int(owner, "n_classes", self.n_classes, 2)
        if self.input_shape is not None and (not isinstance(self.input_shape, tuple) or len(self.input_shape) != 3 or not all(
                isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in self.input_shape)):
            raise ValueError(f"The 'input_shape' parameter of {owner} must be (C, H, W) of positive ints or None. "
                             f"Got {self.input_shape!r} instead.")
        _check_optional_int(owner, "verifier_epochs", self.verifier_epochs, 1)
        _check_optional_int(owner, "steps", self.steps, 1)
        _check_optional_int(owner, "latent_dim", self.latent_dim, 1)
        _check_optional_int(owner, "width", self.width, 1)
        _check_optional_int(owner, "top_width", self.top_width, 1)
        if self.pairs is not None:
            _check_choice(owner, "pairs", self.pairs, list(PAIR_SOURCES))
        _check_optional_int(owner, "batch_size", self.batch_size, 2)
        _check_optional_int(owner, "threads", self.threads, 1)
        _check_int(owner, "seed", self.seed, 0)
        for name in ("seconds", "temperature", "lr"):
            if getattr(self, name) is not None:
                _check_positive(owner, name, getattr(self, name))
        if self.dropout is not None and (isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float))
                                         or not 0 <= self.dropout < 1):
            raise ValueError(f"The 'dropout' parameter of {owner} must be a float in [0, 1). Got {self.dropout!r} instead.")
        if self.ema is not None and (isinstance(self.ema, bool) or not isinstance(self.ema, (int, float)) or not 0 < self.ema < 1):
            raise ValueError(f"The 'ema' parameter of {owner} must be a float in (0, 1) or None. Got {self.ema!r} instead.")
        _check_choice(owner, "preset", self.preset, list_presets())
        _check_choice(owner, "conditioning", self.conditioning, list_conditionings())
        _check_choice(owner, "generator", self.generator, ["auto", *list_generators()])
        if self.lr_schedule is not None:
            _check_choice(owner, "lr_schedule", self.lr_schedule, list_lr_schedules())
        if self.augment is not None and not isinstance(self.augment, Augmentation):
            _check_choice(owner, "augment", self.augment, list_augmentations())
        if self.image_prior is None and preset(self.preset).get("generator") == "prior":
            raise ValueError(f"The preset {self.preset!r} needs an image prior: pass image_prior (--image-prior DIR, "
                             "a folder written by 'netinvert prior').")
        return self

    def inverter_settings(self) -> dict[str, Any]:
        """The :class:`Inverter` keyword arguments (besides classifier, conditioning, seed and device): preset, then overrides."""
        options = {"losses": self.losses, "dropout": self.dropout, "latent_dim": self.latent_dim, "width": self.width,
                   "top_width": self.top_width, "lr": self.lr, "batch_size": self.batch_size, "pairs": self.pairs, "lr_schedule": self.lr_schedule, "augment": self.augment,
                   "ema": self.ema}
        settings = {**preset(self.preset), **{k: v for k, v in options.items() if v is not None}}
        if self.image_prior is not None:
            settings["image_prior"] = Path(self.image_prior)
        if self.generator != "auto" or "generator" not in settings:  # an explicit generator beats the preset's
            settings["generator"] = self.generator
        return settings


@dataclass(frozen=True)
class InversionResult:
    """What :func:`run_inversion` wrote and measured; the figures are those of ``metrics.json``."""

    run_dir: Path
    steps: int
    fit_seconds: float
    validity: float
    confidence: float
    verifier_accuracy: dict[str, float] | None = None
    frechet: dict[str, Any] | None = None
    nn_ssim: float | None = None
    diversity: dict[str, float | None] | None = None
    real_diversity: dict[str, float | None] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), "steps": self.steps, "fit_seconds": round(self.fit_seconds, 2),
                **{k: getattr(self, k) for k in HEADLINE_METRICS}}


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: metrics.get(k) for k in HEADLINE_METRICS}


def _verifier_hashes(folder: Path, root: Path | None = None) -> dict[str, str]:
    """sha256 of every weights file under the verifier cache, keyed by its path (relative to ``root`` when inside it)."""
    out = {}
    for path in sorted(folder.rglob(WEIGHTS_NAME)):
        key = path.relative_to(root) if root is not None and root in path.parents else path
        out[str(key)] = file_sha256(path)
    return out


@restores_threads
def run_inversion(config: InversionRunConfig, out: str | Path, *, force: bool = False, resume: bool = False, progress: bool = True,
                  checkpoint_steps: int | None = None, checkpoint_seconds: float | None = 60.0) -> InversionResult:
    """Train a generator against ``config.classifier``, then write the run folder ``out`` and measure it.

    ``out`` receives ``weights.safetensors`` (the generator, written once), ``card.json`` (the config, the
    classifier's path and the sha256 of its weights, the image prior's, the verifiers', the generator's own,
    seed, device, torch threads, versions and the headline metrics), ``history.json`` (the loss curves' data),
    ``samples.png`` (10 samples per class, each row noted with its validity), ``losses.png`` and ``metrics.json``
    (:func:`netinvert.metrics.inversion_metrics` on ``n_per_class`` samples per class).

    Parameters
    ----------
    config : InversionRunConfig
    out : path
        A new folder (one holding files is refused unless ``force``; never the classifier's or the prior's run).
    force : bool, default=False
        Replace an ``out`` that holds files, once the new run is complete.
    resume : bool, default=False
        Continue an interrupted run of the same ``config`` into the same ``out``. The run is written in the
        hidden sibling ``.OUT.partial`` (:func:`netinvert.runs.partial_dir`); training writes its checkpoint
        ``checkpoint.safetensors`` there every ``checkpoint_steps`` steps and/or ``checkpoint_seconds`` seconds,
        when training ends and when interrupted (Ctrl-C, or SIGTERM under the CLI: exit code 130). An interrupt
        keeps that folder; an error removes it. With ``resume`` training continues from its checkpoint (a steps
        budget to the same total, ending on the CPU with the weights an uninterrupted run ends with); without a
        checkpoint it starts afresh (a log line says so); without ``resume`` a left-over one is discarded. A
        checkpoint of another config, classifier or image prior is refused. An ``out`` that already holds a run
        is refused unless ``force``. The checkpoint is not part of the finished run folder.
    progress : bool, default=True
        Progress bar (a log line every 30 s where stderr is not a terminal).
    checkpoint_steps : int, optional
        Steps between checkpoints (``None``: by time only).
    checkpoint_seconds : float, optional, default=60
        Seconds between checkpoints (``None``: by steps only).

    Returns
    -------
    InversionResult

    Raises
    ------
    ValueError
        On an invalid config or ``out`` (before any training).
    RunFormatError
        With ``resume``, if the checkpoint was written for another config, classifier or image prior.
    TrainingDivergedError
        If the loss or a gradient became non-finite: ``out`` then holds the last good generator and its card
        (``diverged`` says what happened), and the message names the folder.

    Examples
    --------
    >>> result = run_inversion(InversionRunConfig(classifier="runs/clf", steps=300), "runs/inv")  # doctest: +SKIP
    >>> result.validity  # doctest: +SKIP
    0.97
    """
    config.validate()
    device = resolve_device(config.device)
    with process_group(device) as (world, device):
        return _inversion_run(config, out, world, device, force=force, resume=resume, progress=progress,
                              checkpoint_steps=checkpoint_steps, checkpoint_seconds=checkpoint_seconds)


def _inversion_run(config: InversionRunConfig, out: str | Path, world: World, device: torch.device, *, force: bool,
                   resume: bool, progress: bool, checkpoint_steps: int | None,
                   checkpoint_seconds: float | None) -> InversionResult:
    """:func:`run_inversion` once the world is known: rank 0 checks, measures and writes; every rank trains."""
    from ..data import load_dataset

    inputs = [config.classifier, config.image_prior]

    def refuse_early() -> tuple[Path, bool]:
        check_resume(out, force=force, resume=resume)
        checked = check_out(out, force=force, inputs=inputs)
        for inp in inputs if config.verifiers is not None else ():  # a cache the run writes into: never what it reads
            if inp is not None and paths_overlap(config.verifiers, inp):
                raise ValueError(f"The verifier cache {config.verifiers} is or overlaps the input {inp}; a run never writes "
                                 f"into what it reads. Pass another --verifiers.")
        return checked, checked.is_dir() and any(checked.iterdir())

    out, had_run = rank0_first(refuse_early, world)
    threads = set_threads(config.threads)
    data = load_dataset(config.dataset, config.data_root) if config.dataset else None
    classifier, info = _load_classifier_for(config, data, device)
    card_in = info.get("card") or {}
    dataset = config.dataset or info.get("dataset") or card_in.get("dataset")
    data_root = config.data_root or card_in.get("data_root")
    if data is None and dataset:
        data = load_dataset(dataset, data_root)
    if data is not None and (tuple(data.input_shape) != tuple(classifier.input_shape) or data.n_classes != int(classifier.n_classes)):
        raise ValueError(f"The classifier {config.classifier} takes inputs {tuple(classifier.input_shape)} with "
                         f"{classifier.n_classes} classes, but the data set {data.name!r} has {tuple(data.input_shape)} with "
                         f"{data.n_classes}; pass the classifier's own --dataset (or fix --input-shape/--n-classes).")
    conditioning: Any = config.conditioning
    if config.temperature is not None:
        conditioning = make_conditioning(config.conditioning, int(classifier.n_classes), temperature=config.temperature)
    inverter = Inverter(classifier, conditioning=conditioning, seed=config.seed, device=device, **config.inverter_settings())
    inverter._check_world(world)  # on every rank, before any collective call: all refuse together
    # Paths in the card are relative to the run folder (resolve_recorded_path reads them back), so that the run means
    # the same from any working directory; the absolute ones are for information, the sha256 say which files they were.
    extra = {"config": config.to_dict(), "classifier_run": path_for_card(out, config.classifier),
             "classifier_path": str(Path(config.classifier).absolute()), "classifier_sha256": info["weights_sha256"],
             "classifier_format": info.get("format"), "dataset": dataset, "data_root": data_root, "seed": config.seed,
             "preset": config.preset, "image_prior": None if config.image_prior is None else path_for_card(out, config.image_prior),
             "image_prior_path": None if config.image_prior is None else str(Path(config.image_prior).absolute()),
             "image_prior_sha256": weights_sha256(config.image_prior), "device": str(device), "threads": threads}
    if world.distributed:
        extra["distributed"] = {**world.to_dict(), "batch_per_process": inverter.batch_size // world.size}

    resume_info = {"config": config.to_dict(), "classifier_sha256": extra["classifier_sha256"],
                   "image_prior_sha256": extra["image_prior_sha256"]}
    resume_from = rank0_first(lambda: resume_point(out, resume_info, resume=resume, force=force), world)

    def fit_alongside() -> None:
        """A rank other than 0: the same training, no checkpoint, no folder."""
        try:
            inverter.fit(steps=config.steps, seconds=config.seconds, progress=False, resume_from=resume_from)
        except TrainingDivergedError:  # rank 0 raises it, with the folder it wrote, for every rank
            pass

    return on_rank0(lambda: _fit_and_write(config, out, inverter, classifier, data, extra, resume_info, resume_from,
                                           had_run, inputs, device, force=force, resume=resume, progress=progress,
                                           checkpoint_steps=checkpoint_steps, checkpoint_seconds=checkpoint_seconds),
                    fit_alongside, world)


def _fit_and_write(config: InversionRunConfig, out: Path, inverter: Inverter, classifier: torch.nn.Module, data: Any,
                   extra: dict[str, Any], resume_info: dict[str, Any], resume_from: Path | None, had_run: bool,
                   inputs: list[Any], device: torch.device, *, force: bool, resume: bool, progress: bool,
                   checkpoint_steps: int | None, checkpoint_seconds: float | None) -> InversionResult:
    """Fit the generator into the staged run folder, measure it and write the run (rank 0's part)."""
    from ..report import save_class_grid, save_loss_curves

    diverged: TrainingDivergedError | None = None
    with staged_run(out, force=force, resume=resume, keep_on_interrupt=True, inputs=inputs) as tmp:
        checkpoint = tmp / CHECKPOINT_NAME
        t0 = time.perf_counter()
        try:
            inverter.fit(steps=config.steps, seconds=config.seconds, progress=progress, checkpoint=checkpoint,
                         checkpoint_steps=checkpoint_steps, checkpoint_seconds=checkpoint_seconds, checkpoint_info=resume_info,
                         resume_from=resume_from)
        except TrainingDivergedError as exc:  # keep the last good generator: the folder shows what went wrong
            if had_run:  # ... but never in place of a complete run that --force was to replace
                raise TrainingDivergedError(f"{exc} The run already in {out} is kept; nothing was written.") from None
            diverged = exc
            inverter.save(tmp, {**extra, "fit_seconds": time.perf_counter() - t0, "diverged": str(exc)})
        if diverged is None:
            fit_seconds = time.perf_counter() - t0
            metrics = _measure(config, inverter, classifier, data, tmp, out, progress, device)
            verifier_hashes = metrics.pop("_verifier_hashes", None)
            write_json(tmp / "metrics.json", metrics)
            x_grid, y_grid = inverter.sample_classes(GRID_PER_CLASS, seed=config.seed)
            from ..metrics import validity_report

            notes = [f"valid {r['validity']:.2f}" for r in validity_report(classifier, x_grid, y_grid)["per_class"]]
            steps = len(inverter.history_["step"])
            save_class_grid(x_grid, y_grid, tmp / "samples.png", class_names=None if data is None else list(data.class_names),
                            row_notes=notes, title=f"{config.conditioning} conditioning, {steps} steps")
            save_loss_curves(inverter.history_, tmp / "losses.png")
            inverter.save(tmp, {**extra, "fit_seconds": fit_seconds, "verifiers": verifier_hashes, "metrics": _headline(metrics)})
        discard_checkpoint(tmp)
    if diverged is not None:
        raise TrainingDivergedError(f"{diverged} The last good generator is saved in {out}.") from None
    return InversionResult(run_dir=out, steps=steps, fit_seconds=fit_seconds, **_headline(metrics))


def _load_classifier_for(config: InversionRunConfig, data: Any, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The classifier to invert; a model file that carries no input shape or class count takes the data set's."""
    from ..models import load_classifier

    source = Path(config.classifier)
    shape, classes = config.input_shape, config.n_classes
    try:
        return load_classifier(source, input_shape=shape, n_classes=classes, device=device)
    except ValueError:
        # Only a foreign model file lacking shape or class count is retried: with the data set's; otherwise the error stands.
        if data is None or source.is_dir() or (shape is not None and classes is not None):
            raise  # a retry with the data set's shape could not help
    log.info("%s carries no input shape or class count: using those of the data set %r.", source, data.name)
    return load_classifier(source, input_shape=shape or tuple(data.input_shape), n_classes=classes or int(data.n_classes),
                           device=device)


def _measure(config: InversionRunConfig, inverter: Inverter, classifier: torch.nn.Module, data: Any, tmp: Path, out: Path,
             progress: bool, device: torch.device) -> dict[str, Any]:
    """The report of :func:`netinvert.metrics.inversion_metrics`; without a dataset only validity and confidence."""
    from ..metrics import inversion_metrics, train_verifiers, validity_report

    x, y = inverter.sample_classes(config.n_per_class, seed=config.seed + 1)
    if data is None:
        log.warning("No dataset is known for %s (pass --dataset): metrics.json holds validity and confidence only.", config.classifier)
        report = validity_report(classifier, x, y)
        return {**report, "verifier_accuracy": None, "frechet": None, "nn_ssim": None, "diversity": None, "real_diversity": None}
    cache = Path(config.verifiers) if config.verifiers is not None else tmp / "verifiers"
    verifiers = train_verifiers(data, device=device, cache_dir=cache, progress=progress, epochs=config.verifier_epochs)
    metrics = inversion_metrics(x, y, classifier=classifier, data=data, verifiers=verifiers, seed=config.seed)
    root = tmp if config.verifiers is None else None
    hashes = {"dir": str(out / "verifiers") if root is not None else str(cache), "weights_sha256": _verifier_hashes(cache, root)}
    return {**metrics, "verifiers": verifiers.info, "_verifier_hashes": hashes}


# ---------------------------------------------------------------------------------------------------------- prior
@dataclass(frozen=True)
class PriorRunConfig:
    """What ``netinvert prior`` runs: a VAE on a data set's unlabelled training images, whose decoder is kept.

    Parameters
    ----------
    dataset : str, default="digits"
    data_root : str, optional
    code_dim : int, default=32
        Size of the decoder's code.
    epochs : int, default=12
    exclude_members : sequence of paths, default=()
        Classifier runs trained with ``--subset``: the training images they recorded as members or
        non-members are left out, so that a reconstruction drawn through the prior cannot favour either set
        (:class:`netinvert.apps.reconstruct.ReconstructConfig`'s ``image_prior``).
    seed : int, default=0
    device : str, default="auto"
    threads : int, optional
    """

    dataset: str = "digits"
    data_root: str | None = None
    code_dim: int = 32
    epochs: int = 12
    exclude_members: tuple[str | Path, ...] = ()
    seed: int = 0
    device: str = "auto"
    threads: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.exclude_members, (str, Path)):
            object.__setattr__(self, "exclude_members", (self.exclude_members,))
        object.__setattr__(self, "exclude_members", tuple(self.exclude_members))

    def to_dict(self) -> dict[str, Any]:
        return _config_dict(self)

    def validate(self) -> PriorRunConfig:
        owner = type(self).__name__
        _check_int(owner, "code_dim", self.code_dim, 1)
        _check_int(owner, "epochs", self.epochs, 1)
        _check_int(owner, "seed", self.seed, 0)
        _check_optional_int(owner, "threads", self.threads, 1)
        return self


@dataclass(frozen=True)
class PriorResult:
    """What :func:`run_image_prior` wrote: the folder, and how well the VAE reconstructs held-out images."""

    run_dir: Path
    dataset: str
    code_dim: int
    epochs: int
    seconds: float
    test_mse: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), "dataset": self.dataset, "code_dim": self.code_dim, "epochs": self.epochs,
                "seconds": round(self.seconds, 2), "test_mse": self.test_mse}


def _prior_images(x_train: torch.Tensor, runs: Sequence[str | Path], dataset: str) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """The training images minus the members and non-members each classifier run of ``runs`` recorded, and what
    was left out (per run: its path, the weights' sha256 and the count)."""
    from ..models import load_members

    keep = torch.ones(len(x_train), dtype=torch.bool)
    excluded = []
    for run in runs:
        members, non_members = load_members(run)  # a run trained on its whole split is refused here, by name
        trained_on = read_card(run).get("dataset")
        if trained_on != dataset:
            raise ValueError(f"{run} was trained on {trained_on!r}, not {dataset!r}: its member indices do not point "
                             f"into this data set (--exclude-members takes classifiers of --dataset {dataset}).")
        recorded = torch.cat([members.flatten(), non_members.flatten()])
        if len(recorded) and int(recorded.max()) >= len(x_train):
            raise ValueError(f"{run} recorded training indices beyond this data set's {len(x_train)} training images: "
                             "it was trained on another version of it.")
        keep[members] = False
        keep[non_members] = False
        excluded.append({"run": str(Path(run).absolute()), "weights_sha256": weights_sha256(run),
                         "members": len(members), "non_members": len(non_members)})
    if not bool(keep.any()):
        raise ValueError("exclude_members leaves no training image for the prior.")
    return x_train[keep], excluded


@restores_threads
def run_image_prior(config: PriorRunConfig, out: str | Path, *, force: bool = False, resume: bool = False, progress: bool = True,
                    checkpoint_steps: int | None = None, checkpoint_seconds: float | None = 60.0) -> PriorResult:
    """Train an image prior on the training images only (labels unused); write its decoder and a grid of its samples.

    ``out`` receives ``weights.safetensors`` (the decoder), ``card.json`` (``kind: image-prior``, the config,
    training figures, seed, device, threads, the weights' sha256) and ``samples.png`` (decoded ``N(0, I)`` codes).
    Pass ``out`` to :class:`InversionRunConfig` as ``image_prior``.

    Parameters
    ----------
    config : PriorRunConfig
    out : path
    force : bool, default=False
        Replace an ``out`` that holds files, once the new run is complete.
    resume : bool, default=False
        Continue an interrupted run of the same ``config`` into the same ``out``, as :func:`run_inversion` does:
        training writes ``checkpoint.safetensors`` into the hidden sibling ``.OUT.partial`` every
        ``checkpoint_steps`` batches and/or ``checkpoint_seconds`` seconds, when training ends and when interrupted
        (Ctrl-C, or SIGTERM under the CLI); ``resume`` continues from it to the weights an uninterrupted run ends
        with. Without a checkpoint it starts afresh; without ``resume`` a left-over one is discarded; a checkpoint
        of another config is refused; an ``out`` that already holds a run is refused unless ``force``.
    progress : bool, default=True
    checkpoint_steps : int, optional
        Batches between checkpoints (``None``: by time only).
    checkpoint_seconds : float, optional, default=60
        Seconds between checkpoints (``None``: by batches only).

    Raises
    ------
    RunFormatError
        With ``resume``, if the checkpoint was written for another config or other images.
    """
    from ..data import load_dataset
    from ..report import save_class_grid
    from ._prior import save_image_prior, train_image_prior

    config.validate()
    if checkpoint_steps is not None:
        _check_int("run_image_prior", "checkpoint_steps", checkpoint_steps, 1)
    if checkpoint_seconds is not None:
        _check_positive("run_image_prior", "checkpoint_seconds", checkpoint_seconds)
    check_resume(out, force=force, resume=resume)
    out = check_out(out, force=force, inputs=[config.data_root, *config.exclude_members])
    threads = set_threads(config.threads)
    device = resolve_device(config.device)
    data = load_dataset(config.dataset, config.data_root)
    images, excluded = _prior_images(data.x_train, config.exclude_members, data.name)
    resume_info = {"config": config.to_dict()}
    resume_from = resume_point(out, resume_info, resume=resume, force=force)
    with staged_run(out, force=force, resume=resume, keep_on_interrupt=True,
                    inputs=[config.data_root, *config.exclude_members]) as tmp:
        checkpoint = tmp / CHECKPOINT_NAME
        prior, info = train_image_prior(images, code_dim=config.code_dim, epochs=config.epochs, seed=config.seed,
                                        progress=progress, test_images=data.x_test, device=device, checkpoint=checkpoint,
                                        checkpoint_steps=checkpoint_steps, checkpoint_seconds=checkpoint_seconds,
                                        checkpoint_info=resume_info, resume_from=resume_from)
        save_image_prior(tmp, prior, {"dataset": data.name, "data_root": config.data_root, "seed": config.seed, "train": info,
                                      "n_images": len(images), "excluded": excluded,
                                      "config": config.to_dict(), "device": str(device), "threads": threads,
                                      "resumed": resume_from is not None})
        with torch.no_grad():
            codes = torch.randn(100, prior.code_dim, generator=torch.Generator().manual_seed(config.seed))
            x = prior(codes)
        save_class_grid(x, torch.arange(10).repeat_interleave(10), tmp / "samples.png", class_names=[""] * 10,
                        title=f"image prior ({data.name}, code {prior.code_dim}): decoded N(0, I) codes")
        discard_checkpoint(tmp)
    return PriorResult(run_dir=out, dataset=data.name, code_dim=prior.code_dim, epochs=int(info["epochs"]),
                       seconds=float(info["seconds"]), test_mse=info.get("test_mse"))


# ---------------------------------------------------------------------------------------------------------- sample
@dataclass(frozen=True)
class SamplingResult:
    """What :func:`run_sampling` wrote, and how the classifier scores the samples."""

    run_dir: Path
    label: int
    n: int
    seed: int
    validity: float
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"run_dir": str(self.run_dir)}


def _parse_label(label: int | str, card: dict[str, Any], n_classes: int) -> int:
    """A class index, from an index or a class name the classifier's card lists."""
    if isinstance(label, str):
        names = ((card.get("dataset_info") or {}).get("class_names")) or card.get("class_names")
        if label.lstrip("-").isdigit():
            return int(label)
        if names and label in names:
            return list(names).index(label)
        valid = ", ".join(names) if names else f"0..{n_classes - 1}"
        raise ValueError(f"Unknown label {label!r}; use a class index or one of: {valid}.")
    return label


@restores_threads
def run_sampling(run: str | Path, label: int | str, n: int, out: str | Path, *, seed: int = 0,
                 classifier: str | Path | None = None, allow_other_classifier: bool = False, device: str = "auto",
                 threads: int | None = None, force: bool = False) -> SamplingResult:
    """Draw ``n`` samples of ``label`` from an inversion run into a new folder ``out`` (never into the run).

    ``out`` receives one PNG per sample (``label{L}_{i:04d}.png``), ``samples.npz`` (``x`` ``(n, C, H, W)`` in
    [0, 1], ``labels``, the classifier's softmax ``probs``, ``seed``) and ``card.json`` (``kind: samples``, the
    run, the sha256 of its weights and of the classifier's, label, n, seed, validity, confidence). The same
    ``seed`` gives the same samples.

    The classifier is the one the run's card records, found from any working directory (a relative path in the
    card is relative to the run folder; if the run folder was moved, the absolute path the card also records is
    tried), and it must be the very file the run inverted: its sha256 is checked against the card's
    ``classifier_sha256``, so a classifier replaced or retrained at that path is refused.

    Parameters
    ----------
    run : path
        A folder written by :func:`run_inversion`.
    label : int or str
        A class index, or a class name from the classifier's card.
    n : int
        Number of samples, at least 1.
    out : path
    seed : int, default=0
    classifier : path, optional
        Use this classifier instead of the one the card records (e.g. a copy elsewhere); it must have the same
        sha256 unless ``allow_other_classifier``.
    allow_other_classifier : bool, default=False
        Sample against a classifier whose weights differ from those the run inverted (CLI:
        ``--allow-other-classifier``); a warning says so, and the samples' validity is then that classifier's.
    device : str, default="auto"
    threads : int, optional
    force : bool, default=False

    Raises
    ------
    FileNotFoundError
        If the recorded classifier is found neither relative to the run folder nor at its absolute path.
    UnsafeCheckpointError
        If the classifier's weights are not those the run inverted (without ``allow_other_classifier``), or the
        run's own weights are not those its card describes.
    RunFormatError
        If ``run`` is not an inversion run or its card is malformed.
    """
    from PIL import Image

    from ..metrics import validity_from_logits

    _check_int("run_sampling", "n", n, 1)
    _check_int("run_sampling", "seed", seed, 0)
    run = Path(run)
    card = read_card(run, required=("kind",))
    if card["kind"] != "inverter":
        raise RunFormatError(f"{run}/card.json describes a {card['kind']!r} run; pass a folder written by 'netinvert invert'.")
    source = Path(classifier) if classifier is not None else _recorded_classifier(run, card)
    inputs = [run, source]
    out = check_out(out, force=force, inputs=inputs)
    used_threads = set_threads(threads)
    dev = resolve_device(device)
    clf, info = load_inversion_classifier(run, card, source, device=dev, allow_other_classifier=allow_other_classifier)
    inverter = Inverter.load(run, clf, device=dev)
    index = _parse_label(label, info.get("card") or {}, int(clf.n_classes))
    x = inverter.sample(index, n, seed=seed)
    labels = torch.full((len(x),), int(index))
    with torch.no_grad():
        logits = clf.eval()(x.to(dev)).float().cpu()
    report = validity_from_logits(logits, labels)
    with staged_run(out, force=force, inputs=inputs) as tmp:
        arr = x.numpy()
        for i, img in enumerate(arr):
            pixels = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
            picture = Image.fromarray(pixels[0]) if pixels.shape[0] == 1 else Image.fromarray(pixels.transpose(1, 2, 0))
            picture.save(tmp / f"label{index}_{i:04d}.png")
        np.savez_compressed(tmp / "samples.npz", x=arr, labels=labels.numpy(), probs=torch.softmax(logits, 1).numpy(), seed=seed)
        write_card(tmp, {"kind": "samples", "run": path_for_card(out, run), "run_path": str(run.absolute()),
                         "run_weights_sha256": weights_sha256(run), "classifier_run": path_for_card(out, source),
                         "classifier_path": str(source.absolute()), "classifier_sha256": info["weights_sha256"],
                         "classifier_matches_run": info["weights_sha256"] == card.get("classifier_sha256"), "label": int(index),
                         "n": len(arr), "seed": seed, "device": str(dev), "threads": used_threads,
                         "metrics": {k: report[k] for k in ("validity", "confidence")}})
    return SamplingResult(run_dir=out, label=int(index), n=len(arr), seed=seed, validity=report["validity"],
                          confidence=report["confidence"])


def _recorded_classifier(run: Path, card: dict[str, Any]) -> Path:
    """The classifier an inversion run's card records: relative to the run folder, else at its recorded absolute path."""
    recorded = card.get("classifier_run")
    if not recorded:
        raise RunFormatError(f"{run}/card.json does not record its classifier; pass --classifier (classifier=...).")
    candidates = [resolve_recorded_path(run, recorded)]
    absolute = card.get("classifier_path")
    if isinstance(absolute, str) and absolute:
        candidates.append(Path(absolute))
    elif not Path(recorded).is_absolute():  # a card written before paths were relative to the run: the old meaning
        candidates.append(Path(recorded).absolute())
    for path in candidates:
        if path.exists():
            return path
    raise FileNotFoundError(f"The classifier {run}/card.json records ({recorded!r}) is neither at "
                            f"{' nor at '.join(str(c) for c in dict.fromkeys(candidates))}; pass its new place with --classifier "
                            "(classifier=...).")


def load_inversion_classifier(run: str | Path, card: dict[str, Any] | None = None, source: str | Path | None = None, *,
                              device: str | torch.device = "cpu",
                              allow_other_classifier: bool = False) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load the classifier an inversion run inverted, refusing any other; pass it to :meth:`Inverter.load`.

    Parameters
    ----------
    run : path
        A folder written by :func:`run_inversion`.
    card : dict, optional
        Its card, if already read.
    source : path, optional
        Where the classifier is, if not where the card records it (relative to ``run``, else absolute).
    device : str or torch.device
    allow_other_classifier : bool, default=False
        Accept a classifier whose weights' sha256 is not the one the card records (with a warning).

    Returns
    -------
    classifier, info
        As :func:`netinvert.models.load_classifier` returns them.

    Raises
    ------
    UnsafeCheckpointError
        If the classifier's weights are not those the run inverted and not ``allow_other_classifier``.

    Examples
    --------
    >>> clf, _ = load_inversion_classifier("runs/inv")  # doctest: +SKIP
    >>> inverter = Inverter.load("runs/inv", clf)  # doctest: +SKIP
    """
    from ..models import load_classifier
    from ..models import check_sha256

    run = Path(run)
    card = read_card(run, required=("kind",)) if card is None else card
    source = _recorded_classifier(run, card) if source is None else Path(source)
    expected = card.get("classifier_sha256")
    try:
        expected = check_sha256(expected)
    except ValueError:
        raise RunFormatError(f"{run}/card.json: 'classifier_sha256' must be 64 hex digits. Got {expected!r} instead; re-run "
                             "'netinvert invert', or pass allow_other_classifier=True (--allow-other-classifier).") from None
    shape = ((card.get("classifier") or {}).get("input_shape")) if isinstance(card.get("classifier"), dict) else None
    classes = ((card.get("classifier") or {}).get("n_classes")) if isinstance(card.get("classifier"), dict) else None
    if expected is None:
        warnings.warn(f"{run}/card.json records no classifier sha256 (written by an older netinvert): {source} is used "
                      "unchecked.", stacklevel=2)
    elif not allow_other_classifier:
        actual = weights_sha256(source)
        if actual is not None and actual != expected:
            raise UnsafeCheckpointError(
                f"{source} is not the classifier {run} inverted: its weights' sha256 is {actual}, the run recorded {expected}. "
                "It was replaced or retrained since; pass the original with --classifier (classifier=...), or "
                "--allow-other-classifier (allow_other_classifier=True) to sample against this one anyway.")
    clf, info = load_classifier(source, input_shape=shape, n_classes=classes, device=device,
                                expected_sha256=None if allow_other_classifier else expected)
    if expected is not None and info["weights_sha256"] != expected:
        warnings.warn(f"{source} is not the classifier {run} inverted (allow_other_classifier): its weights' sha256 is "
                      f"{info['weights_sha256']}, the run recorded {expected}; the samples' validity is this classifier's.",
                      stacklevel=2)
    return clf, info
