"""Running the robot-runtime command as a user does: its own process, stdin not a terminal."""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

WIDE = {**os.environ, "COLUMNS": "400"}
"""rich wraps output at the terminal's width; wide lines keep each message on one line, to match it whole."""


def robot_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "apps.cli", *args]


def run_cli(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        robot_cli(*args), check=False, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL, env=WIDE
    )


def read_until(process: subprocess.Popen, text: str, timeout_s: float = 30) -> str:
    """The process's stderr up to and including `text`, read from the descriptor itself: select() cannot
    see lines a file object has already buffered, so a readline() loop on it can miss output that came together."""
    assert process.stderr is not None
    fd = process.stderr.fileno()
    seen = b""
    deadline = time.monotonic() + timeout_s
    while text.encode() not in seen:
        remaining_s = deadline - time.monotonic()
        assert remaining_s > 0, f"no {text!r} within {timeout_s:g} s in: {seen.decode(errors='replace')}"
        ready, _, _ = select.select([fd], [], [], min(remaining_s, 0.5))
        if ready:
            chunk = os.read(fd, 65536)
            assert chunk, f"the process ended before {text!r}: {seen.decode(errors='replace')}"
            seen += chunk
    return seen.decode(errors="replace")


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
    command = robot_cli("serve-policy", "--host", "127.0.0.1", "--port", "0", *args)
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=WIDE
    )
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
