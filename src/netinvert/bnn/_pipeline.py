"""The BNN workflows as library calls: train-export-verify one run, and every query on a run.

:func:`run_bnn_training` trains a :class:`BNN`, exports it to an :class:`IntegerBNN`, checks that the
export labels every test input as PyTorch does, and writes the run folder whole or not at all.
:func:`run_bnn_query` runs one query (a name from :func:`list_bnn_queries`) on such a run, returns a
frozen result and, only when given ``out``, writes a new run folder with ``card.json`` and the
query's artefacts (CNF and variable map for ``encode``, heat maps for ``sample``). A query never
writes into the run it reads. ``netinvert bnn ...``, ``netinvert demo`` and ``bench/bnn*.py`` call
these functions, so they measure and show the code users run.

Examples
--------
>>> from netinvert.bnn import BNNRunConfig, run_bnn_training, run_bnn_query  # doctest: +SKIP
>>> trained = run_bnn_training(BNNRunConfig(dataset="digits", hidden=(16,), epochs=5), "runs/bnn")  # doctest: +SKIP
>>> run_bnn_query("invert", "runs/bnn", {"label": 3}).result["status"]  # doctest: +SKIP
'sat'
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._checkpoint import CHECKPOINT_NAME, check_resume, discard_checkpoint, resume_point
from .._checks import check_param
from .._parallel import check_jobs, map_tasks, scheduler_workers, split
from .._registry import Registry
from .._threads import set_threads, restores_threads
from ..runs import check_out, staged_run, versions, write_card, write_json
from ._blocks import BLOCK_LAYOUTS, check_block_width, list_block_layouts
from ._count import COUNTERS, count_preimages
from ._encode import Encoding, encode
from ._export import BNNRun, export_bnn, load_bnn_run, save_bnn_run
from ._garbage import GarbageConfig, check_garbage_params, train_with_garbage
from ._invert import InferenceSummary, SatInverter
from ._local_search import candidate_hint
from ._model import BNN, BNNTrainConfig, InputBinarizer, train_bnn
from ._sample import sample_preimages, save_marginal_heatmap

__all__ = ["BNNRunConfig", "BNNTrainingResult", "run_bnn_training", "BNNQueryParams", "BNNQuery", "BNNQueryResult",
           "QUERIES", "list_bnn_queries", "run_bnn_query"]

log = logging.getLogger(__name__)


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _is_real(x: Any) -> bool:
    """An int or float that is not a bool and not NaN."""
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) and x == x


# --------------------------------------------------------------------------------------------- training


@dataclass(frozen=True)
class BNNRunConfig:
    """What :func:`run_bnn_training` trains: data, input rule, architecture and schedule.

    Attributes
    ----------
    dataset, data_root : str, str or None
        A name from :func:`netinvert.data.list_datasets` and where its files are.
    hidden : tuple of int
        Hidden widths (``()``: the head reads the inputs directly).
    pool, threshold : int, float
        Inputs are ``avg_pool(image, pool) > threshold`` (:class:`InputBinarizer`).
    epochs, batch_size, lr, sparsity_weight, prune_at, seed
        As in :class:`BNNTrainConfig`.
    ternary_delta : float or None
        Ternary weights: ``|w| < delta`` becomes 0.
    fan_in : int or None
        Each hidden neuron keeps its ``fan_in`` largest weights after ``prune_at`` of the epochs
        (keeps exact counting by the ``dp`` method feasible).
    blocks : str or None
        A block layout of the first layer (:func:`list_block_layouts`: ``"halves"``, ``"quadrants"``):
        each neuron reads one region of the binarised image only, which keeps exact counting by the
        ``factored`` method feasible for one hidden layer and at most 64 inputs. Needs a
        single-channel square image of at least 2 x 2 after pooling (an odd side gives the top and left
        blocks the middle row and column); excludes ``fan_in``.
    threads : int or None
        torch threads (``None``: ``$NETINVERT_THREADS``, else half the usable cores).
    garbage_rounds : int
        0: a plain net. Else the net gets an extra class ``n_classes`` ("garbage") fed, after a
        seed of uniform inputs, for this many rounds with inputs it gives a real label that the
        data does not support (:func:`netinvert.bnn.train_with_garbage`).
    garbage_source : str
        ``"sat"``: SAT preimages of each real label under random hints; ``"noise"``: the ablation,
        as many uniform inputs (:func:`list_garbage_sources`).
    garbage_samples, garbage_preimages, garbage_epochs, garbage_seconds : int, int, int, float
        Uniform draws per round, source candidates per real label and round, training epochs per
        round, budget per SAT query (:class:`GarbageConfig`; its ``quantile`` and ``lr_scale`` keep
        their defaults).
    """

    dataset: str = "digits"
    data_root: str | None = None
    hidden: tuple[int, ...] = (32,)
    pool: int = 1
    threshold: float = 0.5
    epochs: int = 40
    batch_size: int = 128
    lr: float = 1e-2
    ternary_delta: float | None = None
    sparsity_weight: float = 0.0
    fan_in: int | None = None
    blocks: str | None = None
    prune_at: float = 1 / 3
    seed: int = 0
    threads: int | None = None
    garbage_rounds: int = 0
    garbage_source: str = "sat"
    garbage_samples: int = 2000
    garbage_preimages: int = 20
    garbage_epochs: int = 2
    garbage_seconds: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        own = "BNNRunConfig"
        check_param(all(h >= 1 for h in self.hidden), own, "hidden", "a tuple of ints in [1, inf)", self.hidden)
        check_param(_is_int(self.pool) and self.pool >= 1, own, "pool", "an int in [1, inf)", self.pool)
        check_param(_is_int(self.epochs) and self.epochs >= 1, own, "epochs", "an int in [1, inf)", self.epochs)
        check_param(_is_int(self.batch_size) and self.batch_size >= 1, own, "batch_size", "an int in [1, inf)", self.batch_size)
        check_param(self.lr > 0, own, "lr", "a float in (0, inf)", self.lr)
        check_param(0 <= self.prune_at < 1, own, "prune_at", "a float in [0, 1)", self.prune_at)
        check_param(self.fan_in is None or (_is_int(self.fan_in) and self.fan_in >= 1), own, "fan_in",
               "None or an int in [1, inf)", self.fan_in)
        check_param(self.blocks is None or self.blocks in BLOCK_LAYOUTS, own, "blocks",
                    f"None or one of {list_block_layouts()}", self.blocks)
        check_param(self.blocks is None or self.fan_in is None, own, "blocks",
                    "None when 'fan_in' is set (both set the first layer's mask)", self.blocks)
        check_param(self.blocks is None or len(self.hidden) > 0, own, "blocks",
                    "None when there is no hidden layer (the blocks split the first one)", self.blocks)
        if self.blocks is not None:
            check_block_width(self.blocks, self.hidden[0])
        check_param(self.sparsity_weight >= 0, own, "sparsity_weight", "a float in [0, inf)", self.sparsity_weight)
        check_garbage_params(own, "garbage_", rounds=self.garbage_rounds, source=self.garbage_source,
                             samples=self.garbage_samples, preimages=self.garbage_preimages,
                             epochs=self.garbage_epochs, seconds=self.garbage_seconds)

    def train_config(self) -> BNNTrainConfig:
        return BNNTrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, seed=self.seed,
                              sparsity_weight=self.sparsity_weight, prune_at=self.prune_at)

    def garbage_config(self) -> GarbageConfig | None:
        """The garbage settings, or ``None`` for a plain net (``garbage_rounds=0``)."""
        if not self.garbage_rounds:
            return None
        return GarbageConfig(rounds=self.garbage_rounds, source=self.garbage_source, samples=self.garbage_samples,
                             preimages=self.garbage_preimages, epochs=self.garbage_epochs,
                             seconds=float(self.garbage_seconds))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d


@dataclass(frozen=True)
class BNNTrainingResult:
    """What :func:`run_bnn_training` wrote: the run folder and its headline numbers."""

    run_dir: Path
    dataset: str
    n_inputs: int
    hidden: tuple[int, ...]
    test_accuracy: float
    export_agreement: str
    sparsity: float
    train_seconds: float
    weights_sha256: str
    threads: int

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["run_dir"], d["hidden"] = str(self.run_dir), list(self.hidden)
        return d


@restores_threads
def run_bnn_training(config: BNNRunConfig, out: str | Path, *, force: bool = False, resume: bool = False,
                     progress: bool = True) -> BNNTrainingResult:
    """Train a BNN, export it, verify the export on every test input, and write the run folder ``out``.

    The folder holds ``weights.safetensors`` (latent weights and batch-norm state), ``card.json``
    (the config, seed, torch threads, the exported integer net, the sha256 of the weights and the
    metrics) and ``metrics.json``; it appears whole or not at all.

    Parameters
    ----------
    config : BNNRunConfig
    out : path
        A new folder (one that holds files is refused unless ``force``, before any training).
    force : bool
        Replace an ``out`` that holds files, once the new run is complete.
    resume : bool
        With ``garbage_rounds``, the run is written into the hidden sibling ``.OUT.partial``
        (:func:`netinvert.runs.partial_dir`), and a checkpoint ``checkpoint.safetensors`` there after the
        seeded training and after every garbage round (the net, the garbage set, the histories, the random
        states) survives an interrupt (Ctrl-C, SIGTERM under the CLI, even SIGKILL). ``resume`` continues from
        the round after the checkpoint's, to the net an uninterrupted run ends with (exactly with
        ``garbage_source="noise"``; SAT queries under a time limit may find other preimages). Without a
        checkpoint it starts afresh (a log line says so); without ``resume`` a left-over one is refused unless
        ``force``, which discards it; a checkpoint of another config (but ``threads``) is refused. A plain net
        (no garbage rounds) keeps no checkpoint: it is retrained.
    progress : bool
        Log one line per training run (training itself is quick).

    Returns
    -------
    BNNTrainingResult

    Raises
    ------
    RuntimeError
        The exported integer net labels some test input otherwise than PyTorch (nothing is written).
    RunExistsError
        If ``out`` holds a run (unless ``force``), or a checkpoint left by an interrupted run (unless ``resume``
        or ``force``).
    RunFormatError
        With ``resume``, if the checkpoint was written for another config.
    """
    from ..data import load_dataset

    if not isinstance(config, BNNRunConfig):
        raise TypeError(f"run_bnn_training needs a BNNRunConfig. Got {type(config).__name__} instead.")
    check_resume(out, force=force, resume=resume)
    check_out(out, force=force)
    resume_info = {"config": config.to_dict()}
    resume_from = resume_point(out, resume_info, resume=resume, force=force)  # before the staging folder is entered
    threads = set_threads(config.threads)
    data = load_dataset(config.dataset, config.data_root)
    binarizer = InputBinarizer(pool=config.pool, threshold=config.threshold)
    x_train, x_test = binarizer(data.x_train), binarizer(data.x_test)
    garbage_config = config.garbage_config()
    if config.blocks is not None:
        c, h, w = data.input_shape
        if c != 1 or h // config.pool != w // config.pool:
            raise ValueError(f"Block layout {config.blocks!r} needs a single-channel square image after pooling; "
                             f"{data.name} gives {c} x {h // config.pool} x {w // config.pool} with pool={config.pool} (--pool).")
    torch.manual_seed(config.seed)
    model = BNN(x_train.shape[1], config.hidden, data.n_classes + (garbage_config is not None),
                ternary_delta=config.ternary_delta, fan_in=config.fan_in, blocks=config.blocks)
    train_config = config.train_config()
    # a plain net keeps no checkpoint: an interrupt leaves nothing to resume
    with staged_run(out, force=force, resume=resume, keep_on_interrupt=garbage_config is not None) as tmp:
        t0 = time.perf_counter()
        garbage = None
        if garbage_config is None:
            history = train_bnn(model, x_train, data.y_train, train_config)
        else:
            garbage = train_with_garbage(model, x_train, data.y_train, train_config, garbage_config,
                                         test=(x_test, data.y_test), progress=progress, checkpoint=tmp / CHECKPOINT_NAME,
                                         checkpoint_info=resume_info, resume_from=resume_from)
            history = garbage.train_history
        seconds = time.perf_counter() - t0  # a resumed run: the seconds of this process
        net = export_bnn(model)
        torch_pred = model.predict(x_test).numpy()
        agree = int((net.predict(x_test.numpy()) == torch_pred).sum())
        if agree != len(x_test):
            raise RuntimeError(f"Exported network disagrees with PyTorch on {len(x_test) - agree} test inputs; nothing was written.")
        metrics = {"test_accuracy": float((torch_pred == data.y_test.numpy()).mean()),
                   "export_agreement": f"{agree}/{len(x_test)}", "sparsity": model.sparsity()}
        if garbage is not None:
            metrics["garbage"] = {"label": data.n_classes, "name": "garbage", "config": garbage_config.to_dict(),
                                  **garbage.to_dict()}
        card = {"config": config.to_dict(), "dataset": data.name, "data_root": config.data_root,
                "input_image_shape": list(data.input_shape), "train_config": train_config.to_dict(), "seed": config.seed,
                "device": "cpu", "threads": torch.get_num_threads(), "train_seconds": seconds, **metrics,
                "metrics": metrics, "history": history}
        save_bnn_run(tmp, model, binarizer, net, card)
        write_json(tmp / "metrics.json", {**metrics, "train_seconds": seconds})
        sha = _card_sha(tmp)
        discard_checkpoint(tmp)
    if progress:
        log.info("trained %s BNN %s in %.1f s: test accuracy %.4f", data.name, list(config.hidden), seconds,
                 metrics["test_accuracy"])
    return BNNTrainingResult(Path(out), data.name, int(x_train.shape[1]), config.hidden, metrics["test_accuracy"],
                             metrics["export_agreement"], metrics["sparsity"], seconds, sha, threads)


def _card_sha(run_dir: Path) -> str:
    """The weights sha256 a BNN run's card records."""
    from ..runs import read_card

    return str(read_card(run_dir, required=("weights_sha256",))["weights_sha256"])


