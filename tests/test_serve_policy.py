"""`robot-runtime serve-policy` serves a recorded episode or a scripted motion to openpi's own client,
says where once it listens, and stops cleanly on SIGTERM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cli import run_cli, serve_policy
from openpi_client.websocket_client_policy import WebsocketClientPolicy

from recorders.reader import DatasetReader


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dataset = tmp_path_factory.mktemp("serve") / "demo"
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
        "--no-cameras",
        timeout_s=120,
    )
    assert result.returncode == 0, result.stderr
    return dataset


def test_a_scripted_motion_on_port_0_announces_the_real_port_and_openpis_client_gets_actions() -> None:
    with serve_policy("--script", "--horizon", "10", "--amplitude", "5", "--fault", "nan@2") as served:
        assert served.port != 0
        assert (
            served.announcement.startswith("serving a scripted swing")
            and "horizon 10" in served.announcement
            and "faults nan@2" in served.announcement
        )
        client = WebsocketClientPolicy("127.0.0.1", served.port)
        first = client.infer({"observation/state": np.full(6, 30.0), "prompt": "wave"})["actions"]
        second = client.infer({"observation/state": np.full(6, 30.0), "prompt": "wave"})["actions"]
        assert client.get_server_metadata()["source"] == "script"
        returncode, stderr = served.stop()
    assert first.shape == (10, 6)
    assert np.all(np.abs(first - 30.0) <= 5.0) and np.ptp(first) > 0, "a swing of at most 5 around the state sent"
    assert np.isnan(second).all(), "--fault nan@2 reaches the server"
    assert returncode == 0, stderr
    assert "stopped after 2 requests" in stderr


def test_a_replayed_episode_serves_the_recorded_actions(recorded: Path) -> None:
    episode = DatasetReader(recorded).episode(0).actions
    with serve_policy("--replay", str(recorded), "--episode", "0", "--horizon", "20") as served:
        assert served.announcement.startswith(f"serving episode 0 of {recorded} ({len(episode)} actions at 30 fps, horizon 20)")
        client = WebsocketClientPolicy("127.0.0.1", served.port)
        actions = client.infer({"state": episode[0]})["actions"]  # the episode's clock starts at this request
        metadata = client.get_server_metadata()
        returncode, stderr = served.stop()
    np.testing.assert_array_equal(actions, episode[:20])
    assert metadata["source"] == "episode" and metadata["episode"] == 0 and metadata["dataset"] == str(recorded)
    assert metadata["fps"] == 30 and metadata["length"] == len(episode)
    assert metadata["action_names"] == DatasetReader(recorded).info["features"]["action"]["names"]
    assert returncode == 0, stderr


def test_sigterm_stops_the_server_and_exits_0() -> None:
    with serve_policy("--script") as served:
        returncode, stderr = served.stop()
    assert returncode == 0, stderr
    assert "stopped after 0 requests" in stderr


def test_a_malformed_fault_is_a_usage_error_naming_it() -> None:
    result = run_cli("serve-policy", "--script", "--fault", "melt@3")
    assert result.returncode == 2
    assert "fault 'melt@3': expected KIND@N or KIND@N+" in result.stderr and "drop, stall, nan, shape, error" in result.stderr


def test_a_missing_dataset_is_the_readers_clear_error(tmp_path: Path) -> None:
    result = run_cli("serve-policy", "--replay", str(tmp_path / "nowhere"), "--port", "0")
    assert result.returncode == 1
    assert f"{tmp_path / 'nowhere'} holds no dataset" in result.stderr
