"""Running the robot-runtime command as a user does: its own process, stdin not a terminal."""

from __future__ import annotations

import os
import subprocess
import sys

WIDE = {**os.environ, "COLUMNS": "400"}
"""rich wraps output at the terminal's width; wide lines keep each message on one line, to match it whole."""


def robot_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "apps.cli", *args]


def run_cli(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(robot_cli(*args), capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL, env=WIDE)
