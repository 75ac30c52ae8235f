"""Figures of runs: per-class sample grids and loss curves (PNG, via matplotlib)."""

from ._plots import image_grid, save_class_grid, save_loss_curves

__all__ = ["image_grid", "save_class_grid", "save_loss_curves"]
