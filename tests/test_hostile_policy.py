"""`robot-runtime run` against policy servers that lie: a reply holding an object array (which made
openpi's decoder read pointers from the wire and `run` die with SIGSEGV, the arm under torque), a reply
for another robot's action space, and a port that accepts TCP but never speaks WebSocket. Each ends with
one clear line and the normal safe stop: parked and torque-safe, with the stop report to show it."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import msgpack
import numpy as np
import pytest
from cli import run_cli
from openpi_client import msgpack_numpy
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection
from websockets.sync.server import serve as sync_serve

SIM_RUN = ("--robot", "so100", "--sim", "--no-cameras", "--task_prompt", "wave")

OBJECT_ARRAY_REPLY = msgpack.packb({"actions": {b"__ndarray__": True, b"data": b"\x41" * 48, b"dtype": "|O", b"shape": [1, 6]}})
"""About 100 bytes: openpi's decoder makes an object array of them, six pointers read from the wire."""


@contextlib.contextmanager
def lying_server(reply: Callable[[bytes], bytes]) -> Iterator[str]:
    """A WebSocket server with empty metadata that answers every observation with `reply(observation)`."""

    def handler(ws: ServerConnection) -> None:
        ws.send(msgpack_numpy.packb({}))
        with contextlib.suppress(ConnectionClosed):
            while True:
                ws.send(reply(ws.recv(decode=False)))

    with sync_serve(handler, "127.0.0.1", 0, max_size=None) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}"
        server.shutdown()
        thread.join(10)


def test_the_object_array_reply_is_the_one_that_kills_a_process_decoding_it_with_openpis_decoder() -> None:
    """So the tests below are about the real thing: these 100 bytes make openpi's decoder read pointers."""
    decode_with_openpi = (
        "import sys; from openpi_client import msgpack_numpy; "
        "print(msgpack_numpy.unpackb(sys.stdin.buffer.read())['actions'].copy())"
    )
    dies = subprocess.run([sys.executable, "-c", decode_with_openpi], input=OBJECT_ARRAY_REPLY, capture_output=True, check=False)
    assert len(OBJECT_ARRAY_REPLY) == 100
    assert dies.returncode == -signal.SIGSEGV, dies


def run(url: str, mode: str, stats: Path) -> tuple[int, str, dict]:
    result = run_cli(
        "run", *SIM_RUN, "--mode", mode, "--policy", url, "--duration", "30", "--stats-json", str(stats), timeout_s=120
    )
    return result.returncode, " ".join(result.stderr.split()), json.loads(stats.read_text())


@pytest.mark.parametrize("mode", ["test", "autonomous"])
def test_an_object_array_in_a_reply_stops_the_run_with_one_line_and_a_safe_stop(mode: str, tmp_path: Path) -> None:
    with lying_server(lambda obs: OBJECT_ARRAY_REPLY) as url:
        returncode, stderr, stats = run(url, mode, tmp_path / "stats.json")
    assert returncode == 1, stderr
    assert (
        f"error: policy server {url}: the reply at ['actions']: dtype '|O' is not allowed (allowed: bool, signed and "
        "unsigned integers of 1-8 bytes, floats of 2-8 bytes)"
    ) in stderr
    assert stats["outcome"] == "policy server failure"
    assert stats["policy_stats"]["chunks"] == 0
    (follower,) = stats["stop"]
    assert follower["torque_safe"], follower
    if mode == "autonomous":
        assert follower["parked"] is True, follower
        assert "parked" in stderr
    else:
        assert "observed only: nothing was written" in stderr


def test_a_reply_for_a_wider_action_space_is_refused_naming_both_widths_and_the_arm_parks(tmp_path: Path) -> None:
    """A 14-wide chunk meant for a bimanual robot: so100 must not take its first 6 columns as its own."""
    bimanual = msgpack_numpy.packb({"actions": np.zeros((50, 14), np.float32)})
    with lying_server(lambda obs: bimanual) as url:
        returncode, stderr, stats = run(url, "autonomous", tmp_path / "stats.json")
    assert returncode == 1, stderr
    assert "the server's actions are 14 wide, the follower's action space is 6 wide" in stderr
    assert "set policy.pads_actions_to: 14 in the robot config" in stderr
    (follower,) = stats["stop"]
    assert follower["parked"] is True and follower["torque_safe"], follower


def test_a_reply_padded_as_the_config_declares_drives_the_arm(tmp_path: Path) -> None:
    def padded(observation: bytes) -> bytes:
        state = msgpack_numpy.unpackb(observation)["observation/state"]  # our own client's frame
        chunk = np.zeros((20, 32), np.float32)
        chunk[:, :6] = state
        return msgpack_numpy.packb({"actions": chunk})

    stats = tmp_path / "stats.json"
    with lying_server(padded) as url:
        result = run_cli(
            "run", *SIM_RUN, "--mode", "autonomous", "--policy", url, "--duration", "3", "--stats-json", str(stats),
            "--set", "policy.pads_actions_to=32", timeout_s=120,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = json.loads(stats.read_text())
    assert out["policy_stats"]["chunks"] > 0 and out["policy_stats"]["rejected_replies"] == 0


def test_a_port_that_accepts_tcp_but_never_speaks_websocket_is_said_so_once_before_anything_moves() -> None:
    accepted: list[socket.socket] = []
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen()
        port = mute.getsockname()[1]

        def accept() -> None:
            with contextlib.suppress(OSError):
                while True:
                    accepted.append(mute.accept()[0])

        threading.Thread(target=accept, daemon=True).start()
        result = run_cli("run", *SIM_RUN, "--mode", "autonomous", "--policy", f"ws://127.0.0.1:{port}", timeout_s=120)
    stderr = " ".join(result.stderr.split())
    assert result.returncode == 1, stderr
    assert (
        f"error: policy server ws://127.0.0.1:{port}: connected to 127.0.0.1:{port} but no WebSocket handshake within 10 s; "
        "is it a policy server?"
    ) in stderr
    assert "parking" not in stderr, "the server is checked before the arm is touched"
    assert len(accepted) == 1, "asked once, not four times ten seconds"
    for connection in accepted:
        connection.close()
