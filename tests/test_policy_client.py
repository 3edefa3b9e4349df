"""PolicyClient speaks openpi's protocol: it is tested against openpi's own server (openpi-server,
unmodified), and against ours where a failure is needed that openpi's server cannot produce on demand
(dropped connections, stalls, API keys), and against raw WebSocket servers sending hostile frames.
Every failure is a PolicyError subclass naming the URL, in one line."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import itertools
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from openpi_client import msgpack_numpy
from openpi_server import WebsocketPolicyServer
from test_policy_wire import hostile_frames
from websockets.sync.server import ServerConnection
from websockets.sync.server import serve as sync_serve

from robot_runtime.policy.client import (
    CONNECTION_LOG,
    PolicyClient,
    PolicyConnectionLost,
    PolicyError,
    PolicyHandshakeTimeout,
    PolicyProtocolError,
    PolicyServerError,
    PolicyTimeout,
    PolicyUnreachable,
    normalize_url,
)
from robot_runtime.policy.server import Fault, PolicyServer

Infer = Callable[[dict], dict]


class StubPolicy:
    def __init__(self, infer: Infer) -> None:
        self.metadata: dict[str, Any] = {}
        self.infer = infer


def chunk(value: float, horizon: int = 4, dim: int = 3) -> dict:
    return {"actions": np.full((horizon, dim), value, dtype=np.float32)}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_listening(port: int) -> None:
    """Until /healthz answers (a bare TCP probe would make the server log a failed handshake)."""
    for _ in range(500):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=0.1)
        try:
            connection.request("GET", "/healthz")
            connection.getresponse()
            return
        except OSError:
            time.sleep(0.01)
        finally:
            connection.close()
    raise AssertionError(f"nothing listens on port {port}")


@contextlib.contextmanager
def openpi_server(infer: Infer, metadata: dict | None = None) -> Iterator[str]:
    """openpi's WebsocketPolicyServer on a free loopback port, its run() on a loop in a thread; yields its URL."""
    port = free_port()
    server = WebsocketPolicyServer(StubPolicy(infer), host="127.0.0.1", port=port, metadata=metadata)
    loop = asyncio.new_event_loop()
    task = loop.create_task(server.run())

    def run() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(task)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_listening(port)
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(task.cancel)
        thread.join(5)
        loop.close()


@contextlib.contextmanager
def raw_server(replies: Sequence[bytes | str], metadata: bytes = msgpack_numpy.packb({})) -> Iterator[str]:
    """A WebSocket server that sends the metadata frame, then the given frames, one per request, verbatim."""

    def handler(ws: ServerConnection) -> None:
        ws.send(metadata)
        for reply in replies:
            ws.recv()
            ws.send(reply)

    with sync_serve(handler, "127.0.0.1", 0, max_size=None) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}"
        server.shutdown()
        thread.join(5)


def client(url: str, **options: Any) -> PolicyClient:
    return PolicyClient(
        url, **{"connect_timeout_s": 2.0, "request_timeout_s": 2.0, "reconnect_attempts": 1, "backoff_s": 0.01, **options}
    )


OBS: dict[str, Any] = {"state": np.arange(6, dtype=np.float32), "prompt": "wave"}


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("ws://gpu-box:8000", "ws://gpu-box:8000"),
        ("gpu-box:9000", "ws://gpu-box:9000"),
        ("gpu-box", "ws://gpu-box:8000"),
        ("ws://10.0.0.5", "ws://10.0.0.5:8000"),
        ("wss://policy.example.org/pi0", "wss://policy.example.org/pi0"),
        (" [::1]:8000 ", "ws://[::1]:8000"),
    ],
)
def test_urls_are_completed_with_openpis_scheme_and_port(given: str, url: str) -> None:
    assert normalize_url(given) == url
    assert PolicyClient(given).url == url


