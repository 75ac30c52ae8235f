"""Solver and counter subprocesses die with their parent and carry their own limits.

A real ``netinvert bnn count --exact`` is started on a net Ganak cannot count within the test, its
counter child is found in the process table, the parent is killed (SIGKILL: nothing of the parent's
runs; SIGTERM: the CLI's clean interrupt), and the child must be gone within seconds.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netinvert.bnn import child_limits, run_streaming
from netinvert.exceptions import SolverLimitError

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

CLI = "import sys; from netinvert.cli import main; sys.exit(main(sys.argv[1:]))"


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of ``pid``, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    state, ppid = text[text.rindex(")") + 2:].split()[:2]
    return state, int(ppid)


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            st = _stat(int(d.name))
            if st is not None and st[1] == pid and st[0] != "Z":
                out.append(int(d.name))
    return out


def _gone(pid: int, within: float) -> bool:
    """True once ``pid`` no longer runs (gone, or a zombie nobody has reaped yet)."""
    end = time.monotonic() + within
    while True:
        st = _stat(pid)
        if st is None or st[0] in ("Z", "X"):
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.05)


def _limits(pid: int) -> dict[str, tuple[str, str]]:
    rows = {}
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]:
        name, soft, hard = line[:26].strip(), *line[26:].split()[:2]
        rows[name] = (soft, hard)
    return rows


@pytest.fixture
def counting(digits_bnn_run):
    """A running ``netinvert bnn count --exact --seconds 60`` and its counter child's pid."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    parent = subprocess.Popen([sys.executable, "-c", CLI, "bnn", "count", "--classifier", str(digits_bnn_run),
                               "--label", "3", "--exact", "--seconds", "60"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    child = None
    try:
        end = time.monotonic() + 30
        while child is None and time.monotonic() < end and parent.poll() is None:
            kids = _children(parent.pid)
            child = kids[0] if kids else None
            time.sleep(0.05)
        assert child is not None, f"no counter child appeared: {parent.poll()} {parent.stderr.read().decode()}"
        time.sleep(0.3)  # let the child set its group, death signal and limits
        yield parent, child
    finally:
        if parent.poll() is None:
            parent.kill()
        parent.wait()
        parent.stderr.close()
        if child is not None and not _gone(child, 0.0):
            try:
                os.kill(child, signal.SIGKILL)  # only the pid this test found; a failure must not leave it running
            except ProcessLookupError:
                pass


def test_counter_child_dies_when_the_cli_is_sigkilled(counting):
    parent, child = counting
    parent.kill()
    assert _gone(child, 5.0), f"counter {child} outlived its SIGKILLed parent"


def test_counter_child_dies_on_sigterm_and_carries_limits(counting):
    parent, child = counting
    assert os.getpgid(child) == child  # its own process group
    rows = _limits(child)
    assert rows["Max cpu time"] == ("70", "71")  # --seconds 60 plus a 10 s margin; SIGKILL a second later
    soft, hard = rows["Max address space"]
    assert soft == hard != "unlimited" and 8 * 2**30 < int(soft) < 64 * 2**30
    assert rows["Max core file size"][0] == "0"
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(10) == 130
    assert _gone(child, 5.0), f"counter {child} outlived its SIGTERMed parent"


def _spin(seconds: float):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
    yield "done"


def _allocate(gib: float):
    yield len(bytearray(int(gib * 2**30)))


def test_cpu_limit_stops_a_child_and_names_the_limit():
    with pytest.raises(SolverLimitError, match=r"CPU-time limit of 1 s .*SIGXCPU.*raise cpu_seconds"):
        run_streaming(_spin, (30.0,), 20.0, cpu_seconds=1)


def test_memory_limit_stops_a_child():
    with pytest.raises(RuntimeError, match="MemoryError"):
        run_streaming(_allocate, (2.0,), 20.0, memory_gb=0.5)
    assert run_streaming(_allocate, (0.1,), 20.0, memory_gb=0.5)[:2] == ([int(0.1 * 2**30)], True)


def test_limits_follow_the_budget():
    assert child_limits(60.0) == child_limits(60.0, memory_gb=8.0)
    assert child_limits(60.0).cpu_seconds == 70 and child_limits(300.0).cpu_seconds == 330
    assert child_limits(None).cpu_seconds is None and child_limits(5.0, cpu_seconds=math.inf).cpu_seconds is None
    assert child_limits(5.0, memory_gb=math.inf).memory_gb is None
    with pytest.raises(ValueError, match="'memory_gb' parameter"):
        child_limits(5.0, memory_gb=0)
