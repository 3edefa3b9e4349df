"""A simulated camera for `--sim`: a free-running, paced camera that draws the simulated arms as they
are at the moment of capture and stamps that moment and its frame number into the image."""

from __future__ import annotations

import enum
import itertools
import math
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from cameras.base import Camera, CameraError, RawFrame
from cameras.config import SimCameraConfig
from cameras.stamp import Stamp, stamp_height_px, write_stamp

LINK_LENGTHS = (0.30, 0.27, 0.16)
"""Upper arm, forearm, wrist-to-fingertip, as fractions of the image height."""
ARM_COLOURS_RGB = ((230, 120, 40), (40, 140, 230), (80, 190, 90), (200, 70, 170))


@dataclass(frozen=True)
class SceneArm:
    """One simulated arm as a camera sees it: where it is right now, and how to read its values."""

    label: str
    pose: Callable[[], np.ndarray]
    """The arm's values now, in its units."""
    degrees_per_unit: tuple[float, ...]
    """Per value: 1 for degrees, 180/pi for radians, 0 for a value that is no angle (metres, percent)."""
    gripper: tuple[float, float] | None = None
    """The last value's range, closed to open, when the arm has a gripper."""
    tcp: int | None = None
    """Where a Cartesian tool pose starts among the values (x y z in metres, then a rotation vector): the
    arm is drawn reaching for it rather than from joint angles."""
    reach_m: float = 1.0
    """How far from its base a tool pose can be: the drawing's scale."""


class CameraFault(enum.Enum):
    STALL = "stall"
    """Frames stop coming but the device stays open, as a USB camera that hangs."""
    DISCONNECT = "disconnect"
    """The device vanishes and cannot be reopened until the fault is cleared, as an unplugged cable."""


