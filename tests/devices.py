"""Simulated devices started as processes of their own, as a user's hardware is: the test plays the
operator through each simulator's console (one command a line, answered `ok`), and runs an interactive
command on a pseudo-terminal, as a person at a terminal does."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

REPLY_TIMEOUT_S = 60.0
"""How long an operator's action may take: far above what it needs, on a loaded machine too."""


def _read_line(fd: int, pending: bytearray, timeout_s: float, what: str) -> str:
    deadline = time.monotonic() + timeout_s
    while b"\n" not in pending:
        remaining_s = deadline - time.monotonic()
        assert remaining_s > 0, f"no answer from {what} within {timeout_s:g} s"
        ready, _, _ = select.select([fd], [], [], remaining_s)
        if ready:
            chunk = os.read(fd, 4096)
            assert chunk, f"{what} ended: {bytes(pending).decode(errors='replace')}"
            pending += chunk
    line, _, rest = bytes(pending).partition(b"\n")
    pending[:] = rest
    return line.decode()


@dataclass
class Simulator:
    """A simulator process: `address` is the first line it printed (a port, a folder), `do` is the operator."""

    process: subprocess.Popen
    address: str
    pending: bytearray

    def do(self, command: str) -> None:
        """One operator action, done when the simulator answers `ok`."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{command}\n".encode())
        self.process.stdin.flush()
        reply = _read_line(self.process.stdout.fileno(), self.pending, REPLY_TIMEOUT_S, f"the simulator ({command})")
        assert reply == "ok", f"{command}: {reply}"


@contextlib.contextmanager
def simulator(module: str, *args: str) -> Iterator[Simulator]:
    """`python -m <module>` until the block ends, when its stdin closes and it stops by itself."""
    # Its stderr (the list of commands, any error) is the test's, shown when the test fails.
    process = subprocess.Popen([sys.executable, "-m", module, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdout is not None and process.stdin is not None
    try:
        pending = bytearray()
        address = _read_line(process.stdout.fileno(), pending, REPLY_TIMEOUT_S, module)
        yield Simulator(process, address, pending)
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            process.stdout.close()


_ESCAPES = re.compile(
    rb"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: cursor, colours, modes
    rb"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC: window title, clipboard
    rb"|\x1bP[^\x1b]*\x1b\\"  # DCS
    rb"|\x1b[()][0-9A-Za-z]|\x1b[@-Z\\-_]"  # character sets, two-byte escapes
)
"""Control sequences (CSI, OSC, DCS, charset and two-byte escapes): what is left is the text shown."""


class Terminal:
    """A command running on a pseudo-terminal of `columns` x `rows`, its screen output read all along
    (a full pty would stop the program), keys typed as a person types them."""

    def __init__(self, argv: list[str], *, columns: int = 200, rows: int = 50) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": str(rows)}
        self.process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
        os.close(slave)
        self._master = master
        self._raw = bytearray()
        self._ended = False
        self._text = ""
        """The text shown so far, control sequences taken out, up to the last sequence that may be incomplete."""
        self._seen = 0
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._master, 65536)
            except OSError:  # EIO: the program ended and the slave closed
                chunk = b""
            with self._changed:
                self._raw += chunk
                self._ended = not chunk
                self._changed.notify_all()
            if not chunk:
                return

    def _shown(self) -> str:
        """Called with the lock held: the text so far, control sequences taken out as they complete."""
        cut = self._raw.rfind(b"\x1b")
        escape = _ESCAPES.match(self._raw, cut) if cut >= 0 else None
        if cut < 0 or self._ended or (escape is not None and escape.end() == len(self._raw)):
            cut = len(self._raw)
        self._text += _ESCAPES.sub(b"", bytes(self._raw[:cut])).decode(errors="replace")
        del self._raw[:cut]
        return self._text

    def expect(self, text: str, timeout_s: float = REPLY_TIMEOUT_S) -> None:
        """Wait until `text` is shown after what earlier expects found."""
        if not self.shows(text, timeout_s):
            ended = " (the program ended)" if self._ended else ""
            raise AssertionError(f"{text!r} not shown within {timeout_s:g} s{ended}: {self.output()[-3000:]}")

    def shows(self, text: str, timeout_s: float) -> bool:
        """Whether `text` is shown, after what earlier expects found, within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while (found := self._shown().find(text, self._seen)) < 0:
                remaining_s = deadline - time.monotonic()
                if remaining_s <= 0 or self._ended:
                    return False
                self._changed.wait(remaining_s)
            self._seen = found + len(text)
            return True

    def output(self) -> str:
        with self._changed:
            return self._shown()

    def press(self, keys: str) -> None:
        os.write(self._master, keys.encode())

    def wait(self, timeout_s: float = REPLY_TIMEOUT_S) -> int:
        returncode = self.process.wait(timeout=timeout_s)
        self._reader.join(timeout=timeout_s)
        return returncode

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=10)
        os.close(self._master)
