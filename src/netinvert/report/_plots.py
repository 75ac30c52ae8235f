"""Figures of an inversion run: the per-class sample grid and the loss curves.

Plotting is separate from computation: the inverter never draws or saves images by itself;
the CLI (or the user) calls these functions with its results.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = ["save_class_grid", "save_loss_curves", "image_grid"]

#: History keys that are bookkeeping, not loss terms.
_NOT_TERMS = ("step", "seconds", "lr", "loss", "validity")


def image_grid(images: torch.Tensor, n_rows: int, pad: int = 1) -> np.ndarray:
    """Tile ``(R * n, C, H, W)`` images in [0, 1] into one ``(H', W', C)`` array, ``n`` per row."""
    if images.dim() != 4:
        raise ValueError(f"images must be (N, C, H, W). Got shape {tuple(images.shape)} instead.")
    n, c, h, w = images.shape
    n_cols = math.ceil(n / n_rows)
    grid = np.ones((n_rows * (h + pad) + pad, n_cols * (w + pad) + pad, c), dtype=np.float32)
    arr = images.detach().cpu().clamp(0, 1).permute(0, 2, 3, 1).numpy()
    for i in range(n):
        r, col = divmod(i, n_cols)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[top : top + h, left : left + w] = arr[i]
    return grid


def save_class_grid(images: torch.Tensor, labels: torch.Tensor, path: str | Path, *,
                    class_names: Sequence[str] | None = None, title: str | None = None,
                    row_notes: Sequence[str] | None = None) -> Path:
    """Save a PNG with one row per class: the samples of that class, the class name at the left.

    Parameters
    ----------
    images : Tensor ``(N, C, H, W)`` in [0, 1]
    labels : Tensor ``(N,)``
        The class of each image; every class present gets a row with the same number of
        columns (the largest class count).
    class_names : sequence of str, optional
    title : str, optional
    row_notes : sequence of str, optional
        Text shown at the right of each row (e.g. per-class validity).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = labels.unique().tolist()
    per = max(int((labels == c).sum()) for c in classes)
    c, h, w = images.shape[1:]
    rows = []
    for cls in classes:
        x = images[labels == cls]
        if len(x) < per:
            x = torch.cat([x, torch.ones(per - len(x), c, h, w)])
        rows.append(x)
    grid = image_grid(torch.cat(rows), len(classes))
    height, width = grid.shape[:2]
    scale = 0.5 / h  # inches per grid pixel: each image about half an inch, whatever its resolution
    fig_w = 1.8 + width * scale
    if title:  # wrapped to the figure's width: a narrow grid (few images per class) would cut a long title off
        title = textwrap.fill(title, max(16, int(fig_w * 72 / (9 * 0.6))))
    lines = 0 if not title else title.count("\n")
    fig, ax = plt.subplots(figsize=(fig_w, 0.6 + 0.16 * lines + height * scale), dpi=100)
    ax.imshow(grid[..., 0] if c == 1 else grid, cmap="gray" if c == 1 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([1 + (h + 1) * i + h / 2 for i in range(len(classes))])
    names = [class_names[i] if class_names is not None else str(i) for i in classes]
    ax.set_yticklabels(names)
    if row_notes is not None:
        for i, note in enumerate(row_notes):
            ax.text(width + 1, 1 + (h + 1) * i + h / 2, note, va="center", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if len(values) < window or window < 2:
        return values
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def save_loss_curves(history: Mapping[str, Sequence[float]], path: str | Path, *, title: str | None = None) -> Path:
    """Save a PNG of the total loss, each term's unweighted value and the batch validity over steps.

    Curves are smoothed with a moving average (window = 1% of the steps) so trends show through
    the noise of random batches.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.asarray(history.get("step", []), dtype=float)
    if len(steps) == 0:
        raise ValueError("The history is empty; fit the inverter before plotting its losses.")
    terms = ["loss"] + [k for k in history if k not in _NOT_TERMS] + ["validity"]
    n_cols = 3
    n_rows = math.ceil(len(terms) / n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4 * n_cols, 2.6 * n_rows), squeeze=False)
    window = max(1, len(steps) // 100)
    for ax, key in zip(axes.flat, terms):
        values = np.asarray(history[key], dtype=float)
        ax.plot(steps, values, color="0.8", lw=0.5)
        smooth = _smooth(values, window)
        ax.plot(steps[len(steps) - len(smooth):], smooth, color="C0", lw=1.2)
        ax.set_title("total loss" if key == "loss" else key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        finite = values[np.isfinite(values)]
        if key != "validity" and len(finite) and finite.min() > 0 and finite.max() > 20 * finite.min():
            ax.set_yscale("log")  # only when the curve spans decades; otherwise a linear axis reads better
    for ax in list(axes.flat)[len(terms):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
