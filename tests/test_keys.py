"""Keys for recording work in any terminal (over SSH too): cbreak mode on the command's own stdin."""

from __future__ import annotations

import os
import pty
import termios
import time

from robot_runtime.keys import ESTOP, NEXT, RERECORD, STOP, KeyReader, parse


def test_arrows_letters_escape_and_space_map_to_actions() -> None:
    assert parse(b"\x1b[C\x1b[Dq") == [NEXT, RERECORD, STOP]
    assert parse(b"\x1bOC") == [NEXT]
    assert parse(b"nr \x1b") == [NEXT, RERECORD, ESTOP, STOP]
    assert parse(b"xyz\x1b[A") == []  # unknown keys and other arrows do nothing


def _wait_for_keys(reader: KeyReader, count: int) -> list[str]:
    keys: list[str] = []
    deadline = time.monotonic() + 2.0
    while len(keys) < count and time.monotonic() < deadline:
        keys += reader.poll()
        time.sleep(0.01)
    return keys


def test_keys_typed_in_a_terminal_arrive_without_enter_and_the_terminal_is_restored() -> None:
    master, slave = pty.openpty()
    with os.fdopen(slave, "r") as terminal:
        before = termios.tcgetattr(slave)
        with KeyReader(terminal) as reader:
            assert reader.enabled
            assert not termios.tcgetattr(slave)[3] & termios.ICANON  # no line buffering: no Enter needed
            assert reader.poll() == []
            os.write(master, b"\x1b[C")
            os.write(master, b"r")
            assert _wait_for_keys(reader, 2) == [NEXT, RERECORD]
        assert termios.tcgetattr(slave) == before
    os.close(master)


def test_without_a_terminal_there_are_no_keys(tmp_path) -> None:
    with open(tmp_path / "stdin", "w+") as not_a_terminal, KeyReader(not_a_terminal) as reader:
        assert not reader.enabled
        assert reader.poll() == []
