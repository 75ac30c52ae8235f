"""The OOD workflows: train a garbage-class model (:func:`run_ood`) and evaluate it (:func:`run_ood_evaluation`).

Both keep the pipeline contract of ``docs/architecture.md``: a frozen config (or explicit keyword
arguments), ``out`` checked before any work, a run folder that appears whole or not at all, a frozen
result. ``netinvert ood train`` / ``netinvert ood evaluate`` call them.

Nothing here is tuned on OOD test sets: the selection rule, the class weights and the number of
rounds are to be chosen on the validation split carved from the training split (recorded per round
in ``history.json``) and on noise only; the OOD sets are for :func:`run_ood_evaluation` alone. The
garbage-logit bias (the operating point, :func:`calibrate_garbage_bias`) and the flagging threshold
are read off that validation split too.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from ..._checks import bad_param
from ..._checkpoint import (CHECKPOINT_NAME, check_resume, discard_checkpoint, prefixed, read_checkpoint, restore_rng,
                            resume_point, rng_state, rng_to_checkpoint, strip_prefix, write_checkpoint)
from ..._device import resolve_device, seed_everything
from ..._distributed import World, broadcast_object, process_group, rank0_first
from ..._progress import PROGRESS_LOGGER
from ..._threads import restores_threads, set_threads
from ...data import DATASETS, Dataset, load_dataset
from ...exceptions import RunFormatError, UnknownNameError
from ...models import build_model
from ...models import load_classifier_run, path_for_card, resolve_recorded_path, save_classifier
from ...models import TrainConfig, train_classifier
from ...runs import WEIGHTS_NAME, check_out, file_sha256, read_card, save_weights, staged_run, write_card, write_json
from ._detectors import make_detector
from ._garbage import (balanced_class_weights, list_selections, make_selection, predict_labels, predict_logits,
                       split_validation, train_weighted, widen_head)
from ._metrics import OODMetrics
from ._operating_point import calibrate_garbage_bias, check_accuracy_budget, garbage_argmax
from ._sets import OOD_SETS, list_ood_sets, load_ood_set

__all__ = ["OODRunConfig", "OODResult", "OODEvaluationResult", "run_ood", "run_ood_evaluation",
           "GARBAGE_DETECTORS", "BASELINE_DETECTORS"]

log = logging.getLogger(__name__)
progress_log = logging.getLogger(PROGRESS_LOGGER)

#: Detectors scored on the final ``(n+1)``-class model.
GARBAGE_DETECTORS = ("garbage", "ue")
#: Post-hoc baselines scored on the original ``n``-class model.
BASELINE_DETECTORS = ("msp", "max-logit", "energy", "mahalanobis")
#: Inversion steps per round when neither ``steps`` nor ``seconds`` is given.
DEFAULT_STEPS = 300
_CLASS_WEIGHTS = ("balanced", "uniform")
#: The near-OOD set of a run trained with ``classes``: the test images of the other classes.
HELD_OUT = "held-out"
#: OOD sets without a natural size (drawn ``n`` at a time).
_GENERATED = ("uniform", "gaussian")


def _int(owner: str, name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise bad_param(owner, name, f"an int in [{low}, inf)", value)


@dataclass(frozen=True)
class OODRunConfig:
    """What :func:`run_ood` runs: the garbage-class loop of arXiv 2505.23448.

    Parameters
    ----------
    classifier : path, optional
        A classifier run folder (``netinvert train``) to start from. Exactly one of ``classifier``
        and ``dataset`` + ``model``.
    dataset, model : str, optional
        Train the ``n``-class starting model here (``base_epochs`` epochs, on the training split
        without the validation part); it is saved in the run as ``base/``.
    data_root : str, optional
    model_params : mapping
        Architecture arguments for ``model`` (as :class:`~netinvert.models.ClassifierRunConfig`).
    classes : sequence of int, optional
        Train on these classes of ``dataset`` only (relabelled in this order,
        :meth:`~netinvert.data.Dataset.select_classes`); the others are the near-OOD set
        ``held-out`` of :func:`run_ood_evaluation`. Only with ``dataset`` and ``model``.
    base_epochs : int, default=10
    rounds : int, default=3
        Inversion rounds after the noise-only warm-up round 0.
    steps, seconds : optional
        Inversion budget per round (whichever ends first); neither: 300 steps. ``steps`` is reproducible.
    samples_per_round : int, default=200
        At most this many inverted samples join the garbage class per round. ``ceil(samples_per_round /
        n)`` samples are drawn for each of the ``n + 1`` labels; the candidates are those of the ``n``
        real labels (the garbage label's inversions already go to the garbage class and are only shown
        in the round's grid).
    selection : str, default="robust-disagree"
        Which candidates join (:func:`list_selections`): ``robust-disagree`` keeps those the
        independent robust verifier (:func:`netinvert.metrics.train_verifiers`, trained on the
        training split) does not label as their target, i.e. samples the model accepts but that do
        not look like the class (the paper's "incoherent" samples; samples that do look like data are
        kept out of the garbage class, protecting in-distribution accuracy). ``all`` keeps every
        candidate; ``none`` keeps none (the noise-only ablation, same rounds and retraining).
    noise_uniform, noise_gaussian : int, default=200
        Size of the uniform and Gaussian noise seed of the garbage class (:func:`load_ood_set`).
    class_weights : "balanced", "uniform" or sequence of n+1 floats
        Weights of the cross-entropy. ``balanced`` (scikit-learn's ``N / (K n_c)``, recomputed each
        round) makes the growing garbage class weigh as much as an average real class whatever its size.
    epochs_per_round : int, default=2
        Retraining epochs over training split + garbage set per round (and in round 0).
    batch_size, lr, weight_decay
        Retraining minibatch size and AdamW settings (constant learning rate).
    val_fraction : float, default=0.1
        Share of the training split held out as the validation split (never the test split).
    accuracy_budget : float, default=0.005
        The operating point: after training, the garbage logit gets the largest bias ``b >= 0`` that
        costs at most this much validation accuracy (:func:`calibrate_garbage_bias`; 0.005 is half
        of issue 10's one-point allowance). Stored as ``garbage_bias`` in the card and used by
        :func:`run_ood_evaluation`; 0 disables it (plain argmax). Only the validation split decides ``b``.
    inverter_batch_size : int, optional
        The :class:`~netinvert.inversion.Inverter`'s batch size (default its own).
    verifier_epochs : int, optional
        Override the verifiers' epochs (quick checks only).
    seed : int, default=0
    device : {"cpu", "cuda", "auto"}
    threads : int, optional
    """

    classifier: str | Path | None = None
    dataset: str | None = None
    model: str | None = None
    data_root: str | None = None
    model_params: Any = ()
    classes: tuple[int, ...] | None = None
    base_epochs: int = 10
    rounds: int = 3
    steps: int | None = None
    seconds: float | None = None
    samples_per_round: int = 200
    selection: str = "robust-disagree"
    noise_uniform: int = 200
    noise_gaussian: int = 200
    class_weights: Any = "balanced"
    epochs_per_round: int = 2
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.1
    accuracy_budget: float = 0.005
    inverter_batch_size: int | None = None
    verifier_epochs: int | None = None
    seed: int = 0
    device: str = "auto"
    threads: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.model_params, Mapping):
            object.__setattr__(self, "model_params", tuple(sorted(self.model_params.items())))
        if isinstance(self.class_weights, list):
            object.__setattr__(self, "class_weights", tuple(self.class_weights))
        if isinstance(self.classes, list):
            object.__setattr__(self, "classes", tuple(self.classes))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values: what the card records as ``config``."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["classifier"] = None if self.classifier is None else str(self.classifier)
        out["model_params"] = dict(self.model_params)
        if isinstance(self.class_weights, tuple):
            out["class_weights"] = list(self.class_weights)
        if self.classes is not None:
            out["classes"] = list(self.classes)
        return out

    def validate(self) -> OODRunConfig:
        """Raise ``ValueError`` on the first invalid field (sklearn's message shape); returns ``self``."""
        owner = type(self).__name__
        if (self.classifier is None) == (self.dataset is None):
            raise ValueError(f"{owner} needs exactly one starting point: classifier (--classifier RUN) or dataset and model "
                             f"(--dataset D --model M). Got classifier={self.classifier!r}, dataset={self.dataset!r}.")
        if self.dataset is not None:
            if self.model is None:
                raise ValueError(f"{owner}: dataset={self.dataset!r} needs a model (--model) to train.")
            DATASETS.get(self.dataset)
            from ...models import MODELS
            MODELS.get(self.model)
        elif self.model is not None:
            raise ValueError(f"{owner}: model={self.model!r} is only used with dataset; a classifier run brings its own.")
        if self.classes is not None and self.dataset is None:
            raise ValueError(f"{owner}: classes={list(self.classes)!r} needs dataset and model: a classifier run was "
                             "trained on all of its classes.")
        for name, low in (("rounds", 1), ("samples_per_round", 1), ("noise_uniform", 0), ("noise_gaussian", 0),
                          ("epochs_per_round", 1), ("batch_size", 2), ("base_epochs", 1), ("seed", 0)):
            _int(owner, name, getattr(self, name), low)
        if self.noise_uniform + self.noise_gaussian < 1:
            raise ValueError(f"{owner}: the garbage class needs a noise seed; noise_uniform + noise_gaussian must be >= 1.")
        for name in ("steps", "inverter_batch_size", "verifier_epochs", "threads"):
            if getattr(self, name) is not None:
                _int(owner, name, getattr(self, name), 2 if name == "inverter_batch_size" else 1)
        if self.seconds is not None and (isinstance(self.seconds, bool) or not isinstance(self.seconds, (int, float))
                                         or not self.seconds > 0 or not math.isfinite(self.seconds)):
            raise bad_param(owner, "seconds", "a finite float > 0 or None", self.seconds)
        for name in ("lr",):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise bad_param(owner, name, "a float > 0", v)
        if isinstance(self.weight_decay, bool) or not isinstance(self.weight_decay, (int, float)) or self.weight_decay < 0:
            raise bad_param(owner, "weight_decay", "a float >= 0", self.weight_decay)
        if isinstance(self.val_fraction, bool) or not isinstance(self.val_fraction, (int, float)) or not 0 < self.val_fraction < 1:
            raise bad_param(owner, "val_fraction", "a float in (0, 1)", self.val_fraction)
        check_accuracy_budget(self.accuracy_budget, owner)
        if self.selection not in list_selections():
            raise bad_param(owner, "selection", f"one of {list_selections()}", self.selection)
        if self.device not in ("cpu", "cuda", "auto"):
            raise bad_param(owner, "device", "one of ['cpu', 'cuda', 'auto']", self.device)
        cw = self.class_weights
        if isinstance(cw, str):
            if cw not in _CLASS_WEIGHTS:
                raise bad_param(owner, "class_weights", f"one of {list(_CLASS_WEIGHTS)} or a sequence of n+1 floats > 0", cw)
        elif not isinstance(cw, tuple) or not cw or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in cw):
            raise bad_param(owner, "class_weights", f"one of {list(_CLASS_WEIGHTS)} or a sequence of n+1 floats > 0", cw)
        return self


@dataclass(frozen=True)
class OODResult:
    """What :func:`run_ood` wrote: the run folder and its headline numbers.

    ``val_accuracy`` is the plain argmax's; ``garbage_bias`` the operating point calibrated after
    training (``OODRunConfig.accuracy_budget``), which :func:`run_ood_evaluation` applies.
    """

    run_dir: Path
    classifier_dir: Path
    n_classes: int
    rounds: int
    garbage_size: int
    val_accuracy: float
    base_val_accuracy: float
    garbage_bias: float
    seconds: float
    weights_sha256: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["run_dir"], d["classifier_dir"] = str(self.run_dir), str(self.classifier_dir)
        return d


@torch.no_grad()
def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((predict_labels(model, x) == y).float().mean())


def _class_weights(config: OODRunConfig, y: torch.Tensor, k: int) -> torch.Tensor:
    if config.class_weights == "balanced":
        return balanced_class_weights(y, k)
    if config.class_weights == "uniform":
        return torch.ones(k)
    if len(config.class_weights) != k:
        raise ValueError(f"The 'class_weights' parameter of OODRunConfig must hold n+1 = {k} weights. "
                         f"Got {len(config.class_weights)} instead.")
    return torch.tensor(config.class_weights, dtype=torch.float32)


def _grid(images: torch.Tensor, labels: torch.Tensor, path: Path, names: Sequence[str], title: str, per: int = 8) -> None:
    from ...report import save_class_grid

    keep = torch.cat([torch.nonzero(labels == c).flatten()[:per] for c in labels.unique()])
    save_class_grid(images[keep], labels[keep], path, class_names=list(names), title=title)


@restores_threads
def run_ood(config: OODRunConfig, out: str | Path, *, force: bool = False, resume: bool = False,
            progress: bool = True) -> OODResult:
    """Train an ``(n+1)``-class garbage-class model and write the run folder ``out``.

    The loop: widen the ``n``-class model to ``n + 1`` outputs (:func:`widen_head`; the garbage class
    is the last index); seed the garbage class with uniform and Gaussian noise; round 0 retrains on
    training split + noise; each round ``r = 1..rounds`` inverts the current model with the
    project's :class:`~netinvert.inversion.Inverter` for all ``n + 1`` labels, adds the samples of
    the real labels chosen by ``config.selection`` to the garbage set, and retrains with
    class-weighted cross-entropy on training split + garbage set. Retraining continues from the
    current weights (fine-tuning), so the real classes are not relearnt from scratch each round.

    Finally the garbage logit's bias ``garbage_bias`` is calibrated on the validation split under
    ``config.accuracy_budget`` (:func:`calibrate_garbage_bias`) and recorded with the validation and
    test accuracy it gives (``val_accuracy_at_bias``, ``test_accuracy_at_bias``) in the card and
    ``metrics.json``; the saved weights are not changed by it.

    ``out`` receives ``card.json`` (kind ``ood``, config, seed, device, threads, versions, the
    sha256 of every weights file read or written), ``config.json``, ``history.json`` (per round:
    validation accuracy over all ``n + 1`` outputs, the validation share sent to garbage, the
    garbage-set size, inverted candidates, selected, their validity under the model and agreement
    with the robust verifier), ``metrics.json``, ``classifier/`` (the final model as a classifier
    run that :func:`netinvert.models.load_classifier` reads), ``base/`` (the starting model, when
    trained here), ``plain/`` (the baseline: the starting model retrained round by round on the same
    schedule, seeds and split without a garbage class), ``garbage.safetensors`` (the garbage set and each image's source),
    ``garbage.png`` and ``rounds/round_RR.png`` (each round's inverted samples, 8 per label).
    A checkpoint (``checkpoint.safetensors`` in the staging folder ``.OUT.partial``) is written after
    round 0 and after every round: both models, the garbage set, the history and the random state.
    ``resume=True`` continues an interrupted run from its last finished round (the verifiers, seeded,
    are retrained: seconds); a rerun without it refuses a left-over checkpoint unless ``force``.

    Under ``torchrun`` every training in the loop is data parallel (the base model and verifiers,
    :meth:`Inverter.fit <netinvert.inversion.Inverter.fit>`, the weighted retraining): every rank
    computes the same rounds on its share of each batch and ends each training with the same weights,
    so the samples, selections and garbage set agree on every rank. Rank 0 alone checks ``out`` and
    writes the run and its checkpoints; the other ranks' files go to a private scratch folder that is
    removed at the end. ``batch_size`` and the inverter's batch size must be multiples of the world size.

    Raises
    ------
    ValueError, UnknownNameError
        On an invalid config or ``out`` (before any work).
    UnsupportedLayerError
        If the starting model's head cannot be widened (before any training).
    """
    if not isinstance(config, OODRunConfig):
        raise ValueError(f"run_ood takes an OODRunConfig. Got {type(config).__name__} instead.")
    config.validate()
    device = resolve_device(config.device)
    with process_group(device) as (world, device):
        return _ood_run(config, out, world, device, force=force, resume=resume, progress=progress)


def _agree_on_weights(model: torch.nn.Module, world: World) -> None:
    """Give every rank rank 0's weights and buffers (a model only rank 0 trained)."""
    if world.distributed:
        state = broadcast_object({k: v.cpu() for k, v in model.state_dict().items()} if world.is_main else None, world)
        model.load_state_dict(state)


@contextlib.contextmanager
def _run_folder(world: World, out: Path, *, force: bool, resume: bool, inputs: list[Any]) -> Iterator[Path]:
    """Rank 0's staged run folder; a private scratch folder, removed on exit, for every other rank."""
    if world.is_main:
        with staged_run(out, force=force, resume=resume, keep_on_interrupt=True, inputs=inputs) as tmp:
            yield tmp
    else:
        with tempfile.TemporaryDirectory(prefix=f"netinvert-ood-rank{world.rank}-") as scratch:
            yield Path(scratch)


def _ood_run(config: OODRunConfig, out: str | Path, world: World, device: torch.device, *, force: bool, resume: bool,
             progress: bool) -> OODResult:
    """:func:`run_ood` once the world is known (see there)."""
    from ...inversion import Inverter
    from ...metrics import train_verifiers

    inputs = [config.classifier]

    def refuse_early() -> Path:
        check_resume(out, force=force, resume=resume)
        return check_out(out, force=force, inputs=inputs)

    out = rank0_first(refuse_early, world)
    if world.distributed:
        for name, bs in (("batch_size", config.batch_size), ("inverter_batch_size", config.inverter_batch_size)):
            if bs is not None and bs % world.size:
                raise ValueError(f"The '{name}' parameter of OODRunConfig is a global batch shared by the {world.size} "
                                 f"processes, so it must be a multiple of {world.size}. Got {bs} instead.")
    progress = progress and world.is_main
    base_model, base_card = None, {}
    if config.classifier is not None:
        base_model, base_card = load_classifier_run(config.classifier, device)
        widen_head(base_model)  # an unwidenable model is refused before any work
    threads = set_threads(config.threads)
    t0 = time.perf_counter()
    dataset = config.dataset or base_card.get("dataset")
    data_root = config.data_root or base_card.get("data_root")
    if not isinstance(dataset, str):
        raise RunFormatError(f"{config.classifier} names no dataset in its card; it cannot start an OOD run.")
    data = load_dataset(dataset, data_root)
    classes = None if config.classes is None else list(config.classes)
    if classes is not None:
        data = data.select_classes(classes)
    n = data.n_classes
    tr, va = split_validation(len(data.x_train), config.val_fraction, config.seed)
    x_tr, y_tr, x_va, y_va = data.x_train[tr], data.y_train[tr], data.x_train[va], data.y_train[va]
    train_part = Dataset(data.name, x_tr, y_tr, data.x_test, data.y_test, data.class_names, data.source, data.mean, data.std)
    names = [*data.class_names, "garbage"]
    history: list[dict[str, Any]] = []
    resume_info = {"config": config.to_dict(), "base_classifier_sha256": None if config.classifier is None else
                   file_sha256(Path(config.classifier) / WEIGHTS_NAME)}
    resume_from = rank0_first(lambda: resume_point(out, resume_info, resume=resume, force=force), world)
    with _run_folder(world, out, force=force, resume=resume, inputs=inputs) as tmp:
        seed_everything(config.seed)
        card_extra: dict[str, Any] = {}
        checkpoint = tmp / CHECKPOINT_NAME
        if config.classifier is None and resume_from is not None:  # trained before the interruption, in rank 0's folder
            base_model, _ = load_classifier_run(Path(resume_from).parent / "base", device)
        elif config.classifier is None:
            base_model = build_model(config.model, input_shape=data.input_shape, n_classes=n, mean=data.mean, std=data.std,
                                     **{k: v for k, v in config.model_params})
            if world.is_main:  # one process trains the starting model; every rank starts from its weights
                train_classifier(base_model, train_part, TrainConfig(epochs=config.base_epochs, batch_size=config.batch_size,
                                                                     seed=config.seed, device=str(device)), progress=progress)
            _agree_on_weights(base_model, world)
            base_model.eval()
            base_acc_test = _accuracy(base_model, data.x_test, data.y_test)
            save_classifier(base_model.cpu(), tmp / "base", {"dataset": data.name, "data_root": data_root, "seed": config.seed,
                                                             "classes": classes, "test_accuracy": base_acc_test,
                                                             "trained_by": "run_ood"})
            base_model.to(device)
        if config.classifier is None:
            base_path, base_sha = "base", file_sha256(tmp / "base" / WEIGHTS_NAME)
        else:
            base_path = path_for_card(out, config.classifier)
            base_sha = file_sha256(Path(config.classifier) / WEIGHTS_NAME)
            card_extra["base_classifier_path"] = str(Path(config.classifier).absolute())
        base_val = _accuracy(base_model, x_va, y_va)
        plain = copy.deepcopy(base_model).to(device)
        model = widen_head(base_model).to(device)
        k = n + 1
        shape = data.input_shape
        noise = [load_ood_set("uniform", shape, config.noise_uniform, seed=config.seed)] if config.noise_uniform else []
        if config.noise_gaussian:
            noise.append(load_ood_set("gaussian", shape, config.noise_gaussian, seed=config.seed + 1))
        garbage = torch.cat(noise)
        source = torch.cat([torch.full((config.noise_uniform,), 0), torch.full((config.noise_gaussian,), 1)]).long()
        selection = make_selection(config.selection)
        verifiers = None
        if selection.needs_verifiers and world.is_main:  # rank 0 selects and hands the selection to the others
            verifiers = train_verifiers(train_part, seed=config.seed + 1, device=device, progress=False,
                                        epochs=config.verifier_epochs)
            card_extra["verifiers"] = verifiers.info
        (tmp / "rounds").mkdir(exist_ok=True)

        def retrain(r: int) -> dict[str, Any]:
            x = torch.cat([x_tr, garbage])
            y = torch.cat([y_tr, torch.full((len(garbage),), n, dtype=torch.long)])
            weights = _class_weights(config, y, k)
            schedule = dict(epochs=config.epochs_per_round, batch_size=config.batch_size, lr=config.lr,
                            weight_decay=config.weight_decay, seed=config.seed * 1000 + r, device=device)
            losses = train_weighted(model, x, y, weights, **schedule, progress=progress, desc=f"ood round {r}")
            # The baseline: the same schedule on the same split without a garbage class.
            train_weighted(plain, x_tr, y_tr, torch.ones(n), **schedule, progress=False)
            pred = predict_labels(model, x_va)
            return {"round": r, "loss": losses, "class_weights": weights.tolist(),
                    "val_accuracy": float((pred == y_va).float().mean()), "val_garbage_share": float((pred == n).float().mean()),
                    "plain_val_accuracy": _accuracy(plain, x_va, y_va), "garbage_size": len(garbage)}

        def save_checkpoint() -> None:
            rng_tensors, rng_meta = rng_to_checkpoint(rng_state(device=device))
            tensors = {**prefixed("model", model.state_dict()), **prefixed("plain", plain.state_dict()),
                       "garbage": garbage.contiguous(), "source": source.contiguous(), **rng_tensors}
            write_checkpoint(checkpoint, tensors, {"info": resume_info, "history": history, "base_val": base_val,
                                                   "rng": rng_meta})

        if resume_from is None:
            history.append({**retrain(0), "inverted": 0, "selected": 0})
            save_checkpoint()
        else:
            tensors, state = read_checkpoint(resume_from)
            model.load_state_dict(strip_prefix("model", tensors))
            plain.load_state_dict(strip_prefix("plain", tensors))
            garbage, source, history = tensors["garbage"], tensors["source"], list(state["history"])
            restore_rng(tensors, state["rng"], device=device)
            log.info("resuming %s after round %d of %d", out, history[-1]["round"], config.rounds)
        if progress and len(history) == 1:
            progress_log.info("ood round 0/%d (noise only): val accuracy %.4f, garbage %d",
                              config.rounds, history[-1]["val_accuracy"], len(garbage))
        per_label = math.ceil(config.samples_per_round / n)
        steps = config.steps if config.steps is not None or config.seconds is not None else DEFAULT_STEPS
        for r in range(len(history), config.rounds + 1):
            settings = {} if config.inverter_batch_size is None else {"batch_size": config.inverter_batch_size}
            inverter = Inverter(model, seed=config.seed * 1000 + r, device=device, **settings)
            inverter.fit(steps=steps, seconds=config.seconds, progress=progress)
            xs, ys = inverter.sample_classes(per_label, seed=config.seed * 1000 + r)
            _grid(xs, ys, tmp / "rounds" / f"round_{r:02d}.png", names, f"round {r}: inverted samples per label")
            real = ys < n
            cand_x, cand_y = xs[real], ys[real]
            picked, entry = None, None
            if world.is_main:
                valid = predict_labels(model, cand_x) == cand_y
                mask = selection.select(cand_x, cand_y, {"verifiers": verifiers, "model": model})
                chosen = torch.nonzero(mask).flatten()
                gen = torch.Generator().manual_seed(config.seed * 1000 + r)
                chosen = chosen[torch.randperm(len(chosen), generator=gen)[:config.samples_per_round]].sort().values
                picked = cand_x[chosen].cpu()
                entry = {"inverted": len(cand_x), "selected": len(chosen), "validity": float(valid.float().mean()),
                         "inversion_steps": len(inverter.history_.get("step", []))}
                if verifiers is not None:
                    entry["robust_agreement"] = float((predict_labels(verifiers.robust, cand_x) == cand_y).float().mean())
            picked, entry = broadcast_object((picked, entry), world)  # one garbage set on every rank
            garbage = torch.cat([garbage, picked])
            source = torch.cat([source, torch.full((len(picked),), 1 + r, dtype=torch.long)])
            history.append({**retrain(r), **entry})
            save_checkpoint()
            if progress:
                progress_log.info("ood round %d/%d: val accuracy %.4f, garbage %d (+%d of %d inverted)", r, config.rounds,
                                  history[-1]["val_accuracy"], len(garbage), len(picked), len(cand_x))
        model.eval()
        test_acc = _accuracy(model, data.x_test, data.y_test)
        # The operating point is read off the validation split alone; the test figure beside it is only reported.
        val_logits = predict_logits(model, x_va)
        bias = calibrate_garbage_bias(val_logits, y_va, config.accuracy_budget)
        operating_point = {
            "accuracy_budget": config.accuracy_budget, "garbage_bias": bias,
            "val_accuracy_at_bias": float((garbage_argmax(val_logits, bias) == y_va).float().mean()),
            "test_accuracy_at_bias": float((predict_labels(model, data.x_test, garbage_bias=bias) == data.y_test)
                                           .float().mean())}
        source_names = ["uniform", "gaussian", *[f"round {r}" for r in range(1, config.rounds + 1)]]
        _grid(garbage, source, tmp / "garbage.png", source_names, "garbage class by source")
        save_weights(tmp / "garbage.safetensors", {"x": garbage.contiguous(), "source": source.contiguous()})
        save_classifier(model.cpu(), tmp / "classifier", {
            "dataset": data.name, "data_root": data_root, "seed": config.seed, "garbage_index": n, "classes": classes,
            "class_names": names, "test_accuracy": test_acc, "trained_by": "run_ood"})
        sha = file_sha256(tmp / "classifier" / WEIGHTS_NAME)
        plain_test = _accuracy(plain, data.x_test, data.y_test)
        save_classifier(plain.cpu(), tmp / "plain", {
            "dataset": data.name, "data_root": data_root, "seed": config.seed, "classes": classes, "test_accuracy": plain_test,
            "trained_by": "run_ood (baseline: the same retraining without a garbage class)"})
        seconds = time.perf_counter() - t0
        metrics = {"val_accuracy": history[-1]["val_accuracy"], "base_val_accuracy": base_val,
                   "plain_val_accuracy": history[-1]["plain_val_accuracy"], "test_accuracy": test_acc,
                   "plain_test_accuracy": plain_test, **operating_point,
                   "garbage_size": len(garbage), "n_train": len(x_tr), "n_val": len(x_va), "seconds": seconds}
        write_json(tmp / "history.json", history)
        write_json(tmp / "metrics.json", metrics)
        write_json(tmp / "config.json", config.to_dict())
        write_card(tmp, {"kind": "ood", "config": config.to_dict(), "dataset": data.name, "data_root": data_root,
                         "n_classes": n, "garbage_index": n, "seed": config.seed, "device": str(device), "threads": threads,
                         "selection": {"name": selection.name, "description": selection.description},
                         "base_classifier": base_path, "base_classifier_sha256": base_sha,
                         "classifier": "classifier", "classifier_sha256": sha,
                         "plain_classifier": "plain", "plain_classifier_sha256": file_sha256(tmp / "plain" / WEIGHTS_NAME),
                         "classes": classes, "class_names": names,
                         "garbage_sha256": file_sha256(tmp / "garbage.safetensors"), **card_extra, **metrics})
        discard_checkpoint(tmp)
    if world.is_main:
        log.info("wrote %s (val accuracy %.4f, garbage %d)", out, metrics["val_accuracy"], len(garbage))
    return OODResult(run_dir=out, classifier_dir=out / "classifier", n_classes=k, rounds=config.rounds,
                     garbage_size=len(garbage), val_accuracy=metrics["val_accuracy"], base_val_accuracy=base_val,
                     garbage_bias=bias, seconds=seconds, weights_sha256=sha)


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class OODEvaluationResult:
    """What :func:`run_ood_evaluation` measured; ``run_dir`` is None when nothing was written.

    ``metrics[set][detector]`` holds :class:`OODMetrics`' keys; ``garbage_share[set]`` the share of
    that set's images the final model assigns to the garbage class at its operating point: the
    argmax after adding ``garbage_bias`` to the garbage logit (:func:`garbage_argmax`).
    ``garbage_bias_source`` says where the bias came from: ``"stored"`` (calibrated by
    :func:`run_ood` under ``accuracy_budget``), ``"calibrated"`` (here, on the run's validation
    split, because ``accuracy_budget`` was passed) or ``"none"`` (a run from before the operating
    point: b = 0). ``in_accuracy`` is the final model's accuracy on the in-distribution test split
    at that bias (a garbage prediction counts as wrong) and ``in_garbage_share`` its share sent to
    garbage; ``val_accuracy`` is the accuracy on the validation split the bias was chosen on. Each
    has a ``*_no_bias`` twin at b = 0 (the plain argmax), for transparency. ``flagged_share[set]``
    is the share whose garbage probability exceeds ``flag_threshold``, the 95th percentile of the
    garbage probability on the run's *validation* split (another operating point chosen without OOD
    data: about 5% of in-distribution images are flagged, ``in_flagged_share`` on the test split).
    ``base_accuracy`` is the test accuracy of the baseline model the post-hoc detectors score.
    """

    run_dir: Path | None
    ood_run: str
    in_accuracy: float
    base_accuracy: float
    in_garbage_share: float
    metrics: dict[str, dict[str, dict[str, float]]]
    garbage_share: dict[str, float]
    flag_threshold: float
    in_flagged_share: float
    flagged_share: dict[str, float]
    garbage_bias: float
    garbage_bias_source: str
    accuracy_budget: float | None
    val_accuracy: float
    val_accuracy_no_bias: float
    in_accuracy_no_bias: float
    in_garbage_share_no_bias: float
    garbage_share_no_bias: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["run_dir"] = None if self.run_dir is None else str(self.run_dir)
        return d


def _check_set_names(names: Sequence[str], run: Path, classes: Sequence[int] | None) -> list[str]:
    if isinstance(names, str):
        names = [names]
    names = list(names)
    if not names:
        raise ValueError("run_ood_evaluation needs at least one OOD set (--ood NAME).")
    valid = [*list_ood_sets(), HELD_OUT]
    for name in names:
        if name not in OOD_SETS and name not in DATASETS and name != HELD_OUT and not _is_folder(name):
            raise UnknownNameError(f"Unknown OOD set {name!r}: neither a name nor a folder of images. "
                                   f"Valid names: {', '.join(sorted(valid))}.")
        if name == HELD_OUT and classes is None:
            raise ValueError(f"OOD set {HELD_OUT!r} is the classes a run was not trained on, but {run} was trained on "
                             "every class of its dataset (ood train --classes selects some).")
    if len(set(names)) != len(names):
        raise ValueError(f"OOD set names repeat in {names}; name each once.")
    return names


def _is_folder(name: str) -> bool:
    """An OOD set given as a folder of the user's images (laid out as the ``image-folder`` dataset wants)."""
    return name not in OOD_SETS and name not in DATASETS and Path(name).is_dir()


def _stem(name: str) -> str:
    """A file-name-safe form of an OOD set's name (a folder's path becomes its last part)."""
    stem = Path(name).name if _is_folder(name) else name
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem) or "folder"


def _validation_split(card: Mapping[str, Any], data: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """The validation images and labels :func:`run_ood` held out of ``data``'s training split (from the card's config)."""
    config = card.get("config") or {}
    _, va = split_validation(len(data.x_train), config.get("val_fraction", OODRunConfig.val_fraction),
                             config.get("seed", OODRunConfig.seed))
    return data.x_train[va], data.y_train[va]


def _operating_point(card: Mapping[str, Any], run: Path, val_logits: torch.Tensor, y_val: torch.Tensor,
                     accuracy_budget: float | None) -> tuple[float, str, float | None]:
    """The garbage bias to evaluate ``run`` at, where it came from, and the budget that chose it."""
    if accuracy_budget is not None:
        return calibrate_garbage_bias(val_logits, y_val, accuracy_budget), "calibrated", accuracy_budget
    if "garbage_bias" in card:
        return float(card["garbage_bias"]), "stored", card.get("accuracy_budget")
    warnings.warn(f"{run} stores no garbage_bias (it was trained before the operating point existed), so it is "
                  "evaluated at b = 0, the plain argmax. Pass accuracy_budget (--accuracy-budget) to calibrate the bias "
                  "on the run's own validation split.", stacklevel=4)
    return 0.0, "none", None


def _share(pred: torch.Tensor, target: torch.Tensor | int) -> float:
    return float((pred == target).float().mean())


def _held_out(full: Dataset, classes: Sequence[int], n: int | None, seed: int, run: Path) -> torch.Tensor:
    """Test images of the classes ``run`` was not trained on; ``n`` of them (seeded) when given."""
    x = full.held_out_test(classes)
    if n is not None and n < len(x):
        x = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n].sort().values]
    return x


