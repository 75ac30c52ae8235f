"""Figures of runs (per-class sample grids and loss curves, PNG via matplotlib) and the demo's report."""

from ._demo import DemoConfig, DemoResult, run_demo
from ._plots import image_grid, save_class_grid, save_loss_curves

__all__ = ["image_grid", "save_class_grid", "save_loss_curves", "DemoConfig", "DemoResult", "run_demo"]
