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


def machine_line(result: dict[str, Any]) -> str:
    """One sentence for a result's markdown: the machine record and the commit measured."""
    m, c = result["machine"], result["commit"]
    return (f"Machine: {m['cpu']}, {m['cores']} cores, {m['threads']} torch thread(s), load {m['load_avg_1_5_15']}, "
            f"torch {m['torch']}; commit {c['sha'][:10]}{' (dirty tree)' if c['dirty'] else ''}.")


def write_results(folder: Path, name: str, result: dict[str, Any], render: Callable[[dict[str, Any]], str]) -> Path:
    """Write ``folder/NAME.json`` and ``NAME.md``, keeping the notes an earlier result file holds."""
    path = folder / f"{name}.json"
    if path.is_file():
        result["notes"] = json.loads(path.read_text()).get("notes", [])
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    path.with_suffix(".md").write_text(render(result))
    return path


def bench_arguments(doc: str, name: str, results: Path, cache: Path, *, only: bool = False) -> Any:
    """Parse the flags the application benchmarks share and set up the run (logging, one torch thread, the cache).

    ``--quick`` (a smoke check), ``--results`` (default: the committed figures), ``--cache`` (default ``cache``;
    with ``--quick`` its ``quick`` sub-folder, so a smoke run never replaces the committed figures' runs) and,
    with ``only``, ``--only NAME ...``.
    """
    import argparse
    import logging

    import torch

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="digits with small budgets (minutes): a smoke check")
    if only:
        parser.add_argument("--only", nargs="*", default=None, help="measure only these settings")
    parser.add_argument("--results", type=Path, default=results,
                        help=f"folder for {name}.json, {name}.md and figures (default: bench/results, the committed figures)")
    parser.add_argument("--cache", type=Path, default=cache, help=f"where the runs go (default: bench/.cache/{name})")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(1)
    if args.quick and args.cache == cache:
        args.cache = cache / "quick"
    args.cache.mkdir(parents=True, exist_ok=True)
    return args