def _roc_curves(path: Path, name: str, scores_in: Mapping[str, torch.Tensor], scores_out: Mapping[str, torch.Tensor],
                metrics: Mapping[str, Mapping[str, float]]) -> None:
    """One ROC curve per detector (scikit-learn's ``roc_curve``; OOD is the positive class)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(4.2, 4))
    for det in scores_in:
        y = torch.cat([torch.zeros(len(scores_in[det])), torch.ones(len(scores_out[det]))]).numpy()
        fpr, tpr, _ = roc_curve(y, torch.cat([scores_in[det], scores_out[det]]).double().numpy())
        ax.plot(fpr, tpr, lw=1.2, label=f"{det} (AUROC {metrics[det]['AUROC']:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.6, ls=":")
    ax.set(xlabel="false positive rate (in-distribution flagged)", ylabel="true positive rate (OOD flagged)",
           xlim=(0, 1), ylim=(0, 1.01))
    ax.set_title(f"ROC: in-distribution test vs {name}", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _histograms(path: Path, name: str, scores_in: Mapping[str, torch.Tensor], scores_out: Mapping[str, torch.Tensor]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dets = list(scores_in)
    fig, axes = plt.subplots(1, len(dets), figsize=(3 * len(dets), 2.6), squeeze=False)
    for ax, det in zip(axes[0], dets):
        a, b = scores_in[det].numpy(), scores_out[det].numpy()
        lo, hi = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
        bins = 30 if hi > lo else 1
        ax.hist(a, bins=bins, range=(lo, hi if hi > lo else lo + 1), alpha=0.6, label="in", density=True)
        ax.hist(b, bins=bins, range=(lo, hi if hi > lo else lo + 1), alpha=0.6, label=name, density=True)
        ax.set_title(det, fontsize=8)
        ax.tick_params(labelsize=6)
    axes[0][0].legend(fontsize=6)
    fig.suptitle(f"OOD scores (higher = more OOD): in-distribution test vs {name}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@restores_threads
def run_ood_evaluation(ood_run: str | Path, ood_sets: Sequence[str], out: str | Path | None = None, *, n: int | None = None,
                       accuracy_budget: float | None = None, seed: int = 0, device: str = "auto",
                       threads: int | None = None, force: bool = False, histograms: bool = True) -> OODEvaluationResult:
    """Score in-distribution test images and each OOD set with every detector; compute :class:`OODMetrics`.

    The final ``(n+1)``-class model of ``ood_run`` is scored with ``garbage`` and ``ue``
    (:data:`GARBAGE_DETECTORS`); the run's ``plain/`` ``n``-class model (the starting model retrained
    on the same schedule without a garbage class) with ``msp``, ``max-logit``, ``energy`` and
    ``mahalanobis`` (fitted on the training split; tied covariance) (:data:`BASELINE_DETECTORS`).
    A run trained on some ``classes`` offers the set ``held-out``: the test images of the others. OOD sets come from :func:`load_ood_set` in the in-distribution shape
    (grey-scale, resized with antialiasing: :func:`convert_images`). Shares sent to garbage and
    accuracies are measured at the run's operating point (the garbage-logit bias) and at b = 0.

    Parameters
    ----------
    ood_run : path
        A run folder written by :func:`run_ood`; only read.
    ood_sets : sequence of str
        Names from :func:`list_ood_sets`, ``held-out`` (a run trained on some ``classes``), or folders
        of images (``FOLDER/<any name>/*.png``, every image used); checked before any work. Plots
        are named ``hist_SET.png`` / ``roc_SET.png`` (a folder by its last part).
    out : path, optional
        A new folder for ``card.json``, ``metrics.json`` and ``hist_SET.png``; nothing is written without it.
    n : int, optional
        Images per OOD set (default: as many as the in-distribution test split for generated sets, the
        whole test split for datasets).
    accuracy_budget : float, optional
        Recalibrate the garbage-logit bias on the run's validation split with this budget
        (:func:`calibrate_garbage_bias`; 0: b = 0) instead of using the one the run stores. A run
        written before the operating point existed stores none: without this it is evaluated at
        b = 0, with a warning.
    seed : int, default=0
        Seeds the noise sets and the choice of dataset images.
    device, threads, force
        As everywhere.
    histograms : bool, default=True
        Write one histogram PNG per set (with ``out``).

    Raises
    ------
    UnknownNameError
        If an OOD set is not registered (before any work).
    ValueError
        If a set is empty or cannot be converted to the in-distribution shape (naming it), ``out``
        overlaps ``ood_run``, or ``accuracy_budget`` is not a float in [0, 1].
    """
    if n is not None:
        _int("run_ood_evaluation", "n", n, 1)
    if accuracy_budget is not None:
        accuracy_budget = check_accuracy_budget(accuracy_budget, "run_ood_evaluation")
    run = Path(ood_run)
    card = read_card(run, required=("classifier", "base_classifier", "dataset"))
    if card.get("kind") != "ood":
        raise RunFormatError(f"{run} holds a {card.get('kind')!r} run, not an OOD run written by 'netinvert ood train'.")
    names = _check_set_names(ood_sets, run, card.get("classes"))
    if out is not None:
        out = check_out(out, force=force, inputs=[run])
    dev = resolve_device(device)
    n_threads = set_threads(threads)
    seed_everything(seed)
    final, _ = load_classifier_run(resolve_recorded_path(run, card["classifier"]), dev,
                                   expected_sha256=card.get("classifier_sha256"))
    # Baselines score the model retrained like the garbage-class one without a garbage class
    # ("plain/"); runs written before it existed fall back to the starting model.
    base_key = "plain_classifier" if card.get("plain_classifier") else "base_classifier"
    base, _ = load_classifier_run(resolve_recorded_path(run, card[base_key]), dev,
                                  expected_sha256=card.get(f"{base_key}_sha256"))
    full = load_dataset(card["dataset"], card.get("data_root"))
    classes = card.get("classes")
    data = full if classes is None else full.select_classes(classes)
    k = int(final.n_classes)
    g = k - 1
    detectors = {name: make_detector(name, final) for name in GARBAGE_DETECTORS}
    detectors.update({name: make_detector(name, base) for name in BASELINE_DETECTORS})
    detectors["mahalanobis"].fit((data.x_train, data.y_train))
    x_in = data.x_test
    scores_in = {name: det.predict(x_in) for name, det in detectors.items()}
    # Both operating points (the flagging threshold and the garbage bias) come from the validation split only.
    x_va, y_va = _validation_split(card, data)
    val_logits = predict_logits(final, x_va)
    threshold = float(torch.quantile(detectors["garbage"].predict_logits(val_logits).double(), 0.95))
    bias, bias_source, budget = _operating_point(card, run, val_logits, y_va, accuracy_budget)
    flagged: dict[str, float] = {}
    logits_in = predict_logits(final, x_in)
    pred_in, pred_in_no_bias = garbage_argmax(logits_in, bias), garbage_argmax(logits_in)
    base_acc = _share(predict_labels(base, x_in), data.y_test)
    metrics: dict[str, dict[str, dict[str, float]]] = {}
    shares: dict[str, float] = {}
    shares_no_bias: dict[str, float] = {}
    per_set_scores: dict[str, dict[str, torch.Tensor]] = {}
    for i, name in enumerate(names):
        count = n if n is not None else (len(x_in) if name in _GENERATED else None)
        if name == HELD_OUT:
            x_out = _held_out(full, classes, count, seed + i, run)
        else:
            folder = {"root": name, "split": "all"} if _is_folder(name) else {}
            try:
                x_out = load_ood_set("image-folder" if folder else name, data.input_shape, count, seed=seed + i, **folder)
            except (ValueError, RuntimeError) as exc:
                msg = str(exc)
                raise ValueError(msg if repr(name) in msg else f"OOD set {name!r}: {msg}") from None
        if len(x_out) == 0:
            raise ValueError(f"OOD set {name!r} is empty; it has no images to score.")
        scores_out = {det_name: det.predict(x_out) for det_name, det in detectors.items()}
        metrics[name] = {det_name: OODMetrics().update(scores_in[det_name], False).update(s, True).compute()
                         for det_name, s in scores_out.items()}
        logits_out = predict_logits(final, x_out)
        shares[name] = _share(garbage_argmax(logits_out, bias), g)
        shares_no_bias[name] = _share(garbage_argmax(logits_out), g)
        flagged[name] = float((scores_out["garbage"] > threshold).float().mean())
        per_set_scores[name] = scores_out
    result = OODEvaluationResult(
        run_dir=None if out is None else Path(out), ood_run=str(run), in_accuracy=_share(pred_in, data.y_test),
        base_accuracy=base_acc, in_garbage_share=_share(pred_in, g), metrics=metrics, garbage_share=shares,
        flag_threshold=threshold, in_flagged_share=float((scores_in["garbage"] > threshold).float().mean()),
        flagged_share=flagged, garbage_bias=bias, garbage_bias_source=bias_source, accuracy_budget=budget,
        val_accuracy=_share(garbage_argmax(val_logits, bias), y_va),
        val_accuracy_no_bias=_share(garbage_argmax(val_logits), y_va),
        in_accuracy_no_bias=_share(pred_in_no_bias, data.y_test), in_garbage_share_no_bias=_share(pred_in_no_bias, g),
        garbage_share_no_bias=shares_no_bias)
    if out is not None:
        with staged_run(out, force=force, inputs=[run]) as tmp:
            body = {k2: v for k2, v in result.to_dict().items() if k2 not in ("run_dir", "ood_run")}
            write_json(tmp / "metrics.json", body)
            if histograms:
                for name in names:
                    _histograms(tmp / f"hist_{_stem(name)}.png", name, scores_in, per_set_scores[name])
                    _roc_curves(tmp / f"roc_{_stem(name)}.png", name, scores_in, per_set_scores[name], metrics[name])
            write_card(tmp, {"kind": "ood-evaluation", "config": {"ood_run": str(run), "ood_sets": names, "n": n,
                                                                  "accuracy_budget": accuracy_budget, "seed": seed,
                                                                  "device": device, "threads": threads},
                             "ood_run": path_for_card(out, run), "seed": seed, "device": str(dev), "threads": n_threads,
                             "detectors": {d: det.get_params() for d, det in detectors.items()},
                             "input_weights_sha256": {"classifier": card.get("classifier_sha256"),
                                                      "base_classifier": card.get("base_classifier_sha256")},
                             "garbage_bias": bias, "garbage_bias_source": bias_source,
                             "in_accuracy": result.in_accuracy, "garbage_share": shares})
    return result
