"""The classifier workflows: train one into a run folder, and evaluate one on a test split.

Each is one function keeping the pipeline contract of ``docs/architecture.md``: a frozen config,
an ``out`` folder checked before any work, a run folder that appears whole or not at all
(:func:`netinvert.runs.staged_run`), and a frozen result. ``netinvert train``/``evaluate``, the
demo and ``bench/`` call these functions, so a benchmark measures the code users run.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._checkpoint import CHECKPOINT_NAME, check_resume, discard_checkpoint, resume_point
from .._device import resolve_device, seed_everything
from .._distributed import World, on_rank0, process_group, rank0_first
from .._threads import set_threads, restores_threads
from ..data import Dataset, dataset_status, load_dataset
from ..exceptions import RunFormatError
from ..runs import WEIGHTS_NAME, check_out, file_sha256, save_weights, staged_run, write_card, write_json
from ._base import MODELS, Classifier, build_model
from ._checkpoint import save_classifier
from ._foreign import load_classifier
from ._train import TrainConfig, _check_every, _fit, check_world, evaluate_classifier

__all__ = ["ClassifierRunConfig", "TrainingResult", "EvaluationResult", "run_training", "run_evaluation"]

log = logging.getLogger(__name__)

#: Model arguments that come from the dataset, never from ``model_params``.
_DATA_PARAMS = ("input_shape", "n_classes", "mean", "std")
#: The member and non-member indices of a run trained on a subset (``members``, ``non_members``: int64).
MEMBERS_NAME = "members.safetensors"
_DEVICES = ("cpu", "cuda", "auto")


def _freeze(value: Any) -> Any:
    """Lists become tuples and mappings sorted item tuples, so a config stays hashable."""
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    """Tuples back to lists (JSON's shape, and what the zoo's factories document)."""
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class ClassifierRunConfig:
    """What :func:`run_training` trains: dataset, architecture, schedule, seed, device, threads.

    Parameters
    ----------
    dataset : str
        A name from :func:`netinvert.data.list_datasets`.
    data_root : str, optional
        Folder holding the dataset's files (default: where the loader looks).
    model : str
        A name from :func:`netinvert.models.list_models`.
    model_params : mapping
        Architecture arguments (``{"channels": [16, 32]}``); the input shape, class count and
        normalisation come from the dataset. Stored as sorted ``(key, value)`` tuples with lists
        as tuples, so the config is hashable; :meth:`to_dict` gives them back as a JSON object.
    train : TrainConfig
        The schedule. Its ``seed`` and ``device`` are this config's ``seed`` and ``device``
        (a different non-default value in ``train`` is an error rather than silently ignored).
    subset : int, optional
        Train on ``subset`` training images; the test split stays whole. The run records the
        member indices and an equal-size disjoint non-member set from the same split
        (``members.safetensors``, :meth:`Dataset.draw_members`), the control of a membership claim.
    subset_seed : int, optional
        Draw the subset class-balanced with this seed (and the non-members with the same class
        counts). Without it the subset is ``Dataset.subset(n_train=subset, seed=seed)``.
    seed : int
        Seeds the subset, the initial weights and the batch order.
    device : {"cpu", "cuda", "auto"}
    threads : int, optional
        Torch threads (None: ``$NETINVERT_THREADS``, else half the usable cores).

    Examples
    --------
    >>> cfg = ClassifierRunConfig(model="mlp", model_params={"hidden": [16]}, train=TrainConfig(epochs=1))
    >>> cfg.to_dict()["model_params"]
    {'hidden': [16]}
    >>> ClassifierRunConfig.from_dict(cfg.to_dict()) == cfg
    True
    """

    dataset: str = "digits"
    data_root: str | None = None
    model: str = "cnn"
    model_params: Any = ()
    train: TrainConfig = field(default_factory=TrainConfig)
    subset: int | None = None
    subset_seed: int | None = None
    seed: int = 0
    device: str = "auto"
    threads: int | None = None

    def __post_init__(self) -> None:
        for name in ("dataset", "model"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"The '{name}' parameter of ClassifierRunConfig must be a non-empty str. Got {value!r} instead.")
        if self.data_root is not None:
            object.__setattr__(self, "data_root", str(self.data_root))
        params = self.model_params
        if params is None:
            params = ()
        if not isinstance(params, Mapping):
            try:
                params = dict(params)
            except (TypeError, ValueError):
                raise ValueError("The 'model_params' parameter of ClassifierRunConfig must be a mapping of argument "
                                 f"names to values. Got {self.model_params!r} instead.") from None
        object.__setattr__(self, "model_params", _freeze(params))
        if isinstance(self.train, Mapping):
            object.__setattr__(self, "train", TrainConfig(**self.train))
        if not isinstance(self.train, TrainConfig):
            raise ValueError(f"The 'train' parameter of ClassifierRunConfig must be a TrainConfig. Got {self.train!r} instead.")
        if self.subset is not None and (isinstance(self.subset, bool) or not isinstance(self.subset, int) or self.subset < 1):
            raise ValueError(f"The 'subset' parameter of ClassifierRunConfig must be None or an int in [1, inf). Got {self.subset!r} instead.")
        if self.subset_seed is not None and (isinstance(self.subset_seed, bool) or not isinstance(self.subset_seed, int)
                                             or self.subset_seed < 0 or self.subset is None):
            raise ValueError("The 'subset_seed' parameter of ClassifierRunConfig must be None or an int in [0, inf) with "
                             f"a subset. Got {self.subset_seed!r} (subset={self.subset!r}) instead.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"The 'seed' parameter of ClassifierRunConfig must be an int. Got {self.seed!r} instead.")
        if not isinstance(self.device, str) or (self.device not in _DEVICES and not self.device.startswith("cuda:")):
            raise ValueError(f"The 'device' parameter of ClassifierRunConfig must be one of {_DEVICES}. Got {self.device!r} instead.")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"The 'threads' parameter of ClassifierRunConfig must be None or an int in [1, inf). Got {self.threads!r} instead.")
        # One seed and one device per run: the schedule's copies follow the run's.
        default = TrainConfig()
        for name in ("seed", "device"):
            mine, theirs = getattr(self, name), getattr(self.train, name)
            if theirs not in (mine, getattr(default, name)):
                raise ValueError(f"train.{name}={theirs!r} differs from {name}={mine!r}; set {name} on ClassifierRunConfig only.")
        object.__setattr__(self, "train", replace(self.train, seed=self.seed, device=self.device))

    @property
    def params(self) -> dict[str, Any]:
        """``model_params`` as the keyword arguments of the model's factory."""
        return {k: _thaw(v) for k, v in self.model_params}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values: what the run card records as ``config``."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["model_params"] = self.params
        out["train"] = self.train.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ClassifierRunConfig:
        """Inverse of :meth:`to_dict` (unknown keys are an error, naming them)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise RunFormatError(f"Unknown ClassifierRunConfig keys {unknown}; valid keys: {sorted(known)}.")
        d = dict(d)
        if isinstance(d.get("train"), Mapping):
            d["train"] = TrainConfig(**d["train"])
        return cls(**d)


@dataclass(frozen=True)
class TrainingResult:
    """What :func:`run_training` returns: the run folder and its headline numbers."""

    run_dir: Path
    dataset: str
    model: str
    test_accuracy: float
    n_test: int
    train_seconds: float
    weights_sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (str(v) if isinstance(v, Path) else v) for f in fields(self) for v in [getattr(self, f.name)]}


@dataclass(frozen=True)
class EvaluationResult:
    """What :func:`run_evaluation` returns; ``run_dir`` is None when nothing was written."""

    run_dir: Path | None
    source: str
    format: str
    dataset: str
    model: str
    test_accuracy: float
    n_test: int
    device: str
    weights_sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (str(v) if isinstance(v, Path) else v) for f in fields(self) for v in [getattr(self, f.name)]}


def _check_model_params(model: str, params: Mapping[str, Any]) -> None:
    """Refuse unknown or data-given architecture arguments before any data is loaded."""
    factory = MODELS.get(model)  # an unknown name lists the valid ones
    reserved = sorted(set(params) & set(_DATA_PARAMS))
    if reserved:
        raise ValueError(f"Bad model_params (--model-param) for model {model!r}: {', '.join(reserved)} come from the "
                         "dataset; drop them.")
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # pragma: no cover - a factory without a signature: building will tell
        return
    named = {n for n, p in signature.parameters.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    if any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()) and isinstance(factory, type) \
            and issubclass(factory, Classifier):
        named -= set(_DATA_PARAMS)  # **base goes to Classifier, which takes only the dataset's arguments
    elif any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        return
    unknown = sorted(set(params) - named - set(_DATA_PARAMS))
    if unknown:
        valid = ", ".join(sorted(named - set(_DATA_PARAMS))) or "(none)"
        raise ValueError(f"Bad model_params (--model-param) for model {model!r}: unknown {', '.join(unknown)}; "
                         f"valid: {valid}.")


def _probe_model(config: ClassifierRunConfig) -> None:
    """Build the architecture on the meta device (no memory, no data loaded) so bad values are refused first.

    The input shape and class count come from the dataset's locator; when it cannot tell them
    (files missing), loading the dataset reports that instead.
    """
    status = dataset_status(config.dataset, config.data_root)
    if not status.available or status.input_shape is None or status.n_classes is None:
        return
    try:
        with torch.device("meta"):
            build_model(config.model, input_shape=status.input_shape, n_classes=status.n_classes, **config.params)
    except TypeError as exc:
        raise ValueError(f"Bad model_params (--model-param) for model {config.model!r}: {exc}") from None


def load_members(run_dir: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The member and non-member indices (into the training split) a subset run recorded.

    Raises
    ------
    RunFormatError
        If the run was trained on the whole split (it records no members) or its card is malformed.
    UnsafeCheckpointError
        If the members file is not the one the card names (its sha256 differs).
    """
    from ..exceptions import UnsafeCheckpointError
    from ..runs import load_weights, read_card

    run_dir = Path(run_dir)
    info = read_card(run_dir).get("members")
    if not isinstance(info, dict) or not isinstance(info.get("file"), str):
        raise RunFormatError(f"{run_dir} records no members: it was trained on the whole training split (train with "
                             "--subset N to record members and non-members).")
    path = run_dir / info["file"]
    if file_sha256(path) != info.get("sha256"):
        raise UnsafeCheckpointError(f"{path} is not the members file {run_dir}/card.json names (its sha256 differs).")
    tensors = load_weights(path)
    return tensors["members"], tensors["non_members"]


