"""Cameras in the running robot: every tick's observation carries one stamped frame per configured
camera, `--stats-json` carries per-camera and cross-camera statistics, and a dead camera stops the run
with its name while the arm still parks."""

import json

import numpy as np
import pytest
from cli import run_cli

from cameras.stamp import read_stamp, stamp_height_px
from robot_runtime.config import ConfigError, load_robot_config
from robot_runtime.loop import FixedRateLoop
from robot_runtime.session import Session
from robot_runtime.teleop import Teleop


def test_each_tick_observes_every_camera_with_the_frame_it_chose():
    config = load_robot_config("so100")
    with Session(config, sim=True) as session:
        assert session.leader is not None, "so100 has a leader arm"
        teleop = Teleop(session.leader, session.follower, config.safety, config.fps, session.cameras)
        teleop.start()
        session.start_demonstrations()
        steps = []
        FixedRateLoop(30).run(lambda t: steps.append(teleop.tick(t)), duration_s=3.0)
    assert list(session.cameras) == ["front", "wrist", "top"]
    for step in steps:
        assert set(step.frames) == {"front", "wrist", "top"}
        for frame in step.frames.values():
            assert read_stamp(np.rot90(frame.image, 2) if frame is step.frames["wrist"] else frame.image).number == frame.number
            age_s = step.follower.timestamp_s - frame.capture_s  # negative when captured just after the arm read
            assert abs(age_s) < config.cameras["front"].max_age_ms / 1e3
    band = stamp_height_px(640)
    first, last = steps[0].frames["front"].image, steps[-1].frames["front"].image
    assert np.any(first[band:] != last[band:]), "the simulated camera should show the arm moving"


def test_stats_json_reports_each_camera_and_the_skew_between_them(tmp_path):
    stats_path = tmp_path / "stats.json"
    result = run_cli("teleop", "--robot", "so100", "--sim", "--duration", "3", "--stats-json", str(stats_path))
    assert result.returncode == 0, result.stderr
    cameras = json.loads(stats_path.read_text())["cameras"]
    assert [c["name"] for c in cameras["cameras"]] == ["front", "wrist", "top"]
    for camera in cameras["cameras"]:
        assert 30 / 2 <= camera["achieved_fps"] <= 30 * 1.1  # its own rate; a loaded machine delays some frames
        assert 0 <= camera["age_p50_ms"] <= camera["age_p99_ms"] < 250
        assert camera["reconnects"] == 0 and camera["last_error"] is None
    assert 0 <= cameras["skew_p50_ms"] <= cameras["skew_p99_ms"] <= cameras["skew_max_ms"]
    assert cameras["ticks"] >= 90 // 2
    assert "skew across cameras" in result.stderr


def test_a_camera_that_dies_stops_the_run_by_name_and_the_arm_parks(tmp_path):
    stats_path = tmp_path / "stats.json"
    result = run_cli(
        "teleop", "--robot", "so100", "--sim", "--duration", "10",
        "--sim-fault", "camera:wrist:disconnect@1.5", "--stats-json", str(stats_path),
    )  # fmt: skip
    assert result.returncode == 1
    stats = json.loads(stats_path.read_text())
    assert stats["outcome"] == "hardware error"
    assert stats["loop"]["ticks"] < 90  # stopped within max_age_ms of the camera dying, not at 10 s
    assert stats["stop"][0] == {"arm": "follower", "parked": True, "torque_safe": True, "detail": ""}
    message = " ".join(result.stderr.split())
    assert "error: camera 'wrist' (sim 640x480@30): newest frame is" in message
    assert "the camera is disconnected; last error: not found (simulated unplugged cable)" in message


def test_a_stalled_camera_is_named_as_stalled(tmp_path):
    result = run_cli("teleop", "--robot", "so100", "--sim", "--duration", "10", "--sim-fault", "camera:top:stall@1")
    assert result.returncode == 1
    assert "camera 'top' (sim 640x480@30)" in " ".join(result.stderr.split())
    assert "stalled" in result.stderr


def test_no_cameras_runs_the_arms_alone(tmp_path):
    stats_path = tmp_path / "stats.json"
    result = run_cli("teleop", "--robot", "so100", "--sim", "--no-cameras", "--duration", "1", "--stats-json", str(stats_path))
    assert result.returncode == 0, result.stderr
    assert "cameras" not in json.loads(stats_path.read_text())


def test_an_unknown_simulated_camera_fault_target_is_named():
    result = run_cli("teleop", "--robot", "so100", "--sim", "--duration", "1", "--sim-fault", "camera:side:stall")
    assert result.returncode == 2
    assert "no simulated camera 'side' (cameras: front, wrist, top)" in " ".join(result.stderr.split())


@pytest.mark.parametrize(
    ("camera", "key", "reason"),
    [
        (
            {"type": "webcam", "source": 0},
            "cameras.front",
            "does not match any of the expected tags: 'opencv', 'realsense', 'sim'",
        ),
        ({"type": "realsense", "width": 640}, "cameras.front.realsense", "give exactly one of 'serial'"),
        ({"type": "opencv", "source": 0, "rotation": 45}, "cameras.front.opencv.rotation", "Input should be 0, 90, 180 or 270"),
        ({"type": "opencv", "source": 0, "fourcc": "MJPEG"}, "cameras.front.opencv.fourcc", "four characters"),
        ({"type": "opencv", "source": 0, "exposure": 100}, "cameras.front.opencv.exposure", "unknown key"),
        ({"type": "sim", "fps": 0}, "cameras.front.sim.fps", "greater than 0"),
    ],
)
def test_a_malformed_camera_entry_names_file_key_and_reason(so100_yaml, write_robot, camera, key, reason):
    so100_yaml["cameras"] = {"front": camera}
    path = write_robot(so100_yaml)
    with pytest.raises(ConfigError) as info:
        load_robot_config(str(path))
    assert f"{path}: key '{key}'" in str(info.value) and reason in str(info.value)


def test_camera_names_must_be_identifiers(so100_yaml, write_robot):
    so100_yaml["cameras"] = {"front cam": {"type": "sim"}}
    with pytest.raises(ConfigError, match="camera name 'front cam' must be an identifier"):
        load_robot_config(str(write_robot(so100_yaml)))


def test_the_frame_selection_rule_comes_from_the_config():
    config = load_robot_config("so100", ["camera_selection=nearest"])
    with Session(config, sim=True, with_leaders=False) as session:
        assert session.cameras.selection == "nearest"
        state = session.follower.read()
        frames = session.cameras.frames_at(state.timestamp_s)
    assert set(frames) == {"front", "wrist", "top"}