# ---------------------------------------------------------------------------------------------- queries


@dataclass(frozen=True)
class BNNQueryParams:
    """Parameters of a BNN query; each query reads the ones it needs (see :data:`QUERIES`).

    Attributes
    ----------
    encoding : str
        Cardinality encoding (:func:`list_cardinality_encodings`).
    solver : str
        SAT solver (:func:`list_solvers`) or ``"auto"`` (minicard for native, else glucose4).
    seconds : float or None
        Budget (per input for ``infer``, per label for ``count``/``sample``, per query otherwise).
        ``None``: the query's default (:attr:`BNNQuery.default_seconds`; ``count``: the method's).
    search_seconds : float
        Local search per preimage query for a phase hint (0: plain SAT).
    data_root : str or None
        Where the dataset is (default: the run's).
    seed, threads : int, int or None
    label : int or None
        ``invert``, ``enumerate``, ``count`` need one; ``encode`` adds the unit "label is L";
        ``sample`` samples every label without one.
    n : int or None
        ``infer``: test inputs (default all); ``enumerate``: most preimages (10); ``sample``: samples
        per label (50); ``count`` with ``sampled``: uniform draws (1,000,000).
    fixed : mapping of int to {0, 1}
        ``invert``: input bits held fixed.
    hidden_values : mapping of (layer, neuron) to {0, 1}
        ``invert``: required hidden values.
    near_index, max_flips : int or None
        ``invert``: stay within ``max_flips`` flips of test image ``near_index``.
    hint : {"search", "train", "none"}
        ``invert``'s phase hint: data-free local search (default), the training image closest to
        the constraints, or none.
    method, max_states, epsilon, delta : str, int, float, float
        ``count``: one of :func:`list_counters` and its options.
    index, max_k, enumerate_up_to : int, int or None, int
        ``robustness``: test image, most flips, listing threshold.
    indices : tuple of int or None
        ``robustness`` over several test images (one row each, in this order, each with its own
        budget); replaces ``index``.
    progress : bool
        A progress bar (``count`` by ``dp`` or ``factored``).
    memory_gb, cpu_seconds : float or None
        Limits of the solver, counter and sampler subprocesses (``count`` exact/approx, ``sample``):
        address space beyond what the child inherits at fork (``None``: 8 GiB) and CPU time
        (``None``: the budget plus ``max(10 s, budget / 10)``); ``math.inf`` lifts either. See
        :func:`netinvert.bnn.run_streaming`.

    Every value is checked here and every value that depends on the run (a label, an input index, a
    hidden neuron, a test image) by :func:`run_bnn_query` before any encoding, training or solving.
    """

    encoding: str = "totalizer"
    solver: str = "auto"
    seconds: float | None = None
    search_seconds: float = 1.0
    data_root: str | None = None
    seed: int = 0
    threads: int | None = None
    label: int | None = None
    n: int | None = None
    fixed: Mapping[int, int] = field(default_factory=dict)
    hidden_values: Mapping[tuple[int, int], int] = field(default_factory=dict)
    near_index: int | None = None
    max_flips: int | None = None
    hint: str = "search"
    method: str = "exact"
    max_states: int = 40_000_000
    epsilon: float = 0.8
    delta: float = 0.2
    index: int = 0
    indices: tuple[int, ...] | None = None
    max_k: int | None = None
    enumerate_up_to: int = 100_000
    progress: bool = False
    memory_gb: float | None = None
    cpu_seconds: float | None = None

    def __post_init__(self) -> None:
        own = "BNNQueryParams"
        check_param(self.hint in _HINTS, own, "hint", f"one of {', '.join(_HINTS)}", self.hint)
        check_param(_is_real(self.search_seconds) and 0 <= self.search_seconds < math.inf, own, "search_seconds",
               "a float in [0, inf)", self.search_seconds)
        check_param(self.seconds is None or (_is_real(self.seconds) and self.seconds > 0), own, "seconds",
               "None or a float in (0, inf]", self.seconds)
        check_param(self.n is None or (_is_int(self.n) and self.n >= 1), own, "n", "None or an int in [1, inf)", self.n)
        check_param(self.label is None or _is_int(self.label), own, "label", "None or an int", self.label)
        check_param(_is_int(self.max_states) and self.max_states >= 1, own, "max_states", "an int in [1, inf)", self.max_states)
        check_param(_is_real(self.epsilon) and 0 < self.epsilon < math.inf, own, "epsilon", "a float in (0, inf)", self.epsilon)
        check_param(_is_real(self.delta) and 0 < self.delta < 1, own, "delta", "a float in (0, 1)", self.delta)
        check_param(self.near_index is None or (_is_int(self.near_index) and self.near_index >= 0), own, "near_index",
               "None or an int in [0, inf)", self.near_index)
        check_param(self.max_flips is None or (_is_int(self.max_flips) and self.max_flips >= 0), own, "max_flips",
               "None or an int in [0, inf)", self.max_flips)
        check_param(_is_int(self.index) and self.index >= 0, own, "index", "an int in [0, inf)", self.index)
        if self.indices is not None:
            check_param(isinstance(self.indices, (list, tuple)) and len(self.indices) > 0
                        and all(_is_int(i) and i >= 0 for i in self.indices), own, "indices",
                        "None or a non-empty sequence of ints in [0, inf)", self.indices)
            object.__setattr__(self, "indices", tuple(int(i) for i in self.indices))
        check_param(self.max_k is None or (_is_int(self.max_k) and self.max_k >= 0), own, "max_k",
               "None or an int in [0, inf)", self.max_k)
        check_param(_is_int(self.enumerate_up_to) and self.enumerate_up_to >= 0, own, "enumerate_up_to",
               "an int in [0, inf)", self.enumerate_up_to)
        for name in ("memory_gb", "cpu_seconds"):
            v = getattr(self, name)
            check_param(v is None or (_is_real(v) and v > 0), own, name, "None or a float in (0, inf]", v)
        check_param(isinstance(self.fixed, Mapping) and all(_is_int(k) and k >= 0 and v in (0, 1) for k, v in self.fixed.items()),
               own, "fixed", "a mapping of ints in [0, inf) to 0 or 1", self.fixed)
        check_param(isinstance(self.hidden_values, Mapping) and all(
            isinstance(k, tuple) and len(k) == 2 and all(_is_int(i) and i >= 0 for i in k) and v in (0, 1)
            for k, v in self.hidden_values.items()), own, "hidden_values",
            "a mapping of (layer, neuron) pairs of ints in [0, inf) to 0 or 1", self.hidden_values)
        COUNTERS.get(self.method)

    @classmethod
    def from_mapping(cls, params: Mapping[str, Any] | BNNQueryParams | None) -> BNNQueryParams:
        """``params`` as a :class:`BNNQueryParams`; an unknown key lists the valid ones."""
        if params is None:
            return cls()
        if isinstance(params, cls):
            return params
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - names)
        if unknown:
            raise ValueError(f"Unknown BNN query parameter(s) {', '.join(unknown)}. Valid names: {', '.join(sorted(names))}.")
        return cls(**params)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["fixed"] = {str(k): int(v) for k, v in self.fixed.items()}
        d["hidden_values"] = {f"{k[0]}:{k[1]}": int(v) for k, v in self.hidden_values.items()}
        d["indices"] = None if self.indices is None else list(self.indices)
        return d