@restores_threads
def run_training(config: ClassifierRunConfig, out: str | Path, *, force: bool = False, resume: bool = False,
                 progress: bool = True, checkpoint_seconds: float | None = 60.0,
                 checkpoint_steps: int | None = None) -> TrainingResult:
    """Train a classifier, evaluate it on the test split and write the run folder ``out``.

    Parameters
    ----------
    config : ClassifierRunConfig
    out : path
        The run folder to write: ``card.json`` (config, seed, device, thread count, versions,
        test accuracy, history and the sha256 of the weights), ``weights.safetensors`` and
        ``metrics.json``. A folder that holds files is refused unless ``force``.
    force : bool
        Replace an ``out`` that holds files, once the new run is complete (not before).
    resume : bool, default=False
        Continue an interrupted run of the same ``config`` into the same ``out``. The run is written in the
        hidden sibling ``.OUT.partial`` (:func:`netinvert.runs.partial_dir`); training writes its checkpoint
        ``checkpoint.safetensors`` there every ``checkpoint_steps`` batches and/or ``checkpoint_seconds``
        seconds, when training ends and when interrupted (Ctrl-C, or SIGTERM under the CLI: exit code 130).
        An interrupt keeps that folder; an error removes it. With ``resume`` training continues from its
        checkpoint (ending, on the CPU, with the weights an uninterrupted run ends with); without a checkpoint
        it starts afresh (a log line says so); without ``resume`` a left-over one is discarded. A checkpoint of
        another config is refused and kept. An ``out`` that already holds a run is refused unless ``force``.
        The checkpoint is not part of the finished run folder.
    progress : bool
        Show a progress bar (on a terminal; log lines elsewhere).
    checkpoint_seconds : float, optional, default=60
        Seconds between checkpoints (``None``: by batches only).
    checkpoint_steps : int, optional
        Batches between checkpoints (``None``: by time only).

    Returns
    -------
    TrainingResult
        The same on every process of a distributed run.

    Notes
    -----
    Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment), or with a process group the caller
    initialised, training is data parallel (:mod:`netinvert._distributed`): gloo on the CPU, nccl with
    one GPU per process on CUDA. ``train.batch_size`` stays the global batch, each process training on
    an equal share of it, so equal epochs are equal total steps. Rank 0 alone checks ``out``, writes
    checkpoints and the run folder (its card records ``distributed``); a refusal there stops every rank.

    Raises
    ------
    UnknownNameError
        If the dataset or model is not registered (before anything is loaded or trained).
    ValueError
        If ``model_params`` do not fit the model, or ``out`` cannot be written (before training).
    RunExistsError
        If ``out`` holds files and ``force`` is false (with ``resume``: "already complete").
    RunFormatError
        With ``resume``, if the checkpoint was written for another config (it is kept).

    Examples
    --------
    >>> cfg = ClassifierRunConfig(model="mlp", model_params={"hidden": [16]}, train=TrainConfig(epochs=1), device="cpu")
    >>> result = run_training(cfg, "runs/clf", progress=False)  # doctest: +SKIP
    >>> result.test_accuracy  # doctest: +SKIP
    0.93...
    """
    if not isinstance(config, ClassifierRunConfig):
        raise ValueError(f"run_training takes a ClassifierRunConfig. Got {type(config).__name__} instead.")
    params = config.params
    _check_model_params(config.model, params)  # a typo costs nothing
    _probe_model(config)  # nor does a zero width
    device = resolve_device(config.device)
    _check_every("checkpoint_steps", checkpoint_steps, int, "run_training")
    _check_every("checkpoint_seconds", checkpoint_seconds, float, "run_training")
    with process_group(device) as (world, device):
        check_world(config.train, world)
        return _train_run(config, out, world, device, force=force, resume=resume, progress=progress,
                          checkpoint_seconds=checkpoint_seconds, checkpoint_steps=checkpoint_steps)


