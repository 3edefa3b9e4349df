"""PolicyServer is a drop-in for openpi's server: openpi's own client (openpi-client, unmodified) talks to
it. On top it adds latency, an API key and injected faults, refuses hostile observations with one line
while serving everyone else, and serves recorded episodes and scripted motions with each connection's
own clock and starting state."""

from __future__ import annotations

import threading
import time
import urllib.request

import msgpack
import numpy as np
import pytest
from fakes import FakeClock
from hypothesis import HealthCheck, given, settings
from openpi_client import msgpack_numpy
from openpi_client.websocket_client_policy import WebsocketClientPolicy
from test_policy_wire import hostile_frames
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from robot_runtime.policy.served import EpisodePolicy, ScriptedPolicy, find_state
from robot_runtime.policy.server import Fault, PolicyServer

STATE = np.array([10.0, -20.0, 30.0, 0.5], dtype=np.float32)


class EchoPolicy:
    """Replies with `horizon` copies of the state it was sent, or waits first when told to."""

    def __init__(self, horizon: int = 50) -> None:
        self.metadata = {"name": "echo", "action_dim": 4}
        self.horizon = horizon
        self.released = threading.Event()

    def infer(self, obs: dict) -> dict:
        if obs.get("slow"):
            self.released.wait(5)
        return {"actions": np.tile(obs["state"], (self.horizon, 1)), "prompt": obs.get("prompt")}


@pytest.fixture
def echo() -> EchoPolicy:
    return EchoPolicy()


def serving(policy: object, **options: object) -> PolicyServer:
    return PolicyServer(policy, port=0, **options)  # type: ignore[arg-type]


def openpi_client(server: PolicyServer, api_key: str | None = None) -> WebsocketClientPolicy:
    return WebsocketClientPolicy("127.0.0.1", server.port, api_key)


def raw_client(server: PolicyServer) -> ClientConnection:
    """A bare WebSocket connection, for what openpi's client cannot do: time out, ping; metadata already read."""
    ws = connect(server.url, open_timeout=2, compression=None, max_size=None)
    assert msgpack_numpy.unpackb(ws.recv(timeout=2)) == server.policy.metadata
    return ws


def wait_for_requests(server: PolicyServer, count: int) -> None:
    deadline_s = time.monotonic() + 5
    while server.requests < count:
        assert time.monotonic() < deadline_s, f"the server got {server.requests} requests, not {count}"
        time.sleep(0.01)


def ask(client: WebsocketClientPolicy, **extra: object) -> dict:
    return client.infer({"state": STATE, "prompt": "wave", **extra})


def test_openpis_client_gets_the_metadata_then_replies_with_server_timing(echo: EchoPolicy) -> None:
    with serving(echo) as server:
        client = openpi_client(server)
        first, second = ask(client), ask(client)
    assert server.port != 0 and server.url == f"ws://127.0.0.1:{server.port}"
    assert client.get_server_metadata() == {"name": "echo", "action_dim": 4}
    np.testing.assert_array_equal(first["actions"], np.tile(STATE, (50, 1)))
    assert first["actions"].dtype == np.float32 and first["prompt"] == "wave"
    assert set(first["server_timing"]) == {"infer_ms"}
    assert set(second["server_timing"]) == {"infer_ms", "prev_total_ms"}
    assert server.requests == 2


def test_with_an_api_key_only_clients_sending_it_connect_and_healthz_stays_open(echo: EchoPolicy) -> None:
    with serving(echo, api_key="s3cret") as server:
        assert ask(openpi_client(server, api_key="s3cret"))["actions"].shape == (50, 4)
        for wrong in ("guess", None):
            with pytest.raises(InvalidStatus) as refused:
                openpi_client(server, api_key=wrong)
            assert refused.value.response.status_code == 401
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=2) as health:
            assert (health.status, health.read()) == (200, b"OK\n")


def test_a_port_in_use_is_an_error_naming_it(echo: EchoPolicy) -> None:
    with (
        serving(echo) as first,
        pytest.raises(OSError, match=f"cannot listen on ws://127.0.0.1:{first.port}: the port is in use"),
    ):
        PolicyServer(echo, port=first.port).start()


@pytest.mark.parametrize(
    ("text", "fault"), [("nan@5", Fault("nan", 5)), ("drop@1+", Fault("drop", 1, onwards=True)), ("stall@12", Fault("stall", 12))]
)
def test_faults_are_written_kind_at_request(text: str, fault: Fault) -> None:
    assert Fault.parse(text) == fault
    assert str(fault) == text


