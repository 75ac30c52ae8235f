"""Every classifier the benchmarks measure, as a config the committed pipeline trains with a fixed seed.

``ensure_target(name)`` returns the run folder of ``TARGETS[name]`` in ``bench/.cache/targets/``
(inside the repo, ignored by git), training it with :func:`netinvert.models.run_training` when it is
missing or when its card's config is not ``TARGETS[name]``. So a clean clone rebuilds exactly the
models the committed figures measured, with the code users run.

All targets train on the CPU with one torch thread: the committed figures were measured that way,
and a one-thread CPU run is bit-for-bit reproducible (on a machine without a GPU, ``device="auto"``,
which the inversion benchmark's targets used before, resolves to the same CPU run).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from netinvert.models import ClassifierRunConfig, TrainConfig, run_training
from netinvert.runs import CARD_NAME, WEIGHTS_NAME, read_card

__all__ = ["CACHE", "TARGETS", "FASHION_MODEL", "FASHION_CONFIG", "ADV_CONFIG", "ADV_TRAIN_SUBSET", "ensure_target"]

log = logging.getLogger("bench.targets")

#: Where trained targets live (git-ignored).
CACHE = Path(__file__).resolve().parent / ".cache" / "targets"

#: The Fashion-MNIST CNN: one conv per block keeps an epoch around a minute on one busy core.
FASHION_MODEL = {"channels": [16, 32], "hidden": 128, "dropout": 0.3, "convs_per_block": 1}
FASHION_CONFIG = TrainConfig(epochs=4, batch_size=128, lr=3e-3, seed=0, device="cpu")
#: PGD training costs (adv_steps + 1) forward/backward passes per batch, so it sees a subset.
ADV_CONFIG = TrainConfig(epochs=3, batch_size=128, lr=3e-3, seed=0, adv_eps=0.1, adv_steps=3, device="cpu")
ADV_TRAIN_SUBSET = 20_000

TARGETS: dict[str, ClassifierRunConfig] = {
    # `netinvert train` on digits with its defaults (the digits target of bench/inversion.py tier a too).
    "digits-cnn": ClassifierRunConfig(dataset="digits", model="cnn", train=TrainConfig(), seed=0, device="cpu", threads=1),
    # The plain Fashion-MNIST target of bench/inversion.py tiers b and f (was /work/fashion_cnn_run).
    "fashion-cnn": ClassifierRunConfig(dataset="fashion-mnist", model="cnn", model_params=FASHION_MODEL,
                                       train=FASHION_CONFIG, seed=0, device="cpu", threads=1),
    # PGD-trained variant of the same CNN, measured by bench/classifiers.py.
    "fashion-cnn-pgd": ClassifierRunConfig(dataset="fashion-mnist", model="cnn", model_params=FASHION_MODEL,
                                           train=ADV_CONFIG, subset=ADV_TRAIN_SUBSET, seed=0, device="cpu", threads=1),
    # The adversarially trained inversion target of bench/inversion.py tier c: the zoo's default CNN,
    # one PGD epoch on a seeded 20,000-image subset (as `_fashion_target(robust=True)` trained it).
    "fashion-cnn-robust": ClassifierRunConfig(dataset="fashion-mnist", model="cnn",
                                              train=TrainConfig(epochs=1, adv_eps=0.1, adv_steps=3),
                                              subset=20_000, seed=0, device="cpu", threads=1),
}


def _is_current(run: Path, config: ClassifierRunConfig) -> bool:
    """Whether ``run`` is a whole run of exactly ``config``."""
    if not (run / CARD_NAME).is_file() or not (run / WEIGHTS_NAME).is_file():
        return False
    try:
        recorded = ClassifierRunConfig.from_dict(read_card(run).get("config") or {})
    except (ValueError, TypeError):  # an old or foreign card: retrain
        return False
    return recorded == config


def ensure_target(name: str, cache: Path = CACHE, *, progress: bool = False) -> Path:
    """The run folder of ``TARGETS[name]`` under ``cache``, trained first if missing or stale.

    Training sets torch's thread count to the target's; the caller's setting is restored after.
    """
    try:
        config = TARGETS[name]
    except KeyError:
        raise KeyError(f"Unknown target {name!r}. Valid names: {', '.join(sorted(TARGETS))}.") from None
    run = Path(cache) / name
    if _is_current(run, config):
        return run
    log.info("training target %s into %s", name, run)
    threads = torch.get_num_threads()
    try:
        run_training(config, run, force=True, progress=progress)
    finally:
        torch.set_num_threads(threads)
    return run
