"""OpenCV cameras: UVC webcams through V4L2, and anything FFmpeg opens through FFmpeg (a video file
standing in for a camera, an http:// MJPEG stream, rtsp://). Every OpenCV call that waits is bounded,
so the capture thread can always be joined."""

from __future__ import annotations

import glob
import logging
import math
import os
import time

import cv2

from cameras.base import Camera, CameraError, RawFrame
from cameras.config import OpenCVCameraConfig
from cameras.discovery import fourcc_text

log = logging.getLogger(__name__)

# OpenCV's V4L2 backend waits 10 s (its default) for each frame of a stalled camera, and reads this
# once, on the first V4L2 capture in the process; one second matches the FFmpeg read timeout below.
os.environ.setdefault("OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT", "1")

READ_TIMEOUT_S = 1.0
"""Longest a read may wait for the next frame before the camera counts as lost."""
V4L2_BUFFERS = 2
"""Driver buffers: one being filled while the capture thread decodes the other. With one, frames that
arrive while it decodes are dropped; with more, a capture thread that falls behind reads old frames."""
KERNEL_TIMESTAMP_MAX_AGE_S = 1.0
"""A V4L2 buffer timestamp older than this (or in the future) is not on CLOCK_MONOTONIC: use arrival time."""


def video_devices() -> list[str]:
    """The /dev/video* nodes that exist, in numeric order."""
    return sorted(glob.glob("/dev/video*"), key=lambda path: (len(path), path))


def device_name(path: str) -> str:
    """The path and, for a /dev/v4l/by-id link, the node it points at now."""
    resolved = os.path.realpath(path)
    return path if resolved == path else f"{path} (-> {resolved})"


def processes_holding(path: str, limit: int = 5) -> str | None:
    """The processes with `path` open, as "1234 (guvcview), ...", as far as /proc lets this user see."""
    target = os.path.realpath(path)
    holders = []
    for fd_dir in sorted(glob.glob("/proc/[0-9]*/fd")):
        pid = fd_dir.split("/")[2]
        try:
            if any(os.readlink(os.path.join(fd_dir, fd)) == target for fd in os.listdir(fd_dir)):
                with open(f"/proc/{pid}/comm") as comm:
                    holders.append(f"{pid} ({comm.read().strip()})")
        except OSError:
            continue
    if not holders:
        return None
    return ", ".join(holders[:limit]) + (f" and {len(holders) - limit} more" if len(holders) > limit else "")


