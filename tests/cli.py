"""Running the robot-runtime command as a user does: its own process, stdin not a terminal."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

WIDE = {**os.environ, "COLUMNS": "400"}
"""rich wraps output at the terminal's width; wide lines keep each message on one line, to match it whole."""


def robot_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "apps.cli", *args]


def run_cli(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(robot_cli(*args), capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL, env=WIDE)


@dataclass
class ServedPolicy:
    """A running `robot-runtime serve-policy`: its process, the line it announced itself with, its port."""

    process: subprocess.Popen
    announcement: str
    port: int

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def stop(self) -> tuple[int, str]:
        """SIGTERM, as a service manager stops it: (exit code, the rest of its stderr)."""
        self.process.send_signal(signal.SIGTERM)
        _, stderr = self.process.communicate(timeout=10)
        return self.process.returncode, stderr


@contextlib.contextmanager
def serve_policy(*args: str) -> Iterator[ServedPolicy]:
    """`robot-runtime serve-policy` on a free port, once it says it listens."""
    process = subprocess.Popen(robot_cli("serve-policy", "--host", "127.0.0.1", "--port", "0", *args), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=WIDE)
    assert process.stderr is not None
    try:
        line = process.stderr.readline()
        announced = re.search(r" on ws://127\.0\.0\.1:(\d+): Ctrl-C to stop$", line.rstrip())
        assert announced, f"no announcement: {line}{process.stderr.read() if process.poll() is not None else ''}"
        yield ServedPolicy(process, line, int(announced[1]))
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)