@pytest.mark.parametrize(
    "garbage", ["", "http://gpu-box:8000", "gpu-box:port", "gpu box:8000", "ws://:8000", "gpu-box:70000", "gpu-box:0"]
)
def test_unusable_urls_are_refused_at_construction_naming_the_forms_accepted(garbage: str) -> None:
    with pytest.raises(ValueError, match="expected ws://HOST:PORT") as error:
        PolicyClient(garbage)
    assert repr(garbage) in str(error.value)


def test_connect_returns_the_servers_metadata_with_writable_arrays() -> None:
    metadata: dict[str, Any] = {"name": "stub", "reset_pose": np.array([0.0, -0.96, 1.16], dtype=np.float32)}
    with openpi_server(lambda obs: chunk(0), metadata) as url, client(url) as policy:
        assert policy.metadata["name"] == "stub"
        np.testing.assert_array_equal(policy.metadata["reset_pose"], metadata["reset_pose"])
        policy.metadata["reset_pose"][0] = 1.0  # a copy, not a read-only view of the message
        assert policy.connect() is policy.metadata, "connect() on an open connection keeps it"


def test_a_round_trip_keeps_dtypes_shapes_and_values_and_actions_come_back_float64() -> None:
    image = np.random.default_rng(0).integers(0, 255, (3, 224, 224), dtype=np.uint8)

    def echo(obs: dict) -> dict:
        actions = np.tile(obs["state"], (50, 1)) + np.arange(50, dtype=np.float32)[:, None]
        return {"actions": actions, "image": obs["images"]["cam_high"], "prompt": obs["prompt"], "count": np.int64(7)}

    with openpi_server(echo) as url, client(url) as policy:
        first = policy.infer({**OBS, "images": {"cam_high": image}})
        second = policy.infer({**OBS, "images": {"cam_high": image}})
    assert first.actions.dtype == np.float64 and first.actions.shape == (50, 6)
    np.testing.assert_array_equal(first.actions, np.tile(OBS["state"], (50, 1)) + np.arange(50)[:, None])
    first.actions[0, 0] = -1.0  # writable
    assert first.extra["image"].dtype == np.uint8 and first.extra["image"].shape == (3, 224, 224)
    np.testing.assert_array_equal(first.extra["image"], image)
    assert first.extra["prompt"] == "wave" and first.extra["count"] == 7 and first.extra["count"].dtype == np.int64
    assert "actions" not in first.extra and "server_timing" not in first.extra
    assert set(first.server_timing) == {"infer_ms"}, "openpi reports the previous request's total from the second on"
    assert set(second.server_timing) == {"infer_ms", "prev_total_ms"}
    assert first.round_trip_s > 0


def test_one_request_at_a_time_when_several_threads_share_a_client() -> None:
    replies: dict[int, list[float]] = {0: [], 1: []}
    with openpi_server(lambda obs: chunk(float(obs["tag"]))) as url, client(url) as policy:

        def ask(tag: int) -> None:
            for _ in range(20):
                replies[tag].append(float(policy.infer({"tag": tag}).actions[0, 0]))

        threads = [threading.Thread(target=ask, args=(tag,)) for tag in replies]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert replies == {0: [0.0] * 20, 1: [1.0] * 20}, "every reply answers its own request"


def test_the_api_key_is_sent_in_the_authorization_header() -> None:
    with PolicyServer(StubPolicy(lambda obs: chunk(1)), port=0, api_key="s3cret") as server:
        with client(server.url, api_key="s3cret") as policy:
            assert policy.infer(OBS).actions[0, 0] == 1.0
        with pytest.raises(PolicyUnreachable) as wrong:
            client(server.url, api_key="guess", reconnect_attempts=3).connect()
        with pytest.raises(PolicyUnreachable) as missing:
            client(server.url).connect()
    assert server.url in str(wrong.value) and "HTTP 401" in str(wrong.value) and "check --api-key" in str(wrong.value)
    assert "the API key given was refused" in str(wrong.value)
    assert "attempt 1 of 4" in str(wrong.value), "a refused key is not retried"
    assert "no API key was given" in str(missing.value)