class OpenCVCamera(Camera):
    """A camera read through OpenCV. A source that is an int or a /dev/ path (/dev/videoN, or a
    /dev/v4l/by-id/... link that survives replugging) is a V4L2 device: its mode is set and checked
    on open, and frames carry the kernel's capture timestamp. Anything else goes to FFmpeg, which
    delivers the size the source is encoded at; a regular file is played at the configured fps on
    absolute deadlines and loops, so it stands in for a live camera."""

    kind = "opencv"

    def __init__(self, name: str, config: OpenCVCameraConfig) -> None:
        super().__init__(name, config.settings())
        self.config = config
        source = config.source
        self._device_path = f"/dev/video{source}" if isinstance(source, int) else source if source.startswith("/dev/") else None
        self._cap: cv2.VideoCapture | None = None
        self._paced = False
        self._schedule_start_s = 0.0
        self._scheduled_frames = 0

    def describe(self) -> str:
        return f"opencv {self._device_path or self.config.source}"

    # -- open ----------------------------------------------------------------------------------
    def _open_device(self) -> None:
        self._cap = (
            self._open_v4l2(self._device_path) if self._device_path is not None else self._open_ffmpeg(str(self.config.source))
        )
        self._scheduled_frames = 0

    def _open_v4l2(self, path: str) -> cv2.VideoCapture:
        device = device_name(path)
        if not os.path.exists(path):
            present = ", ".join(video_devices()) or "none"
            raise CameraError(
                f"{self.label}: {device} does not exist (video devices present: {present}); check the camera is plugged in, "
                "and `robot-runtime find-cameras` lists cameras with their stable /dev/v4l/by-id paths"
            )
        if not os.access(path, os.R_OK | os.W_OK):
            raise CameraError(
                f"{self.label}: permission denied on {device}; add your user to the 'video' group "
                "(`sudo usermod -aG video $USER`, then log in again)"
            )
        cap = cv2.VideoCapture(os.path.realpath(path), cv2.CAP_V4L2)
        if not cap.isOpened():
            cap.release()
            holders = processes_holding(path)
            busy = (
                f"it is held by {holders}"
                if holders
                else f"another program may hold it (`sudo fuser -v {os.path.realpath(path)}` shows which)"
            )
            raise CameraError(
                f"{self.label}: {device} exists but could not be opened for capture; {busy}, "
                "or it is a camera's metadata node rather than its video node (`robot-runtime find-cameras` lists the capture "
                "nodes)"
            )
        settings = self.settings
        if self.config.fourcc is not None:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*self.config.fourcc))
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, settings.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, settings.height)
        cap.set(cv2.CAP_PROP_FPS, settings.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, V4L2_BUFFERS)
        width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fourcc, fps = fourcc_text(int(cap.get(cv2.CAP_PROP_FOURCC))) or "none", cap.get(cv2.CAP_PROP_FPS)
        asked = f"{settings.width}x{settings.height} {self.config.fourcc or ''}".strip()
        if (width, height) != (settings.width, settings.height):
            cap.release()
            raise CameraError(
                f"{self.label}: asked for {asked} at {settings.fps:g} fps but {device} gives {width}x{height} {fourcc}; "
                f"configure a mode it supports (`v4l2-ctl -d {os.path.realpath(path)} --list-formats-ext` lists them)"
            )
        if self.config.fourcc is not None and fourcc != self.config.fourcc:
            log.warning(
                "%s: asked for %s, the device gives %s (YUYV needs far more USB bandwidth than MJPG)", self.label, asked, fourcc
            )
        if not math.isclose(fps, settings.fps, rel_tol=0.01):
            log.warning("%s: asked for %g fps, the device reports %g fps at %s", self.label, settings.fps, fps, asked)
        return cap

    def _open_ffmpeg(self, source: str) -> cv2.VideoCapture:
        if "://" not in source and not os.path.exists(source):
            raise CameraError(f"{self.label}: no such file {source!r}; check the path (a URL needs its scheme, like http://)")
        timeouts = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(self.settings.open_timeout_s * 1e3),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(READ_TIMEOUT_S * 1e3),
        ]
        cap = cv2.VideoCapture(source, cv2.CAP_FFMPEG, timeouts)
        if not cap.isOpened():
            cap.release()
            what = (
                "a video file FFmpeg can read"
                if os.path.exists(source)
                else "the stream's server is running and reachable at that URL"
            )
            raise CameraError(
                f"{self.label}: could not open {source} within {self.settings.open_timeout_s:g} s; check it is {what}"
            )
        width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if (width, height) != (self.settings.width, self.settings.height):
            cap.release()
            raise CameraError(self._size_mismatch(width, height))
        self._paced = os.path.isfile(source)
        return cap

    def _size_mismatch(self, width: int, height: int) -> str:
        return (
            f"{self.label}: the source delivers {width}x{height} but the config asks for "
            f"{self.settings.width}x{self.settings.height}; set width and height to match (frames are never resized)"
        )

    # -- capture -------------------------------------------------------------------------------
    def _capture(self) -> RawFrame:
        cap = self._cap
        if cap is None:
            raise CameraError(f"{self.label} is not open")
        if self._paced:
            self._wait_for_next_deadline()
        grabbed = cap.grab()
        if not grabbed and self._paced:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            grabbed = cap.grab()
        arrival_s = time.monotonic()
        if not grabbed:
            raise CameraError(self._read_failure())
        kernel_s = cap.get(cv2.CAP_PROP_POS_MSEC) / 1e3 if self._device_path is not None else None
        retrieved, bgr = cap.retrieve()
        if not retrieved or bgr is None:
            raise CameraError(
                f"{self.label}: a frame arrived but could not be decoded (corrupt data); check the cable and USB bandwidth"
            )
        height, width = bgr.shape[:2]
        if (width, height) != (self.settings.width, self.settings.height):
            raise CameraError(self._size_mismatch(width, height))
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if kernel_s is not None and 0.0 <= arrival_s - kernel_s < KERNEL_TIMESTAMP_MAX_AGE_S:
            return RawFrame(rgb, kernel_s, "kernel")
        return RawFrame(rgb, arrival_s, "arrival")

    def _wait_for_next_deadline(self) -> None:
        """Frame k of a file is due at start + k/fps; after falling more than a frame behind (a stalled
        process), the schedule restarts rather than bursting to catch up."""
        period_s = 1.0 / self.settings.fps
        now_s = time.monotonic()
        due_s = self._schedule_start_s + self._scheduled_frames * period_s
        if self._scheduled_frames == 0 or now_s - due_s > period_s:
            self._schedule_start_s, self._scheduled_frames = now_s, 0
        elif due_s > now_s:
            self._stop.wait(due_s - now_s)
        self._scheduled_frames += 1

    def _read_failure(self) -> str:
        source = self.config.source
        if self._device_path is not None:
            if not os.path.exists(self._device_path):
                return (
                    f"{self.label}: {device_name(self._device_path)} disappeared; "
                    "check the cable and that the camera is still plugged in"
                )
            return (
                f"{self.label}: no frame within {READ_TIMEOUT_S:g} s; check the cable and USB bandwidth "
                "(cameras sharing a USB controller; MJPG needs far less than YUYV)"
            )
        if self._paced:
            return f"{self.label}: {source} ended and could not be read again from the start; check it is a complete video file"
        return (
            f"{self.label}: the stream ended or sent nothing for {READ_TIMEOUT_S:g} s; "
            "check the stream's server is running and the network to it"
        )

    def _close_device(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()
