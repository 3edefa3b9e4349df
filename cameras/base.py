"""The camera interface: one capture thread per camera keeps the newest frames, stamped with when they
were captured, so the control tick only ever copies a reference and never waits for a device."""

from __future__ import annotations

import abc
import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Self

import cv2
import numpy as np

log = logging.getLogger(__name__)

ROTATIONS = {0: None, 90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


class CameraError(RuntimeError):
    """A camera could not be opened or stopped delivering; the message names the camera and what to check."""


class CameraFinished(CameraError):
    """A source that ended for good, as a recording played to its end: reported, never reopened."""


class CameraStaleError(CameraError):
    """The newest frame of a camera is older than its maximum age: the camera stalled or died."""


@dataclass(frozen=True)
class Frame:
    """One image as the rest of the runtime sees it: RGB, read-only, with the time it was captured."""

    image: np.ndarray
    """uint8 height x width x 3, RGB, after rotation; never written to."""
    capture_s: float
    """When the image was captured, on the host's `time.monotonic()` clock (the clock ticks use)."""
    arrival_s: float
    """When the capture thread received it (`time.monotonic()`); `arrival_s - capture_s` is transport delay."""
    number: int
    """The device's frame number where it gives one, else a count kept by the capture thread."""
    index: int
    """Position in this camera's sequence of delivered frames since open: gaps here mean frames never selected."""
    clock: str
    """Where `capture_s` came from: "device", "kernel", "sim", "playback" (recorded times re-based onto the
    first frame's arrival) or "arrival" (host time when no better one exists)."""
    depth: np.ndarray | None = None
    """uint16 height x width depth in the device's depth units, aligned to the colour image, if enabled."""


@dataclass(frozen=True)
class CaptureSettings:
    """What every camera backend shares: the mode asked for and how fresh frames must be."""

    width: int
    height: int
    fps: float
    rotation: int = 0
    """Clockwise degrees (0, 90, 180, 270), applied in the capture thread."""
    max_age_s: float = 0.25
    """A tick that finds this camera's newest frame older than this stops with CameraStaleError."""
    buffer_frames: int = 4
    """How many of the newest frames are kept for selection by capture time."""
    open_timeout_s: float = 5.0
    """How long open() waits for the first frame."""

    @property
    def output_size(self) -> tuple[int, int]:
        """(width, height) of delivered images, after rotation."""
        return (self.height, self.width) if self.rotation in (90, 270) else (self.width, self.height)


@dataclass(frozen=True)
class RawFrame:
    """What a backend's `_capture` returns; the base class rotates, counts and stamps the rest."""

    image: np.ndarray
    """uint8 RGB, before rotation."""
    capture_s: float
    clock: str
    number: int | None = None
    depth: np.ndarray | None = None


@dataclass(frozen=True)
class CameraHealth:
    connected: bool
    frames: int
    """Frames delivered since open."""
    achieved_fps: float
    """Delivery rate from the first frame to the newest (NaN until two frames arrived)."""
    device_gaps: int
    """Frames the device numbered but never delivered (skipped frame numbers)."""
    reconnects: int
    last_error: str | None


class Camera(abc.ABC):
    """Backends implement `_open_device`, `_capture` (blocks for at most about a second) and
    `_close_device`; this class runs the capture thread, the ring buffer and reconnection."""

    kind: str = "camera"

    def __init__(self, name: str, settings: CaptureSettings, *, clock: Callable[[], float] = time.monotonic) -> None:
        if settings.rotation not in ROTATIONS:
            raise ValueError(f"camera {name!r}: rotation must be one of {sorted(ROTATIONS)}, got {settings.rotation}")
        self.name = name
        self.settings = settings
        self._clock = clock
        self._ring: collections.deque[Frame] = collections.deque(maxlen=settings.buffer_frames)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._frames = 0
        self._first_capture_s: float | None = None
        self._device_gaps = 0
        self._last_number: int | None = None
        """Number of the last stored frame; None after (re)opening, as a device restarts its count."""
        self._reconnects = 0
        self._connected = False
        self._last_error: str | None = None

    # -- backend hooks -------------------------------------------------------------------------
    @abc.abstractmethod
    def describe(self) -> str:
        """Where the frames come from, for messages: "opencv /dev/video0", "realsense 123456789012"."""

    @abc.abstractmethod
    def _open_device(self) -> None:
        """Open and configure the device; raise CameraError saying what to check."""

    @abc.abstractmethod
    def _capture(self) -> RawFrame:
        """Block until the next frame (at most about a second); raise CameraError if the device failed."""

    @abc.abstractmethod
    def _close_device(self) -> None:
        """Release the device; must not raise."""

    # -- public --------------------------------------------------------------------------------
    @property
    def label(self) -> str:
        return f"camera {self.name!r} ({self.describe()})"

    def open(self) -> None:
        """Open the device, start the capture thread and wait for the first frame."""
        if self._thread is not None:
            raise RuntimeError(f"{self.label} is already open")
        self._open_device()
        self._connected = True
        self._last_number = None
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.name}")
        self._thread.start()
        deadline = self._clock() + self.settings.open_timeout_s
        while self.latest() is None:
            if self._clock() > deadline or self._thread is None or not self._thread.is_alive():
                error = self._last_error or "no frame arrived"
                self.close()
                raise CameraError(f"{self.label}: no frame within {self.settings.open_timeout_s:g} s of opening ({error})")
            time.sleep(0.005)

    def close(self) -> None:
        """Stop and join the capture thread, then release the device. Safe to call twice."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            # A reconnect attempt may be inside a device open, which can take up to open_timeout_s.
            timeout_s = self.settings.open_timeout_s + 2.0
            thread.join(timeout=timeout_s)
            if thread.is_alive():
                # Releasing the device under a thread still inside a driver call can crash the process:
                # the thread releases it itself when the call returns.
                log.error("%s: capture thread did not stop within %.0f s", self.label, timeout_s)
                return
        self._release()

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def latest(self) -> Frame | None:
        with self._lock:
            return self._ring[-1] if self._ring else None

    def buffered(self) -> tuple[Frame, ...]:
        """The newest frames, oldest first."""
        with self._lock:
            return tuple(self._ring)

    def health(self) -> CameraHealth:
        with self._lock:
            frames, first, newest = self._frames, self._first_capture_s, self._ring[-1] if self._ring else None
        fps = float("nan")
        if newest is not None and first is not None and frames > 1 and newest.capture_s > first:
            fps = (frames - 1) / (newest.capture_s - first)
        return CameraHealth(self._connected, frames, fps, self._device_gaps, self._reconnects, self._last_error)

    # -- capture thread ------------------------------------------------------------------------
    def _running(self) -> bool:
        """Capture threads are not daemons (a daemon killed inside a driver call aborts the process), so
        they end themselves when the main thread has finished, even if close() was never called."""
        return not self._stop.is_set() and threading.main_thread().is_alive()

    def _run(self) -> None:
        while self._running():
            try:
                raw = self._capture()
            except CameraFinished as exc:
                self._last_error = str(exc)
                break
            except CameraError as exc:
                if not self._running():
                    break
                self._lost(str(exc))
                self._reconnect()
                continue
            except Exception as exc:  # a backend bug must still be reported as this camera's failure
                log.exception("%s: capture failed", self.label)
                self._lost(f"{type(exc).__name__}: {exc}")
                self._reconnect()
                continue
            self._store(raw)
        self._release()

    def _release(self) -> None:
        with self._lock:
            connected, self._connected = self._connected, False
        if connected:
            self._close_device()

    def _store(self, raw: RawFrame) -> None:
        rotation = ROTATIONS[self.settings.rotation]
        image = raw.image if rotation is None else cv2.rotate(raw.image, rotation)
        depth = raw.depth if rotation is None or raw.depth is None else cv2.rotate(raw.depth, rotation)
        image.flags.writeable = False
        if depth is not None:
            depth.flags.writeable = False
        number = raw.number if raw.number is not None else self._frames
        if self._last_number is not None and number > self._last_number + 1:
            self._device_gaps += number - self._last_number - 1
        self._last_number = number
        frame = Frame(image, raw.capture_s, self._clock(), number, self._frames, raw.clock, depth)
        with self._lock:
            self._ring.append(frame)
            if self._first_capture_s is None:
                self._first_capture_s = raw.capture_s
            self._frames += 1

    def _lost(self, reason: str) -> None:
        self._last_error = reason
        if self._connected:
            log.warning("%s stopped delivering frames: %s; reconnecting", self.label, reason)
            self._release()

    def _reconnect(self) -> None:
        """Retry opening with backoff until it works or the camera is closed."""
        delay_s = 0.1
        while not self._stop.wait(delay_s) and self._running():
            try:
                self._open_device()
            except CameraError as exc:
                self._last_error = str(exc)
                delay_s = min(2 * delay_s, 2.0)
                continue
            self._connected = True
            self._reconnects += 1
            self._last_number = None
            log.warning("%s is back (reconnect %d)", self.label, self._reconnects)
            return
