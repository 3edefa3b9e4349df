"""Intel RealSense cameras through the vendor SDK: colour (and depth aligned to it) from a device picked
by serial number or from a recording played in its place, each frame stamped on the host's monotonic
clock. pyrealsense2 is imported here only, so setups without a RealSense never load it."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import pyrealsense2 as rs

from cameras.base import Camera, CameraError, CameraFinished, RawFrame
from cameras.config import RealSenseCameraConfig

WAIT_S = 1.0
"""How long one capture waits for a usable frameset before reporting the camera silent."""
RGB_EXPOSURE_UNIT_US = 100.0
"""D400 RGB sensors take `exposure` in units of 100 us; colour from a stereo module (D405) takes microseconds."""
USB_HINT = "check that it is plugged into a USB 3 port with a USB 3 cable (`robot-runtime find-cameras` shows the link)"


class PlaybackEnded(CameraFinished):
    """A recording played with repeat off has no more frames."""


class FramesetSource(Protocol):
    """Where RealSenseCamera gets framesets: a device, a recording, or the SDK's software device."""

    def start(self) -> None: ...

    def wait_for_frames(self, timeout_s: float) -> rs.composite_frame | None:
        """The next frameset, or None if none arrived in time; CameraError once the stream cannot go on."""
        ...

    def stop(self) -> None:
        """Stop streaming; must not raise."""
        ...


class RealSenseCamera(Camera):
    kind = "realsense"

    def __init__(self, name: str, config: RealSenseCameraConfig, source: FramesetSource | None = None) -> None:
        super().__init__(name, config.settings())
        self.config = config
        self._source = source if source is not None else PipelineSource(config)
        self._align = rs.align(rs.stream.color)
        self._delivered = 0
        self._playback_origin: tuple[float, float] | None = None
        """(timestamp in ms, monotonic s) of the first played frame: recorded times are re-based onto it."""

    def describe(self) -> str:
        return (
            f"realsense {self.config.serial}" if self.config.serial is not None else f"realsense playback {self.config.playback}"
        )

    def _open_device(self) -> None:
        try:
            self._source.start()
        except CameraError as exc:
            raise CameraError(f"{self.label}: {exc}") from None
        self._delivered = 0
        self._playback_origin = None

    def _close_device(self) -> None:
        self._source.stop()

    def _capture(self) -> RawFrame:
        deadline_s = time.monotonic() + WAIT_S
        while (remaining_s := deadline_s - time.monotonic()) > 0:
            try:
                frameset = self._source.wait_for_frames(remaining_s)
            except PlaybackEnded as exc:
                raise PlaybackEnded(f"{self.label}: {exc} after {self._delivered} frames") from None
            except CameraError as exc:
                raise CameraError(f"{self.label}: {exc}") from None
            if frameset is None:
                break
            raw = self._frame(frameset)
            if raw is not None:
                self._delivered += 1
                return raw
        hint = "" if self.config.playback is not None else f"; {USB_HINT}"
        raise CameraError(f"{self.label}: no frame within {WAIT_S:g} s{hint}")

    def _frame(self, frameset: rs.composite_frame) -> RawFrame | None:
        """The frame to deliver, or None for a frameset to skip: the SDK splits the first colour/depth
        pair into two one-frame framesets, and a pipeline re-sends the last colour frame with a new depth."""
        arrival_s = time.monotonic()
        colour = frameset.get_color_frame()
        if not colour:
            return None
        number = colour.get_frame_number()
        if number == self._last_number:  # the base class keeps the last stored number
            return None
        depth = None
        if self.config.depth:
            if not frameset.get_depth_frame():
                return None
            aligned = self._align.process(frameset)
            depth = np.array(aligned.get_depth_frame().get_data(), dtype=np.uint16, copy=True)
        image = _rgb(colour)
        if image.shape[:2] != (self.settings.height, self.settings.width):
            raise CameraError(
                f"{self.label}: colour frames are {image.shape[1]}x{image.shape[0]}, the config asks for "
                f"{self.settings.width}x{self.settings.height}: set width and height to match"
            )
        capture_s, clock = self._capture_time(colour, arrival_s)
        return RawFrame(image, capture_s=capture_s, clock=clock, number=number, depth=depth)

    def _capture_time(self, frame: rs.frame, arrival_s: float) -> tuple[float, str]:
        """The frame's timestamp on time.monotonic(), and which clock it came from."""
        timestamp_ms = frame.get_timestamp()
        if self.config.playback is not None:
            # Recorded times belong to another session: keep their spacing, start at the first arrival.
            if self._playback_origin is None:
                self._playback_origin = (timestamp_ms, arrival_s)
            first_ms, origin_s = self._playback_origin
            return origin_s + (timestamp_ms - first_ms) / 1e3, "playback"
        wall_minus_monotonic_s = time.time() - time.monotonic()
        domain = frame.get_frame_timestamp_domain()
        if domain == rs.timestamp_domain.global_time:
            # The device clock translated by the SDK to host wall-clock ms: a true capture time.
            return timestamp_ms / 1e3 - wall_minus_monotonic_s, "device"
        if domain == rs.timestamp_domain.system_time:
            # The SDK stamps host wall-clock ms when the frame reached the host (no hardware timestamp).
            return timestamp_ms / 1e3 - wall_minus_monotonic_s, "arrival"
        # hardware_clock: the device's own clock, whose epoch the host does not know.
        if frame.supports_frame_metadata(rs.frame_metadata_value.time_of_arrival):
            arrival_ms = frame.get_frame_metadata(rs.frame_metadata_value.time_of_arrival)
            return arrival_ms / 1e3 - wall_minus_monotonic_s, "arrival"
        return arrival_s, "arrival"


