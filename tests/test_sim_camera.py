"""The simulated camera runs free at its frame rate, draws the arm as it is at capture time, stamps
that time and its frame number into the image, and can stall or be unplugged on purpose."""

import subprocess
import sys
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from cameras.base import CameraStaleError, Frame
from cameras.camera_set import CameraSet
from cameras.config import SimCameraConfig
from cameras.sim import LINK_LENGTHS, SceneArm, SimCamera
from cameras.stamp import read_stamp


class MovableArm:
    """A pose the test sets; the camera reads it from its own thread."""

    def __init__(self) -> None:
        self.pose = np.array([0.0, -30.0, 40.0, 30.0, 0.0, 50.0])

    def scene(self) -> tuple[SceneArm, ...]:
        """Five joints in degrees and a gripper in percent, as an SO-100 reports them."""
        return (SceneArm("follower", self.current_pose, (1.0,) * 5 + (0.0,), gripper=(0.0, 100.0)),)

    def current_pose(self) -> np.ndarray:
        return self.pose.copy()


def sim_camera(name: str = "front", arm: MovableArm | None = None, **settings) -> SimCamera:
    config = SimCameraConfig(type="sim", **settings)
    return SimCamera(name, config, (arm or MovableArm()).scene())


def eventually(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    """Whether `condition` comes true within `timeout_s`: waits for the capture thread, however busy the machine."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def fresh(cams: CameraSet) -> bool:
    """Whether every camera of the set has a frame within its max_age_ms now."""
    try:
        cams.frames_at(time.monotonic())
    except CameraStaleError:
        return False
    return True


def collect(camera: SimCamera, count: int, timeout_s: float = 5.0) -> list[Frame]:
    frames: dict[int, Frame] = {}
    deadline = time.monotonic() + timeout_s
    while len(frames) < count and time.monotonic() < deadline:
        for frame in camera.buffered():
            frames[frame.index] = frame
        time.sleep(0.01)
    return [frames[i] for i in sorted(frames)]


def test_frames_are_stamped_with_their_number_and_capture_time():
    with sim_camera(fps=30) as camera:
        frames = collect(camera, 15)
    assert len(frames) >= 15
    for frame in frames:
        stamp = read_stamp(frame.image)
        assert stamp.number == frame.number
        assert stamp.capture_us == round(frame.capture_s * 1e6)
        assert frame.clock == "sim" and frame.capture_s <= frame.arrival_s
    numbers = [f.number for f in frames]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))


def test_frames_come_at_the_configured_rate():
    with sim_camera(fps=20) as camera:
        frames = collect(camera, 12)
    periods_s = np.diff([f.capture_s for f in frames])
    assert np.median(periods_s) == pytest.approx(1 / 20, rel=0.2)


def test_delivered_images_are_rgb_read_only_and_in_the_configured_size():
    with sim_camera(width=320, height=240) as camera:
        frame = camera.latest()
        assert frame is not None, "open() returns once the first frame is there"
        assert frame.image.shape == (240, 320, 3) and frame.image.dtype == np.uint8
        with pytest.raises(ValueError, match="read-only"):
            frame.image[0, 0, 0] = 1


def test_rotation_turns_the_image():
    with sim_camera(width=320, height=240, rotation=90) as camera:
        frame = camera.latest()
    assert frame is not None, "open() returns once the first frame is there"
    assert frame.image.shape == (320, 240, 3)
    unrotated = np.rot90(frame.image, k=1)  # undo the clockwise quarter turn
    assert read_stamp(np.ascontiguousarray(unrotated)).number == frame.number


def test_the_picture_follows_the_arm():
    arm = MovableArm()
    camera = sim_camera(arm=arm)
    before = camera.render(1.0, 0)
    arm.pose = arm.pose + np.array([0.0, 40.0, -30.0, 20.0, 0.0, -40.0])
    after = camera.render(1.0, 0)
    changed = np.any(before != after, axis=2)
    assert changed.mean() > 0.01  # the arm moved across the picture
    assert not changed[-40:, :].all()  # not a different picture altogether


def picture(*arms: SceneArm, view_deg: float = 0.0) -> np.ndarray:
    return SimCamera("front", SimCameraConfig(type="sim", view_deg=view_deg), arms).render(1.0, 0)


def fixed(values) -> Callable[[], np.ndarray]:
    return lambda: np.array(values, dtype=np.float64)


def test_an_arm_in_radians_and_metres_is_drawn_as_the_same_arm_in_degrees_and_percent():
    joints_deg = [20.0, -30.0, 45.0, 10.0, 0.0]
    degrees = SceneArm("a", fixed([*joints_deg, 75.0]), (1.0,) * 5 + (0.0,), gripper=(0.0, 100.0))
    in_radians = fixed([*np.radians(joints_deg), 0.033])
    radians = SceneArm("a", in_radians, (np.degrees(1.0),) * 5 + (0.0,), gripper=(0.0, 0.044))
    misread = SceneArm("a", in_radians, (1.0,) * 5 + (0.0,), gripper=(0.0, 0.044))
    assert np.array_equal(picture(radians), picture(degrees))
    assert not np.array_equal(picture(misread), picture(degrees))  # read as degrees, the same values are another pose


def tool_arm(x_m: float, z_m: float, rotvec=(np.pi, 0.0, 0.0)) -> SceneArm:
    """A Cartesian arm: TCP x y z in metres, a rotation vector, and a gripper width in metres."""
    units = (0.0, 0.0, 0.0, np.degrees(1.0), np.degrees(1.0), np.degrees(1.0), 0.0)
    return SceneArm("a", fixed([x_m, 0.0, z_m, *rotvec, 0.05]), units, gripper=(0.0, 0.1), tcp=0, reach_m=1.0)


@pytest.mark.parametrize(("x_m", "z_m"), [(0.4, 0.3), (-0.25, 0.5), (0.1, 0.15)])
def test_an_arm_driven_in_cartesian_space_is_drawn_with_its_wrist_at_the_tool_position(x_m, z_m):
    image = picture(tool_arm(x_m, z_m))
    height, width = image.shape[:2]
    scale_px_per_m = (LINK_LENGTHS[0] + LINK_LENGTHS[1]) * height  # the wrist reaches 1 m (reach_m) at full stretch
    wrist = (round(width / 2 + x_m * scale_px_per_m), round(height * 0.92 - z_m * scale_px_per_m))
    assert np.all(image[wrist[1], wrist[0]] >= 200), "the wrist joint's light disc is where the tool is"
    assert not np.array_equal(image, picture(tool_arm(x_m, z_m), view_deg=60.0)), "another side sees it foreshortened"


def test_the_tool_s_orientation_turns_its_fingers():
    down, forward = picture(tool_arm(0.4, 0.3)), picture(tool_arm(0.4, 0.3, rotvec=(0.0, np.pi / 2, 0.0)))
    assert not np.array_equal(down, forward)
    flipped = picture(tool_arm(0.4, 0.3, rotvec=(-np.pi, 0.0, 0.0)))
    assert np.array_equal(down, flipped), "the same rotation either side of the flip"


def test_a_stalled_camera_stays_connected_but_goes_stale_and_is_named():
    camera = sim_camera("wrist", fps=30, max_age_ms=150)
    with CameraSet({"wrist": camera}) as cams:
        assert eventually(lambda: fresh(cams))
        camera.inject("stall")
        delivered = camera.health().frames
        time.sleep(0.4)
        assert camera.health().frames <= delivered + 1 and camera.health().connected
        with pytest.raises(
            CameraStaleError, match=r"camera 'wrist' \(sim 640x480@30\).*connected but not delivering \(stalled\)"
        ):
            cams.frames_at(time.monotonic())
        camera.clear()
        assert eventually(lambda: fresh(cams)), "frames flow again once the stall clears"


def test_an_unplugged_camera_is_reopened_when_it_comes_back():
    camera = sim_camera("top", fps=30, max_age_ms=2000)
    with CameraSet({"top": camera}) as cams:
        camera.inject("disconnect")
        assert eventually(lambda: not camera.health().connected), "the unplug is noticed"
        assert "simulated unplugged cable" in (camera.health().last_error or "")
        last = cams.frames_at(time.monotonic())["top"]  # within max_age_ms: the run goes on with the last frame
        camera.clear()
        assert eventually(lambda: camera.health().reconnects == 1 and camera.health().connected), "reopened"
        assert eventually(lambda: cams.frames_at(time.monotonic())["top"].capture_s > last.capture_s), "new frames"


def test_close_joins_the_capture_thread_even_while_stalled():
    camera = sim_camera("front")
    camera.open()
    camera.inject("stall")
    camera.close()
    assert not [t for t in threading.enumerate() if t.name == "camera-front"]


def test_a_program_that_forgets_to_close_its_camera_still_exits_cleanly():
    script = (
        "from cameras.config import SimCameraConfig\n"
        "from cameras.sim import SimCamera\n"
        "camera = SimCamera('front', SimCameraConfig(type='sim'))\n"
        "camera.open()\n"
        "camera.inject('stall')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert "terminate called" not in result.stderr
