"""The one machine record every benchmark writes beside its figures."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch



def cpu_model(default: str = "unknown CPU") -> str:
    """The CPU's model name from /proc/cpuinfo, or ``default`` where that cannot be read."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or default


def machine_record(device: str | torch.device = "cpu") -> dict[str, Any]:
    """CPU model, cores, torch threads, load averages, torch and Python versions, and the device.

    Call it when the measurement ends, so the load is the one the figures were taken under.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    device = torch.device(device)
    return {
        "cpu": cpu_model(),
        "cores": cores,
        "threads": torch.get_num_threads(),
        "load_avg_1_5_15": [round(v, 2) for v in os.getloadavg()],
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    }


def commit_record() -> dict[str, Any]:
    """The commit measured (``sha``) and whether tracked files differed from it (``dirty``)."""
    import subprocess

    repo = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False).stdout.strip()

    return {"sha": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
