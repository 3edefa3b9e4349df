"""A RealSense simulated with the SDK's own software device: colour (and depth) frames pushed at a steady
rate with timestamps, frame numbers and metadata, then read through librealsense's matcher, syncer and
align, or written by its recorder. RealSenseCamera and playback are exercised on the real SDK this way,
without a camera attached."""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyrealsense2 as rs

TimestampDomain = Literal["system_time", "global_time", "hardware_clock"]
Render = Callable[[int, float], tuple[np.ndarray, np.ndarray | None]]
"""(frame number, capture time on time.monotonic()) -> (RGB uint8 HxWx3, depth uint16 or None)."""

HORIZONTAL_FOV_DEG = 69.0
"""Both streams see the same field of view (a D435's colour), so depth aligns onto colour one to one."""


@dataclass(frozen=True)
class SoftwareRealSenseSpec:
    width: int = 640
    height: int = 480
    fps: int = 30
    depth: bool = False
    depth_width: int = 320
    depth_height: int = 240
    depth_units_m: float = 0.001
    domain: TimestampDomain = "global_time"
    """system_time and global_time stamp host wall-clock ms; hardware_clock counts ms since construction."""
    serial: str = "000000000001"
    name: str = "Software RealSense"
    controls: bool = True
    """False: a device without exposure, white balance or sync controls."""


@dataclass(frozen=True)
class PushedFrame:
    number: int
    capture_s: float
    """When the frame was captured, on time.monotonic()."""
    timestamp_ms: float
    """The frame timestamp as pushed, in the spec's domain."""


class SoftwareRealSense:
    """A FramesetSource (start / wait_for_frames / stop) streaming what `render` draws, with controls
    like a D435's: exposure and white balance on the RGB sensor, hardware sync on the stereo module."""

    def __init__(self, spec: SoftwareRealSenseSpec, render: Render) -> None:
        self.spec = spec
        self.render = render
        self.device = rs.software_device()
        self.device.register_info(rs.camera_info.name, spec.name)
        self.device.register_info(rs.camera_info.serial_number, spec.serial)
        self._streams: list[tuple[rs.software_sensor, rs.video_stream_profile]] = []
        colour_sensor = self.device.add_sensor("RGB Camera")
        colour = colour_sensor.add_video_stream(
            _video_stream(rs.stream.color, rs.format.rgb8, 3, spec.width, spec.height, spec.fps, uid=1)
        ).as_video_stream_profile()
        if spec.controls:
            _add_control(colour_sensor, rs.option.enable_auto_exposure, 0, 1, 1, 1)
            _add_control(colour_sensor, rs.option.exposure, 1, 10000, 1, 156)
            _add_control(colour_sensor, rs.option.enable_auto_white_balance, 0, 1, 1, 1)
            _add_control(colour_sensor, rs.option.white_balance, 2800, 6500, 10, 4600)
        if spec.depth:
            depth_sensor = self.device.add_sensor("Stereo Module")
            depth = depth_sensor.add_video_stream(
                _video_stream(rs.stream.depth, rs.format.z16, 2, spec.depth_width, spec.depth_height, spec.fps, uid=0)
            ).as_video_stream_profile()
            depth_sensor.add_read_only_option(rs.option.depth_units, spec.depth_units_m)
            if spec.controls:
                _add_control(depth_sensor, rs.option.inter_cam_sync_mode, 0, 2, 1, 0)
            identity = rs.extrinsics()
            identity.rotation = [1, 0, 0, 0, 1, 0, 0, 0, 1]
            identity.translation = [0, 0, 0]
            depth.register_extrinsics_to(colour, identity)
            self._streams.append((depth_sensor, depth))
        self._streams.append((colour_sensor, colour))
        self.device.create_matcher(rs.matchers.dlr_c if spec.depth else rs.matchers.default)
        self._clock_zero_s = time.monotonic()
        self._pushed: list[PushedFrame] = []
        self._lock = threading.Lock()
        self._syncer: rs.syncer | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._done = threading.Event()

    @property
    def pushed(self) -> tuple[PushedFrame, ...]:
        """Every frame pushed since construction, in order."""
        with self._lock:
            return tuple(self._pushed)

    def start(self, frames: int | None = None) -> None:
        """Open the sensors and push frames at `spec.fps` (only `frames` of them if given)."""
        if self._thread is not None:
            raise RuntimeError("software RealSense is already streaming")
        self._syncer = rs.syncer()
        for sensor, profile in self._streams:
            sensor.open(profile)
            sensor.start(self._syncer)
        self._stop.clear()
        self._done.clear()
        self._thread = threading.Thread(target=self._push_paced, args=(frames,), name=f"software-realsense-{self.spec.serial}")
        self._thread.start()

    def wait_for_frames(self, timeout_s: float) -> rs.composite_frame | None:
        syncer = self._syncer
        if syncer is None:
            return None
        arrived, frameset = syncer.try_wait_for_frames(max(1, round(timeout_s * 1e3)))
        return frameset if arrived else None

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        for sensor, _ in self._streams:
            with contextlib.suppress(RuntimeError):  # was not streaming
                sensor.stop()
                sensor.close()
        self._syncer = None

    def record(self, path: Path, frames: int) -> tuple[PushedFrame, ...]:
        """Stream `frames` frames into a librealsense recording at `path` (SDK 2.59 writes ROS2 .db3)
        and return what was pushed; the file is complete when this returns."""
        first = len(self.pushed)
        recorder = rs.recorder(str(path), self.device)
        try:
            self.start(frames)
            if not self._done.wait(timeout=4 * frames / self.spec.fps + 5):
                raise RuntimeError(f"recording {path}: {frames} frames were not pushed in time")
        finally:
            self.stop()
            del recorder  # releasing the recorder closes the file
        return self.pushed[first:]

    def _push_paced(self, frames: int | None) -> None:
        """Push on absolute deadlines; a late thread skips the slots it missed, as a device drops frames."""
        period_s = 1.0 / self.spec.fps
        start_s = time.monotonic()
        slot = pushed = 0
        while frames is None or pushed < frames:
            if self._stop.wait(max(0.0, start_s + slot * period_s - time.monotonic())):
                return
            self._push(slot)
            pushed += 1
            slot = max(slot + 1, math.floor((time.monotonic() - start_s) / period_s) + 1)
        self._done.set()

    def _push(self, number: int) -> None:
        capture_s, wall_s = time.monotonic(), time.time()
        device_clock_s = capture_s - self._clock_zero_s if self.spec.domain == "hardware_clock" else wall_s
        timestamp_ms = device_clock_s * 1e3
        image, depth = self.render(number, capture_s)
        pixels_of = {rs.stream.color: _checked(image, (self.spec.height, self.spec.width, 3), np.uint8, "image")}
        if self.spec.depth:
            pixels_of[rs.stream.depth] = _checked(depth, (self.spec.depth_height, self.spec.depth_width), np.uint16, "depth")
        with self._lock:  # listed before the SDK gets it: a reader may hold the frame before this thread runs again
            self._pushed.append(PushedFrame(number, capture_s, timestamp_ms))
        for sensor, profile in self._streams:
            pixels = pixels_of[profile.stream_type()]
            bpp = pixels.strides[1]
            sensor.set_metadata(rs.frame_metadata_value.frame_counter, number)
            sensor.set_metadata(rs.frame_metadata_value.frame_timestamp, round(timestamp_ms * 1e3))
            sensor.set_metadata(rs.frame_metadata_value.time_of_arrival, round(time.time() * 1e3))
            frame = rs.software_video_frame()
            frame.pixels = pixels
            frame.bpp = bpp
            frame.stride = pixels.shape[1] * bpp
            frame.timestamp = timestamp_ms
            frame.domain = getattr(rs.timestamp_domain, self.spec.domain)
            frame.frame_number = number
            frame.profile = profile
            sensor.on_video_frame(frame)