def _rgb(colour: rs.video_frame) -> np.ndarray:
    pixels = np.asanyarray(colour.get_data())
    fmt = colour.get_profile().format()
    if fmt == rs.format.rgb8:
        return pixels.copy()
    if fmt == rs.format.bgr8:
        return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    raise CameraError(f"colour format {fmt.name} is not supported: stream or record rgb8 or bgr8")


class PipelineSource:
    """Framesets from rs.pipeline: a device by serial number, or a recording played back in its place."""

    def __init__(self, config: RealSenseCameraConfig) -> None:
        self.config = config
        self._context = rs.context()
        self._pipeline: rs.pipeline | None = None
        self._playback: rs.playback | None = None

    def start(self) -> None:
        request = rs.config()
        pipeline = rs.pipeline(self._context)
        if self.config.playback is not None:
            self._playback = self._resolve_playback(request, pipeline, self.config.playback)
        else:
            self._resolve_device(request, pipeline, self._serial)
        try:
            pipeline.start(request)
        except RuntimeError as exc:
            raise CameraError(f"could not start streaming: {exc}; {USB_HINT}") from None
        self._pipeline = pipeline

    def wait_for_frames(self, timeout_s: float) -> rs.composite_frame | None:
        assert self._pipeline is not None, "wait_for_frames before start"
        arrived, frameset = self._pipeline.try_wait_for_frames(max(1, round(timeout_s * 1e3)))
        if arrived:
            return frameset
        if self._playback is not None:
            if self._playback.current_status() == rs.playback_status.stopped:
                # The SDK's reading thread reports "stopped" while it is still stopping the sensors at the
                # end of the file; pause() is queued behind that work and returns once it is done, so the
                # pipeline is not stopped concurrently.
                self._playback.pause()
                raise PlaybackEnded(f"playback of {self.config.playback} ended")
        elif self._serial not in attached_serials(self._context):
            raise CameraError(f"RealSense {self._serial} disconnected while streaming; {USB_HINT}")
        return None

    def stop(self) -> None:
        pipeline, self._pipeline, self._playback = self._pipeline, None, None
        if pipeline is not None:
            with contextlib.suppress(RuntimeError):  # already stopped by the SDK after the device went away
                pipeline.stop()

    @property
    def _serial(self) -> str:
        assert self.config.serial is not None
        return self.config.serial

    def _resolve_device(self, request: rs.config, pipeline: rs.pipeline, serial: str) -> None:
        devices = {d.get_info(rs.camera_info.serial_number): d for d in self._context.query_devices()}
        if not devices:
            raise CameraError(f"no RealSense is attached; {USB_HINT}, and on Linux that Intel's udev rules let you open it")
        if serial not in devices:
            raise CameraError(f"no RealSense with serial {serial} is attached (attached: {', '.join(sorted(devices))})")
        fps = round(self.config.fps)
        request.enable_device(serial)
        request.enable_stream(rs.stream.color, self.config.width, self.config.height, rs.format.rgb8, fps)
        if self.config.depth:
            request.enable_stream(rs.stream.depth, rs.format.z16, fps)
        try:
            profile = request.resolve(pipeline)
        except RuntimeError:
            wanted = f"colour {self.config.width}x{self.config.height} rgb8 at {fps} fps" + (
                " with depth" if self.config.depth else ""
            )
            raise CameraError(
                f"RealSense {serial} cannot stream {wanted}; its colour modes: {', '.join(colour_modes(devices[serial]))}"
            ) from None
        apply_controls(profile.get_device(), self.config)

    def _resolve_playback(self, request: rs.config, pipeline: rs.pipeline, path: Path) -> rs.playback:
        if not path.is_file():
            raise CameraError(f"recording {path} does not exist")
        request.enable_device_from_file(str(path), repeat_playback=False)
        request.enable_stream(rs.stream.color)
        if self.config.depth:
            request.enable_stream(rs.stream.depth)
        try:
            profile = request.resolve(pipeline)
        except RuntimeError as exc:
            needs = "a colour and a depth stream" if self.config.depth else "a colour stream"
            raise CameraError(f"cannot play {path} (a RealSense .bag or .db3 recording with {needs}): {exc}") from None
        colour = profile.get_stream(rs.stream.color).as_video_stream_profile()
        recorded = (colour.width(), colour.height(), colour.fps())
        if recorded != (self.config.width, self.config.height, round(self.config.fps)):
            raise CameraError(
                f"{path} holds colour {recorded[0]}x{recorded[1]} at {recorded[2]} fps: "
                f"set width: {recorded[0]}, height: {recorded[1]}, fps: {recorded[2]} in the camera's config"
            )
        playback = profile.get_device().as_playback()
        # Set before start: the same device is started, so not even the first frame plays at the wrong pace.
        playback.set_real_time(self.config.real_time)
        return playback