def test_a_closed_port_is_unreachable_after_the_reconnect_attempts_naming_the_url() -> None:
    url = f"ws://127.0.0.1:{free_port()}"
    with pytest.raises(PolicyUnreachable) as error:
        client(url, reconnect_attempts=2).infer(OBS)
    assert str(error.value).startswith(f"policy server {url}: connection refused; is the policy server running")
    assert "attempt 3 of 3" in str(error.value)


def test_a_port_that_accepts_tcp_but_never_answers_the_handshake_is_said_so_and_not_retried() -> None:
    accepted: list[socket.socket] = []
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen()
        port = mute.getsockname()[1]

        def accept() -> None:  # takes connections, never reads or answers
            with contextlib.suppress(OSError):
                while True:
                    accepted.append(mute.accept()[0])

        threading.Thread(target=accept, daemon=True).start()
        with pytest.raises(PolicyHandshakeTimeout) as error:
            client(f"ws://127.0.0.1:{port}", connect_timeout_s=0.5, reconnect_attempts=3).connect()
    assert str(error.value) == (
        f"policy server ws://127.0.0.1:{port}: connected to 127.0.0.1:{port} but no WebSocket handshake within 0.5 s; "
        "is it a policy server?"
    )
    assert isinstance(error.value, PolicyUnreachable), "callers that stop on an unreachable server stop on this too"
    assert len(accepted) == 1, "one attempt, not reconnect_attempts more of the same wait"
    for connection in accepted:
        connection.close()


