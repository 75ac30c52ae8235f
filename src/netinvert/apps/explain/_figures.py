"""The pictures of an explanation run: maps per class, boundary paths with the classifier's probabilities."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = ["save_map_rows", "save_boundary_path"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _show(ax, image: torch.Tensor, cmap: str) -> None:
    img = image.detach().cpu().float()
    arr = img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).clamp(0, 1).numpy()
    ax.imshow(arr, cmap=cmap if img.shape[0] == 1 else None, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def save_map_rows(rows: Sequence[tuple[str, torch.Tensor]], class_names: Sequence[str], path: str | Path, *, title: str,
                  cmap: str = "magma", notes: Sequence[Sequence[str]] | None = None) -> Path:
    """One row per ``(row name, maps (K, C, H, W))``, one column per class; each map scaled to its own range.

    ``notes[r][k]``, when given, is written under the map of row ``r`` and class ``k`` (e.g. its SSIM to row 0).
    """
    from ._sanity import scale_maps

    plt = _pyplot()
    k = len(class_names)
    fig, axes = plt.subplots(len(rows), k, figsize=(1.1 * k + 1.2, 1.25 * len(rows) + 0.6), squeeze=False)
    for r, (name, maps) in enumerate(rows):
        scaled = scale_maps(maps)
        for c in range(k):
            ax = axes[r][c]
            _show(ax, scaled[c], cmap)
            if r == 0:
                ax.set_title(str(class_names[c])[:10], fontsize=7)
            if notes is not None and notes[r][c]:
                ax.set_xlabel(notes[r][c], fontsize=6)
        axes[r][0].set_ylabel(name, fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def save_boundary_path(images: torch.Tensor, probs: torch.Tensor, names: tuple[str, str], path: str | Path) -> Path:
    """Paths ``images (steps, n, C, H, W)`` as a grid (one row per path) above the mean probabilities ``probs (steps, 2)``."""
    plt = _pyplot()
    steps, n = images.shape[:2]
    fig = plt.figure(figsize=(0.8 * steps + 1.5, 0.8 * n + 2.2))
    grid = fig.add_gridspec(n + 2, steps)
    for i in range(n):
        for s in range(steps):
            ax = fig.add_subplot(grid[i, s])
            _show(ax, images[s, i], "gray")
    ax = fig.add_subplot(grid[n:, :])
    t = np.linspace(0, 1, steps)
    ax.plot(t, probs[:, 0].numpy(), marker="o", ms=3, label=f"p({names[0]})")
    ax.plot(t, probs[:, 1].numpy(), marker="o", ms=3, label=f"p({names[1]})")
    ax.set_xlabel("mix t: conditioning (1 - t) * c_a + t * c_b", fontsize=7)
    ax.set_ylim(0, 1)
    ax.tick_params(labelsize=6)
    ax.legend(fontsize=6)
    fig.suptitle(f"boundary between {names[0]} and {names[1]}: mean classifier probabilities along the paths", fontsize=8)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return Path(path)