def attached_serials(context: rs.context) -> set[str]:
    return {d.get_info(rs.camera_info.serial_number) for d in context.query_devices()}


def colour_modes(device: rs.device) -> list[str]:
    """The rgb8 colour modes a device offers as "640x480@30", largest first."""
    modes = {
        (p.width(), p.height(), p.fps())
        for sensor in device.query_sensors()
        for p in (s.as_video_stream_profile() for s in sensor.get_stream_profiles())
        if p.stream_type() == rs.stream.color and p.format() == rs.format.rgb8
    }
    return [f"{w}x{h}@{fps}" for w, h, fps in sorted(modes, reverse=True)]


def apply_controls(device: rs.device, config: RealSenseCameraConfig) -> None:
    """Set exposure, white balance and hardware sync as configured; an unset exposure or white balance
    turns the auto control back on, so a previous session's manual values do not linger."""
    colour = _sensor_streaming(device, rs.stream.color)
    if config.exposure_us is None:
        _set_if_supported(colour, rs.option.enable_auto_exposure, 1)
    else:
        unit_us = 1.0 if colour.is_depth_sensor() else RGB_EXPOSURE_UNIT_US
        _set(colour, rs.option.enable_auto_exposure, 0, "exposure_us", config.exposure_us)
        _set(colour, rs.option.exposure, config.exposure_us / unit_us, "exposure_us", config.exposure_us, unit=(unit_us, " us"))
    if config.white_balance_k is None:
        _set_if_supported(colour, rs.option.enable_auto_white_balance, 1)
    else:
        _set(colour, rs.option.enable_auto_white_balance, 0, "white_balance_k", config.white_balance_k)
        _set(colour, rs.option.white_balance, config.white_balance_k, "white_balance_k", config.white_balance_k, unit=(1.0, " K"))
    stereo = next((s for s in device.query_sensors() if s.is_depth_sensor()), None)
    if config.inter_cam_sync_mode != 0:
        if stereo is None:
            raise CameraError(
                f"inter_cam_sync_mode={config.inter_cam_sync_mode} needs a depth module with a sync connector; this RealSense "
                "has none"
            )
        _set(stereo, rs.option.inter_cam_sync_mode, config.inter_cam_sync_mode, "inter_cam_sync_mode", config.inter_cam_sync_mode)
    elif stereo is not None:
        _set_if_supported(stereo, rs.option.inter_cam_sync_mode, 0)


def _sensor_streaming(device: rs.device, stream: rs.stream) -> rs.sensor:
    for sensor in device.query_sensors():
        if any(p.stream_type() == stream for p in sensor.get_stream_profiles()):
            return sensor
    raise CameraError(f"this RealSense has no {stream.name} stream")


def _sensor_name(sensor: rs.sensor) -> str:
    return sensor.get_info(rs.camera_info.name) if sensor.supports(rs.camera_info.name) else "sensor"


def _set_if_supported(sensor: rs.sensor, option: rs.option, value: float) -> None:
    if sensor.supports(option) and not sensor.is_option_read_only(option):
        sensor.set_option(option, value)


def _set(
    sensor: rs.sensor, option: rs.option, value: float, field: str, given: float, unit: tuple[float, str] = (1.0, "")
) -> None:
    """Set one control, snapped to its step; CameraError naming the config field when it cannot be."""
    where = f"the {_sensor_name(sensor)} of this RealSense"
    if not sensor.supports(option):
        raise CameraError(
            f"{where} has no {option.name} control, so {field}: {given:g} cannot be applied; remove {field} from the camera's "
            "config"
        )
    allowed = sensor.get_option_range(option)
    if not allowed.min <= value <= allowed.max:
        scale, name = unit
        raise CameraError(
            f"{field}: {given:g} is outside what {where} accepts ({allowed.min * scale:.10g}-{allowed.max * scale:.10g}{name})"
        )
    if allowed.step > 0:
        value = allowed.min + round((value - allowed.min) / allowed.step) * allowed.step
    try:
        sensor.set_option(option, value)
    except RuntimeError as exc:
        raise CameraError(f"{where} refused {field}: {given:g} ({exc})") from None