def _train_run(config: ClassifierRunConfig, out: str | Path, world: World, device: torch.device, *, force: bool,
               resume: bool, progress: bool, checkpoint_seconds: float | None,
               checkpoint_steps: int | None) -> TrainingResult:
    """:func:`run_training` once the world is known: rank 0 checks and writes, every rank trains."""
    params = config.params
    resume_info = {"config": config.to_dict()}

    def refuse_early() -> tuple[Path, Path | None]:
        check_resume(out, force=force, resume=resume)
        checked = check_out(out, force=force)  # a bad --out costs nothing either
        return checked, resume_point(checked, resume_info, resume=resume, force=force)

    out, resume_from = rank0_first(refuse_early, world)
    threads = set_threads(config.threads)
    data = load_dataset(config.dataset, config.data_root)
    members = non_members = None
    train_data = data
    if config.subset is not None:
        balanced = config.subset_seed is not None
        members, non_members = data.draw_members(config.subset, config.subset_seed if balanced else config.seed,
                                                 balanced=balanced)
        train_data = Dataset(data.name, data.x_train[members], data.y_train[members], data.x_test, data.y_test,
                             data.class_names, data.source, data.mean, data.std)

    def train(checkpoint: Path | None) -> tuple[Classifier, dict[str, list[float]], float]:
        seed_everything(config.seed)  # the initial weights depend on the seed too
        try:
            model = build_model(config.model, input_shape=data.input_shape, n_classes=data.n_classes,
                                mean=data.mean, std=data.std, **params)
        except TypeError as exc:
            raise ValueError(f"Bad model_params (--model-param) for model {config.model!r}: {exc}") from None
        history, seconds = _fit(model, train_data, config.train, progress=progress and world.is_main,
                                checkpoint=checkpoint, checkpoint_steps=checkpoint_steps,
                                checkpoint_seconds=checkpoint_seconds, checkpoint_info=resume_info,
                                resume_from=resume_from, world=world)
        return model, history, seconds

    def train_and_write() -> TrainingResult:
        with staged_run(out, force=force, resume=resume, keep_on_interrupt=True) as tmp:
            model, history, seconds = train(tmp / CHECKPOINT_NAME)
            acc = evaluate_classifier(model, data.x_test, data.y_test)
            metrics = {"test_accuracy": acc, "n_test": len(data.x_test), "n_train": len(train_data.x_train),
                       "train_seconds": seconds, "history": history}
            card = {
                "config": config.to_dict(),
                "dataset": data.name,
                "dataset_info": data.describe(),
                "data_root": config.data_root,
                "train_config": config.train.to_dict(),
                "seed": config.seed,
                "device": str(device),
                "threads": threads,
                **metrics,
            }
            if world.distributed:
                card["distributed"] = {**world.to_dict(), "batch_per_process": config.train.batch_size // world.size}
            if members is not None:
                save_weights(tmp / MEMBERS_NAME, {"members": members.contiguous(), "non_members": non_members.contiguous()})
                card["members"] = {"file": MEMBERS_NAME, "sha256": file_sha256(tmp / MEMBERS_NAME), "n": len(members),
                                   "n_non_members": len(non_members), "split": "train",
                                   "balanced": config.subset_seed is not None}
            save_classifier(model.cpu(), tmp, card)
            write_json(tmp / "metrics.json", metrics)
            sha = file_sha256(tmp / WEIGHTS_NAME)
            discard_checkpoint(tmp)
        log.info("wrote %s (test accuracy %.4f)", out, acc)
        return TrainingResult(run_dir=out, dataset=data.name, model=config.model, test_accuracy=acc,
                              n_test=len(data.x_test), train_seconds=seconds, weights_sha256=sha)

    # the other ranks train alongside rank 0 without a checkpoint or a folder, and return rank 0's result
    return on_rank0(train_and_write, lambda: train(None), world)


@restores_threads
def run_evaluation(
    source: str | Path,
    *,
    dataset: str | None = None,
    data_root: str | None = None,
    factory: str | Callable[..., nn.Module] | None = None,
    input_shape: Sequence[int] | None = None,
    n_classes: int | None = None,
    feature_layer: str | None = None,
    device: str = "auto",
    seed: int = 0,
    threads: int | None = None,
    out: str | Path | None = None,
    force: bool = False,
) -> EvaluationResult:
    """Test accuracy of a classifier: a run folder, a TorchScript file or a state dict.

    Parameters
    ----------
    source : path
        See :func:`netinvert.models.load_classifier`; it is only read.
    dataset : str, optional
        Dataset to test on (default: the one named in the run's card; foreign models need it).
    data_root, factory, input_shape, n_classes, feature_layer
        As for :func:`netinvert.models.load_classifier` and :func:`netinvert.data.load_dataset`.
        A run folder knows its own shape; ``input_shape``/``n_classes`` default to the
        dataset's for foreign models.
    device : {"cpu", "cuda", "auto"}
    seed : int
        Recorded; evaluation itself draws nothing at random.
    threads : int, optional
        Torch threads (None: ``$NETINVERT_THREADS``, else half the usable cores).
    out : path, optional
        A new folder to write ``card.json`` and ``metrics.json`` into; nothing is written without
        it. It may not be, hold or lie inside ``source``.
    force : bool
        Replace an ``out`` that holds files, once the evaluation is complete.

    Returns
    -------
    EvaluationResult
        Includes the sha256 of the weights file read.

    Raises
    ------
    FileNotFoundError, UnsafeCheckpointError, RunFormatError
        As :func:`~netinvert.models.load_classifier`.
    ValueError
        If the classifier does not fit the dataset, or ``out`` overlaps ``source``.
    """
    source = Path(source)
    dev = resolve_device(device)
    if out is not None:
        out = check_out(out, force=force, inputs=[source])
    n_threads = set_threads(threads)
    seed_everything(seed)
    stage = staged_run(out, force=force, inputs=[source]) if out is not None else contextlib.nullcontext(None)
    with stage as tmp:
        data = load_dataset(dataset, data_root) if dataset else None
        shape = input_shape or (data.input_shape if data is not None else None)
        classes = n_classes or (data.n_classes if data is not None else None)
        is_run = source.is_dir()
        # A run folder knows its own shape; the dataset's only fills in what a foreign model lacks.
        model, info = load_classifier(source, factory=factory, input_shape=input_shape if is_run else shape,
                                      n_classes=n_classes if is_run else classes, feature_layer=feature_layer,
                                      device=dev)
        if data is None:
            name = info.get("dataset")
            if not isinstance(name, str):
                raise RunFormatError(f"{source} names no dataset; pass --dataset (dataset=).")
            data = load_dataset(name, data_root or info["card"].get("data_root"))
        if tuple(model.input_shape) != data.input_shape or model.n_classes != data.n_classes:
            raise ValueError(
                f"The classifier takes inputs {tuple(model.input_shape)} with {model.n_classes} classes, but dataset "
                f"{data.name!r} has {data.input_shape} with {data.n_classes}; pick the dataset it was trained on."
            )
        weights = Path(info["source"]) / WEIGHTS_NAME if info["format"] == "run" else source
        acc = evaluate_classifier(model, data.x_test, data.y_test)
        result = EvaluationResult(
            run_dir=out, source=str(source), format=info["format"], dataset=data.name,
            model=info["card"].get("model") or info.get("factory") or info["format"], test_accuracy=acc,
            n_test=len(data.x_test), device=str(dev), weights_sha256=info["weights_sha256"],
        )
        if tmp is not None:
            factory_name = factory if isinstance(factory, str) or factory is None else getattr(factory, "__qualname__", repr(factory))
            config = {"source": str(source), "dataset": dataset, "data_root": data_root, "factory": factory_name,
                      "input_shape": list(input_shape) if input_shape is not None else None, "n_classes": n_classes,
                      "feature_layer": feature_layer, "device": device, "seed": seed, "threads": threads}
            metrics = {"test_accuracy": acc, "n_test": len(data.x_test)}
            write_card(tmp, {"kind": "evaluation", "config": config, "source": str(source), "format": info["format"],
                             "dataset": data.name, "model": result.model, "seed": seed, "device": str(dev),
                             "threads": n_threads, "input_weights_sha256": {str(weights): result.weights_sha256},
                             **metrics})
            write_json(tmp / "metrics.json", metrics)
    return result
