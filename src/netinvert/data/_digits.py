"""scikit-learn's embedded 8x8 handwritten digits: the default data for demos and fast tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ._base import Dataset, register_dataset

#: Fixed split so every run, test and benchmark sees the same test digits.
_TEST_FRACTION = 0.2
_SPLIT_SEED = 0


@register_dataset("digits")
def load_digits(root: Path | None = None) -> Dataset:
    """1,797 real 8x8 digits (values 0..16 scaled to [0, 1]), split 80/20 with a fixed seed.

    ``root`` is ignored: the data ships inside scikit-learn, so this never touches the network.
    """
    from sklearn.datasets import load_digits as _sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = _sk_load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(
        x, y, test_size=_TEST_FRACTION, random_state=_SPLIT_SEED, stratify=y
    )
    return Dataset(
        name="digits",
        x_train=torch.from_numpy(xtr),
        y_train=torch.from_numpy(ytr),
        x_test=torch.from_numpy(xte),
        y_test=torch.from_numpy(yte),
        class_names=tuple(str(i) for i in range(10)),
        source="scikit-learn (embedded)",
    )
