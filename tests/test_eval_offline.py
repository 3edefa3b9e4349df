"""`robot-runtime eval-offline` asks a policy server for actions along a recorded episode and reports how
far they are from the recorded ones, per joint, with a plot, a CSV and a JSON summary. Tested against
openpi's own server with stub policies whose errors are known."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from cli import run_cli
from openpi_server import WebsocketPolicyServer

from apps import eval_offline
from calibration.store import MotorCalibration, save_calibration
from drivers.feetech.models import SO_MOTORS
from drivers.feetech.sim_setup import SIM_CALIBRATION
from recorders.reader import DatasetReader
from robot_runtime.policy.mapping import MappingError

CAMERAS = ("front", "wrist", "top")
HORIZON = 15


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two seconds (60 frames) of the simulated SO-100 with its three simulated cameras."""
    dataset = tmp_path_factory.mktemp("eval") / "demo"
    result = run_cli(
        "record",
        "--robot",
        "so100",
        "--sim",
        "--dataset",
        str(dataset),
        "--task",
        "wave",
        "--episode-time",
        "2",
        "--reset-time",
        "0",
        "--video-codec",
        "h264",
        timeout_s=120,
    )
    assert result.returncode == 0, result.stderr
    return dataset


class ReplayPolicy:
    """Answers with the actions recorded from the query frame on (plus `bias`), `width` columns wide
    (zeros past the recorded actions, as a server that pads; fewer: cut). The queries come every
    `stride` frames, so the n-th is for frame n * stride (the held start pose makes states repeat, so a
    state alone cannot name its frame); every observation is checked against that frame's recorded
    state and must carry all three camera images."""

    def __init__(self, dataset: Path, stride: int, bias: np.ndarray | None = None, width: int | None = None) -> None:
        episode = DatasetReader(dataset).episode(0)
        self.states, self.actions = episode.states, episode.actions
        self.stride = stride
        self.bias = np.zeros(self.actions.shape[1], np.float32) if bias is None else bias.astype(np.float32)
        self.width = self.actions.shape[1] if width is None else width
        self.prompts: list[str] = []

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        frame = len(self.prompts) * self.stride
        self.prompts.append(obs["prompt"])
        np.testing.assert_array_equal(obs["observation/state"], self.states[frame])
        for camera in CAMERAS:
            image = obs[f"observation/images/{camera}"]
            assert image.shape == (224, 224, 3) and image.dtype == np.uint8, (camera, image.shape, image.dtype)
        rows = np.minimum(np.arange(frame, frame + HORIZON), len(self.actions) - 1)
        chunk = np.zeros((HORIZON, self.width), np.float32)
        chunk[:, : self.actions.shape[1]] = (self.actions[rows] + self.bias)[:, : self.width]
        return {"actions": chunk}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serving(policy: Any) -> Iterator[str]:
    """openpi's WebsocketPolicyServer on a free local port, in a thread with its own event loop."""
    port = free_port()
    loop = asyncio.new_event_loop()
    task = loop.create_task(WebsocketPolicyServer(policy, host="127.0.0.1", port=port).run())

    def serve() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(task)
        loop.close()

    thread = threading.Thread(target=serve, name="policy-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not healthy(port):
        assert time.monotonic() < deadline, "the policy server did not start listening"
        time.sleep(0.02)
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(task.cancel)
        thread.join(10)


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as reply:
            return reply.status == 200
    except OSError:
        return False


def eval_args(dataset: Path, policy: str, out: Path | None, **options: Any) -> argparse.Namespace:
    """The options `robot-runtime eval-offline` parses, with its defaults (`out` None: under the dataset)."""
    defaults: dict[str, Any] = {
        "robot": "so100",
        "overrides": [],
        "api_key": None,
        "episode": 0,
        "task_prompt": None,
        "stride": None,
    }
    return argparse.Namespace(**{**defaults, "dataset": dataset, "policy": policy, "out": out, **options})


def printed(capsys: pytest.CaptureFixture[str]) -> str:
    """What the command printed, as one line: the console wraps long messages at its width."""
    return " ".join(capsys.readouterr().err.split())


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    with path.open() as file:
        return {row["joint"]: row for row in csv.DictReader(file)}


def test_a_policy_that_returns_the_recorded_actions_has_no_error(recorded: Path, tmp_path: Path) -> None:
    policy = ReplayPolicy(recorded, stride=10)
    with serving(policy) as url:
        assert eval_offline.run(eval_args(recorded, url, tmp_path)) == 0
    summary = json.loads((tmp_path / "eval.json").read_text())
    assert summary["stride"] == 10, "custom mappings execute the whole chunk, so the stride defaults to 10"
    assert summary["queries"] == 6 and summary["horizon"] == HORIZON
    assert policy.prompts == ["wave"] * 6, "the prompt defaults to the episode's task"
    for joint in summary["joints"]:
        assert max(joint["first_mae"], joint["first_max"], joint["chunk_mae"], joint["chunk_max"]) < 1e-6, joint
    assert len(summary["round_trips_ms"]) == 6
    assert 0 < summary["round_trip_ms"]["p50"] <= summary["round_trip_ms"]["p99"]
    table = read_csv(tmp_path / "eval.csv")
    assert list(table) == DatasetReader(recorded).info["features"]["action"]["names"]
    assert {row["unit"] for row in table.values()} == {"deg", "percent"} and table["gripper.pos"]["unit"] == "percent"
    assert all(float(row["chunk_max"]) < 1e-6 for row in table.values())


def test_a_bias_on_one_joint_shows_on_that_joint_only(recorded: Path, tmp_path: Path) -> None:
    bias = np.zeros(6)
    bias[2] = 5.0
    with serving(ReplayPolicy(recorded, stride=20, bias=bias)) as url:
        assert eval_offline.run(eval_args(recorded, url, tmp_path, stride=20)) == 0
    table = read_csv(tmp_path / "eval.csv")
    for name, row in table.items():
        expected = 5.0 if name == "elbow_flex.pos" else 0.0
        for column in ("first_mae", "first_max", "chunk_mae", "chunk_max"):
            assert float(row[column]) == pytest.approx(expected, abs=1e-4), (name, column, row[column])
    assert json.loads((tmp_path / "eval.json").read_text())["queries"] == 3


def test_the_plot_is_an_image_with_a_panel_per_joint(recorded: Path, tmp_path: Path) -> None:
    with serving(ReplayPolicy(recorded, stride=10)) as url:
        assert eval_offline.run(eval_args(recorded, url, tmp_path)) == 0
    image = cv2.imread(str(tmp_path / "eval.png"))
    assert image is not None, "eval.png is not a readable PNG"
    height, width, _ = image.shape
    assert width > 600 and height > 6 * 100, image.shape


def test_prompt_and_output_folder_can_be_chosen_and_default_under_the_dataset(recorded: Path) -> None:
    policy = ReplayPolicy(recorded, stride=30)
    with serving(policy) as url:
        assert eval_offline.run(eval_args(recorded, url, None, task_prompt="wave twice", stride=30)) == 0
    assert policy.prompts == ["wave twice", "wave twice"]
    assert {p.name for p in (recorded / "eval" / "0").iterdir()} == {"eval.png", "eval.csv", "eval.json"}


def test_an_unreachable_server_is_exit_1_naming_its_url(
    recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"ws://127.0.0.1:{free_port()}"
    assert eval_offline.run(eval_args(recorded, url, tmp_path)) == 1
    assert f"policy server {url}" in printed(capsys)
    assert not (tmp_path / "eval.csv").exists()


def test_actions_too_narrow_for_the_joints_are_exit_1_saying_expected_and_got(
    recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with serving(ReplayPolicy(recorded, stride=10, width=4)) as url:
        assert eval_offline.run(eval_args(recorded, url, tmp_path)) == 1
    err = printed(capsys)
    assert "expected actions of shape (horizon, 6)" in err and f"got shape ({HORIZON}, 4)" in err


def test_actions_wider_than_the_joints_are_exit_1_naming_both_widths(
    recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with serving(ReplayPolicy(recorded, stride=10, width=14)) as url:
        assert eval_offline.run(eval_args(recorded, url, tmp_path)) == 1
    err = printed(capsys)
    assert "the server's actions are 14 wide, the follower's action space is 6 wide" in err
    assert not (tmp_path / "eval.csv").exists()


def test_a_server_declared_as_padding_has_its_padding_cut(recorded: Path, tmp_path: Path) -> None:
    with serving(ReplayPolicy(recorded, stride=10, width=32)) as url:
        assert eval_offline.run(eval_args(recorded, url, tmp_path, overrides=["policy.pads_actions_to=32"])) == 0
    table = read_csv(tmp_path / "eval.csv")
    assert len(table) == 6 and all(float(row["chunk_max"]) < 1e-6 for row in table.values())


def test_a_policy_section_that_cannot_map_fails_before_any_query(recorded: Path, tmp_path: Path) -> None:
    with pytest.raises(MappingError, match=r"so100\.yaml: key 'policy.preset': aloha expects 14 joints"):
        eval_offline.run(eval_args(recorded, "ws://127.0.0.1:1", tmp_path, overrides=["policy={preset: aloha}"]))


def save_follower_calibration(root: Path) -> None:
    """The so100 config's follower calibration where LeRobot keeps it (the tests' isolated root)."""
    calibration = {m.name: MotorCalibration(m.id, 0, *SIM_CALIBRATION[m.name]) for m in SO_MOTORS}
    save_calibration(root / "robots" / "so_follower" / "my_so100_follower.json", calibration)


def test_with_the_follower_calibration_at_hand_units_come_from_the_arm(
    recorded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_follower_calibration(tmp_path / "lerobot-calibration")
    with serving(ReplayPolicy(recorded, stride=10)) as url:
        args = eval_args(recorded, url, tmp_path / "out", overrides=["followers.0.body_norm=range_m100_100"])
        assert eval_offline.run(args) == 0
    assert {row["unit"] for row in read_csv(tmp_path / "out" / "eval.csv").values()} == {"percent"}
    assert json.loads((tmp_path / "out" / "eval.json").read_text())["units_from"] == "follower calibration"


def test_a_follower_whose_joints_differ_from_the_recording_is_refused(recorded: Path, tmp_path: Path) -> None:
    save_follower_calibration(tmp_path / "lerobot-calibration")
    with pytest.raises(ValueError, match=r"records actions for \['shoulder_pan.pos'.*follower has \['left_shoulder_pan.pos'"):
        eval_offline.run(eval_args(recorded, "ws://127.0.0.1:1", tmp_path, overrides=["followers.0.prefix=left"]))


def test_the_command_line(recorded: Path, tmp_path: Path) -> None:
    with serving(ReplayPolicy(recorded, stride=25)) as url:
        result = run_cli(
            "eval-offline",
            "--robot",
            "so100",
            "--dataset",
            str(recorded),
            "--policy",
            url,
            "--stride",
            "25",
            "--out",
            str(tmp_path),
            timeout_s=120,
        )
    assert result.returncode == 0, result.stderr
    assert "shoulder_pan.pos" in result.stderr and "chunk MAE" in result.stderr
    assert (tmp_path / "eval.csv").exists()
