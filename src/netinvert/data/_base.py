"""The dataset record every loader returns, and the dataset registry.

Each registered dataset has a *loader* ``fn(root) -> Dataset`` and, for file-based sets, a
*locator* ``fn(root) -> DatasetStatus`` that says whether the files are present without reading
them, so ``netinvert datasets`` can list what is available here in well under a second.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .._registry import Registry
from ..exceptions import DatasetError

__all__ = [
    "Dataset",
    "DatasetStatus",
    "DatasetSource",
    "DATASETS",
    "register_dataset",
    "load_dataset",
    "list_datasets",
    "dataset_status",
]


def _check_classes(classes: Sequence[int], n_classes: int) -> tuple[int, ...]:
    """``classes`` as a tuple of distinct class indices that keeps some but not all of ``n_classes``."""
    wanted = f"distinct ints in [0, {n_classes - 1}], some but not all of the {n_classes} classes"
    if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence):
        raise ValueError(f"The 'classes' parameter must be {wanted}. Got {classes!r} instead.")
    out = tuple(classes)
    ok = (0 < len(out) < n_classes and len(set(out)) == len(out)
          and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < n_classes for c in out))
    if not ok:
        raise ValueError(f"The 'classes' parameter must be {wanted}. Got {list(out)!r} instead.")
    return out


@dataclass(frozen=True)
class Dataset:
    """A labelled image dataset held in memory as tensors.

    Images are float32 in [0, 1] with shape ``(N, C, H, W)``; labels are int64 class indices.
    ``mean``/``std`` are per-channel statistics of the training images: classifiers normalise
    internally with them, so inversion always works in plain [0, 1] pixel space.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_names: tuple[str, ...]
    source: str = ""
    mean: tuple[float, ...] = field(default=())
    std: tuple[float, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.mean:
            dims = (0, 2, 3)
            object.__setattr__(self, "mean", tuple(float(v) for v in self.x_train.mean(dims)))
            std = self.x_train.std(dims).clamp_min(1e-6)
            object.__setattr__(self, "std", tuple(float(v) for v in std))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def subset(self, n_train: int | None = None, n_test: int | None = None, seed: int = 0) -> Dataset:
        """A random subset of the train and/or test split (for fast tests and small-data studies)."""
        g = torch.Generator().manual_seed(seed)

        def pick(x: torch.Tensor, y: torch.Tensor, n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
            if n is None or n >= len(x):
                return x, y
            idx = torch.randperm(len(x), generator=g)[:n]
            return x[idx], y[idx]

        xtr, ytr = pick(self.x_train, self.y_train, n_train)
        xte, yte = pick(self.x_test, self.y_test, n_test)
        return Dataset(self.name, xtr, ytr, xte, yte, self.class_names, self.source, self.mean, self.std)

    def draw_members(self, n: int, seed: int, *, balanced: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices into the training split of ``n`` members and of up to ``n`` non-members, disjoint, in drawn order.

        Members are what a model trained on the subset saw; the non-members, drawn from the rest
        of the same split (as many as members where the split allows), are the control a
        membership claim is measured against. ``balanced`` draws ``n // K`` images of each of the
        ``K`` classes (the first ``n % K`` classes of a seeded order get one more) and the
        non-members with the same class counts; otherwise members are the first ``n`` of a seeded
        permutation (what :meth:`subset` draws with the same seed, in the same order) and
        non-members the next ``n``.

        Raises
        ------
        ValueError
            If ``n`` < 1 or exceeds the split (or, when balanced, a class holds fewer images than
            its share of ``n``).
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"The 'n' parameter of draw_members must be an int in [1, inf). Got {n!r} instead.")
        if n > len(self.y_train):
            raise ValueError(f"{self.name} has {len(self.y_train)} training images: too few for {n} members.")
        g = torch.Generator().manual_seed(int(seed))
        if not balanced:
            perm = torch.randperm(len(self.y_train), generator=g)
            return perm[:n], perm[n:2 * n]
        k = self.n_classes
        counts = torch.full((k,), n // k, dtype=torch.long)
        counts[torch.randperm(k, generator=g)[:n % k]] += 1
        members, others = [], []
        for c in range(k):
            pool = torch.nonzero(self.y_train == c).flatten()
            m = int(counts[c])
            if m > len(pool):
                raise ValueError(f"{self.name} has {len(pool)} training images of class {c}: too few for {m} "
                                 f"class-balanced members of it.")
            pick = pool[torch.randperm(len(pool), generator=g)]
            members.append(pick[:m])
            others.append(pick[m:2 * m])
        return torch.cat(members), torch.cat(others)

    def select_classes(self, classes: Sequence[int]) -> Dataset:
        """The dataset restricted to ``classes``, relabelled ``0..len(classes)-1`` in the given order.

        The near-OOD setting of the OOD application: a model trained on some classes meets the
        others as out-of-distribution inputs (:meth:`held_out_test`). ``mean``/``std`` are those
        of the kept training images, as for any dataset.

        Raises
        ------
        ValueError
            If ``classes`` is empty, repeats a class, names a class not in ``0..n_classes-1``, or
            keeps every class (nothing would be held out).
        """
        classes = _check_classes(classes, self.n_classes)
        lut = torch.full((self.n_classes,), -1, dtype=torch.long)
        lut[list(classes)] = torch.arange(len(classes))

        def keep(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            mask = lut[y] >= 0
            return x[mask], lut[y[mask]]

        xtr, ytr = keep(self.x_train, self.y_train)
        xte, yte = keep(self.x_test, self.y_test)
        return Dataset(self.name, xtr, ytr, xte, yte, tuple(self.class_names[c] for c in classes), self.source)

    def held_out_test(self, classes: Sequence[int]) -> torch.Tensor:
        """Test images of every class *not* in ``classes`` (the near-OOD set of :meth:`select_classes`)."""
        classes = _check_classes(classes, self.n_classes)
        return self.x_test[~torch.isin(self.y_test, torch.tensor(classes, dtype=torch.long))]

    def describe(self) -> dict:
        """Plain-JSON summary stored in run cards."""
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "n_classes": self.n_classes,
            "class_names": list(self.class_names),
            "n_train": len(self.x_train),
            "n_test": len(self.x_test),
            "mean": list(self.mean),
            "std": list(self.std),
            "source": self.source,
        }


@dataclass(frozen=True)
class DatasetStatus:
    """Whether a dataset can be loaded here, found without reading its files.

    Attributes
    ----------
    name : str
        The registry name.
    available : bool
        True when every file the loader needs is present (they are validated only on load).
    where : str
        The folder (or embedded source) the data comes from; when unavailable, the folders
        that were searched, or ``""`` when there was none to search.
    hint : str
        When unavailable: which files are missing and how to obtain them. Empty otherwise.
    input_shape : tuple of int or None
        ``(C, H, W)`` of one image, when known without loading.
    n_classes : int or None
        Number of classes, when known without loading.
    """

    name: str
    available: bool
    where: str
    hint: str = ""
    input_shape: tuple[int, int, int] | None = None
    n_classes: int | None = None

    def to_dict(self) -> dict:
        """Plain-JSON form (``netinvert datasets --json`` prints a list of these)."""
        return {
            "name": self.name,
            "available": self.available,
            "where": self.where,
            "hint": self.hint,
            "input_shape": list(self.input_shape) if self.input_shape is not None else None,
            "n_classes": self.n_classes,
        }


Loader = Callable[[Path | None], Dataset]
Locator = Callable[[Path | None], DatasetStatus]


@dataclass(frozen=True)
class DatasetSource:
    """A registry entry: a loader, and optionally a locator that checks files without loading.

    Calling the entry loads the dataset, so ``DATASETS.get(name)(root)`` returns a
    :class:`Dataset`.
    """

    name: str
    load: Loader
    locate: Locator | None = None

    def __call__(self, root: Path | None = None) -> Dataset:
        return self.load(root)

    def status(self, root: Path | None = None) -> DatasetStatus:
        """The locator's answer; without a locator the data is embedded, so loading it is cheap."""
        if self.locate is not None:
            return self.locate(root)
        try:
            data = self.load(root)
        except DatasetError as exc:
            return DatasetStatus(self.name, False, "", str(exc))
        return DatasetStatus(self.name, True, data.source, "", data.input_shape, data.n_classes)


DATASETS: Registry[DatasetSource] = Registry("dataset")


def register_dataset(name: str, *, locate: Locator | None = None) -> Callable[[Loader], Loader]:
    """Register a loader ``fn(root) -> Dataset`` under ``name``.

    Parameters
    ----------
    name : str
        Registry key; also the dataset's ``Dataset.name``, which run cards store so that
        ``netinvert evaluate`` can reload the same data.
    locate : callable, optional
        ``fn(root) -> DatasetStatus`` answering "are the files here?" without reading them.
        Leave it out only for embedded data, whose status is found by loading it.
    """

    def decorator(fn: Loader) -> Loader:
        DATASETS.add(name, DatasetSource(name, fn, locate))
        return fn

    return decorator


def load_dataset(name: str, root: str | Path | None = None) -> Dataset:
    """Load a registered dataset.

    Parameters
    ----------
    name : str
        A name from :func:`list_datasets` (``digits``, ``fashion-mnist``, ``mnist``, ``cifar10``,
        ``svhn``, ``image-folder``).
    root : path, optional
        Folder holding the dataset's files; each loader documents its default.

    Raises
    ------
    UnknownNameError
        If ``name`` is not registered.
    DatasetError
        If files are missing (the message names them and says how to get them) or malformed.
    """
    return DATASETS.get(name)(Path(root) if root is not None else None)


def dataset_status(name: str, root: str | Path | None = None) -> DatasetStatus:
    """Say whether a registered dataset is available here, and where from, without loading it.

    Parameters
    ----------
    name : str
        A name from :func:`list_datasets`.
    root : path, optional
        The folder :func:`load_dataset` would be given; ``None`` checks the default places.

    Returns
    -------
    DatasetStatus

    Raises
    ------
    UnknownNameError
        If ``name`` is not registered.

    Examples
    --------
    >>> dataset_status("digits").available
    True
    """
    return DATASETS.get(name).status(Path(root) if root is not None else None)


def list_datasets() -> list[str]:
    return DATASETS.names()
