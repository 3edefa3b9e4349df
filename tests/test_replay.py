"""`robot-runtime replay` drives the follower through a recorded episode's actions, each through the
safety filter, after a soft approach from wherever the arm is."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from cli import run_cli

from recorders.reader import DatasetReader


def cli(*args: str) -> subprocess.CompletedProcess:
    return run_cli(*args, timeout_s=120)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dataset = tmp_path_factory.mktemp("replay") / "demo"
    result = cli(
        "record", "--robot", "so100", "--sim", "--dataset", str(dataset), "--task", "wave", "--episode-time", "2",
        "--reset-time", "0", "--video-codec", "h264", "--no-cameras",
    )
    assert result.returncode == 0, result.stderr
    return dataset


def test_replay_plays_every_recorded_action_and_the_follower_tracks_them(recorded: Path, tmp_path: Path) -> None:
    stats = tmp_path / "replay.json"
    result = cli("replay", "--robot", "so100", "--sim", "--dataset", str(recorded), "--episode", "0", "--stats-json", str(stats))
    assert result.returncode == 0, result.stderr
    out = json.loads(stats.read_text())
    actions = DatasetReader(recorded).episode(0).actions
    assert len(actions) > 30, "2 s at 30 fps: a busy computer may have skipped a few ticks, not half"
    assert out["frames replayed"] == f"{len(actions)} / {len(actions)}"
    assert out["safety_interventions"]["rejected"] == 0
    assert out["stop"][0]["torque_safe"]
    errors = [float(part.split()[-1]) for part in out["max tracking error"].split(", ")]
    assert len(errors) == actions.shape[1]
    assert max(errors) < 10.0, out["max tracking error"]  # degrees; the simulated servos follow within a tick or two
    assert np.ptp(actions, axis=0).max() > 10.0, "the episode should move the arm"


def test_replay_of_a_missing_episode_is_a_clear_error(recorded: Path) -> None:
    result = cli("replay", "--robot", "so100", "--sim", "--dataset", str(recorded), "--episode", "3")
    assert result.returncode == 2
    assert f"{recorded} has episodes 0..0, not 3" in result.stderr


def test_replay_on_another_robot_names_both_joint_sets(recorded: Path) -> None:
    result = cli("replay", "--robot", "bi_so100", "--sim", "--dataset", str(recorded), "--episode", "0")
    assert result.returncode == 2
    assert "records actions for ['shoulder_pan.pos'" in result.stderr and "'left_shoulder_pan.pos'" in result.stderr