@pytest.mark.parametrize("text", ["nan", "nan@", "nan@0", "nan@-1", "melt@3", "nan@3++", "NaN@3", "nan@three"])
def test_malformed_faults_are_refused_listing_the_kinds(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected KIND@N or KIND@N\+ .* drop, stall, nan, shape, error"):
        Fault.parse(text)


def test_faults_count_requests_over_the_servers_lifetime_not_per_connection(echo: EchoPolicy) -> None:
    with serving(echo, faults=[Fault.parse("nan@2"), Fault.parse("shape@4+")]) as server:
        replies = [ask(openpi_client(server))["actions"] for _ in range(5)]  # a new connection each time
    assert [np.isnan(r).all() for r in replies] == [False, True, False, False, False]
    assert [r.shape for r in replies] == [(50, 4), (50, 4), (50, 4), (50, 3), (50, 3)]


def test_a_shape_fault_on_a_one_action_chunk_is_flat() -> None:
    with serving(EchoPolicy(horizon=1), faults=[Fault.parse("shape@1")]) as server:
        assert ask(openpi_client(server))["actions"].shape == (3,)


def test_an_error_fault_sends_one_line_then_closes_with_1011(echo: EchoPolicy, caplog: pytest.LogCaptureFixture) -> None:
    with serving(echo, faults=[Fault.parse("error@1")]) as server:
        client = openpi_client(server)
        with pytest.raises(RuntimeError) as error:
            ask(client)
        with pytest.raises(ConnectionClosedError) as closed:
            ask(client)
    sent = str(error.value).removeprefix("Error in inference server:\n")
    assert sent == "request 1 failed: the policy raised RuntimeError: injected fault error@1 (details in the server's log)"
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
    assert "Traceback" in caplog.text and "_faulty_infer" in caplog.text, "the traceback stays in the server's log"


def test_a_policy_exception_reaches_the_client_as_one_line_without_the_traceback() -> None:
    with serving(ScriptedPolicy()) as server, pytest.raises(RuntimeError) as error:
        openpi_client(server).infer({"prompt": "wave"})
    assert "request 1 failed: the policy raised ValueError: no state in the observation" in str(error.value)
    assert "Traceback" not in str(error.value) and "File " not in str(error.value)


def object_array_observation() -> bytes:
    """About 100 bytes that made openpi's decoder build an object array from wire bytes: pointers."""
    hostile = {b"__ndarray__": True, b"data": b"\x41" * 16, b"dtype": "|O", b"shape": [2]}
    return msgpack.packb({"state": hostile, "prompt": "wave"})


def test_an_object_array_observation_is_refused_in_one_line_and_everyone_else_is_served(echo: EchoPolicy) -> None:
    with serving(echo) as server:
        hostile = raw_client(server)
        hostile.send(object_array_observation())
        refusal = hostile.recv(timeout=5)
        with pytest.raises(ConnectionClosed) as closed:
            hostile.recv(timeout=5)
        assert ask(openpi_client(server))["actions"].shape == (50, 4)
    assert refusal == (
        "request 1 refused: the observation at ['state']: dtype '|O' is not allowed (allowed: bool, signed and unsigned "
        "integers of 1-8 bytes, floats of 2-8 bytes) (details in the server's log)"
    )
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert server.requests == 2


def test_a_text_frame_is_refused_as_not_msgpack(echo: EchoPolicy) -> None:
    with serving(echo) as server:
        ws = raw_client(server)
        ws.send('{"state": [1, 2]}')
        assert "request 1 refused: the observation is a text frame" in ws.recv(timeout=5)


def test_an_observation_over_the_message_limit_closes_its_connection_with_1009(echo: EchoPolicy) -> None:
    with serving(echo, max_message_bytes=100_000) as server:
        ws = raw_client(server)
        ws.send(msgpack_numpy.packb({"state": STATE, "image": np.zeros((224, 224, 3), np.uint8)}))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert ask(openpi_client(server))["actions"].shape == (50, 4)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(frame=hostile_frames())
def test_hostile_frames_get_a_reply_or_a_one_line_refusal_and_the_server_carries_on(frame: bytes) -> None:
    with serving(EchoPolicy(horizon=2)) as server:
        ws = raw_client(server)
        ws.send(frame)
        try:
            answer = ws.recv(timeout=10)
        except ConnectionClosed:
            answer = None  # the echo policy itself fails on frames without a state: a 1011 after its line
        ws.close()
        if isinstance(answer, str):
            assert "\n" not in answer and answer.startswith("request 1 "), answer
        assert ask(openpi_client(server))["actions"].shape == (2, 4), "the server still serves"


def test_a_drop_fault_cuts_the_connection_without_a_close_frame(echo: EchoPolicy) -> None:
    with serving(echo, faults=[Fault.parse("drop@1")]) as server:
        with pytest.raises(ConnectionClosedError) as dropped:
            ask(openpi_client(server))
        assert dropped.value.rcvd is None
        assert ask(openpi_client(server))["actions"].shape == (50, 4), "the server itself carries on"


def test_a_stall_fault_withholds_the_reply_for_stall_s_while_the_connection_stays_open(echo: EchoPolicy) -> None:
    with serving(echo, faults=[Fault.parse("stall@1")], stall_s=1.0) as server:
        ws = raw_client(server)
        ws.send(msgpack_numpy.packb({"state": STATE}))
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.2)
        assert ws.ping().wait(2), "the stalled connection still answers pings"
        late = msgpack_numpy.unpackb(ws.recv(timeout=5))
        ws.close()
    np.testing.assert_array_equal(late["actions"], np.tile(STATE, (50, 1)))


