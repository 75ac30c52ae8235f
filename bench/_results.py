"""Helpers shared by the benchmark scripts for their committed result files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def rewrite_notes(json_path: Path, notes: list[str], render: Callable[[dict[str, Any]], str]) -> None:
    """Put ``notes`` into a result JSON and re-render its markdown beside it, measuring nothing.

    Notes are written after looking at the numbers; this keeps the JSON and the table in step
    without rerunning a benchmark.
    """
    res = json.loads(json_path.read_text())
    res["notes"] = notes
    json_path.write_text(json.dumps(res, indent=1) + "\n")
    json_path.with_suffix(".md").write_text(render(res))
