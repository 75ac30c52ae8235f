"""A garbage class for a binarised net: teach it to refuse the inputs the data does not support.

A BNN trained on images labels every one of its ``2 ** n`` inputs with a real class, and almost all
of them look like no image: 99.998% of all inputs of the Fashion 784-100-100-10 net are "Bag"
(``bench/results/bnn.md``). :func:`train_with_garbage` gives the net an extra output, class ``n``
("garbage"), and feeds it inputs the net gives a real label but the data does not support:

1. a *validation* tenth of the training inputs is held out; the *support radius* is the
   ``quantile`` (0.99) of the Hamming distances from validation inputs to their nearest fitting
   input, i.e. how far a real but unseen image lies from the data. A candidate joins the garbage
   set only if it lies *farther* than that from every fitting input (no test input is consulted);
2. the garbage set is seeded with ``samples`` uniformly random inputs (those beyond the radius)
   and the net is trained on fitting inputs plus garbage, the garbage class weighing as much as an
   average real class (weighted cross-entropy);
3. each of ``rounds`` rounds exports the current net and collects candidates the net labels with a
   real class: ``samples`` uniform inputs and, from the source, ``preimages`` per real label --
   ``"sat"``: exact SAT preimages under a random hint (a random subset of the inputs, of a random
   size, fixed to random bits; phases from local search), ``"noise"``: as many uniform inputs
   whatever their label (the ablation: same rounds, same set growth, same retraining); candidates
   beyond the radius join the garbage set and training continues for ``epochs`` epochs at
   ``lr_scale`` (0.1) of the learning rate (same net, fan-in mask kept, so exact DP counting stays
   feasible; on the Fashion 49-20-10 net the full rate ended 4 points below the plain net's test
   accuracy after 4 rounds, a tenth of it 1.6 points).

The history records, after the seed and after every round, the garbage set's size, what was added,
the validation and test accuracies and the share of uniform inputs labelled garbage.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._checkpoint import (changed_fields, tensors_sha256, prefixed, read_checkpoint, restore_rng, rng_state, rng_to_checkpoint, strip_prefix,
                           write_checkpoint)
from .._checks import check_param
from ..exceptions import ResumeRefusedError
from ..runs import jsonable
from .._registry import Registry
from ._encode import encode
from ._estimate import estimate_label_shares
from ._export import IntegerBNN, export_bnn
from ._invert import SatInverter
from ._model import BNN, BNNTrainConfig, train_bnn
from ._solve import SatResult

__all__ = ["GarbageConfig", "GarbageResult", "GarbageSource", "GARBAGE_SOURCES", "list_garbage_sources",
           "nearest_hamming", "train_with_garbage"]

log = logging.getLogger(__name__)

#: share of the training inputs held out to set the support radius and report validation accuracy
VALIDATION_SHARE = 0.1
#: uniform draws per history entry for the share of inputs labelled garbage
SHARE_DRAWS = 20_000
#: largest share of the inputs a SAT hint fixes (half: larger ones are often UNSAT or slow on 784 inputs)
MAX_FIXED_SHARE = 0.5


@dataclass(frozen=True)
class GarbageSource:
    """A registered source of garbage candidates: ``fn(net, model, label, n, config, rng)`` returns
    ``(m, n_inputs)`` int8 inputs for one real label (fewer than ``n`` when queries fail) and the
    number of SAT queries it made (recorded, so that the ablation provably asks none)."""

    name: str
    fn: Callable[[IntegerBNN, BNN, int, int, "GarbageConfig", np.random.Generator], tuple[np.ndarray, int]]
    description: str


GARBAGE_SOURCES: Registry[GarbageSource] = Registry("garbage source")


def list_garbage_sources() -> list[str]:
    """Names ``garbage_source`` accepts."""
    return GARBAGE_SOURCES.names()


def _source(name: str, description: str) -> Callable:
    def deco(fn: Callable) -> Callable:
        GARBAGE_SOURCES.add(name, GarbageSource(name, fn, description))
        return fn

    return deco


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def check_garbage_params(owner: str, prefix: str, *, rounds: Any, source: Any, samples: Any, preimages: Any,
                         epochs: Any, seconds: Any) -> None:
    """Refuse bad garbage settings with sklearn-style messages naming ``owner``'s fields (``prefix`` +
    name); :class:`GarbageConfig` and :class:`~netinvert.bnn.BNNRunConfig` share it."""
    sources = list_garbage_sources()
    check_param(_is_int(rounds) and rounds >= 0, owner, f"{prefix}rounds", "an int in [0, inf)", rounds)
    check_param(isinstance(source, str) and source in sources, owner, f"{prefix}source", f"one of {', '.join(sources)}", source)
    check_param(_is_int(samples) and samples >= 1, owner, f"{prefix}samples", "an int in [1, inf)", samples)
    check_param(_is_int(preimages) and preimages >= 1, owner, f"{prefix}preimages", "an int in [1, inf)", preimages)
    check_param(_is_int(epochs) and epochs >= 1, owner, f"{prefix}epochs", "an int in [1, inf)", epochs)
    check_param(isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and 0 < seconds < float("inf"), owner,
           f"{prefix}seconds", "a float in (0, inf)", seconds)


@dataclass(frozen=True)
class GarbageConfig:
    """How :func:`train_with_garbage` builds and feeds the garbage class.

    Attributes
    ----------
    rounds : int
        Rounds of candidate search and retraining after the seeded training (0: seed only).
    source : str
        ``"sat"`` (SAT preimages of each real label under random hints) or ``"noise"`` (the ablation:
        as many uniform inputs), see :func:`list_garbage_sources`.
    samples : int
        Uniform inputs drawn for the seed and in every round.
    preimages : int
        Candidates per real label and round from the source.
    epochs : int
        Training epochs per round (the seeded training uses the full schedule).
    seconds : float
        Budget of one SAT query (local search included).
    quantile : float
        Quantile of the validation inputs' nearest-neighbour distances that sets the support radius.
    lr_scale : float
        Learning rate of the rounds, as a share of the seeded training's: a round continues a trained
        net, and a fresh Adam at the full rate swung the validation accuracy by several points.
    """

    rounds: int = 3
    source: str = "sat"
    samples: int = 2000
    preimages: int = 20
    epochs: int = 2
    seconds: float = 1.0
    quantile: float = 0.99
    lr_scale: float = 0.1

    def __post_init__(self) -> None:
        check_garbage_params("GarbageConfig", "", rounds=self.rounds, source=self.source, samples=self.samples,
                             preimages=self.preimages, epochs=self.epochs, seconds=self.seconds)
        check_param(isinstance(self.quantile, float) and 0 < self.quantile <= 1, "GarbageConfig", "quantile",
               "a float in (0, 1]", self.quantile)
        check_param(isinstance(self.lr_scale, float) and 0 < self.lr_scale <= 1, "GarbageConfig", "lr_scale",
               "a float in (0, 1]", self.lr_scale)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GarbageResult:
    """What :func:`train_with_garbage` did: the per-epoch training history of the seeded training,
    the support radius, the final garbage set ``(m, n_inputs)`` and one history entry per round
    (round 0 is the seed)."""

    train_history: list[dict[str, float]]
    radius: float
    garbage: np.ndarray
    history: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"radius": self.radius, "garbage_size": len(self.garbage), "history": self.history}


def nearest_hamming(queries: np.ndarray, references: np.ndarray, *, chunk: int = 512) -> np.ndarray:
    """Hamming distance from each row of ``queries`` to its nearest row of ``references`` (bits in {0, 1}).

    ``|q - r|_1 = |q| + |r| - 2 q.r`` on 0/1 vectors, so one float32 matrix product per chunk does it
    (exact: sums of at most a few thousand ones).
    """
    ref = torch.as_tensor(np.asarray(references), dtype=torch.float32)
    ref_ones = ref.sum(1)
    out = np.empty(len(queries), dtype=np.int64)
    for i in range(0, len(queries), chunk):
        q = torch.as_tensor(np.asarray(queries[i:i + chunk]), dtype=torch.float32)
        d = q.sum(1, keepdim=True) + ref_ones[None, :] - 2 * q @ ref.t()
        out[i:i + chunk] = d.min(1).values.round().long().numpy()
    return out


def _uniform(rng: np.random.Generator, n: int, n_inputs: int) -> np.ndarray:
    return rng.integers(0, 2, size=(n, n_inputs), dtype=np.int8)


@_source("sat", "exact SAT preimages of each real label under random hints (random inputs fixed to random bits)")
def _sat_source(net: IntegerBNN, model: BNN, label: int, n: int, config: GarbageConfig,
                rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """SAT preimages of ``label`` under random hints: each query fixes a random subset of the inputs (a
    share drawn from [0, 1/2]) to random bits. Random phases alone do not steer the solver on 784
    inputs (UNKNOWN in 2 s for 9 of 10 labels); fixed random bits do, and they spread the preimages
    over the label's region instead of the near-blank inputs local search from the blank image finds."""
    found = []
    with SatInverter(encode(net, "native"), model=model, time_s=config.seconds, search_s=config.seconds / 2) as inv:
        for _ in range(n):
            size = int(rng.integers(0, int(MAX_FIXED_SHARE * net.n_inputs) + 1))
            idx = rng.choice(net.n_inputs, size=size, replace=False)
            fixed = {int(j): int(b) for j, b in zip(idx, rng.integers(0, 2, size))}
            r = inv.preimage(label, fixed=fixed)
            if r.status is SatResult.SAT:
                found.append(r.bits)
    return np.asarray(found, dtype=np.int8).reshape(len(found), net.n_inputs), n