def test_latency_delays_a_reply_without_holding_up_other_connections(echo: EchoPolicy) -> None:
    with serving(echo, latency_s=30.0) as server:
        waiting = raw_client(server)
        waiting.send(msgpack_numpy.packb({"state": STATE}))
        wait_for_requests(server, 1)
        raw_client(server).close()  # its handshake and metadata come through meanwhile
        with pytest.raises(TimeoutError):
            waiting.recv(timeout=0.2)
    with pytest.raises(ConnectionClosed) as stopped:
        waiting.recv(timeout=2)
    assert stopped.value.rcvd is not None and stopped.value.rcvd.code == 1001, "stopping closes connections as going away"


def test_a_slow_policy_call_does_not_hold_up_other_connections(echo: EchoPolicy) -> None:
    with serving(echo) as server:
        slow = raw_client(server)
        slow.send(msgpack_numpy.packb({"state": STATE, "slow": True}))
        wait_for_requests(server, 1)
        fast = raw_client(server)
        fast.send(msgpack_numpy.packb({"state": STATE}))
        assert msgpack_numpy.unpackb(fast.recv(timeout=2))["actions"].shape == (50, 4)
        echo.released.set()
        assert msgpack_numpy.unpackb(slow.recv(timeout=2))["actions"].shape == (50, 4)
        slow.close()
        fast.close()


EPISODE = np.arange(40, dtype=np.float32).reshape(20, 2)  # 20 frames at 10 fps, action i = [2i, 2i + 1]


def frames(actions: np.ndarray) -> list[int]:
    return [int(a[0]) // 2 for a in actions]


def test_an_episode_is_served_from_the_frame_of_the_time_since_the_connections_first_request(fake_clock: FakeClock) -> None:
    policy = EpisodePolicy(EPISODE, fps=10, horizon=4, clock=fake_clock).connection()
    fake_clock.advance(5.0)  # before the first request: does not count
    assert frames(policy.infer({})["actions"]) == [0, 1, 2, 3]
    fake_clock.advance(0.31)
    assert frames(policy.infer({})["actions"]) == [3, 4, 5, 6]
    fake_clock.advance(1.5)
    assert frames(policy.infer({})["actions"]) == [18, 19, 19, 19], "the last action is repeated past the end"
    fake_clock.advance(60.0)
    assert frames(policy.infer({})["actions"]) == [19, 19, 19, 19]
    assert policy.metadata == {"source": "episode", "fps": 10, "length": 20}


def test_each_connection_replays_the_episode_from_its_own_start(fake_clock: FakeClock) -> None:
    with serving(EpisodePolicy(EPISODE, fps=10, horizon=3, clock=fake_clock)) as server:
        first = openpi_client(server)
        ask(first)
        fake_clock.advance(1.0)
        second = openpi_client(server)
        started, carried_on = ask(second), ask(first)
    assert frames(started["actions"]) == [0, 1, 2], "a new connection starts at the episode's first frame"
    assert frames(carried_on["actions"]) == [10, 11, 12], "the first connection carries on on its own clock"


@pytest.mark.parametrize(
    "obs",
    [
        {"state": STATE},
        {"observation/state": STATE, "observation/image": np.zeros((8, 8, 3), np.uint8)},
        {"observation.state": STATE},
        {"observation/joint_position": STATE[:3], "observation/gripper_position": STATE[3:], "prompt": "wave"},
    ],
)
def test_the_script_finds_the_state_where_openpis_clients_and_lerobot_put_it(obs: dict) -> None:
    np.testing.assert_array_equal(find_state(obs), STATE)


def test_without_a_state_the_script_lists_the_keys_it_got_and_those_it_wants() -> None:
    with pytest.raises(ValueError, match="got images, observation/joint_position, prompt") as error:
        find_state({"images": {}, "observation/joint_position": STATE, "prompt": "wave"})
    message = str(error.value)
    assert "got images, observation/joint_position, prompt" in message
    assert "state, observation/state, observation.state" in message and "observation/gripper_position" in message


def test_the_script_swings_every_dimension_around_the_first_state_it_saw(fake_clock: FakeClock) -> None:
    policy = ScriptedPolicy(horizon=5, fps=10, amplitude=5.0, period_s=2.0, clock=fake_clock).connection()
    first = policy.infer({"state": STATE})["actions"]
    swing = 5.0 * np.sin(2 * np.pi * np.arange(5) / 10 / 2.0)
    np.testing.assert_allclose(first, STATE + swing[:, None])
    fake_clock.advance(0.5)  # a quarter period later, wherever the arm went
    later = policy.infer({"state": STATE + 100})["actions"]
    np.testing.assert_allclose(later[0], STATE + 5.0)
    assert policy.metadata["source"] == "script"


def test_each_connection_swings_around_its_own_first_state() -> None:
    """A client that once sent 1000 for every joint must not make a later client's arm swing around 1000."""
    with serving(ScriptedPolicy(horizon=5, amplitude=5.0)) as server:
        ask(openpi_client(server), state=np.full(4, 1000.0, np.float32))
        later = openpi_client(server).infer({"state": STATE})["actions"]
    assert np.all(np.abs(later - STATE) <= 5.0), later
