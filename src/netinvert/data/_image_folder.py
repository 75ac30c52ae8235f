"""A user's own images: one sub-folder per class of PNG/JPEG files.

Two layouts are accepted::

    root/train/<class>/*.png   and   root/test/<class>/*.png     (the user's own split)
    root/<class>/*.png                                             (split here, 80/20, seeded)

Class indices follow the sorted folder names. Images are not resized: every image must have the
same size, so the classifier sees the pixels the user has. If every image is greyscale the
dataset has one channel, otherwise three (greyscale images are then repeated over RGB).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..exceptions import DatasetError
from ._base import Dataset, DatasetStatus, register_dataset
from ._files import DATA_ENV

NAME = "image-folder"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: The single-folder layout is split with this test share and seed, per class, so the split
#: never changes between runs and every class appears in both parts when it has 3+ images.
TEST_FRACTION = 0.2
SPLIT_SEED = 0
#: Pillow modes without colour; 16-bit ones are scaled by 65535 instead of 255.
_GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N"})
_WIDE_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})

ClassFiles = dict[str, list[Path]]


def _resolve_root(root: Path | None) -> Path:
    if root is None:
        env = os.environ.get(DATA_ENV)
        if not env:
            raise DatasetError(
                "image-folder needs a folder: pass root (CLI: --data-root DIR) holding one "
                "sub-folder of PNG/JPEG files per class, or train/ and test/ folders laid out so, "
                f"or set ${DATA_ENV} and put it at ${DATA_ENV}/{NAME}."
            )
        root = Path(env) / NAME
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"image-folder: {root} is not a folder.")
    return root


def _class_files(folder: Path) -> ClassFiles:
    """Sorted class folders (hidden ones skipped) -> their sorted image files."""
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DatasetError(
            f"image-folder: {folder} has no class sub-folders; put each class's images in "
            f"{folder}/<class name>/."
        )
    files = {}
    for c in classes:
        images = sorted(p for p in c.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise DatasetError(f"image-folder: class folder {c} holds no {'/'.join(IMAGE_SUFFIXES)} files.")
        files[c.name] = images
    return files


def _find(root: Path | None) -> tuple[Path, ClassFiles, ClassFiles | None]:
    """The folder, its train classes, and its test classes (``None`` for the single layout)."""
    root = _resolve_root(root)
    if not (root / "train").is_dir():
        return root, _class_files(root), None
    if not (root / "test").is_dir():
        raise DatasetError(
            f"image-folder: {root} has a train/ folder but no test/ folder; add test/<class>/ "
            "folders, or put the class folders directly in the root to have them split 80/20."
        )
    train, test = _class_files(root / "train"), _class_files(root / "test")
    extra = sorted(set(test) - set(train))
    if extra:
        raise DatasetError(
            f"image-folder: {root}/test has classes missing from {root}/train: {', '.join(extra)}."
        )
    return root, train, test


def _split(files: ClassFiles) -> tuple[ClassFiles, ClassFiles]:
    """Seeded per-class 80/20 split of the single layout (stratified, order-independent)."""
    rng = np.random.default_rng(SPLIT_SEED)
    train, test = {}, {}
    for name, paths in files.items():
        order = rng.permutation(len(paths))
        n_test = min(len(paths) - 1, int(len(paths) * TEST_FRACTION + 0.5))
        test[name] = [paths[i] for i in sorted(order[:n_test])]
        train[name] = [paths[i] for i in sorted(order[n_test:])]
    return train, test


def _probe(path: Path) -> tuple[tuple[int, int], str]:
    """Size and mode from the header only (no pixel decoding)."""
    try:
        with Image.open(path) as im:
            return im.size, im.mode
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"image-folder: cannot read {path} as an image ({exc}).") from exc


def _pixels(path: Path, channels: int) -> np.ndarray:
    """One image as float32 ``(C, H, W)`` in [0, 1]."""
    try:
        with Image.open(path) as im:
            if im.mode in _WIDE_MODES:
                arr = np.clip(np.asarray(im, dtype=np.float32) / 65535.0, 0.0, 1.0)
            elif im.mode in _GREY_MODES:
                arr = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
            else:
                arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"image-folder: cannot decode {path} ({exc}).") from exc
    if arr.ndim == 2:
        arr = np.repeat(arr[None], channels, axis=0)
    else:
        arr = arr.transpose(2, 0, 1)
    return arr


def _to_tensors(parts: list[ClassFiles], class_names: list[str]) -> list[torch.Tensor]:
    """Check every header first (one size; colour or not), then decode into one array per part."""
    index = {c: i for i, c in enumerate(class_names)}
    ref = next(iter(parts[0].values()))[0]
    (w, h), _ = _probe(ref)
    colour = False
    for files in parts:
        for path in (p for paths in files.values() for p in paths):
            size, mode = _probe(path)
            colour |= mode not in _GREY_MODES
            if size != (w, h):
                raise DatasetError(
                    f"image-folder: all images must have one size, but {path} is "
                    f"{size[0]}x{size[1]} while {ref} is {w}x{h} (width x height). "
                    "Resize or crop them to one size first."
                )
    channels = 3 if colour else 1
    tensors = []
    for files in parts:
        pairs = [(p, index[c]) for c, paths in files.items() for p in paths]
        x = np.empty((len(pairs), channels, h, w), dtype=np.float32)
        for i, (path, _) in enumerate(pairs):
            x[i] = _pixels(path, channels)
        y = np.array([label for _, label in pairs], dtype=np.int64)
        tensors += [torch.from_numpy(x), torch.from_numpy(y)]
    return tensors


def locate_image_folder(root: Path | None) -> DatasetStatus:
    """Locator: lists the class folders and reads one image header for the input shape."""
    try:
        folder, train, _ = _find(root)
        first = next(iter(train.values()))[0]
        (w, h), mode = _probe(first)
    except DatasetError as exc:
        where = str(root) if root is not None else os.environ.get(DATA_ENV, "")
        return DatasetStatus(NAME, False, where, str(exc))
    channels = 1 if mode in _GREY_MODES else 3
    return DatasetStatus(NAME, True, str(folder), "", (channels, h, w), len(train))


@register_dataset(NAME, locate=locate_image_folder)
def load_image_folder(root: Path | None = None) -> Dataset:
    """A user's own labelled images, one sub-folder per class.

    ``root`` holds either ``train/<class>/`` and ``test/<class>/`` folders, or ``<class>/`` folders
    that are split 80/20 per class with a fixed seed. Files ending in .png, .jpg or .jpeg are
    read; every image must have the same size (the error names the first odd one). Default root:
    ``$NETINVERT_DATA/image-folder``.
    """
    folder, train, test = _find(root)
    layout = "train/ and test/ folders"
    if test is None:
        train, test = _split(train)
        layout = f"class folders, split {1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%} with seed {SPLIT_SEED}"
        if not any(test.values()):
            raise DatasetError(
                f"image-folder: {folder} is too small to split off a test set: every class folder holds at most 2 "
                f"images, so the {TEST_FRACTION:.0%} test share of each rounds to none. Add images (3 or more in "
                "some class), or give train/ and test/ folders."
            )
    class_names = list(train)
    xtr, ytr, xte, yte = _to_tensors([train, test], class_names)
    return Dataset(NAME, xtr, ytr, xte, yte, class_names=tuple(class_names), source=f"{layout} in {folder}")
