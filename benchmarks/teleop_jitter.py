"""Loop timing of the real `robot-runtime teleop --sim` process, alone, next to a CPU hog, with and
without cameras (sections 4 and 5).

Run as subprocesses so the figures include everything the CLI does (two simulated buses, safety filter,
camera capture threads).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOG_CODE = "x = 1\nwhile True:\n    x = (x * 1103515245 + 12345) % 2147483648\n"
STARTUP_AND_PARK_S = 30.0
"""Allowance on top of --duration before a stuck run is killed."""


@dataclass(frozen=True)
class TeleopRun:
    label: str
    fps: float
    loop: dict[str, Any] | None
    """LoopStats fields, or None when the process died without writing them."""
    cameras: dict[str, Any] | None
    """CameraSetStats fields when the run had cameras."""
    wall_s: float
    cpu_s: float
    """User + system CPU of the whole teleop process, start-up and parking included."""
    outcome: str


def _teleop_command() -> list[str]:
    """The CLI of this interpreter's environment (a `robot-runtime` on PATH may belong to another)."""
    return [sys.executable, "-m", "apps.cli"]


@contextlib.contextmanager
def cpu_hogs(cpus: Iterable[int]) -> Iterator[list[int]]:
    """One busy-arithmetic process pinned to each given core; all killed on exit whatever happens."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for cpu in cpus:
            procs.append(subprocess.Popen([sys.executable, "-c", HOG_CODE]))
            os.sched_setaffinity(procs[-1].pid, {cpu})
        yield [proc.pid for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def run_teleop(label: str, fps: float, duration_s: float, extra_args: Sequence[str] = ()) -> TeleopRun:
    """One `teleop --sim` run; the child's CPU comes from RUSAGE_CHILDREN around its wait (the hog is not reaped yet)."""
    with tempfile.TemporaryDirectory(prefix="robot-runtime-bench-") as tmp:
        stats_path = Path(tmp) / "stats.json"
        args = [
            *_teleop_command(), "teleop", "--robot", "so100", "--sim", "--duration", f"{duration_s:g}", "--fps", f"{fps:g}",
            "--stats-json", str(stats_path), *extra_args,
        ]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start_s = time.perf_counter()
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=duration_s + STARTUP_AND_PARK_S, check=False)
        except subprocess.TimeoutExpired:  # run() has killed and reaped it
            return TeleopRun(
                label,
                fps,
                None,
                None,
                time.perf_counter() - start_s,
                math.nan,
                f"killed after {duration_s + STARTUP_AND_PARK_S:g} s",
            )
        wall_s = time.perf_counter() - start_s
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        stats = json.loads(stats_path.read_text()) if stats_path.exists() else None
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if stats is None:
        # A crash is a result worth reporting, not a reason to lose the other figures.
        last_line = next((line for line in reversed(done.stderr.splitlines()) if line.strip()), "no output")
        return TeleopRun(label, fps, None, None, wall_s, cpu_s, f"exited {done.returncode} without stats: `{last_line.strip()}`")
    return TeleopRun(label, fps, stats["loop"], stats.get("cameras"), wall_s, cpu_s, str(stats.get("outcome", "?")))
