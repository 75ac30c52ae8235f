"""Figures of runs (per-class sample grids and loss curves, PNG via matplotlib), the demo's report and HTML reports."""

from ._demo import DemoConfig, DemoResult, run_demo
from ._html import ReportResult, render_html_report, write_html_report
from ._plots import image_grid, save_class_grid, save_loss_curves

__all__ = ["image_grid", "save_class_grid", "save_loss_curves", "DemoConfig", "DemoResult", "run_demo",
           "ReportResult", "render_html_report", "write_html_report"]
