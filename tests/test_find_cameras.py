"""`robot-runtime find-cameras`: what it prints with nothing attached, how it reads sysfs and /dev/v4l,
and the config entries it suggests (which must load as robot-config cameras)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from apps.cli import main
from apps.common import console
from apps.find_cameras import show
from cameras import discovery
from cameras.config import OpenCVCameraConfig, RealSenseCameraConfig
from cameras.discovery import CaptureMode, Discovery, RealSenseDevice, UVCDevice, discover, query_v4l2, uvc_devices

LOGITECH = "046d:0825"


@pytest.fixture
def nothing_attached() -> None:
    if discover().cameras:
        pytest.skip("cameras are attached to this machine")


def test_with_nothing_attached_it_says_so_with_hints_and_exits_0(nothing_attached, capsys):
    assert main(["find-cameras"]) == 0
    err = capsys.readouterr().err
    assert "no cameras found" in err
    assert "video` group" in err and "USB cable" in err


def test_the_installed_command_prints_valid_json(nothing_attached):
    command = Path(sys.executable).parent / "robot-runtime"
    if not command.exists():
        pytest.skip(f"{command} is not installed (pip install -e .)")
    result = subprocess.run([str(command), "find-cameras", "--json"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    assert listing["uvc"] == [] and listing["realsense"] == []
    assert any("video" in hint for hint in listing["hints"])


def fake_sysfs(root: Path) -> tuple[Path, Path]:
    """Two UVC webcams (each with its metadata node) and a RealSense's UVC node, as Linux lays them out."""
    sysfs, dev = root / "sys", root / "dev"
    cameras = {
        "video0": ("usb1/1-2", "046d", "0825", "480", "UVC Camera (046d:0825)"),
        "video1": ("usb1/1-2", "046d", "0825", "480", "UVC Camera (046d:0825)"),
        "video10": ("usb2/2-1", "8086", "0b07", "5000", "Intel(R) RealSense(TM) Depth Ca"),
        "video2": ("usb1/1-3", "0c45", "6366", "480", "USB 2.0 Camera"),
    }
    for node, (usb, vendor, product, speed, name) in cameras.items():
        usb_device = sysfs / "devices" / usb
        interface = usb_device / f"{usb.split('/')[1]}:1.0"
        interface.mkdir(parents=True, exist_ok=True)
        for key, value in (("idVendor", vendor), ("idProduct", product), ("speed", speed)):
            (usb_device / key).write_text(value + "\n")
        entry = sysfs / "class" / "video4linux" / node
        entry.mkdir(parents=True)
        (entry / "name").write_text(name + "\n")
        (entry / "device").symlink_to(os.path.relpath(interface, entry))
        dev.mkdir(exist_ok=True)
        (dev / node).write_bytes(b"")
    links = {
        "by-id/usb-046d_0825_8A1B2C3D-video-index0": "video0",
        "by-id/usb-046d_0825_8A1B2C3D-video-index1": "video1",
        "by-path/pci-0000:00:14.0-usb-0:2:1.0-video-index0": "video0",
        "by-path/pci-0000:00:14.0-usb-0:3:1.0-video-index0": "video2",
    }
    for link, node in links.items():
        path = dev / "v4l" / link
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(Path("../..") / node)
    return sysfs / "class" / "video4linux", dev


def test_sysfs_names_links_and_usb_ids_are_read_in_device_order(tmp_path):
    sysfs, dev = fake_sysfs(tmp_path)
    devices = uvc_devices(sysfs, dev)
    assert [d.node for d in devices] == [str(dev / n) for n in ("video0", "video1", "video2", "video10")]
    first, metadata, other, realsense = devices
    assert first.name == "UVC Camera (046d:0825)" and first.usb_id == LOGITECH and first.usb_speed_mbps == 480
    assert first.by_id == (str(dev / "v4l/by-id/usb-046d_0825_8A1B2C3D-video-index0"),)
    assert first.by_path == (str(dev / "v4l/by-path/pci-0000:00:14.0-usb-0:2:1.0-video-index0"),)
    assert metadata.by_id == (str(dev / "v4l/by-id/usb-046d_0825_8A1B2C3D-video-index1"),) and metadata.by_path == ()
    assert other.by_id == () and other.source == str(dev / "v4l/by-path/pci-0000:00:14.0-usb-0:3:1.0-video-index0")
    assert realsense.part_of_realsense and not realsense.usable
    assert not first.part_of_realsense


def test_a_node_that_is_not_a_v4l2_device_is_listed_with_the_reason(tmp_path):
    sysfs, dev = fake_sysfs(tmp_path)
    first = uvc_devices(sysfs, dev)[0]
    assert first.capture is None and first.modes == ()
    assert first.error is not None and "could not query" in first.error and first.node in first.error
    with pytest.raises(OSError, match="Inappropriate ioctl for device"):
        query_v4l2(Path(first.node))


def test_no_video4linux_class_means_no_uvc_devices(tmp_path):
    assert uvc_devices(tmp_path / "missing", tmp_path) == ()


def test_ioctl_requests_match_the_kernel_abi():
    """The request numbers encode the struct sizes: a wrong field layout changes them."""
    assert discovery.VIDIOC_QUERYCAP == 0x80685600
    assert discovery.VIDIOC_ENUM_FMT == 0xC0405602
    assert discovery.VIDIOC_ENUM_FRAMESIZES == 0xC02C564A
    assert discovery.VIDIOC_ENUM_FRAMEINTERVALS == 0xC034564B
    assert discovery.fourcc_text(0x47504A4D) == "MJPG"


