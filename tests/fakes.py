"""Test doubles shared by several test files."""

from __future__ import annotations


class FakeClock:
    """A clock that only moves when told, so timing and motion in tests are exact and repeatable."""

    def __init__(self, start_s: float = 100.0) -> None:
        self.now_s = start_s

    def __call__(self) -> float:
        return self.now_s

    def advance(self, dt_s: float) -> None:
        self.now_s += dt_s

    sleep = advance
    """Stands in for time.sleep: sleeping is advancing."""