def _video_stream(stream: rs.stream, fmt: rs.format, bpp: int, width: int, height: int, fps: int, uid: int) -> rs.video_stream:
    focal_px = width / 2 / math.tan(math.radians(HORIZONTAL_FOV_DEG / 2))
    intrinsics = rs.intrinsics()
    intrinsics.width, intrinsics.height = width, height
    intrinsics.ppx, intrinsics.ppy = width / 2, height / 2
    intrinsics.fx = intrinsics.fy = focal_px
    intrinsics.model = rs.distortion.none
    intrinsics.coeffs = [0.0] * 5
    video = rs.video_stream()
    video.type, video.index, video.uid = stream, 0, uid
    video.width, video.height, video.fps, video.bpp, video.fmt = width, height, fps, bpp, fmt
    video.intrinsics = intrinsics
    return video


def _add_control(sensor: rs.software_sensor, option: rs.option, low: float, high: float, step: float, default: float) -> None:
    # Set by attribute: in pyrealsense2 2.59.1 option_range(min, max, step, default) swaps step and default.
    allowed = rs.option_range()
    allowed.min, allowed.max, allowed.step, allowed.default = low, high, step, default
    sensor.add_option(option, allowed, True)


def _checked(pixels: np.ndarray | None, shape: tuple[int, ...], dtype: type, what: str) -> np.ndarray:
    if pixels is None or pixels.shape != shape or pixels.dtype != dtype:
        got = "None" if pixels is None else f"{pixels.dtype} {pixels.shape}"
        raise ValueError(f"render returned {what} {got}, expected {np.dtype(dtype)} {shape}")
    return np.ascontiguousarray(pixels)