_HINTS = ("search", "train", "none")


@dataclass(frozen=True)
class _Answer:
    """A query's JSON-ready result, its typed value, and what it writes into a run folder."""

    result: dict[str, Any]
    value: Any = None
    write: Callable[[Path], None] | None = None


@dataclass(frozen=True)
class BNNQuery:
    """A registered query: ``fn(run, params, writing) -> _Answer``, a one-line description, and the
    budget ``seconds=None`` stands for."""

    name: str
    fn: Callable[[BNNRun, BNNQueryParams, bool], _Answer]
    description: str
    default_seconds: float | None
    label: str = "unused"
    constraints: bool = False
    test_index: str | None = None
    parallel: bool = False

    def check(self, run: BNNRun, p: BNNQueryParams) -> None:
        """Refuse the parameters that do not fit ``run`` (before any work): the label (``label`` is
        ``"required"``, ``"optional"`` or ``"unused"``), ``fixed`` and ``hidden_values`` when
        ``constraints``, and the test image named by the ``test_index`` parameter."""
        own, net = f"bnn {self.name}", run.net
        k = net.n_classes
        if self.label == "required" and p.label is None:
            raise ValueError(f"The 'label' parameter of {own} is required (an int in [0, {k - 1}]).")
        if self.label != "unused" and p.label is not None:
            check_param(0 <= int(p.label) < k, own, "label", f"an int in [0, {k - 1}]", p.label)
        if self.constraints:
            n = net.n_inputs
            for j in p.fixed:
                check_param(0 <= int(j) < n, own, "fixed", f"a mapping of input indices in [0, {n - 1}] to 0 or 1", dict(p.fixed))
            widths = [len(bounds) for _, bounds in net.layers]
            for layer, i in p.hidden_values:
                check_param(0 <= int(layer) < len(widths), own, "hidden_values",
                       f"a mapping of (layer, neuron) with layer in [0, {len(widths) - 1}] to 0 or 1"
                       if widths else "empty (the net has no hidden layer)", _pairs_text(p.hidden_values))
                check_param(0 <= int(i) < widths[int(layer)], own, "hidden_values",
                       f"a mapping of (layer, neuron) with neuron in [0, {widths[int(layer)] - 1}] in layer {layer} to 0 or 1",
                       _pairs_text(p.hidden_values))
        index = None if self.test_index is None else getattr(p, self.test_index)
        if index is not None:
            n_test = len(_bits(run, p)[0])
            check_param(0 <= int(index) < n_test, own, self.test_index, f"an int in [0, {n_test - 1}]", index)
        if self.test_index is not None and p.indices is not None:
            n_test = len(_bits(run, p)[0])
            check_param(all(0 <= i < n_test for i in p.indices), own, "indices",
                        f"a sequence of ints in [0, {n_test - 1}]", list(p.indices))