class SimCamera(Camera):
    kind = "sim"

    def __init__(
        self, name: str, config: SimCameraConfig, scene: tuple[SceneArm, ...] = (), *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(name, config.settings(), clock=clock)
        self.config = config
        self.scene = scene
        self._faults: set[CameraFault] = set()
        self._fault_changed = threading.Event()
        self._background = _background(config.width, config.height)
        # Free-running cameras are not in phase with each other or with the loop: a fixed phase per name.
        self._phase_s = (zlib.crc32(name.encode()) % 1000) / 1000 / config.fps
        self._t0_s = 0.0
        self._slot = 0

    def describe(self) -> str:
        return f"sim {self.config.width}x{self.config.height}@{self.config.fps:g}"

    @property
    def faults(self) -> tuple[str, ...]:
        return tuple(f.value for f in CameraFault)

    def inject(self, fault: str) -> None:
        self._faults.add(CameraFault(fault))
        self._fault_changed.set()

    def clear(self) -> None:
        self._faults.clear()
        self._fault_changed.set()

    def _open_device(self) -> None:
        if CameraFault.DISCONNECT in self._faults:
            raise CameraError(f"{self.label}: not found (simulated unplugged cable)")
        self._t0_s = self._clock() + self._phase_s
        self._slot = 0

    def _close_device(self) -> None:
        pass

    def _capture(self) -> RawFrame:
        period_s = 1.0 / self.config.fps
        while True:
            if CameraFault.DISCONNECT in self._faults:
                raise CameraError(f"{self.label}: device lost (simulated unplugged cable)")
            if not self._running():
                raise CameraError(f"{self.label}: closed")
            deadline_s = self._t0_s + self._slot * period_s
            wait_s = deadline_s - self._clock()
            if wait_s > 0:
                self._fault_changed.clear()
                self._fault_changed.wait(min(wait_s, 0.1))
                continue
            if CameraFault.STALL in self._faults:
                self._fault_changed.clear()
                self._fault_changed.wait(0.1)
                continue
            break
        now_s = self._clock()
        number = self._slot
        # A capture thread that fell behind skips the slots it missed, as a device drops frames.
        self._slot = max(self._slot + 1, math.floor((now_s - self._t0_s) / period_s) + 1)
        return RawFrame(self.render(now_s, number), capture_s=now_s, clock="sim", number=number)

    def render(self, capture_s: float, number: int) -> np.ndarray:
        image = self._background.copy()
        height, width = image.shape[:2]
        for index, arm in enumerate(self.scene):
            base = (int(width * (index + 1) / (len(self.scene) + 1)), int(height * 0.92))
            _draw_arm(image, base, _sketch(arm, self.config.view_deg), ARM_COLOURS_RGB[index % len(ARM_COLOURS_RGB)])
        cv2.putText(image, self.name, (8, height - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
        write_stamp(image, Stamp(number=number, capture_us=round(capture_s * 1e6)))
        return image


def _background(width: int, height: int) -> np.ndarray:
    """A sky-to-floor gradient with a floor grid: texture that keeps encoders and viewers honest."""
    rows = np.linspace(0.0, 1.0, height)[:, None]
    sky, floor = np.array([70, 80, 100]), np.array([150, 135, 110])
    image = np.where(rows[..., None] < 0.6, sky * (1 - rows[..., None] * 0.5), floor).astype(np.uint8)
    image = np.ascontiguousarray(np.broadcast_to(image, (height, width, 3)))
    for x in range(0, width, max(8, width // 16)):
        cv2.line(image, (x, int(height * 0.6)), (width // 2 + (x - width // 2) * 2, height), (120, 110, 90), 1)
    image[: stamp_height_px(width)] = 0
    return image


@dataclass(frozen=True)
class _Sketch:
    """An arm in the image plane: link directions from the vertical, clockwise, and how open the gripper is."""

    pan_rad: float
    """About the vertical, seen from the camera: foreshortens the links."""
    angles_rad: tuple[float, ...]
    opening: float
    """0 closed .. 1 open."""


def _sketch(arm: SceneArm, view_deg: float) -> _Sketch:
    values = arm.pose()
    opening = 0.5
    if arm.gripper is not None:
        closed, wide = arm.gripper
        opening = float(np.clip((values[-1] - closed) / (wide - closed), 0.0, 1.0))
    if arm.tcp is not None:
        return _reaching(values[arm.tcp : arm.tcp + 6], arm.reach_m, view_deg, opening)
    angles_deg = [float(v) * k for v, k in zip(values, arm.degrees_per_unit, strict=True) if k]
    pan_rad = math.radians(angles_deg[0] + view_deg)
    bends = [math.radians(a) for a in angles_deg[1 : 1 + len(LINK_LENGTHS)]]
    bends += [0.0] * (len(LINK_LENGTHS) - len(bends))
    return _Sketch(pan_rad, tuple(itertools.accumulate(bends)), opening)


def _reaching(pose: np.ndarray, reach_m: float, view_deg: float, opening: float) -> _Sketch:
    """Upper arm and forearm bent (elbow up) so the wrist is at the tool position, the last link along the
    tool's z axis, all seen from `view_deg` about the vertical."""
    view_rad = math.radians(view_deg)
    scale = sum(LINK_LENGTHS[:2]) / reach_m
    across = (float(pose[0]) * math.cos(view_rad) + float(pose[1]) * math.sin(view_rad)) * scale
    up = float(pose[2]) * scale
    upper, fore = LINK_LENGTHS[:2]
    distance = min(math.hypot(across, up), (upper + fore) * 0.999)
    elbow = math.acos(np.clip((upper**2 + fore**2 - distance**2) / (2 * upper * fore), -1.0, 1.0))
    towards = math.atan2(across, up)  # from the vertical, clockwise as the image shows it
    lean = math.acos(np.clip((upper**2 + distance**2 - fore**2) / (2 * upper * max(distance, 1e-9)), -1.0, 1.0))
    shoulder = towards - lean
    tool_z = Rotation.from_rotvec(pose[3:6]).as_matrix()[:, 2]
    tool_across = tool_z[0] * math.cos(view_rad) + tool_z[1] * math.sin(view_rad)
    wrist = math.atan2(tool_across, tool_z[2])
    return _Sketch(0.0, (shoulder, shoulder + math.pi - elbow, wrist), opening)


def _draw_arm(image: np.ndarray, base: tuple[int, int], sketch: _Sketch, colour: tuple[int, int, int]) -> None:
    """A side view: the links in turn from the base, foreshortened by the pan, then the gripper's fingers."""
    height = image.shape[0]
    x, y = float(base[0]), float(base[1])
    cv2.rectangle(image, (int(x) - 30, int(y)), (int(x) + 30, int(y) + 12), (60, 60, 60), -1)
    points = [(x, y)]
    for length, angle in zip(LINK_LENGTHS, sketch.angles_rad, strict=True):
        x += math.sin(angle) * length * height * math.cos(sketch.pan_rad)
        y -= math.cos(angle) * length * height
        points.append((x, y))
    pixels = [(int(px), int(py)) for px, py in points]
    for start, end in itertools.pairwise(pixels):
        cv2.line(image, start, end, colour, 10, cv2.LINE_AA)
    for point in pixels[:-1]:
        cv2.circle(image, point, 8, (235, 235, 235), -1, cv2.LINE_AA)
    last = sketch.angles_rad[-1]
    tip, reach_px, spread_px = pixels[-1], 0.06 * height, 4 + 14 * sketch.opening
    ahead = (math.sin(last) * math.cos(sketch.pan_rad), -math.cos(last))
    normal = (-ahead[1], ahead[0])
    for side in (-1, 1):
        finger = (
            int(tip[0] + ahead[0] * reach_px + side * normal[0] * spread_px),
            int(tip[1] + ahead[1] * reach_px + side * normal[1] * spread_px),
        )
        cv2.line(image, tip, finger, (235, 235, 235), 5, cv2.LINE_AA)
