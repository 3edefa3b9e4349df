"""Single key presses from the terminal the command runs in, without Enter and without a display server:
stdin switches to cbreak mode (Ctrl-C still interrupts), so it works in any terminal, over SSH and in
tmux. When stdin is not a terminal there are no keys and commands run unattended."""

from __future__ import annotations

import os
import queue
import select
import sys
import termios
import threading
import tty
from typing import IO, Self

from robot_runtime.queues import drain

NEXT, RERECORD, STOP, ESTOP = "next", "rerecord", "stop", "estop"
_SEQUENCES = {
    b"\x1b[C": NEXT,  # right arrow
    b"\x1bOC": NEXT,
    b"\x1b[D": RERECORD,  # left arrow
    b"\x1bOD": RERECORD,
    b"n": NEXT,
    b" ": ESTOP,  # the biggest key, for a hurried hand
    b"r": RERECORD,
    b"q": STOP,
    b"\x1b": STOP,  # escape on its own
}
HELP = "keys: → or n = next, ← or r = re-record, Esc or q = stop, space = e-stop"


def parse(data: bytes) -> list[str]:
    """Key names in a burst of terminal input; unknown keys and sequences are ignored."""
    keys = []
    i = 0
    while i < len(data):
        length = 3 if data[i : i + 1] == b"\x1b" and data[i + 1 : i + 2] in (b"[", b"O") else 1
        key = _SEQUENCES.get(data[i : i + length])
        if key is not None:
            keys.append(key)
        i += length
    return keys


class KeyReader:
    """`with KeyReader() as keys:` then `keys.poll()` from the control tick; it never blocks."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream if stream is not None else sys.stdin
        self._fd = self._stream.fileno() if self._stream is not None else -1
        self.enabled = self._fd >= 0 and os.isatty(self._fd)
        self._keys: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._saved: list | None = None

    def __enter__(self) -> Self:
        if self.enabled:
            self._saved = termios.tcgetattr(self._fd)
            tty.setcbreak(self._fd)
            self._thread = threading.Thread(target=self._read, name="keys", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        if self._saved is not None:
            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)

    def poll(self) -> list[str]:
        return drain(self._keys)

    def _read(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._fd], [], [], 0.1)
            if not ready:
                continue
            try:
                data = os.read(self._fd, 64)
            except OSError:
                return
            if not data:
                return
            for key in parse(data):
                self._keys.put(key)