def _pairs_text(hidden: Mapping[tuple[int, int], int]) -> str:
    """``hidden_values`` as the CLI spells it ('0:3=1,...')."""
    return ",".join(f"{l}:{i}={v}" for (l, i), v in hidden.items())


QUERIES: Registry[BNNQuery] = Registry("BNN query")


def list_bnn_queries() -> list[str]:
    """Names :func:`run_bnn_query` accepts."""
    return QUERIES.names()


def _query(name: str, description: str, default_seconds: float | None, **checks: Any) -> Callable:
    def deco(fn: Callable[[BNNRun, BNNQueryParams, bool], _Answer]) -> Callable:
        QUERIES.add(name, BNNQuery(name, fn, description, default_seconds, **checks))
        return fn

    return deco


def _seconds(p: BNNQueryParams, name: str) -> float | None:
    s = QUERIES.get(name).default_seconds if p.seconds is None else p.seconds
    return None if s is None or math.isinf(s) else float(s)


def _bits(run: BNNRun, p: BNNQueryParams, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    from ..data import load_dataset

    data = load_dataset(run.card["dataset"], p.data_root or run.card.get("data_root"))
    x, y = (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)
    return run.binarizer(x).numpy().astype(np.int8), y.numpy()


def _label(run: BNNRun, p: BNNQueryParams, query: str, required: bool = True) -> int | None:
    k = run.net.n_classes
    if p.label is None:
        if required:
            raise ValueError(f"The 'label' parameter of bnn {query} is required (an int in [0, {k - 1}]).")
        return None
    check_param(0 <= int(p.label) < k, f"bnn {query}", "label", f"an int in [0, {k - 1}]", p.label)
    return int(p.label)


def _inverter(run: BNNRun, enc: Encoding, p: BNNQueryParams, name: str, search_s: float | None = None) -> SatInverter:
    return SatInverter(enc, model=run.model, solver=p.solver, time_s=_seconds(p, name),
                       search_s=p.search_seconds if search_s is None else search_s)


@_query("encode", "the CNF (DIMACS with a 'c ind' line) and its variable map; files only with out", None,
        label="optional")
def _encode_query(run: BNNRun, p: BNNQueryParams, writing: bool) -> _Answer:
    label = _label(run, p, "encode", required=False)
    enc = encode(run.net, p.encoding)
    stem = f"encoding-{p.encoding}" + (f"-label{label}" if label is not None else "")
    files = {"cnf": f"{stem}.cnf", "variable_map": f"{stem}.vars.json"} if writing else {"cnf": None, "variable_map": None}

    def write(folder: Path) -> None:
        enc.save(folder, stem, label)

    return _Answer({"encoding": p.encoding, "label": label, **files, **enc.stats}, enc, write)


@dataclass(frozen=True)
class _Execution:
    """Where a query's independent tasks run: here (``jobs=1``), in ``jobs`` worker processes, or on the
    Dask cluster at ``scheduler`` (:func:`netinvert._parallel.map_tasks`)."""

    jobs: int = 1
    scheduler: str | None = None

    @property
    def serial(self) -> bool:
        return self.jobs <= 1 and self.scheduler is None

    def parts(self, n_items: int, per_worker: int | None = None) -> int:
        """How many tasks ``n_items`` items become: 1 serially (one encoding and one solver for all, as
        always), else one per item, or ``per_worker`` per worker for many short items (each task encodes
        the net once, so thousands of one-input tasks would mostly encode)."""
        if self.serial:
            return 1
        if per_worker is None:
            return max(1, n_items)
        workers = self.jobs if self.scheduler is None else scheduler_workers(self.scheduler)
        return max(1, min(n_items, per_worker * workers))

    def map(self, fn: Callable[..., Any], shared: Any, chunks: list[Any], children: bool = False) -> list[Any]:
        return map_tasks(fn, shared, chunks, jobs=self.jobs, scheduler=self.scheduler, children=children)


_SERIAL = _Execution()


def _infer_task(shared: tuple[BNNRun, BNNQueryParams], chunk: tuple[np.ndarray, np.ndarray]) -> tuple[str, dict[str, Any], list[tuple[int, int, int, float]]]:
    """Label a chunk of inputs by SAT with one solver: the solver's name, the encoding's statistics and one
    ``(agrees, by propagation, conflicts, seconds)`` row per input."""
    run, p = shared
    bits, reference = chunk
    enc = encode(run.net, p.encoding)
    rows = []
    with _inverter(run, enc, p, "infer") as inv:
        for x, want in zip(bits, reference):
            r = inv.infer(x)
            rows.append((int(r.label == int(want)), int(r.by_propagation), r.conflicts, r.seconds))
        solver = inv.solver_name
    return solver, dict(enc.stats), rows


@_query("infer", "label test inputs by SAT and compare with PyTorch", 10.0, parallel=True)
def _infer_query(run: BNNRun, p: BNNQueryParams, writing: bool, ex: _Execution = _SERIAL) -> _Answer:
    bits, _ = _bits(run, p)
    bits = bits[: p.n] if p.n else bits
    torch_pred = run.model.predict(torch.as_tensor(bits)).numpy()
    spans = split(range(len(bits)), ex.parts(len(bits), per_worker=4))
    chunks = [(bits[c[0] : c[-1] + 1], torch_pred[c[0] : c[-1] + 1]) if c else (bits[:0], torch_pred[:0]) for c in spans]
    done = ex.map(_infer_task, (run, p), chunks)
    solver, stats = done[0][0], done[0][1]
    rows = [row for _, _, part in done for row in part]
    times = [row[3] for row in rows]
    # the formula of infer_all, over the rows of every chunk
    summary = InferenceSummary(len(rows), sum(row[0] for row in rows) / max(len(rows), 1), sum(row[1] for row in rows),
                               sum(row[2] for row in rows), float(np.median(times)) if times else None,
                               float(np.max(times)) if times else None)
    return _Answer({"encoding": p.encoding, "solver": solver, **summary.to_dict(), **stats}, summary)


@_query("invert", "an input the network labels L, under optional constraints", 10.0, label="required",
        constraints=True, test_index="near_index")
def _invert_query(run: BNNRun, p: BNNQueryParams, writing: bool) -> _Answer:
    label = _label(run, p, "invert")
    enc = encode(run.net, p.encoding)
    fixed = {int(k): int(v) for k, v in p.fixed.items()}
    hidden = {(int(k[0]), int(k[1])): int(v) for k, v in p.hidden_values.items()}
    near = None if p.near_index is None else _bits(run, p)[0][p.near_index]
    phases = None
    if p.hint == "train":
        phases = candidate_hint(run.net, _bits(run, p, "train")[0], label, fixed=fixed, near=near)
    with _inverter(run, enc, p, "invert", search_s=0.0 if p.hint == "none" else None) as inv:
        r = inv.preimage(label, fixed=fixed, hidden=hidden, near=near, max_flips=p.max_flips, phases=phases)
        solver = inv.solver_name
    return _Answer({"encoding": p.encoding, "solver": solver, "hint": p.hint, **r.to_dict()}, r)


@_query("enumerate", "up to n distinct preimages of L", 10.0, label="required")
def _enumerate_query(run: BNNRun, p: BNNQueryParams, writing: bool) -> _Answer:
    label = _label(run, p, "enumerate")
    enc = encode(run.net, p.encoding)
    with _inverter(run, enc, p, "enumerate") as inv:
        r = inv.preimages(label, limit=p.n or 10)
        solver = inv.solver_name
    return _Answer({"encoding": p.encoding, "solver": solver, **r.to_dict()}, r)


@_query("count", "count preimages of L by a method of list_counters() (exact, approx, dp, sampled)", None,
        label="required")
def _count_query(run: BNNRun, p: BNNQueryParams, writing: bool) -> _Answer:
    label = _label(run, p, "count")
    m = COUNTERS.get(p.method)
    target = encode(run.net, p.encoding) if m.needs_cnf else run.net
    # the counters' seed is seed + 1 (so the default seed 0 gives ApproxMC's usual seed 1); the draws use seed
    r = count_preimages(target, label, method=p.method, time_s=p.seconds, epsilon=p.epsilon, delta=p.delta,
                        seed=p.seed if p.method == "sampled" else p.seed + 1, n_samples=p.n or 1_000_000,
                        max_states=p.max_states, progress=p.progress, memory_gb=p.memory_gb,
                        cpu_seconds=p.cpu_seconds)
    return _Answer({**r.to_dict(), "encoding": p.encoding if m.needs_cnf else None}, r)


def _sample_task(shared: tuple[BNNRun, BNNQueryParams], labels: list[int]) -> list[dict[str, Any]]:
    """Sample each of ``labels`` with one encoding: one JSON row per label (``heatmap`` filled in later)."""
    run, p = shared
    enc = encode(run.net, p.encoding)
    rows = []
    for k in labels:
        r = sample_preimages(enc, k, p.n or 50, time_s=_seconds(p, "sample"), seed=p.seed, model=run.model,
                             memory_gb=p.memory_gb, cpu_seconds=p.cpu_seconds)
        rows.append({"label": k, "status": r.status.value, "n_samples": len(r.samples), "seconds": r.seconds,
                     "heatmap": None, "samples": r.samples.tolist(), "marginals": r.marginals.tolist()})
    return rows


@_query("sample", "near-uniform preimages (CMSGen) and a per-pixel marginal heat map per label", 60.0,
        label="optional", parallel=True)
def _sample_query(run: BNNRun, p: BNNQueryParams, writing: bool, ex: _Execution = _SERIAL) -> _Answer:
    label = _label(run, p, "sample", required=False)
    labels = [label] if label is not None else list(range(run.net.n_classes))
    shape = run.image_shape
    # CMSGen runs in a child process of each task
    rows = [row for part in ex.map(_sample_task, (run, p), split(labels, ex.parts(len(labels))), children=True)
            for row in part]
    maps = []
    for row in rows:
        k = row["label"]
        if writing and row["n_samples"]:
            row["heatmap"] = f"marginals_label{k}.png"
            maps.append((row["heatmap"], np.asarray(row["marginals"]), f"label {k}: {row['n_samples']} samples"))

    def write(folder: Path) -> None:
        for png, marginals, title in maps:
            save_marginal_heatmap(marginals, shape, folder / png, title=title)

    return _Answer({"encoding": p.encoding, "results": rows}, rows, write)


def _robustness_task(shared: tuple[BNNRun, BNNQueryParams], images: list[tuple[int, np.ndarray]]) -> tuple[str, list[dict[str, Any]]]:
    """Least flips of each ``(index, bits)`` with one solver, each within the query's budget: the solver's name
    and one row per image."""
    run, p = shared
    enc = encode(run.net, p.encoding)
    with _inverter(run, enc, p, "robustness") as inv:
        rows = [{"index": i, **inv.min_flips(x, max_k=p.max_k, enumerate_up_to=p.enumerate_up_to).to_dict()}
                for i, x in images]
        solver = inv.solver_name
    return solver, rows


@_query("robustness", "least number of flipped input bits that changes a test image's label", 10.0,
        test_index="index", parallel=True)
def _robustness_query(run: BNNRun, p: BNNQueryParams, writing: bool, ex: _Execution = _SERIAL) -> _Answer:
    bits = _bits(run, p)[0]
    if p.indices is not None:  # many images: one row each, in the order asked
        images = [(i, bits[i]) for i in p.indices]
        done = ex.map(_robustness_task, (run, p), split(images, ex.parts(len(images))))
        rows = [row for _, part in done for row in part]
        return _Answer({"encoding": p.encoding, "solver": done[0][0], "results": rows}, rows)
    enc = encode(run.net, p.encoding)
    with _inverter(run, enc, p, "robustness") as inv:
        r = inv.min_flips(bits[p.index], max_k=p.max_k, enumerate_up_to=p.enumerate_up_to)
        solver = inv.solver_name
    return _Answer({"index": p.index, "encoding": p.encoding, "solver": solver, **r.to_dict()}, r)


@dataclass(frozen=True)
class BNNQueryResult:
    """One query's answer: ``result`` is JSON-ready (what ``netinvert bnn QUERY`` prints), ``value`` the
    typed answer (a :class:`Preimage`, :class:`CountResult`, ...), ``run_dir`` the folder written (or None)."""

    query: str
    input_run: Path
    weights_sha256: str
    params: dict[str, Any]
    result: dict[str, Any]
    run_dir: Path | None = None
    value: Any = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"query": self.query, "classifier": str(self.input_run), "weights_sha256": self.weights_sha256,
                "run_dir": None if self.run_dir is None else str(self.run_dir), "params": self.params,
                "result": self.result}


