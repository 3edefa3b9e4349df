"""RealSenseCamera on the real SDK: frames come from librealsense's own software device (through its
matcher, syncer and align) or from a recording its recorder wrote, so frame numbers, timestamps,
metadata and depth alignment are the SDK's, not a stand-in's."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyrealsense2 as rs
import pytest

from cameras.base import CameraError, Frame
from cameras.config import RealSenseCameraConfig
from cameras.realsense import PipelineSource, RealSenseCamera, apply_controls
from cameras.realsense_software import PushedFrame, SoftwareRealSense, SoftwareRealSenseSpec
from cameras.stamp import Stamp, read_stamp, write_stamp

SERIAL = "000000000001"
QUADRANT_DEPTHS_MM = ((400, 800), (1200, 1600))
"""Depth of the top-left, top-right / bottom-left, bottom-right quarters of the simulated scene."""
RECORDED_FRAMES = 30


def render(number: int, capture_s: float, depth_size: tuple[int, int] = (320, 240)) -> tuple[np.ndarray, np.ndarray]:
    """A colour image stamped with its frame number and capture time, and a depth image in quarters."""
    image = np.full((480, 640, 3), (40, 90, 160), np.uint8)
    write_stamp(image, Stamp(number=number, capture_us=round(capture_s * 1e6)))
    width, height = depth_size
    depth = np.empty((height, width), np.uint16)
    for row, depths in enumerate(QUADRANT_DEPTHS_MM):
        for column, depth_mm in enumerate(depths):
            depth[row * height // 2 : (row + 1) * height // 2, column * width // 2 : (column + 1) * width // 2] = depth_mm
    return image, depth


def camera_config(**fields: object) -> RealSenseCameraConfig:
    fields.setdefault("serial", None if "playback" in fields else SERIAL)
    return RealSenseCameraConfig(type="realsense", buffer_frames=64, **fields)


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline_s = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline_s, "timed out"
        time.sleep(0.01)


def stream(source: SoftwareRealSense, frames: int, **fields: object) -> tuple[Frame, ...]:
    """Open a camera on the software device, keep `frames` frames, close it."""
    camera = RealSenseCamera("top", camera_config(**fields), source=source)
    with camera:
        wait_until(lambda: len(camera.buffered()) >= frames)
    return camera.buffered()


def play(path: Path, **fields: object) -> RealSenseCamera:
    """Play a recording to its end through a camera; the camera is closed when this returns."""
    camera = RealSenseCamera("replay", camera_config(playback=path, real_time=False, **fields))
    with camera:
        wait_until(lambda: camera.health().last_error is not None)
    return camera


def by_number(pushed: tuple[PushedFrame, ...]) -> dict[int, PushedFrame]:
    return {p.number: p for p in pushed}


@pytest.fixture(scope="module")
def colour_recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[PushedFrame, ...]]:
    path = tmp_path_factory.mktemp("realsense") / "colour.db3"
    pushed = SoftwareRealSense(SoftwareRealSenseSpec(), render).record(path, RECORDED_FRAMES)
    return path, pushed


@pytest.fixture
def no_threads_left() -> Iterator[None]:
    yield
    alive = [t.name for t in threading.enumerate() if t.name.startswith(("camera-", "software-realsense-"))]
    assert alive == [], f"threads left running: {alive}"


# -- live frames from the software device ----------------------------------------------------------
def test_frames_carry_the_device_frame_number_and_the_image_pushed_with_it(no_threads_left):
    source = SoftwareRealSense(SoftwareRealSenseSpec(), render)
    frames = stream(source, 10)
    pushed = by_number(source.pushed)
    numbers = [f.number for f in frames]
    assert numbers == sorted(set(numbers)), "frame numbers must increase"
    for frame in frames:
        assert frame.image.shape == (480, 640, 3) and frame.image.dtype == np.uint8
        assert not frame.image.flags.writeable
        stamp = read_stamp(frame.image)
        assert stamp.number == frame.number
        assert stamp.capture_us == round(pushed[frame.number].capture_s * 1e6)
        assert frame.depth is None


@pytest.mark.parametrize(
    ("domain", "clock", "tolerance_s"),
    [
        ("global_time", "device", 0.005),  # device clock translated to host wall time: mapped exactly
        ("system_time", "arrival", 0.005),  # host wall time stamped by the SDK: mapped exactly
        ("hardware_clock", "arrival", 0.25),  # device clock with its own epoch: host arrival instead
    ],
)
def test_timestamps_of_each_domain_are_mapped_to_the_monotonic_clock(domain, clock, tolerance_s, no_threads_left):
    source = SoftwareRealSense(SoftwareRealSenseSpec(domain=domain), render)
    frames = stream(source, 8)
    pushed = by_number(source.pushed)
    for frame in frames:
        assert frame.clock == clock
        assert abs(frame.capture_s - pushed[frame.number].capture_s) < tolerance_s
        assert frame.capture_s <= frame.arrival_s + 0.001


def test_metadata_pushed_with_a_frame_comes_back_with_it(no_threads_left):
    source = SoftwareRealSense(SoftwareRealSenseSpec(domain="hardware_clock"), render)
    source.start()
    try:
        colour: list[rs.video_frame] = []
        while len(colour) < 5:
            frameset = source.wait_for_frames(1.0)
            assert frameset is not None, "the software device stopped delivering"
            if frameset.get_color_frame():
                colour.append(frameset.get_color_frame())
        pushed = by_number(source.pushed)
        for frame in colour:
            sent = pushed[frame.get_frame_number()]
            assert frame.get_frame_timestamp_domain() == rs.timestamp_domain.hardware_clock
            assert frame.get_timestamp() == pytest.approx(sent.timestamp_ms)
            assert frame.get_frame_metadata(rs.frame_metadata_value.frame_counter) == sent.number
            assert frame.get_frame_metadata(rs.frame_metadata_value.frame_timestamp) == round(sent.timestamp_ms * 1e3)
            assert frame.supports_frame_metadata(rs.frame_metadata_value.time_of_arrival)
    finally:
        source.stop()


def test_depth_is_aligned_to_the_colour_image(no_threads_left):
    source = SoftwareRealSense(SoftwareRealSenseSpec(depth=True, depth_width=320, depth_height=240), render)
    frames = stream(source, 5, depth=True)
    for frame in frames:
        assert frame.depth is not None and frame.depth.shape == (480, 640) and frame.depth.dtype == np.uint16
        for row, depths in enumerate(QUADRANT_DEPTHS_MM):
            for column, depth_mm in enumerate(depths):
                assert frame.depth[120 + 240 * row, 160 + 320 * column] == depth_mm
        assert read_stamp(frame.image).number == frame.number


def test_close_joins_the_capture_thread_and_the_software_device(no_threads_left):
    source = SoftwareRealSense(SoftwareRealSenseSpec(), render)
    camera = RealSenseCamera("joined", camera_config(), source=source)
    camera.open()
    assert any(t.name == "camera-joined" for t in threading.enumerate())
    camera.close()
    camera.close()
    assert not camera.health().connected


# -- recordings ------------------------------------------------------------------------------------
def test_a_recording_plays_back_every_frame_with_its_timing(colour_recording, no_threads_left):
    path, pushed = colour_recording
    camera = play(path)
    frames = camera.buffered()
    assert [f.number for f in frames] == [p.number for p in pushed]
    for frame, sent in zip(frames, pushed, strict=True):
        assert frame.clock == "playback"
        assert frame.capture_s - frames[0].capture_s == pytest.approx(
            (sent.timestamp_ms - pushed[0].timestamp_ms) / 1e3, abs=1e-4
        )
        assert read_stamp(frame.image) == Stamp(sent.number, round(sent.capture_s * 1e6))
    assert f"playback of {path} ended after {RECORDED_FRAMES} frames" in str(camera.health().last_error)


def test_the_end_of_a_recording_is_not_replayed_by_reconnecting(colour_recording, no_threads_left):
    path, _ = colour_recording
    camera = RealSenseCamera("replay", camera_config(playback=path, real_time=False))
    with camera:
        wait_until(lambda: camera.health().last_error is not None)
        time.sleep(0.5)  # several reconnect attempts
        health = camera.health()
    assert health.frames == RECORDED_FRAMES and health.reconnects == 0
    assert "ended" in str(health.last_error)


def test_a_recording_plays_at_its_recorded_pace_in_real_time(colour_recording, no_threads_left):
    path, pushed = colour_recording
    camera = RealSenseCamera("replay", camera_config(playback=path, real_time=True))
    with camera:
        wait_until(lambda: camera.health().last_error is not None)
    frames = camera.buffered()
    recorded_span_s = pushed[-1].capture_s - pushed[0].capture_s
    assert frames[-1].arrival_s - frames[0].arrival_s > 0.8 * recorded_span_s


def test_a_recording_with_depth_plays_back_aligned_depth(tmp_path, no_threads_left):
    path = tmp_path / "depth.db3"
    pushed = SoftwareRealSense(SoftwareRealSenseSpec(depth=True), render).record(path, 12)
    frames = play(path, depth=True).buffered()
    numbers = [f.number for f in frames]
    # The pipeline's syncer drops colour/depth pairs while it starts (the first, or a few under load):
    # what comes back is the rest of the recording, in order and complete.
    assert len(numbers) >= len(pushed) // 2
    assert numbers == [p.number for p in pushed[-len(numbers) :]]
    for frame in frames:
        assert frame.depth is not None and frame.depth.shape == (480, 640)
        assert frame.depth[120, 160] == QUADRANT_DEPTHS_MM[0][0] and frame.depth[360, 480] == QUADRANT_DEPTHS_MM[1][1]


def test_a_recording_keeps_the_metadata_of_each_frame(colour_recording):
    path, pushed = colour_recording
    source = PipelineSource(camera_config(playback=path, real_time=False))
    source.start()
    try:
        for sent in pushed[:5]:
            frameset = source.wait_for_frames(2.0)
            assert frameset is not None
            colour = frameset.get_color_frame()
            assert colour.get_frame_metadata(rs.frame_metadata_value.frame_counter) == sent.number
            assert colour.get_frame_timestamp_domain() == rs.timestamp_domain.global_time
    finally:
        source.stop()


# -- errors that say what to check -------------------------------------------------------------------
def test_a_missing_recording_is_named(tmp_path):
    missing = tmp_path / "nowhere.db3"
    with pytest.raises(CameraError, match=rf"camera 'replay'.*{missing}.*does not exist"):
        RealSenseCamera("replay", camera_config(playback=missing)).open()


def test_a_file_that_is_not_a_recording_is_named(tmp_path):
    garbage = tmp_path / "notes.db3"
    garbage.write_text("not a recording")
    with pytest.raises(CameraError, match=rf"camera 'replay'.*cannot play {garbage}"):
        RealSenseCamera("replay", camera_config(playback=garbage)).open()


def test_a_recording_in_another_mode_than_configured_says_what_to_set(colour_recording):
    path, _ = colour_recording
    with pytest.raises(CameraError, match="set width: 640, height: 480, fps: 30"):
        RealSenseCamera("replay", camera_config(playback=path, width=1280, height=720)).open()


def test_an_unknown_serial_names_the_camera_and_the_serial():
    if "999999999999" in {d.get_info(rs.camera_info.serial_number) for d in rs.context().query_devices()}:
        pytest.skip("a RealSense with the made-up serial is attached")
    with pytest.raises(CameraError, match=r"camera 'wrist' \(realsense 999999999999\): no RealSense .*attached.*USB 3"):
        RealSenseCamera("wrist", camera_config(serial="999999999999")).open()


# -- controls ----------------------------------------------------------------------------------------
def option(source: SoftwareRealSense, sensor_name: str, control: rs.option) -> float:
    sensor = next(s for s in source.device.query_sensors() if s.get_info(rs.camera_info.name) == sensor_name)
    return sensor.get_option(control)


def test_manual_exposure_white_balance_and_sync_are_set_on_the_right_sensors():
    source = SoftwareRealSense(SoftwareRealSenseSpec(depth=True), render)
    apply_controls(source.device, camera_config(depth=True, exposure_us=10_000, white_balance_k=4000, inter_cam_sync_mode=1))
    assert option(source, "RGB Camera", rs.option.enable_auto_exposure) == 0
    assert option(source, "RGB Camera", rs.option.exposure) == 100  # D400 RGB exposure counts 100 us steps
    assert option(source, "RGB Camera", rs.option.enable_auto_white_balance) == 0
    assert option(source, "RGB Camera", rs.option.white_balance) == 4000
    assert option(source, "Stereo Module", rs.option.inter_cam_sync_mode) == 1

    apply_controls(source.device, camera_config(depth=True))
    assert option(source, "RGB Camera", rs.option.enable_auto_exposure) == 1
    assert option(source, "RGB Camera", rs.option.enable_auto_white_balance) == 1
    assert option(source, "Stereo Module", rs.option.inter_cam_sync_mode) == 0


def test_an_exposure_outside_the_device_range_is_refused_with_the_range():
    source = SoftwareRealSense(SoftwareRealSenseSpec(), render)
    with pytest.raises(CameraError, match=r"exposure_us: 2e\+06 is outside .*RGB Camera.*\(100-1000000 us\)"):
        apply_controls(source.device, camera_config(exposure_us=2_000_000))


def test_a_control_the_device_lacks_is_refused_naming_the_config_field():
    source = SoftwareRealSense(SoftwareRealSenseSpec(controls=False), render)
    with pytest.raises(CameraError, match=r"no enable_auto_white_balance control.*remove white_balance_k"):
        apply_controls(source.device, camera_config(white_balance_k=4000))
    with pytest.raises(CameraError, match="inter_cam_sync_mode=2 needs a depth module"):
        apply_controls(source.device, camera_config(inter_cam_sync_mode=2))


# -- a real RealSense ----------------------------------------------------------------------------------
@pytest.fixture
def attached_serial() -> str:
    serial = os.environ.get("ROBOT_RUNTIME_REALSENSE_SERIAL")
    if not serial:
        pytest.skip(
            "no RealSense named: set ROBOT_RUNTIME_REALSENSE_SERIAL to an attached camera's serial (robot-runtime find-cameras)"
        )
    if serial not in {d.get_info(rs.camera_info.serial_number) for d in rs.context().query_devices()}:
        pytest.skip(f"RealSense {serial} is not attached")
    return serial


@pytest.mark.hardware
@pytest.mark.parametrize("depth", [False, True])
def test_a_real_realsense_streams_timestamped_frames(attached_serial, depth, no_threads_left):
    camera = RealSenseCamera("real", camera_config(serial=attached_serial, depth=depth))
    with camera:
        time.sleep(2.0)
        frames = camera.buffered()
        health = camera.health()
    assert health.achieved_fps > 20
    for frame in frames:
        assert frame.image.shape == (480, 640, 3)
        assert frame.clock in ("device", "arrival")
        assert frame.arrival_s - 0.5 < frame.capture_s <= frame.arrival_s + 0.001
        assert (frame.depth is not None and frame.depth.shape == (480, 640)) == depth
