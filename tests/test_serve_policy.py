"""`robot-runtime serve-policy` serves a recorded episode or a scripted motion to openpi's own client,
says where once it listens, and stops cleanly on SIGTERM. It is safe by default: loopback only unless
told otherwise with an API key, a message size limit, one-line errors for clients and state of its own
for every connection; no observation, however hostile, stops it serving the others."""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import numpy as np
import pytest
from cli import WIDE, ServedPolicy, robot_cli, run_cli, serve_policy
from hypothesis import HealthCheck, given, settings
from openpi_client import msgpack_numpy
from openpi_client.websocket_client_policy import WebsocketClientPolicy
from test_policy_wire import hostile_frames
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from apps.serve_policy import is_loopback
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
        time.sleep(0.5)
        later = WebsocketClientPolicy("127.0.0.1", served.port).infer({"state": episode[0]})["actions"]
        metadata = client.get_server_metadata()
        returncode, stderr = served.stop()
    np.testing.assert_array_equal(actions, episode[:20])
    np.testing.assert_array_equal(later, episode[:20])  # a later connection replays from the start too
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
    assert result.returncode == 2
    assert f"{tmp_path / 'nowhere'}: no such dataset directory" in result.stderr


@contextlib.contextmanager
def started(*args: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """`robot-runtime serve-policy ARGS` as given (no --host added): the process and its first line."""
    process = subprocess.Popen(
        robot_cli("serve-policy", "--port", "0", *args),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=WIDE,
    )
    assert process.stderr is not None
    try:
        yield process, process.stderr.readline()
    finally:
        process.kill()
        process.communicate(timeout=10)


def test_by_default_it_listens_on_loopback_only() -> None:
    with started("--script") as (_, announcement):
        assert re.search(r" on ws://127\.0\.0\.1:\d+: Ctrl-C to stop$", announcement.rstrip()), announcement


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "gpu-box"])
def test_listening_beyond_loopback_without_an_api_key_is_a_usage_error(host: str) -> None:
    result = run_cli("serve-policy", "--script", "--host", host)
    assert result.returncode == 2
    assert f"error: --host {host} listens beyond this machine and needs --api-key" in " ".join(result.stderr.split())


def test_listening_on_all_interfaces_with_an_api_key_serves_only_clients_that_send_it() -> None:
    with started("--script", "--host", "0.0.0.0", "--api-key", "s3cret") as (_, announcement):
        port = int(re.search(r"on ws://0\.0\.0\.0:(\d+)", announcement)[1])  # type: ignore[index]
        assert "API key required" in announcement
        assert WebsocketClientPolicy("127.0.0.1", port, "s3cret").infer({"state": np.zeros(6)})["actions"].shape == (50, 6)
        with pytest.raises(InvalidStatus):
            WebsocketClientPolicy("127.0.0.1", port)


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("LOCALHOST", True), ("0.0.0.0", False), ("::", False), ("", False), ("10.0.0.1", False),
    ("gpu-box", False)])  # fmt: skip
def test_loopback_means_addresses_only_this_machine_can_reach(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def raw(served: ServedPolicy) -> ClientConnection:
    ws = connect(served.url, open_timeout=10, compression=None, max_size=None)
    assert msgpack_numpy.unpackb(ws.recv(timeout=10))["source"] == "script"
    return ws


def test_an_object_array_observation_gets_one_line_and_the_server_keeps_serving_others() -> None:
    """About 100 bytes that made openpi's decoder build an object array from wire bytes, and the server die."""
    hostile = {b"__ndarray__": True, b"data": b"\x41" * 48, b"dtype": "|O", b"shape": [6]}
    with serve_policy("--script") as served:
        ws = raw(served)
        ws.send(msgpack.packb({"observation/state": hostile, "prompt": "wave"}))
        refusal = ws.recv(timeout=10, decode=True)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        actions = WebsocketClientPolicy("127.0.0.1", served.port).infer({"state": np.zeros(6)})["actions"]
        returncode, stderr = served.stop()
    assert refusal.startswith("request 1 refused: the observation at ['observation/state']: dtype '|O' is not allowed")
    assert "\n" not in refusal and "Traceback" not in refusal
    assert actions.shape == (50, 6)
    assert returncode == 0 and "stopped after 2 requests" in stderr
    assert "request 1 from" in stderr and "refused" in stderr, "the server's log says what it refused"


def test_a_frame_over_the_default_limit_is_refused_and_the_server_keeps_serving() -> None:
    with serve_policy("--script") as served:
        ws = raw(served)
        ws.send(bytes(40 * 2**20))  # over the 32 MiB default: refused before it is decoded
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=30)
        actions = WebsocketClientPolicy("127.0.0.1", served.port).infer({"state": np.zeros(6)})["actions"]
        returncode, stderr = served.stop()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    assert actions.shape == (50, 6) and returncode == 0, stderr


def test_each_connection_of_a_script_swings_around_its_own_first_state() -> None:
    """After a client sent 1000 for every joint, a later client must not be asked for 1000 degrees."""
    with serve_policy("--script", "--amplitude", "5") as served:
        WebsocketClientPolicy("127.0.0.1", served.port).infer({"state": np.full(6, 1000.0)})
        later = WebsocketClientPolicy("127.0.0.1", served.port).infer({"state": np.full(6, 30.0)})["actions"]
    assert np.all(np.abs(later - 30.0) <= 5.0), later


@pytest.fixture(scope="module")
def shared_server() -> Iterator[ServedPolicy]:
    with serve_policy("--script", "--horizon", "2") as served:
        yield served


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(frame=hostile_frames())
def test_hostile_frames_never_stop_serve_policy(shared_server: ServedPolicy, frame: bytes) -> None:
    ws = raw(shared_server)
    ws.send(frame)
    with contextlib.suppress(ConnectionClosed):
        answer = ws.recv(timeout=30)
        if isinstance(answer, str):
            assert "\n" not in answer and answer.startswith("request "), answer
    ws.close()
    assert shared_server.process.poll() is None, "serve-policy is still running"
    assert WebsocketClientPolicy("127.0.0.1", shared_server.port).infer({"state": np.zeros(3)})["actions"].shape == (2, 3)
