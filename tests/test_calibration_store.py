"""LeRobot calibration files: same schema, same location, atomic writes, clear errors."""

import json

import pytest

from calibration.store import (
    CalibrationError,
    MotorCalibration,
    calibration_root,
    find_calibration_file,
    load_calibration,
    save_calibration,
)

LEROBOT_FILE = {
    "shoulder_pan": {"id": 1, "drive_mode": 0, "homing_offset": -1024, "range_min": 758, "range_max": 3292},
    "gripper": {"id": 6, "drive_mode": 0, "homing_offset": 1500, "range_min": 2000, "range_max": 3400},
}


def test_root_follows_lerobot_environment_variables(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_LEROBOT_CALIBRATION")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert calibration_root() == tmp_path / "hf" / "lerobot" / "calibration"
    monkeypatch.setenv("HF_LEROBOT_HOME", str(tmp_path / "lr"))
    assert calibration_root() == tmp_path / "lr" / "calibration"
    monkeypatch.setenv("HF_LEROBOT_CALIBRATION", str(tmp_path / "cal"))
    assert calibration_root() == tmp_path / "cal"


def test_default_root_is_lerobots(monkeypatch):
    for var in ("HF_LEROBOT_CALIBRATION", "HF_LEROBOT_HOME", "HF_HOME"):
        monkeypatch.delenv(var, raising=False)
    assert str(calibration_root()).endswith(".cache/huggingface/lerobot/calibration")


def test_a_lerobot_file_loads_unchanged_and_saves_back_identically(tmp_path):
    path = tmp_path / "arm.json"
    path.write_text(json.dumps(LEROBOT_FILE, indent=4))
    calibration = load_calibration(path)
    assert calibration["shoulder_pan"] == MotorCalibration(1, 0, -1024, 758, 3292)
    save_calibration(tmp_path / "again.json", calibration)
    assert (tmp_path / "again.json").read_text() == path.read_text()


def test_newer_folder_name_is_preferred_over_the_legacy_one(tmp_path):
    for name in ("so_follower", "so100_follower"):
        (tmp_path / "robots" / name).mkdir(parents=True)
        (tmp_path / "robots" / name / "arm.json").write_text("{}")
    found = find_calibration_file(tmp_path, "robots", ("so_follower", "so100_follower"), "arm")
    assert found == tmp_path / "robots" / "so_follower" / "arm.json"
    (tmp_path / "robots" / "so_follower" / "arm.json").unlink()
    assert find_calibration_file(tmp_path, "robots", ("so_follower", "so100_follower"), "arm") == (
        tmp_path / "robots" / "so100_follower" / "arm.json"
    )


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected an object of motors"),
        ('{"gripper": {"id": 6}}', "motor 'gripper' must have exactly the keys"),
        ('{"gripper": {"id": 6, "drive_mode": 0, "homing_offset": 1.5, "range_min": 1, "range_max": 2}}', "must be integers"),
    ],
)
def test_malformed_files_name_the_file_and_the_problem(tmp_path, content, reason):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(CalibrationError, match=reason) as info:
        load_calibration(path)
    assert str(path) in str(info.value)


def test_save_leaves_no_temporary_files(tmp_path):
    save_calibration(tmp_path / "deep" / "arm.json", {"gripper": MotorCalibration(6, 0, 0, 1, 2)})
    assert [p.name for p in (tmp_path / "deep").iterdir()] == ["arm.json"]
