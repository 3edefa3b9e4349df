"""What cameras are attached: UVC devices from sysfs and V4L2 (with the modes they capture in) and
RealSenses from the SDK, each with the config entry that would use it."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import os
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SYSFS_VIDEO = Path("/sys/class/video4linux")
DEV = Path("/dev")
INTEL_USB_VENDOR = "8086"
PREFERRED_FOURCCS = ("MJPG", "YUYV")
"""MJPG first: it lets one USB 2 bus carry several 640x480 cameras at 30 fps (the opencv backend's default too)."""
PREFERRED_SIZE = (640, 480)
PREFERRED_FPS = 30.0


@dataclass(frozen=True)
class CaptureMode:
    fourcc: str
    width: int
    height: int
    fps: tuple[float, ...]
    """Frame rates offered, fastest first; with `fps_range` the fastest and slowest of a continuous range."""
    fps_range: bool = False


@dataclass(frozen=True)
class UVCDevice:
    node: str
    """/dev/videoN."""
    name: str
    by_id: tuple[str, ...] = ()
    """/dev/v4l/by-id links: stable across replugging and reboots (the best `source`)."""
    by_path: tuple[str, ...] = ()
    """/dev/v4l/by-path links: stable while the camera stays in the same USB port."""
    usb_id: str | None = None
    """vendor:product, e.g. 046d:0825."""
    usb_speed_mbps: int | None = None
    capture: bool | None = None
    """Whether the node captures video; UVC cameras add a metadata-only node next to each capture node.
    None when the node could not be queried (see `error`)."""
    modes: tuple[CaptureMode, ...] = ()
    error: str | None = None

    @property
    def source(self) -> str:
        return (self.by_id or self.by_path or (self.node,))[0]

    @property
    def part_of_realsense(self) -> bool:
        """RealSense streams also appear as UVC nodes; they are opened through the RealSense SDK instead."""
        return (self.usb_id or "").startswith(INTEL_USB_VENDOR + ":") or "realsense" in self.name.lower()

    @property
    def usable(self) -> bool:
        return self.capture is not False and not self.part_of_realsense

    def config(self) -> dict[str, Any]:
        """The `cameras:` entry (opencv backend) for this device in its most practical mode."""
        entry: dict[str, Any] = {"type": "opencv", "source": self.source}
        mode = _preferred_mode(self.modes)
        if mode is not None:
            entry |= {"width": mode.width, "height": mode.height, "fps": _preferred_fps(mode), "fourcc": mode.fourcc}
        return entry


@dataclass(frozen=True)
class RealSenseDevice:
    name: str
    serial: str
    firmware: str
    usb: str
    """USB link type the SDK reports, e.g. "3.2"; "2.x" limits modes and frame rates."""
    colour_modes: tuple[CaptureMode, ...] = ()
    depth_modes: tuple[CaptureMode, ...] = ()

    @property
    def on_usb2(self) -> bool:
        return self.usb.startswith("2")

    def config(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "realsense", "serial": self.serial}
        rgb = [m for m in self.colour_modes if m.fourcc == "RGB8"]
        mode = _preferred_mode(tuple(rgb))
        if mode is not None:
            entry |= {"width": mode.width, "height": mode.height, "fps": _preferred_fps(mode)}
        return entry


@dataclass(frozen=True)
class Discovery:
    uvc: tuple[UVCDevice, ...]
    realsense: tuple[RealSenseDevice, ...]
    problems: tuple[str, ...] = field(default=())
    """Why part of the search could not run (e.g. the RealSense SDK failed to load)."""

    @property
    def cameras(self) -> int:
        return sum(d.usable for d in self.uvc) + len(self.realsense)

    def as_dict(self) -> dict[str, Any]:
        return {
            "uvc": [
                asdict(d)
                | {"source": d.source, "part_of_realsense": d.part_of_realsense, "config": d.config() if d.usable else None}
                for d in self.uvc
            ],
            "realsense": [asdict(d) | {"config": d.config()} for d in self.realsense],
            "problems": list(self.problems),
        }


def discover() -> Discovery:
    realsense, problems = realsense_devices()
    return Discovery(uvc_devices(), realsense, problems)


# -- UVC / V4L2 ------------------------------------------------------------------------------------
def uvc_devices(sysfs: Path = SYSFS_VIDEO, dev: Path = DEV) -> tuple[UVCDevice, ...]:
    """Every /dev/videoN that sysfs lists, with its stable links and, from the device itself, its modes."""
    if not sysfs.is_dir():
        return ()
    entries = sorted(
        (e for e in sysfs.iterdir() if e.name.startswith("video") and e.name[5:].isdigit()), key=lambda e: int(e.name[5:])
    )
    links = {kind: _links(dev / "v4l" / kind) for kind in ("by-id", "by-path")}
    devices = []
    for entry in entries:
        node = dev / entry.name
        real = os.path.realpath(node)
        usb = (entry / "device").resolve().parent
        vendor, product, speed = (_read(usb / f) for f in ("idVendor", "idProduct", "speed"))
        try:
            capture, modes = query_v4l2(node)
            error = None
        except OSError as exc:
            capture, modes, error = None, (), _explain(node, exc)
        devices.append(
            UVCDevice(
                node=str(node),
                name=_read(entry / "name") or entry.name,
                by_id=tuple(str(link) for link, target in links["by-id"] if target == real),
                by_path=tuple(str(link) for link, target in links["by-path"] if target == real),
                usb_id=f"{vendor}:{product}" if vendor and product else None,
                usb_speed_mbps=int(float(speed)) if speed else None,
                capture=capture,
                modes=modes,
                error=error,
            )
        )
    return tuple(devices)


def _links(folder: Path) -> list[tuple[Path, str]]:
    return sorted((link, os.path.realpath(link)) for link in folder.iterdir()) if folder.is_dir() else []


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _explain(node: Path, exc: OSError) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"no permission to open {node}: add yourself to the `video` group (sudo usermod -aG video $USER) and log in again"
    if exc.errno == errno.EBUSY:
        return f"{node} is busy: another program holds it"
    return f"could not query {node}: {exc.strerror or exc}"


class _Capability(ctypes.Structure):
    _fields_ = [
        ("driver", ctypes.c_char * 16),
        ("card", ctypes.c_char * 32),
        ("bus_info", ctypes.c_char * 32),
        ("version", ctypes.c_uint32),
        ("capabilities", ctypes.c_uint32),
        ("device_caps", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32 * 3),
    ]


class _FormatDescription(ctypes.Structure):
    _fields_ = [
        ("index", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("description", ctypes.c_char * 32),
        ("pixelformat", ctypes.c_uint32),
        ("mbus_code", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32 * 3),
    ]


class _SizeRange(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint32) for n in ("min_width", "max_width", "step_width", "min_height", "max_height", "step_height")]


class _Size(ctypes.Union):
    _fields_ = [("discrete", ctypes.c_uint32 * 2), ("stepwise", _SizeRange)]


class _FrameSize(ctypes.Structure):
    _fields_ = [
        ("index", ctypes.c_uint32),
        ("pixel_format", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("size", _Size),
        ("reserved", ctypes.c_uint32 * 2),
    ]


class _Fraction(ctypes.Structure):
    _fields_ = [("numerator", ctypes.c_uint32), ("denominator", ctypes.c_uint32)]


class _IntervalRange(ctypes.Structure):
    _fields_ = [("min", _Fraction), ("max", _Fraction), ("step", _Fraction)]


class _Interval(ctypes.Union):
    _fields_ = [("discrete", _Fraction), ("stepwise", _IntervalRange)]


class _FrameInterval(ctypes.Structure):
    _fields_ = [
        ("index", ctypes.c_uint32),
        ("pixel_format", ctypes.c_uint32),
        ("width", ctypes.c_uint32),
        ("height", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("interval", _Interval),
        ("reserved", ctypes.c_uint32 * 2),
    ]


def _ioc(direction: int, number: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (ord("V") << 8) | number


_READ, _READ_WRITE = 2, 3
VIDIOC_QUERYCAP = _ioc(_READ, 0, ctypes.sizeof(_Capability))
VIDIOC_ENUM_FMT = _ioc(_READ_WRITE, 2, ctypes.sizeof(_FormatDescription))
VIDIOC_ENUM_FRAMESIZES = _ioc(_READ_WRITE, 74, ctypes.sizeof(_FrameSize))
VIDIOC_ENUM_FRAMEINTERVALS = _ioc(_READ_WRITE, 75, ctypes.sizeof(_FrameInterval))
V4L2_BUF_TYPE_VIDEO_CAPTURE = 1
V4L2_CAP_VIDEO_CAPTURE = 0x00000001
V4L2_CAP_VIDEO_CAPTURE_MPLANE = 0x00001000
V4L2_CAP_DEVICE_CAPS = 0x80000000
V4L2_FRMSIZE_TYPE_DISCRETE = V4L2_FRMIVAL_TYPE_DISCRETE = 1


def query_v4l2(node: Path) -> tuple[bool, tuple[CaptureMode, ...]]:
    """Whether `node` captures video and in which modes (VIDIOC_QUERYCAP, then ENUM_FMT, ENUM_FRAMESIZES
    and ENUM_FRAMEINTERVALS); OSError if it cannot be opened or is not a V4L2 device."""
    fd = os.open(node, os.O_RDWR | os.O_NONBLOCK)
    try:
        capability = _Capability()
        fcntl.ioctl(fd, VIDIOC_QUERYCAP, capability)
        caps = capability.device_caps if capability.capabilities & V4L2_CAP_DEVICE_CAPS else capability.capabilities
        if not caps & (V4L2_CAP_VIDEO_CAPTURE | V4L2_CAP_VIDEO_CAPTURE_MPLANE):
            return False, ()
        modes = []
        for fmt in _enumerate(fd, VIDIOC_ENUM_FMT, _FormatDescription, type=V4L2_BUF_TYPE_VIDEO_CAPTURE):
            for size in _enumerate(fd, VIDIOC_ENUM_FRAMESIZES, _FrameSize, pixel_format=fmt.pixelformat):
                if size.type == V4L2_FRMSIZE_TYPE_DISCRETE:
                    width, height = size.size.discrete
                else:  # a stepwise or continuous range (one entry): report its largest size
                    width, height = size.size.stepwise.max_width, size.size.stepwise.max_height
                intervals = _enumerate(
                    fd, VIDIOC_ENUM_FRAMEINTERVALS, _FrameInterval, pixel_format=fmt.pixelformat, width=width, height=height
                )
                modes.append(_mode(fourcc_text(fmt.pixelformat), width, height, intervals))
        return True, tuple(modes)
    finally:
        os.close(fd)


def _enumerate(fd: int, request: int, struct_type: type[ctypes.Structure], **fields: int) -> list[Any]:
    """Ask for index 0, 1, ... until the driver answers EINVAL, the V4L2 end of a list (a range is one entry)."""
    found: list[Any] = []
    while True:
        item = struct_type(index=len(found), **fields)
        try:
            fcntl.ioctl(fd, request, item)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                return found
            raise
        found.append(item)


def _mode(fourcc: str, width: int, height: int, intervals: list[_FrameInterval]) -> CaptureMode:
    if intervals and intervals[0].type != V4L2_FRMIVAL_TYPE_DISCRETE:
        span = intervals[0].interval.stepwise  # the shortest interval is the fastest rate
        return CaptureMode(fourcc, width, height, (_fps(span.min), _fps(span.max)), fps_range=True)
    return CaptureMode(fourcc, width, height, tuple(sorted({_fps(i.interval.discrete) for i in intervals}, reverse=True)))


def _fps(interval: _Fraction) -> float:
    return round(interval.denominator / interval.numerator, 3) if interval.numerator else 0.0


def fourcc_text(code: int) -> str:
    """The four characters (like MJPG) packed in a V4L2 / OpenCV FOURCC number."""
    return struct.pack("<I", code).decode("ascii", "replace").rstrip("\x00 ")


# -- RealSense -------------------------------------------------------------------------------------
def realsense_devices() -> tuple[tuple[RealSenseDevice, ...], tuple[str, ...]]:
    """Attached RealSenses, and a problem description if the SDK could not be asked."""
    try:
        import pyrealsense2 as rs
    except ImportError as exc:
        return (), (f"RealSense SDK unavailable ({exc}); on Linux pyrealsense2 needs libusb-1.0-0",)
    try:
        devices = list(rs.context().query_devices())
    except RuntimeError as exc:
        return (), (f"RealSense SDK could not list devices: {exc}",)
    found = []
    for device in devices:
        info = functools.partial(_info, device)
        profiles = [
            p.as_video_stream_profile()
            for s in device.query_sensors()
            for p in s.get_stream_profiles()
            if p.is_video_stream_profile()
        ]
        found.append(
            RealSenseDevice(
                name=info(rs.camera_info.name),
                serial=info(rs.camera_info.serial_number),
                firmware=info(rs.camera_info.firmware_version),
                usb=info(rs.camera_info.usb_type_descriptor),
                colour_modes=_group_modes(p for p in profiles if p.stream_type() == rs.stream.color),
                depth_modes=_group_modes(p for p in profiles if p.stream_type() == rs.stream.depth),
            )
        )
    return tuple(found), ()


def _info(device: Any, key: Any) -> str:
    return device.get_info(key) if device.supports(key) else ""


def _group_modes(profiles: Any) -> tuple[CaptureMode, ...]:
    rates: dict[tuple[str, int, int], set[float]] = {}
    for p in profiles:
        rates.setdefault((p.format().name.upper(), p.width(), p.height()), set()).add(float(p.fps()))
    return tuple(
        CaptureMode(f, w, h, tuple(sorted(r, reverse=True)))
        for (f, w, h), r in sorted(rates.items(), key=lambda kv: (kv[0][0], -kv[0][1], -kv[0][2]))
    )


# -- choosing a mode for the snippet ---------------------------------------------------------------
def _preferred_mode(modes: tuple[CaptureMode, ...]) -> CaptureMode | None:
    """The size closest to 640x480, in MJPG where that size has it, else YUYV, else what there is."""
    if not modes:
        return None

    def rank(mode: CaptureMode) -> tuple[int, int]:
        size_gap = abs(mode.width * mode.height - PREFERRED_SIZE[0] * PREFERRED_SIZE[1])
        return size_gap, PREFERRED_FOURCCS.index(mode.fourcc) if mode.fourcc in PREFERRED_FOURCCS else len(PREFERRED_FOURCCS)

    return min(modes, key=rank)


def _preferred_fps(mode: CaptureMode) -> float | int:
    """30 fps where offered, else the fastest rate."""
    offered = min(mode.fps) <= PREFERRED_FPS <= max(mode.fps) if mode.fps_range else PREFERRED_FPS in mode.fps
    fps = PREFERRED_FPS if offered or not mode.fps else max(mode.fps)
    return int(fps) if float(fps).is_integer() else fps
