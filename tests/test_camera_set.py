"""The camera set gives every tick one frame per camera with its capture time, counts what was dropped
or reused, measures cross-camera skew, and stops with an error naming a camera that went stale."""

import threading
import time

import pytest
from fakes import HandFedCamera

from cameras.base import CameraError, CameraStaleError
from cameras.camera_set import CameraSet


def camera_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("camera-")]


@pytest.fixture
def pair():
    cameras = {"front": HandFedCamera("front"), "wrist": HandFedCamera("wrist")}
    yield cameras
    for camera in cameras.values():
        camera.close()


def opened(cameras: dict[str, HandFedCamera], selection: str = "newest", first_capture_s: float | None = None) -> CameraSet:
    """Open a set whose cameras each deliver a first frame captured at `first_capture_s` (default: now)."""
    feeders = [threading.Timer(0.05, c.deliver, (first_capture_s or time.monotonic(),)) for c in cameras.values()]
    for feeder in feeders:
        feeder.start()
    camera_set = CameraSet(cameras, selection)  # type: ignore[arg-type]
    camera_set.open()
    for feeder in feeders:
        feeder.join()
    return camera_set


def test_each_tick_gets_the_newest_frame_of_every_camera_with_its_capture_time(pair):
    cams = opened(pair)
    now = time.monotonic()
    pair["front"].deliver(now - 0.010, number=7)
    pair["wrist"].deliver(now - 0.030, number=3)
    frames = cams.frames_at(now)
    assert {name: (f.number, f.capture_s) for name, f in frames.items()} == {"front": (7, now - 0.010), "wrist": (3, now - 0.030)}
    stats = cams.stats()
    assert stats.skew_p50_ms == pytest.approx(20.0)
    cams.close()


def test_nearest_selection_picks_the_frame_captured_closest_to_the_tick(pair):
    cams = opened(pair, "nearest")
    now = time.monotonic()
    for camera in pair.values():
        for k, offset_s in enumerate((-0.090, -0.060, -0.030, -0.001)):
            camera.deliver(now + offset_s, number=10 + k)
    frames = cams.frames_at(now - 0.055)
    assert frames["front"].number == 11 and frames["wrist"].number == 11
    cams.close()


def test_frames_no_tick_saw_count_as_dropped_and_a_frame_seen_twice_as_reused(pair):
    cams = opened(pair)
    front = pair["front"]
    cams.frames_at(time.monotonic())  # both cameras: their first frame
    for _ in range(3):
        front.deliver(time.monotonic())  # front: three new frames, only the last one is selected
    cams.frames_at(time.monotonic())  # wrist: nothing new, its first frame again
    cams.frames_at(time.monotonic())  # both: nothing new
    by_name = {c.name: c for c in cams.stats().cameras}
    assert (by_name["front"].dropped, by_name["front"].reused) == (2, 1)
    assert (by_name["wrist"].dropped, by_name["wrist"].reused) == (0, 2)
    assert by_name["front"].frames_delivered == 4
    cams.close()


def test_numbers_the_device_skipped_are_counted_as_device_gaps(pair):
    cams = opened(pair)
    for number in (1, 2, 5, 6, 9):
        pair["front"].deliver(time.monotonic(), number=number)
    assert {c.name: c.device_gaps for c in cams.stats().cameras} == {"front": 4, "wrist": 0}
    cams.close()


def test_a_stalled_camera_is_an_error_naming_it_with_its_age():
    front = HandFedCamera("front", max_age_s=0.1)
    cams = opened({"front": front}, first_capture_s=time.monotonic() - 0.5)
    with pytest.raises(
        CameraStaleError,
        match=(
            r"camera 'front' \(hand-fed\): newest frame is \d+ ms old, more than max_age_ms 100; "
            r"the camera is connected but not delivering \(stalled\)"
        ),
    ):
        cams.frames_at(time.monotonic())
    cams.close()


def test_a_disconnected_camera_is_reported_reconnected_and_its_error_named_while_it_is_gone():
    front = HandFedCamera("front", max_age_s=0.2)
    cams = opened({"front": front})
    front.fail("USB device vanished")
    front._wait_for(lambda: front.health().last_error == "USB device vanished")  # the capture thread saw it
    time.sleep(0.3)  # longer than max_age_s: the last frame is stale now
    with pytest.raises(CameraStaleError, match="last error: USB device vanished"):
        cams.frames_at(time.monotonic())
    front._wait_for(lambda: front.health().reconnects == 1)  # the device comes back (open succeeds again)
    front.deliver(time.monotonic())
    assert cams.frames_at(time.monotonic())["front"].index == 1
    assert cams.stats().cameras[0].reconnects == 1
    cams.close()


def test_a_camera_that_never_delivers_fails_open_by_name_and_the_others_are_closed():
    good, silent = HandFedCamera("good"), HandFedCamera("silent", open_timeout_s=0.3)
    threading.Timer(0.05, good.deliver, (time.monotonic(),)).start()
    cams = CameraSet({"good": good, "silent": silent})
    with pytest.raises(CameraError, match=r"camera 'silent' \(hand-fed\): no frame within 0.3 s of opening"):
        cams.open()
    assert camera_threads() == []


def test_close_joins_every_capture_thread(pair):
    cams = opened(pair)
    assert sorted(camera_threads()) == ["camera-front", "camera-wrist"]
    cams.close()
    assert camera_threads() == []


def test_an_empty_set_gives_empty_observations():
    with CameraSet({}) as cams:
        assert cams.frames_at(time.monotonic()) == {}
        assert cams.stats().cameras == ()
