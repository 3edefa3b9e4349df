"""The synchronised camera set a tick reads from: one frame per camera picked by capture time, a named
error for a stale camera, and the statistics that make timing honest (age, skew, drops, reuse)."""

from __future__ import annotations

import array
import logging
import math
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Literal, Self

import numpy as np

from cameras.base import Camera, CameraError, CameraStaleError, Frame

log = logging.getLogger(__name__)

Selection = Literal["newest", "nearest"]


@dataclass(frozen=True)
class CameraStats:
    name: str
    source: str
    frames_delivered: int
    achieved_fps: float
    age_p50_ms: float
    age_p99_ms: float
    """Tick time minus the selected frame's capture time."""
    dropped: int
    """Frames the camera delivered that no tick selected."""
    reused: int
    """Ticks that got the same frame as the tick before."""
    device_gaps: int
    """Frame numbers the device skipped (frames lost before they reached the host)."""
    reconnects: int
    last_error: str | None


@dataclass(frozen=True)
class CameraSetStats:
    cameras: tuple[CameraStats, ...]
    ticks: int
    skew_p50_ms: float
    """Spread of capture times across cameras within one tick (newest minus oldest)."""
    skew_p99_ms: float
    skew_max_ms: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class _Track:
    """What the set remembers of one camera across ticks."""

    def __init__(self) -> None:
        self.ages_s = array.array("d")
        self.last_index: int | None = None
        self.dropped = 0
        self.reused = 0


class CameraSet(Mapping[str, Camera]):
    """`with CameraSet(cameras) as cams: frames = cams.frames_at(t)` - never blocks on a device."""

    def __init__(self, cameras: Mapping[str, Camera], selection: Selection = "newest") -> None:
        if selection not in ("newest", "nearest"):
            raise ValueError(f"selection must be 'newest' or 'nearest', got {selection!r}")
        self._cameras = dict(cameras)
        self.selection = selection
        self._tracks = {name: _Track() for name in self._cameras}
        self._skews_s = array.array("d")
        self._ticks = 0

    def __getitem__(self, name: str) -> Camera:
        return self._cameras[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._cameras)

    def __len__(self) -> int:
        return len(self._cameras)

    def open(self) -> None:
        """Open every camera and wait for each one's first frame; on failure close those already open."""
        opened: list[Camera] = []
        try:
            for camera in self._cameras.values():
                camera.open()
                opened.append(camera)
        except BaseException:
            for camera in opened:
                camera.close()
            raise

    def close(self) -> None:
        """Stop every capture thread and wait for it, so none outlives the run."""
        for camera in self._cameras.values():
            try:
                camera.close()
            except Exception:  # one camera failing to release must not keep the others open
                log.exception("%s did not close cleanly", camera.label)

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def frames_at(self, t_s: float) -> dict[str, Frame]:
        """One frame per camera for a tick at `t_s` (monotonic seconds). Raises CameraStaleError naming
        the first camera whose chosen frame is older than its maximum age."""
        frames: dict[str, Frame] = {}
        for name, camera in self._cameras.items():
            frame = self._select(camera, t_s)
            age_s = t_s - frame.capture_s
            if age_s > camera.settings.max_age_s:
                raise CameraStaleError(_stale_message(camera, age_s))
            self._account(self._tracks[name], frame, age_s)
            frames[name] = frame
        if len(frames) > 1:
            captures = [f.capture_s for f in frames.values()]
            self._skews_s.append(max(captures) - min(captures))
        self._ticks += 1
        return frames

    def _select(self, camera: Camera, t_s: float) -> Frame:
        if self.selection == "newest":
            frame = camera.latest()
        else:
            frame = min(camera.buffered(), key=lambda f: abs(f.capture_s - t_s), default=None)
        if frame is None:
            raise CameraError(f"{camera.label} has delivered no frame (was it opened?)")
        return frame

    @staticmethod
    def _account(track: _Track, frame: Frame, age_s: float) -> None:
        track.ages_s.append(age_s)
        if track.last_index is not None:
            if frame.index == track.last_index:
                track.reused += 1
            elif frame.index > track.last_index:
                track.dropped += frame.index - track.last_index - 1
        track.last_index = frame.index if track.last_index is None else max(track.last_index, frame.index)

    def stats(self) -> CameraSetStats:
        cameras = []
        for name, camera in self._cameras.items():
            track, health = self._tracks[name], camera.health()
            ages = np.frombuffer(track.ages_s, dtype=np.float64) if len(track.ages_s) else np.empty(0)
            cameras.append(
                CameraStats(
                    name=name,
                    source=camera.describe(),
                    frames_delivered=health.frames,
                    achieved_fps=health.achieved_fps,
                    age_p50_ms=_percentile_ms(ages, 50),
                    age_p99_ms=_percentile_ms(ages, 99),
                    dropped=track.dropped,
                    reused=track.reused,
                    device_gaps=health.device_gaps,
                    reconnects=health.reconnects,
                    last_error=health.last_error,
                )
            )
        skews = np.frombuffer(self._skews_s, dtype=np.float64) if len(self._skews_s) else np.empty(0)
        return CameraSetStats(
            cameras=tuple(cameras),
            ticks=self._ticks,
            skew_p50_ms=_percentile_ms(skews, 50),
            skew_p99_ms=_percentile_ms(skews, 99),
            skew_max_ms=float(skews.max() * 1e3) if len(skews) else math.nan,
        )


def _percentile_ms(values_s: np.ndarray, q: float) -> float:
    return float(np.percentile(values_s, q) * 1e3) if len(values_s) else math.nan


def _stale_message(camera: Camera, age_s: float) -> str:
    health = camera.health()
    state = "connected but not delivering (stalled)" if health.connected else "disconnected"
    cause = f"; last error: {health.last_error.removeprefix(camera.label + ': ')}" if health.last_error else ""
    return (
        f"{camera.label}: newest frame is {age_s * 1e3:.0f} ms old, more than max_age_ms "
        f"{camera.settings.max_age_s * 1e3:g}; the camera is {state}{cause}. "
        "Check its cable and USB port (a USB 3 port for RealSense), that no other program uses it, "
        "and `robot-runtime find-cameras`"
    )