@restores_threads
def run_bnn_query(query: str, bnn_run: str | Path | BNNRun, params: Mapping[str, Any] | BNNQueryParams | None = None,
                  out: str | Path | None = None, *, force: bool = False, jobs: int = 1,
                  scheduler: str | None = None) -> BNNQueryResult:
    """Run the query named ``query`` on a BNN run and, with ``out``, write its run folder.

    Parameters
    ----------
    query : str
        One of :func:`list_bnn_queries` (encode, infer, invert, enumerate, count, sample, robustness).
    bnn_run : path or BNNRun
        A folder written by :func:`run_bnn_training` (or a loaded one). It is only read.
    params : mapping or BNNQueryParams
        See :class:`BNNQueryParams`; unknown keys raise.
    out : path or None
        ``None``: only return the result. Else a new folder (refused before any work if it holds
        files, unless ``force``, or if it overlaps the input run) that receives ``card.json`` (query,
        params, input run, its weights sha256, result) and the query's artefacts.
    force : bool
    jobs : int, default=1
        Worker processes for the queries made of independent tasks: ``infer`` (chunks of inputs),
        ``sample`` (one task per label) and ``robustness`` with ``indices`` (one task per image). Each task
        keeps the query's per-input, per-label or per-image budget, and the answer is assembled in the
        serial order: the same answer as ``jobs=1`` but for the measured seconds (and, for ``infer``, the
        conflict counts, which depend on what one solver learnt from the inputs before).
    scheduler : str, optional
        Run those tasks on the Dask cluster at this address instead (``pip install "netinvert[scale]"``;
        the workers need netinvert installed; the run and the query's inputs are sent to them, so they need
        neither the run folder nor the dataset).

    Returns
    -------
    BNNQueryResult

    Raises
    ------
    ValueError
        A parameter is out of range, or does not fit the run (a label, an input index, a hidden
        neuron, a test image index): raised after loading the run, before any encoding, training,
        solving or writing.
    """
    q = QUERIES.get(query)
    p = BNNQueryParams.from_mapping(params)
    check_jobs(jobs, scheduler, "run_bnn_query")
    ex = _Execution(jobs, scheduler)
    if not ex.serial and not q.parallel:
        parallel = ", ".join(n for n in list_bnn_queries() if QUERIES.get(n).parallel)
        raise ValueError(f"bnn {query} is a single query: jobs and scheduler apply to the queries made of many "
                         f"independent ones ({parallel}). Drop --jobs/--scheduler.")
    run_dir = Path(bnn_run.run_dir if isinstance(bnn_run, BNNRun) else bnn_run)
    if out is not None:
        check_out(out, force=force, inputs=[run_dir])
    threads = set_threads(p.threads)
    run = bnn_run if isinstance(bnn_run, BNNRun) else load_bnn_run(run_dir)
    q.check(run, p)  # refuse what does not fit the run before any encoding, training or solving
    sha = run.weights_sha256
    t0 = time.perf_counter()
    answer = q.fn(run, p, out is not None, ex) if q.parallel else q.fn(run, p, out is not None)
    seconds = time.perf_counter() - t0
    if out is not None:
        with staged_run(out, force=force, inputs=[run_dir]) as tmp:
            if answer.write is not None:
                answer.write(tmp)
            write_card(tmp, {"kind": "bnn-query", "query": query, "params": p.to_dict(), "input_run": str(run_dir),
                             "input_weights_sha256": sha, "seed": p.seed, "device": "cpu", "threads": threads,
                             "execution": {"jobs": jobs, "scheduler": scheduler},
                             "seconds": seconds, "versions": versions(), "result": answer.result})
    return BNNQueryResult(query, run_dir, sha, p.to_dict(), answer.result, None if out is None else Path(out), answer.value)

