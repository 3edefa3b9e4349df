"""The operator's console of a simulated device running as its own process (a bench of motors, a USB
bench): one command a line on stdin, each answered on stdout with `ok` once done or `error: <what is
wrong>`, so a person or a test script plays the hands that move joints, swap motors or pull cables, and
knows when each action is done. The replies follow robot_runtime.sim_serve's, and so does the end: the
end of a pipe or socket on stdin stops the device (the program that drove it has gone); the end of any
other stdin (a terminal, /dev/null) changes nothing, so a device run in the background keeps serving."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TextIO


@dataclass(frozen=True)
class Command:
    run: Callable[..., None]
    """Called with the command's words after its name; raises ValueError (or TimeoutError) to refuse."""
    help: str
    args: tuple[str, ...] = ()
    """The argument names, for the usage line."""


def answer(commands: Mapping[str, Command], line: str) -> str | None:
    """Run one command line; the reply to print, None for a blank line."""
    words = line.split()
    if not words:
        return None
    name, args = words[0], words[1:]
    command = commands.get(name)
    if command is None:
        return f"error: unknown command {name!r} (commands: {', '.join(commands)})"
    if len(args) != len(command.args):
        return f"error: usage: {' '.join((name, *command.args))}"
    try:
        command.run(*args)
    except (ValueError, TimeoutError) as exc:
        return f"error: {exc}"
    return "ok"


def serve(address: str, commands: Mapping[str, Command], lines: TextIO = sys.stdin, out: TextIO = sys.stdout) -> None:
    """Print where clients find the device (the first line on stdout), then answer commands until Ctrl-C,
    SIGTERM or, when stdin is a pipe or socket, its end. Call from the main thread."""
    print(address, file=out, flush=True)
    print("commands, one a line:", file=sys.stderr)
    for name, command in commands.items():
        print(f"  {' '.join((name, *command.args))}: {command.help}", file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGTTIN, signal.SIG_IGN)  # a background read of the terminal fails instead of stopping us
    driven = is_pipe(lines)
    ended = threading.Event()

    def answer_all() -> None:
        try:
            for line in lines:
                reply = answer(commands, line)
                if reply is not None:
                    print(reply, file=out, flush=True)
        except OSError as exc:  # EIO: a terminal this process runs in the background of
            print(f"stdin is not readable ({exc}): no commands; serving until Ctrl-C or SIGTERM", file=sys.stderr, flush=True)
        if driven:
            ended.set()

    threading.Thread(target=answer_all, name="sim-console", daemon=True).start()
    with contextlib.suppress(KeyboardInterrupt):
        ended.wait()


def is_pipe(stream: TextIO) -> bool:
    """Whether a program drives this stream (a pipe or socket), so its end means that program has gone."""
    try:
        mode = os.fstat(stream.fileno()).st_mode
    except (OSError, ValueError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def interrupt(signum: int, frame: object) -> None:
    """A SIGTERM handler: take the Ctrl-C path, so `with` blocks stop the simulated hardware."""
    raise KeyboardInterrupt


def stop_process(process: subprocess.Popen[str], timeout_s: float) -> None:
    """Stop a simulator process as a service manager does: SIGTERM, then SIGKILL if it is still there after
    `timeout_s`; then close its command channel (a broken pipe there only means it had stopped reading)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()
