"""Test doubles shared by several test files."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable

import numpy as np

from cameras.base import Camera, CameraError, CaptureSettings, Frame, RawFrame


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


class HandFedCamera(Camera):
    """A camera whose frames the test hands over one by one, with the capture times it chooses, so the
    camera set's selection and bookkeeping can be checked exactly. It runs the real capture thread."""

    kind = "hand-fed"

    def __init__(self, name: str, *, max_age_s: float = 0.25, buffer_frames: int = 4, open_timeout_s: float = 1.0) -> None:
        super().__init__(
            name,
            CaptureSettings(
                width=96, height=8, fps=30, max_age_s=max_age_s, buffer_frames=buffer_frames, open_timeout_s=open_timeout_s
            ),
        )
        self._queue: queue.Queue[RawFrame | CameraError] = queue.Queue()

    def describe(self) -> str:
        return "hand-fed"

    def _open_device(self) -> None:
        pass

    def _close_device(self) -> None:
        pass

    def _capture(self) -> RawFrame:
        while self._running():
            try:
                item = self._queue.get(timeout=0.02)
            except queue.Empty:
                continue
            if isinstance(item, CameraError):
                raise item
            return item
        raise CameraError("closed")

    def deliver(self, capture_s: float, number: int | None = None) -> Frame:
        """Hand over one frame and wait until the capture thread has stored it."""
        before = self.health().frames
        self._queue.put(RawFrame(np.zeros((8, 96, 3), np.uint8), capture_s=capture_s, clock="arrival", number=number))
        return self._wait_for(lambda: self.health().frames > before)

    def fail(self, reason: str) -> None:
        """Make the next capture fail as an unplugged device would."""
        self._queue.put(CameraError(reason))

    def _wait_for(self, condition: Callable[[], bool], timeout_s: float = 5.0) -> Frame:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.label}: the capture thread did not take the frame")
            time.sleep(0.001)
        frame = self.latest()
        assert frame is not None
        return frame