def test_the_suggested_uvc_entry_prefers_the_stable_link_and_mjpg_640x480_at_30():
    device = UVCDevice(
        node="/dev/video0",
        name="cam",
        by_id=("/dev/v4l/by-id/usb-cam-video-index0",),
        by_path=("/dev/v4l/by-path/pci-usb-0:2:1.0-video-index0",),
        capture=True,
        modes=(
            CaptureMode("YUYV", 640, 480, (30.0, 15.0)),
            CaptureMode("MJPG", 1920, 1080, (30.0,)),
            CaptureMode("MJPG", 640, 480, (60.0, 30.0)),
        ),
    )
    entry = device.config()
    assert entry == {
        "type": "opencv",
        "source": "/dev/v4l/by-id/usb-cam-video-index0",
        "width": 640,
        "height": 480,
        "fps": 30,
        "fourcc": "MJPG",
    }
    OpenCVCameraConfig(**yaml.safe_load(yaml.safe_dump(entry)))


def test_a_size_near_640x480_beats_mjpg_at_a_larger_size():
    device = UVCDevice(
        node="/dev/video4",
        name="cam",
        capture=True,
        modes=(
            CaptureMode("MJPG", 1920, 1080, (30.0,)),
            CaptureMode("YUYV", 800, 600, (20.0, 10.0)),
            CaptureMode("YUYV", 1280, 720, (10.0,)),
        ),
    )
    assert device.config() == {
        "type": "opencv",
        "source": "/dev/video4",
        "width": 800,
        "height": 600,
        "fps": 20,
        "fourcc": "YUYV",
    }


def test_a_continuous_rate_range_that_includes_30_is_suggested_at_30():
    device = UVCDevice(
        node="/dev/video4", name="cam", capture=True, modes=(CaptureMode("GREY", 752, 480, (60.0, 1.0), fps_range=True),)
    )
    assert device.config()["fps"] == 30


def test_a_realsense_serial_stays_a_string_through_yaml():
    device = RealSenseDevice(
        name="Intel RealSense D435",
        serial="012345678901",
        firmware="5.16.0.1",
        usb="3.2",
        colour_modes=(CaptureMode("RGB8", 1920, 1080, (30.0,)), CaptureMode("RGB8", 640, 480, (60.0, 30.0, 15.0))),
        depth_modes=(CaptureMode("Z16", 848, 480, (90.0, 30.0)),),
    )
    loaded = yaml.safe_load(yaml.safe_dump({"cameras": {"top": device.config()}}))["cameras"]["top"]
    config = RealSenseCameraConfig(**loaded)
    assert (config.serial, config.width, config.height, config.fps) == ("012345678901", 640, 480, 30)


def test_the_listing_shows_devices_marks_metadata_nodes_and_ends_with_a_snippet(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(console, "width", 400)  # the tmp paths are long: check the content, not the folding
    sysfs, dev = fake_sysfs(tmp_path)
    webcam, metadata = uvc_devices(sysfs, dev)[:2]
    metadata = UVCDevice(metadata.node, metadata.name, metadata.by_id, capture=False)
    on_usb2 = RealSenseDevice(
        "Intel RealSense D435", "012345678901", "5.16.0.1", "2.1", (CaptureMode("RGB8", 640, 480, (30.0,)),)
    )
    show(Discovery(uvc=(webcam, metadata), realsense=(on_usb2,)))
    err = capsys.readouterr().err
    assert "no cameras found" not in err
    assert f"{metadata.node} (UVC Camera (046d:0825)): metadata node, not a camera" in err
    assert "USB 2: use a USB 3 port" in err
    snippet = yaml.safe_load(err[err.index("cameras:") :])
    assert snippet["cameras"]["camera_1"]["source"] == webcam.source
    assert snippet["cameras"]["camera_2"] == {
        "type": "realsense",
        "serial": "012345678901",
        "width": 640,
        "height": 480,
        "fps": 30,
    }


def test_json_lists_the_suggested_entry_of_each_usable_device(tmp_path):
    sysfs, dev = fake_sysfs(tmp_path)
    listing = json.loads(json.dumps(Discovery(uvc_devices(sysfs, dev), ()).as_dict()))
    entries = {Path(d["node"]).name: d["config"] for d in listing["uvc"]}
    assert entries["video0"] == {"type": "opencv", "source": str(dev / "v4l/by-id/usb-046d_0825_8A1B2C3D-video-index0")}
    assert entries["video10"] is None


@pytest.mark.hardware
def test_attached_uvc_cameras_report_their_capture_modes():
    nodes = sorted(Path("/dev").glob("video*"))
    if not nodes:
        pytest.skip("no /dev/video* on this machine")
    results = {}
    for node in nodes:
        try:
            results[node] = query_v4l2(node)
        except PermissionError:
            pytest.skip(f"no permission to open {node} (video group)")
    capture_nodes = {node: modes for node, (capture, modes) in results.items() if capture}
    assert capture_nodes, "no capture node among /dev/video*"
    for node, modes in capture_nodes.items():
        assert modes, f"{node} captures but lists no modes"
        assert all(m.width > 0 and m.height > 0 and m.fps and len(m.fourcc) == 4 for m in modes), modes
