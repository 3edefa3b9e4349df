"""Camera entries of a robot config (`cameras:` in configs/robots/*.yaml), validated strictly, and the
factory that turns one into a Camera. Backends are imported only when used, so a setup without
RealSense cameras never loads pyrealsense2."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cameras.base import Camera, CaptureSettings


class CameraConfigBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    width: int = Field(640, gt=0, le=8192)
    height: int = Field(480, gt=0, le=8192)
    fps: float = Field(30.0, gt=0, le=1000)
    rotation: Literal[0, 90, 180, 270] = 0
    """Clockwise degrees, applied before anything else sees the image."""
    max_age_ms: float = Field(250.0, gt=0)
    """A tick that finds this camera's newest frame older than this stops with an error naming it."""
    buffer_frames: int = Field(4, ge=1, le=1024)
    open_timeout_s: float = Field(5.0, gt=0)

    def settings(self) -> CaptureSettings:
        return CaptureSettings(
            width=self.width,
            height=self.height,
            fps=self.fps,
            rotation=self.rotation,
            max_age_s=self.max_age_ms / 1e3,
            buffer_frames=self.buffer_frames,
            open_timeout_s=self.open_timeout_s,
        )


class OpenCVCameraConfig(CameraConfigBase):
    """A UVC webcam (index, /dev/videoN or /dev/v4l/by-id/... path) or any source OpenCV's FFmpeg opens
    (a video file, an http:// MJPEG stream, rtsp://)."""

    type: Literal["opencv"]
    source: int | str
    fourcc: str | None = "MJPG"
    """Pixel format asked of a V4L2 device; MJPG lets USB 2 carry 640x480 at 30 fps. None keeps the device's."""

    @field_validator("fourcc")
    @classmethod
    def _four_characters(cls, value: str | None) -> str | None:
        if value is not None and len(value) != 4:
            raise ValueError(f"fourcc must be four characters like 'MJPG' or 'YUYV', got {value!r}")
        return value


class RealSenseCameraConfig(CameraConfigBase):
    """An Intel RealSense by serial number, or a recording of one played back in its place."""

    type: Literal["realsense"]
    serial: str | None = None
    playback: Path | None = None
    """A file recorded with the RealSense SDK (.bag or .db3) used instead of a device."""
    real_time: bool = True
    """Playback at the recorded pace (True) or as fast as frames are consumed (False)."""
    depth: bool = False
    """Also stream depth, aligned to the colour image."""
    exposure_us: float | None = Field(None, gt=0)
    """Manual colour exposure; None keeps auto exposure."""
    white_balance_k: float | None = Field(None, gt=0)
    """Manual white balance; None keeps auto white balance."""
    inter_cam_sync_mode: Literal[0, 1, 2] = 0
    """Hardware sync between RealSenses: 0 off, 1 master, 2 slave (needs the sync cable)."""

    @model_validator(mode="after")
    def _one_source(self) -> RealSenseCameraConfig:
        if (self.serial is None) == (self.playback is None):
            raise ValueError(
                "give exactly one of 'serial' (a device; `robot-runtime find-cameras` lists them) or 'playback' (a recorded file)"
            )
        return self


class SimCameraConfig(CameraConfigBase):
    """A synthetic view of the simulated arms with its capture time and frame number stamped in the image."""

    type: Literal["sim"]
    view_deg: float = 0.0
    """Azimuth the scene is viewed from."""


CameraConfig = Annotated[OpenCVCameraConfig | RealSenseCameraConfig | SimCameraConfig, Field(discriminator="type")]

BACKENDS = {
    "opencv": "cameras.opencv:OpenCVCamera",
    "realsense": "cameras.realsense:RealSenseCamera",
    "sim": "cameras.sim:SimCamera",
}


def camera_class(kind: str) -> Callable[[str, OpenCVCameraConfig | RealSenseCameraConfig | SimCameraConfig], Camera]:
    """The backend's class; every backend is built from (name, its config entry)."""
    module, _, cls = BACKENDS[kind].partition(":")
    return getattr(importlib.import_module(module), cls)


def build_camera(name: str, config: OpenCVCameraConfig | RealSenseCameraConfig | SimCameraConfig) -> Camera:
    """An unopened camera for this entry; every backend takes (name, config)."""
    return camera_class(config.type)(name, config)


def as_simulated(config: OpenCVCameraConfig | RealSenseCameraConfig | SimCameraConfig, view_deg: float) -> SimCameraConfig:
    """The stand-in `--sim` uses for a configured camera: same mode, rotation and freshness rules."""
    shared = config.model_dump(include=set(CameraConfigBase.model_fields))
    return SimCameraConfig(type="sim", view_deg=view_deg, **shared)
