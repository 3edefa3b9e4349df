"""OpenCVCamera through the real OpenCV/FFmpeg: a paced MJPEG-over-HTTP source in another process
stands in for a webcam (it can be killed or frozen), and MP4 files written here stand in for a
camera played from a file. Timing checks are generous behavioural bounds, not benchmarks."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from mjpeg_source import MjpegSource, mjpeg_source

from cameras.base import Camera, CameraError, CameraStaleError, Frame
from cameras.camera_set import CameraSet
from cameras.config import OpenCVCameraConfig, build_camera
from cameras.opencv import READ_TIMEOUT_S, OpenCVCamera
from cameras.stamp import Stamp, read_stamp, write_stamp

FPS = 30.0
PERIOD_S = 1.0 / FPS
BLUE_BGR = (255, 0, 0)
"""What the stream source draws; delivered RGB images must hold it as (0, 0, 255)."""
FILE_COLOURS_BGR = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (0, 255, 255), (255, 0, 255), (255, 255, 255)]
COLOUR_TOLERANCE = 16
"""JPEG and MPEG-4 move a solid colour by a few levels."""


def camera_for(source: int | str, name: str = "cam", **fields: object) -> Camera:
    return build_camera(name, OpenCVCameraConfig(type="opencv", source=source, **fields))


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout_s:g} s: {what}")
        time.sleep(0.01)


def wait_for_frames(camera: Camera, count: int, timeout_s: float = 5.0) -> tuple[Frame, ...]:
    wait_until(lambda: camera.health().frames >= count, timeout_s, f"{count} frames from {camera.label}")
    return camera.buffered()


def newest(camera: Camera) -> Frame:
    frame = camera.latest()
    assert frame is not None, f"{camera.label} has delivered no frame"
    return frame


def centre_rgb(frame: Frame) -> np.ndarray:
    height, width = frame.image.shape[:2]
    return frame.image[height * 3 // 4, width // 2].astype(int)


def capture_threads(name: str) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == f"camera-{name}"]


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def source() -> Iterator[MjpegSource]:
    with mjpeg_source(fps=FPS, width=640, height=480, colour_bgr=BLUE_BGR) as running:
        yield running


@pytest.fixture
def looping_mp4(tmp_path: Path) -> Path:
    """Six 640x480 frames written at 10 fps, each a colour of FILE_COLOURS_BGR stamped with its index."""
    path = tmp_path / "camera.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, (640, 480))
    assert writer.isOpened()
    for number, colour in enumerate(FILE_COLOURS_BGR):
        image = np.empty((480, 640, 3), dtype=np.uint8)
        image[...] = colour
        write_stamp(image, Stamp(number, capture_us=number))
        writer.write(image)
    writer.release()
    return path


# -- a live stream ------------------------------------------------------------------------------


def test_the_factory_builds_an_opencv_camera(source: MjpegSource) -> None:
    camera = camera_for(source.url)
    assert isinstance(camera, OpenCVCamera)
    assert camera.kind == "opencv"
    assert source.url in camera.label


def test_stream_frames_arrive_in_order_as_rgb_stamped_with_their_arrival(source: MjpegSource) -> None:
    with camera_for(source.url, buffer_frames=16) as camera:
        frames = wait_for_frames(camera, 10)
        health = camera.health()
    assert len(frames) >= 10
    stamps = [read_stamp(frame.image) for frame in frames]
    assert [f.index for f in frames] == list(range(frames[0].index, frames[0].index + len(frames)))
    assert all(later.number > earlier.number for earlier, later in itertools.pairwise(stamps))
    for frame, stamp in zip(frames, stamps, strict=True):
        assert frame.clock == "arrival"
        assert stamp.capture_s <= frame.capture_s <= frame.arrival_s, "sent, then grabbed, then stored"
        assert frame.image.shape == (480, 640, 3) and frame.image.dtype == np.uint8
        assert not frame.image.flags.writeable
        assert np.abs(centre_rgb(frame) - (0, 0, 255)).max() <= COLOUR_TOLERANCE, f"blue sent, got RGB {centre_rgb(frame)}"
    assert health.connected and health.last_error is None and health.reconnects == 0


def test_rotation_90_turns_the_image_clockwise(source: MjpegSource) -> None:
    with camera_for(source.url, rotation=90) as camera:
        frame = wait_for_frames(camera, 2)[-1]
    assert frame.image.shape == (640, 480, 3)
    # The stamp runs along the top edge of the source image: clockwise puts it on the right edge.
    # read_stamp raises StampError unless the stamp is back on top, left to right.
    read_stamp(cv2.rotate(frame.image, cv2.ROTATE_90_COUNTERCLOCKWISE))


def test_latest_is_the_newest_frame_even_after_the_consumer_slept(source: MjpegSource) -> None:
    """Frames are read continuously in the capture thread, so nothing queues up while a slow
    consumer is away: the frame it finds on return is far younger than the time it was away."""
    away_s = 1.0
    with camera_for(source.url) as camera:
        first = wait_for_frames(camera, 1)[-1]
        time.sleep(away_s)
        newest = camera.latest()
        now_s = time.monotonic()
    assert newest is not None
    assert newest.index - first.index >= 5, "frames kept arriving while the consumer slept"
    assert now_s - newest.capture_s < away_s / 2
    assert now_s - read_stamp(newest.image).capture_s < away_s / 2, "the source sent it recently"


# -- a video file standing in for a camera ---------------------------------------------------------


def test_a_video_file_plays_in_order_at_the_configured_fps_and_loops(looping_mp4: Path) -> None:
    with camera_for(str(looping_mp4), fps=FPS, buffer_frames=32) as camera:
        frames = wait_for_frames(camera, 15)[:15]
        health = camera.health()
    assert health.reconnects == 0 and health.last_error is None, "reaching the end of the file is not a failure"
    written = len(FILE_COLOURS_BGR)
    numbers = [read_stamp(frame.image).number for frame in frames]
    assert numbers == [(frames[0].index + k) % written for k in range(15)], "each frame once, in order, then from the start again"
    assert [f.index for f in frames] == list(range(frames[0].index, frames[0].index + 15))
    assert [f.number for f in frames] == sorted({f.number for f in frames}), "frame numbers keep counting across loops"
    for frame, number in zip(frames, numbers, strict=True):
        blue, green, red = FILE_COLOURS_BGR[number]
        assert np.abs(centre_rgb(frame) - (red, green, blue)).max() <= COLOUR_TOLERANCE
        assert frame.clock == "arrival"
    mean_interval_s = (frames[-1].capture_s - frames[0].capture_s) / 14
    assert mean_interval_s >= 0.8 * PERIOD_S, "paced, not read as fast as the file decodes"
    assert mean_interval_s < 1 / 10.0, "at the configured 30 fps, not the 10 fps the file was written at"


# -- configuration and open errors ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["stream", "file"])
def test_a_size_other_than_configured_is_refused_naming_both(kind: str, request: pytest.FixtureRequest) -> None:
    source = request.getfixturevalue("source").url if kind == "stream" else str(request.getfixturevalue("looping_mp4"))
    camera = camera_for(source, width=1280, height=720, open_timeout_s=5.0)
    started_s = time.monotonic()
    with pytest.raises(CameraError, match="640x480") as error:
        camera.open()
    assert "1280x720" in str(error.value) and source in str(error.value)
    assert time.monotonic() - started_s < 3.0, "refused on opening, not after waiting for frames"


@pytest.mark.parametrize("missing", ["/dev/video7", 7])
def test_a_missing_device_is_named_with_what_to_check(missing: int | str) -> None:
    started_s = time.monotonic()
    with pytest.raises(CameraError, match="/dev/video7") as error:
        camera_for(missing).open()
    assert "does not exist" in str(error.value) and "robot-runtime find-cameras" in str(error.value)
    assert time.monotonic() - started_s < 2.0


def test_a_device_node_that_cannot_capture_names_the_processes_holding_it() -> None:
    """/dev/zero exists and opens, but is no camera: V4L2 refuses it as it refuses a busy camera."""
    refused = "/dev/zero exists but could not be opened for capture"
    with open("/dev/zero", "rb"), pytest.raises(CameraError, match=refused) as error:
        camera_for("/dev/zero").open()
    assert f"{os.getpid()} (" in str(error.value), "this process holds it"


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere.mp4")
    with pytest.raises(CameraError, match="no such file") as error:
        camera_for(missing).open()
    assert missing in str(error.value)


def test_a_closed_port_is_named_in_bounded_time() -> None:
    url = f"http://127.0.0.1:{unused_port()}/"
    started_s = time.monotonic()
    with pytest.raises(CameraError, match="could not open") as error:
        camera_for(url, open_timeout_s=2.0).open()
    assert url in str(error.value) and "server" in str(error.value)
    assert time.monotonic() - started_s < 4.0


# -- losing the source -----------------------------------------------------------------------------


def test_a_killed_source_is_reported_and_a_restarted_one_reconnects(source: MjpegSource) -> None:
    with camera_for(source.url, open_timeout_s=2.0) as camera:
        wait_for_frames(camera, 3)
        source.kill()
        wait_until(lambda: not camera.health().connected, 3.0, "the camera notices the source died")
        assert source.url in (camera.health().last_error or "")
        stalled = newest(camera)
        time.sleep(0.3)
        assert camera.latest() is stalled, "no frame arrives from a dead source"

        with mjpeg_source(fps=FPS, colour_bgr=BLUE_BGR, port=source.port):
            wait_until(
                lambda: camera.health().reconnects == 1 and camera.health().connected, 10.0, "reconnect to the restarted source"
            )
            wait_until(lambda: newest(camera).index > stalled.index, 3.0, "frames flow again")
            assert read_stamp(newest(camera).image).capture_s > stalled.arrival_s, "a frame of the new source"


def test_a_stalled_source_times_out_and_recovers_when_it_resumes(source: MjpegSource) -> None:
    with camera_for(source.url, open_timeout_s=2.0) as camera:
        wait_for_frames(camera, 3)
        source.stop()
        stalled_s = time.monotonic()
        wait_until(lambda: not camera.health().connected, 3.0, "the camera notices the stream stalled")
        assert time.monotonic() - stalled_s >= 0.5 * READ_TIMEOUT_S, "a short gap in the stream is not a loss"
        assert "sent nothing" in (camera.health().last_error or "")
        stalled = newest(camera)
        source.resume()
        wait_until(lambda: camera.health().connected and newest(camera).index > stalled.index, 10.0, "frames flow again")
        assert camera.health().reconnects == 1


# -- closing --------------------------------------------------------------------------------------


def test_close_joins_the_capture_thread(source: MjpegSource) -> None:
    camera = camera_for(source.url, name="joined")
    camera.open()
    wait_for_frames(camera, 2)
    assert capture_threads("joined")
    camera.close()
    assert not capture_threads("joined")
    assert not camera.health().connected


def test_close_joins_the_capture_thread_of_a_stalled_source_within_the_read_timeout(source: MjpegSource) -> None:
    camera = camera_for(source.url, name="stalled", open_timeout_s=2.0)
    camera.open()
    wait_for_frames(camera, 2)
    source.stop()
    started_s = time.monotonic()
    camera.close()
    assert not capture_threads("stalled"), "the thread blocked in a read ended"
    assert time.monotonic() - started_s < READ_TIMEOUT_S + 2.0


def test_a_killed_source_stops_the_tick_with_an_error_naming_the_camera(source: MjpegSource) -> None:
    camera = camera_for(source.url, name="wrist", max_age_ms=300, open_timeout_s=2.0)
    with CameraSet({"wrist": camera}) as cams:
        cams.frames_at(time.monotonic())
        source.kill()
        time.sleep(0.5)
        with pytest.raises(CameraStaleError) as error:
            cams.frames_at(time.monotonic())
    message = str(error.value)
    assert message.startswith(f"camera 'wrist' (opencv {source.url}): newest frame is ")
    assert "the camera is disconnected; last error: " in message


def test_a_program_that_forgets_to_close_an_opencv_camera_still_exits_cleanly(source: MjpegSource) -> None:
    script = (
        "from cameras.config import OpenCVCameraConfig, build_camera\n"
        f"camera = build_camera('front', OpenCVCameraConfig(type='opencv', source={source.url!r}))\n"
        "camera.open()\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert "terminate called" not in result.stderr