def test_a_websocket_server_that_sends_no_metadata_is_not_taken_for_a_policy_server() -> None:
    def mute(ws: ServerConnection) -> None:
        ws.recv()

    with sync_serve(mute, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.socket.getsockname()[1]
        with pytest.raises(
            PolicyHandshakeTimeout,
            match=rf"connected to 127\.0\.0\.1:{port} but no metadata within 0\.2 s of connecting; is it an openpi policy server",
        ):
            client(f"ws://127.0.0.1:{port}", connect_timeout_s=0.2, reconnect_attempts=3).connect()
        server.shutdown()


def test_a_request_timeout_closes_the_connection_so_a_late_reply_is_never_taken_for_the_next_one() -> None:
    calls = itertools.count(1)
    released = threading.Event()

    def slow_first(obs: dict) -> dict:
        call = next(calls)
        if call == 1:
            released.wait(5)  # openpi's server infers on its event loop: nothing else moves meanwhile
        return chunk(call)

    with openpi_server(slow_first) as url, client(url, request_timeout_s=0.2) as policy:
        with pytest.raises(PolicyTimeout, match=r"no reply within 0\.2 s") as error:
            policy.infer(OBS)
        released.set()
        reply = policy.infer(OBS)
    assert url in str(error.value)
    assert reply.actions[0, 0] == 2.0, "the next request reconnected and got its own reply, not the late one"


def test_a_policy_exception_is_a_server_error_carrying_the_traceback_and_the_next_request_reconnects() -> None:
    calls = itertools.count(1)

    def fails_first(obs: dict) -> dict:
        if next(calls) == 1:
            raise KeyError("cam_low")
        return chunk(2)

    with openpi_server(fails_first) as url, client(url) as policy:
        with pytest.raises(PolicyServerError) as error:
            policy.infer(OBS)
        assert policy.infer(OBS).actions[0, 0] == 2.0
    assert error.value.traceback.startswith("Traceback (most recent call last)")
    assert "fails_first" in error.value.traceback
    assert url in str(error.value) and "the policy raised KeyError: 'cam_low'" in str(error.value)
    assert "\n" not in str(error.value)


def test_a_dropped_connection_is_lost_mid_request_and_the_next_request_reconnects() -> None:
    with (
        PolicyServer(StubPolicy(lambda obs: chunk(1)), port=0, faults=[Fault.parse("drop@2")]) as server,
        client(server.url) as policy,
    ):
        policy.infer(OBS)
        with pytest.raises(PolicyConnectionLost, match="without a close frame") as error:
            policy.infer(OBS)
        assert policy.infer(OBS).actions[0, 0] == 1.0
    assert server.url in str(error.value)


def test_a_server_shutting_down_mid_request_is_a_lost_connection_with_its_close_code() -> None:
    server = PolicyServer(StubPolicy(lambda obs: chunk(1)), port=0, faults=[Fault.parse("stall@1")])
    server.start()
    policy = client(server.url)
    threading.Timer(0.2, server.stop).start()
    with pytest.raises(PolicyConnectionLost, match="code 1001"):
        policy.infer(OBS)


def test_close_from_another_thread_aborts_a_blocked_request() -> None:
    with PolicyServer(StubPolicy(lambda obs: chunk(1)), port=0, faults=[Fault.parse("stall@1")]) as server:
        policy = client(server.url, request_timeout_s=30)
        policy.connect()
        threading.Timer(0.2, policy.close).start()
        with pytest.raises(PolicyConnectionLost, match="close\\(\\) was called"):
            policy.infer(OBS)
        assert policy.metadata == {}
        assert policy.infer(OBS).actions[0, 0] == 1.0, "a later request opens a new connection"
        policy.close()


def test_health_is_true_for_a_serving_server_and_false_otherwise() -> None:
    with openpi_server(lambda obs: chunk(0)) as url:
        assert client(url).health()
    assert not client(url).health(timeout_s=0.5)


@pytest.mark.parametrize(
    ("reply", "complaint"),
    [
        ({"action": np.zeros((50, 7))}, "has no 'actions' (keys: action, server_timing)"),
        ({"actions": np.zeros(7)}, "shape (7,)"),
        ({"actions": np.zeros((2, 50, 7))}, "shape (2, 50, 7)"),
        ({"actions": np.zeros((0, 7))}, "shape (0, 7)"),
        ({"actions": np.array([["up", "down"]])}, "<U4"),
        ({"actions": [[1.0, 2.0], [3.0]]}, "not an array"),
        ({"actions": "go left"}, "<U7"),
    ],
)
def test_replies_that_are_not_an_action_chunk_are_protocol_errors(reply: dict, complaint: str) -> None:
    with openpi_server(lambda obs: dict(reply)) as url, client(url) as policy, pytest.raises(PolicyProtocolError) as error:
        policy.infer(OBS)
    assert url in str(error.value) and complaint in str(error.value)


@pytest.mark.parametrize(
    ("frame", "complaint"),
    [
        (msgpack.packb([1, 2, 3]), "a msgpack list, not a map"),
        (b"\xc1", "the reply is not valid msgpack"),
        (
            msgpack.packb({"actions": {b"__ndarray__": True, b"data": b"\x00", b"dtype": "<f8", b"shape": [50, 7]}}),
            r"the reply at \['actions'\]: shape \(50, 7\) of <f8 needs 2800 bytes of data, the message holds 1",
        ),
        (msgpack_numpy.packb({"actions": np.zeros((2, 2)), "server_timing": "fast"}), "server_timing is not a map of numbers"),
    ],
)
def test_frames_that_are_not_msgpack_maps_are_protocol_errors(frame: bytes, complaint: str) -> None:
    with raw_server([frame]) as url, client(url) as policy, pytest.raises(PolicyProtocolError, match=complaint):
        policy.infer(OBS)


def test_nan_actions_are_passed_on_for_the_safety_layer_to_judge() -> None:
    with openpi_server(lambda obs: chunk(np.nan)) as url, client(url) as policy:
        assert np.isnan(policy.infer(OBS).actions).all()


def hostile_array(dtype: str = "|O", shape: tuple[int, ...] = (50, 6), data: bytes = b"\x00" * 8) -> dict:
    """A msgpack-numpy array map as openpi's packer would write it, with whatever the sender likes inside."""
    return {b"__ndarray__": True, b"data": data, b"dtype": dtype, b"shape": list(shape)}


@pytest.mark.parametrize(
    ("array", "complaint"),
    [
        (hostile_array("|O"), "dtype '|O' is not allowed"),
        (hostile_array("|V8"), "dtype '|V8' is not allowed"),
        (hostile_array("<c16"), "dtype '<c16' is not allowed"),
        (hostile_array("f8,O"), "dtype 'f8,O' is not allowed"),
        (hostile_array("<U4"), "dtype '<U4' (text) is not allowed here"),
        (hostile_array("<f8", (2**40, 2**40)), "needs 9671406556917033397649408 bytes of data, the message holds 8"),
        (hostile_array("<f8", (-1, 1)), "is not a list of at most 32 non-negative integers"),
    ],
)
def test_replies_with_arrays_the_protocol_does_not_allow_are_refused_before_any_array_is_built(
    array: dict, complaint: str
) -> None:
    """openpi's decoder would build an object array from these bytes: pointers read from the wire."""
    with (
        raw_server([msgpack.packb({"actions": array})]) as url,
        client(url) as policy,
        pytest.raises(PolicyProtocolError) as error,
    ):
        policy.infer(OBS)
    message = str(error.value)
    assert message.startswith(f"policy server {url}: the reply at ['actions']: ") and complaint in message
    assert "\n" not in message


def test_metadata_with_an_object_array_is_refused_before_any_request() -> None:
    metadata = msgpack.packb({"reset_pose": hostile_array("|O", (1,))})
    with raw_server([], metadata=metadata) as url, pytest.raises(PolicyProtocolError) as error:
        client(url).connect()
    assert "the metadata at ['reset_pose']: dtype '|O' is not allowed" in str(error.value)


def test_a_reply_over_the_message_limit_is_refused_and_the_connection_closed() -> None:
    big = msgpack_numpy.packb({"actions": np.zeros((50, 32))})  # 12.8 kB
    too_big = "the reply is larger than this client's limit of 4096 bytes"
    with (
        raw_server([big]) as url,
        client(url, max_message_bytes=4096) as policy,
        pytest.raises(PolicyProtocolError, match=too_big),
    ):
        policy.infer(OBS)


def test_an_observation_over_the_servers_limit_is_said_to_be_refused_as_too_large() -> None:
    with (
        PolicyServer(StubPolicy(lambda obs: chunk(1)), port=0, max_message_bytes=4096) as server,
        client(server.url) as policy,
    ):
        with pytest.raises(PolicyProtocolError, match="the server refused the observation as too large"):
            policy.infer({"image": np.zeros((64, 64, 3), np.uint8)})
        assert policy.infer(OBS).actions.shape == (4, 3), "a smaller observation on a new connection is answered"


def test_an_error_text_from_the_server_becomes_one_printable_line() -> None:
    hostile = "\x1b[2J\x1b]0;owned\x07 disk full\r\n" + "x" * 1000
    with raw_server([hostile]) as url, client(url) as policy, pytest.raises(PolicyServerError) as error:
        policy.infer(OBS)
    message = str(error.value)
    assert "the server answered with an error:" in message and "disk full" in message
    assert message.isprintable() and "\x1b" not in message and len(message) < 400
    assert error.value.traceback == hostile, "the whole text is kept for whoever wants it"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=hostile_frames())
def test_hostile_replies_and_metadata_are_a_reply_or_a_one_line_policy_error_and_nothing_else(frame: bytes) -> None:
    for replies, metadata in (([frame], msgpack_numpy.packb({})), ([], frame)):
        with raw_server(replies, metadata=metadata) as url:
            policy = client(url, reconnect_attempts=0)
            try:
                policy.infer(OBS)
            except PolicyError as error:
                failure: PolicyError | None = error
            else:
                failure = None
            finally:
                policy.close()
        assert failure is None or "\n" not in str(failure)


def test_data_arriving_after_the_client_closed_is_not_logged_as_an_internal_error() -> None:
    """websockets logs it with a traceback from its receiving thread; the close was the client's own."""
    def record(error: BaseException) -> logging.LogRecord:
        return logging.LogRecord("ws", logging.ERROR, __file__, 1, "unexpected internal error", (), (type(error), error, None))

    assert not CONNECTION_LOG.filter(record(EOFError("stream ended")))
    assert CONNECTION_LOG.filter(record(RuntimeError("something else")))