@_source("noise", "uniform random inputs whatever their label (ablation: no SAT)")
def _noise_source(net: IntegerBNN, model: BNN, label: int, n: int, config: GarbageConfig,
                  rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """``n`` uniform inputs whatever their label: the ablation that sees no SAT preimage."""
    return _uniform(rng, n, net.n_inputs), 0


def _accuracy(model: BNN, split: tuple[torch.Tensor, torch.Tensor] | None) -> float | None:
    return None if split is None else float((model.predict(split[0]) == split[1]).float().mean())


def train_with_garbage(model: BNN, bits: torch.Tensor, labels: torch.Tensor, train_config: BNNTrainConfig,
                       config: GarbageConfig, *, test: tuple[torch.Tensor, torch.Tensor] | None = None,
                       progress: bool = True, checkpoint: str | Path | None = None,
                       checkpoint_info: Mapping[str, Any] | None = None,
                       resume_from: str | Path | None = None) -> GarbageResult:
    """Train ``model`` (built with ``n_classes = n_real + 1``) with a garbage class ``n_real``, in place.

    Parameters
    ----------
    model : BNN
        Untrained; its last class is the garbage class.
    bits, labels : tensors
        Training inputs ``(N, n_inputs)`` and their real labels in ``[0, n_real)``; a seeded
        :data:`VALIDATION_SHARE` of them is held out (support radius, validation accuracy).
    train_config : BNNTrainConfig
        Schedule of the seeded training; rounds reuse it with ``config.epochs`` epochs at
        ``config.lr_scale`` of its learning rate.
    config : GarbageConfig
    test : (bits, labels) or None
        Only reported in the history (never used to choose anything).
    checkpoint : path, optional
        A file (conventionally :data:`~netinvert._checkpoint.CHECKPOINT_NAME`) written atomically after
        the seeded training (round 0) and after every round: the net (latent weights, batch-norm state,
        fan-in masks), the garbage set, both histories, the random state of the candidate draws and the
        global ones, in one safetensors file (format in :mod:`netinvert._checkpoint`).
    checkpoint_info : mapping, optional
        JSON values recorded in the checkpoint's ``info`` (a pipeline records its config there).
    resume_from : path, optional
        A checkpoint written by a call with the same configs and data: training continues with the
        round after the checkpoint's, to the net, garbage set and history an uninterrupted call ends
        with (exactly with ``source="noise"``; SAT queries under a time limit may find other preimages).

    Returns
    -------
    GarbageResult

    Raises
    ------
    ResumeRefusedError (a RunFormatError)
        If ``resume_from`` was written with other configs or data.
    """
    if not isinstance(config, GarbageConfig):
        raise TypeError(f"train_with_garbage needs a GarbageConfig. Got {type(config).__name__} instead.")
    n_real = model.n_classes - 1
    if n_real < 1 or int(labels.max()) >= n_real:
        raise ValueError(f"The model of train_with_garbage must have one class more than the labels (the garbage "
                         f"class); it has {model.n_classes} classes for labels up to {int(labels.max())}.")
    rng = np.random.default_rng(train_config.seed)
    perm = torch.randperm(len(bits), generator=torch.Generator().manual_seed(train_config.seed))
    n_val = max(1, int(VALIDATION_SHARE * len(bits)))
    val_idx, fit_idx = perm[:n_val], perm[n_val:]
    x_fit, y_fit = bits[fit_idx].bool(), labels[fit_idx].long()
    val = (bits[val_idx].bool(), labels[val_idx].long())
    fit_np = np.unique(x_fit.numpy().astype(np.int8), axis=0)
    radius = float(np.quantile(nearest_hamming(val[0][:2000].numpy().astype(np.int8), fit_np), config.quantile))
    n_inputs = model.n_inputs

    def unsupported(cand: np.ndarray) -> np.ndarray:
        return cand[nearest_hamming(cand, fit_np) > radius] if len(cand) else cand

    def fit(garbage: np.ndarray, tc: BNNTrainConfig, resume: bool) -> list[dict[str, float]]:
        weight = torch.ones(model.n_classes)
        weight[n_real] = len(x_fit) / n_real / max(len(garbage), 1)  # the garbage class weighs like an average class
        x = torch.cat([x_fit, torch.as_tensor(garbage, dtype=torch.bool)])
        y = torch.cat([y_fit, torch.full((len(garbage),), n_real, dtype=torch.long)])
        return train_bnn(model, x, y, tc, class_weight=weight, resume=resume)

    def record(round_: int, garbage: np.ndarray, added: dict[str, int], t0: float) -> dict[str, Any]:
        net = export_bnn(model)
        shares = estimate_label_shares(net, SHARE_DRAWS, seed=train_config.seed + 1000 + round_)
        h = {"round": round_, "garbage_size": int(len(garbage)), **added,
             "validation_accuracy": _accuracy(model, val), "test_accuracy": _accuracy(model, test),
             "uniform_to_garbage": shares[n_real].share, "uniform_to_garbage_interval": [shares[n_real].low, shares[n_real].high],
             "seconds": time.perf_counter() - t0}
        if progress:
            log.info("garbage round %d: %d garbage inputs, validation accuracy %.4f, %.4f of uniform inputs to garbage",
                     round_, h["garbage_size"], h["validation_accuracy"], h["uniform_to_garbage"])
        return h

    identity = None
    if checkpoint is not None or resume_from is not None:
        identity = json.loads(json.dumps(jsonable({"garbage": config.to_dict(), "train": train_config.to_dict(),
                                                   "n_classes": model.n_classes, "n_inputs": n_inputs, "n": len(bits),
                                                   "data_sha256": tensors_sha256(bits, labels),
                                                   # a block layout's mask has the same shape as another's; the key
                                                   # is absent without one, so checkpoints of older runs still match
                                                   **({"blocks": model.blocks} if model.blocks else {})})))
    info = jsonable(dict(checkpoint_info or {}))

    def save(garbage: np.ndarray, train_history: list[dict[str, float]], history: list[dict[str, Any]]) -> None:
        """The state after a finished round: a resume starts the next one."""
        if checkpoint is None:
            return
        rng_tensors, rng_meta = rng_to_checkpoint(rng_state())
        tensors = {**prefixed("model", model.state_dict()), "garbage": torch.from_numpy(np.ascontiguousarray(garbage)),
                   **rng_tensors}
        write_checkpoint(checkpoint, tensors, {"round": history[-1]["round"], "history": history, "train_history": train_history,
                                               "radius": radius, "candidates": rng.bit_generator.state, "rng": rng_meta,
                                               "identity": identity, "info": info})
        log.debug("checkpoint of garbage round %d written to %s", history[-1]["round"], checkpoint)

    source = GARBAGE_SOURCES.get(config.source)
    if resume_from is None:
        t0 = time.perf_counter()
        seed_draws = _uniform(rng, config.samples, n_inputs)
        garbage = unsupported(seed_draws)
        train_history = fit(garbage, train_config, resume=False)
        history = [record(0, garbage, {"uniform_drawn": config.samples, "uniform_added": int(len(garbage)),
                                       "sat_queries": 0, "source_candidates": 0, "source_added": 0}, t0)]
        save(garbage, train_history, history)
    else:
        garbage, train_history, history = _restore_garbage(Path(resume_from), identity, model, rng)
    for r in range(len(history), config.rounds + 1):
        t0 = time.perf_counter()
        net = export_bnn(model)
        draws = _uniform(rng, config.samples, n_inputs)
        uniform_new = unsupported(draws[net.predict(draws) < n_real])
        found = [source.fn(net, model, k, config.preimages, config, rng) for k in range(n_real)]
        cand = np.concatenate([c for c, _ in found])
        source_new = unsupported(cand)
        garbage = np.concatenate([garbage, uniform_new, source_new])
        fit(garbage, replace(train_config, epochs=config.epochs, lr=train_config.lr * config.lr_scale,
                                     seed=train_config.seed + r), resume=True)
        history.append(record(r, garbage, {"uniform_drawn": config.samples, "uniform_added": int(len(uniform_new)),
                                           "sat_queries": sum(q for _, q in found), "source_candidates": int(len(cand)), "source_added": int(len(source_new))}, t0))
        save(garbage, train_history, history)
    return GarbageResult(train_history, radius, garbage, history)


def _restore_garbage(path: Path, identity: dict[str, Any] | None, model: BNN,
                     rng: np.random.Generator) -> tuple[np.ndarray, list[dict[str, float]], list[dict[str, Any]]]:
    """Load a round's checkpoint into the net and the random states; returns the garbage set and both histories."""
    tensors, state = read_checkpoint(path)
    theirs = state.get("identity") or {}
    if theirs != identity:
        raise ResumeRefusedError(f"The checkpoint {path} was written by garbage training with another "
                             f"{', '.join(changed_fields(identity, theirs))}; resume it with the same settings and data, "
                             "or start afresh without it.")
    try:
        model.load_state_dict(strip_prefix("model", tensors))
        garbage = tensors["garbage"].numpy().astype(np.int8)
        history, train_history = list(state["history"]), list(state["train_history"])
        rng.bit_generator.state = state["candidates"]
        restore_rng(tensors, state["rng"])
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise ResumeRefusedError(f"The checkpoint {path} does not fit this garbage training ({exc}); start afresh without it.") from None
    model.eval()
    log.info("resuming garbage training after round %d of %s", history[-1]["round"], path)
    return garbage, train_history, history
