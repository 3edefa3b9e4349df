"""The stand-in's side of the wire to drivers.flexiv.sim_controller: where the simulated robots are, the
serial-number checks the RDK makes before it searches, and one request-reply link per Robot instance that
turns the controller's refusals into the exceptions pybind11 makes of the RDK's C++ ones."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

CONNECT_WAIT_S = 1.0
"""How long Robot() looks for its serial before giving up (the real RDK searches ~3 s)."""
REPLY_TIMEOUT_S = 10.0
CONNECT_FAILED = (
    "[flexiv::rdk::Robot] Failed to connect to [{serial}]. Please check that: a) Remote mode (Ethernet) is enabled "
    "on the target robot; b) Ethernet connection with the target robot is established; c) The specified serial "
    "number of the target robot is correct; d) No firewall is active or this RDK program is whitelisted; e) RDK "
    "version is compatible with the target robot's software version"
)
EXCEPTIONS: dict[str, type[Exception]] = {
    # pybind11's translation of the C++ exceptions the RDK documents.
    "invalid_argument": ValueError,
    "length_error": ValueError,
    "logic_error": RuntimeError,
    "runtime_error": RuntimeError,
}

_discovered: list[tuple[str, int]] = []
"""Every address discover_at() was given, the latest first: a robot is looked for at each, as the RDK
searches every network interface."""


def discover_at(address: str) -> None:
    """Where later Robot() constructions look for their simulated controllers ("host:port"), beside the
    addresses given before; the real RDK searches the network instead."""
    host, _, port = str(address).rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"simulated controller address {address!r} is not host:port, e.g. 127.0.0.1:40123")
    if (host, int(port)) in _discovered:
        _discovered.remove((host, int(port)))
    _discovered.insert(0, (host, int(port)))


def checked_serial(robot_sn: object, models: Sequence[str]) -> str:
    """The serial as the RDK keeps it (spaces dropped), or its errors: ValueError for a malformed serial,
    RuntimeError for a model it does not drive."""
    if not isinstance(robot_sn, str):
        raise TypeError("__init__(): incompatible constructor arguments: robot_sn must be a str")
    serial = robot_sn.replace(" ", "")
    parts = serial.split("-")
    if len(parts) != 2:
        raise ValueError(f"[flexiv::rdk::Robot] Format of the provided robot serial number [{serial}] is invalid")
    if parts[0] not in models:
        raise RuntimeError(f"[flexiv::rdk::Robot] Robot model [{parts[0]}] is not supported")
    return serial


def vector(values: object, size: int | None, function: str) -> list[float]:
    """A sequence of numbers as floats, refused as pybind11 refuses it (TypeError) when it is not one or,
    for a fixed-size argument, has the wrong length."""
    try:
        out = [float(v) for v in values]  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise TypeError(f"{function}(): incompatible function arguments: expected a sequence of numbers") from None
    if size is not None and len(out) != size:
        raise TypeError(f"{function}(): incompatible function arguments: expected {size} numbers, got {len(out)}")
    return out


def number(value: object, function: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            return float(value.__float__())  # type: ignore[attr-defined]  # numpy scalars
        except AttributeError:
            raise TypeError(f"{function}(): incompatible function arguments: expected a number") from None
    return float(value)


class _Pending:
    """A request waiting for its reply."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.reply: dict[str, Any] | None = None


class Link:
    """One connection to the simulated controller serving `serial`. With `push`, the controller streams the
    robot's state to it, read by a background thread into a cache, as the RDK keeps one; requests from several
    threads may be in flight at once (the driver's tick and its gripper share a Robot), each reply handed to
    its caller by id."""

    def __init__(self, serial: str, *, push: bool = True) -> None:
        self.serial = serial
        self._push = push
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._next_id = 0
        self._pending: dict[int, _Pending] = {}
        self._socket: socket.socket | None = None
        self._state: dict[str, Any] = {}
        self.info: dict[str, Any] = {}
        deadline = time.monotonic() + CONNECT_WAIT_S
        while True:
            if self._try_connect():
                return
            if time.monotonic() >= deadline:
                raise RuntimeError(CONNECT_FAILED.format(serial=serial))
            time.sleep(0.1)

    def _try_connect(self) -> bool:
        return any(self._try_address(address) for address in list(_discovered))

    def _try_address(self, address: tuple[str, int]) -> bool:
        try:
            sock = socket.create_connection(address, timeout=0.5)
        except OSError:
            return False
        sock.settimeout(None)  # the reader blocks; each request bounds its own wait
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._socket = sock
        threading.Thread(target=self._read, args=(sock,), name=f"rdk-standin-{self.serial}", daemon=True).start()
        try:
            self.info = self.request("hello", "Robot", serial=self.serial, push=self._push)
        except RuntimeError:
            self.close()
            return False
        return True

    @property
    def connected(self) -> bool:
        return self._socket is not None

    def state(self, where: str) -> dict[str, Any]:
        """The robot's latest state as the controller pushed it (read-only), or the RDK's error once the
        connection is lost."""
        state = self._state
        if self._socket is None:
            raise RuntimeError(f"[flexiv::rdk::{where}] Lost connection with the robot")
        return state

    def request(self, op: str, where: str, **args: Any) -> Any:
        """The controller's result for `op`, or the exception the RDK raises for its refusal; `where` names
        the RDK function in a lost-connection error."""
        pending = _Pending()
        request_id = self._send(op, where, args, pending)
        if not pending.done.wait(REPLY_TIMEOUT_S):
            self.close()
        with self._lock:
            self._pending.pop(request_id, None)
        reply = pending.reply
        if reply is None:
            raise RuntimeError(f"[flexiv::rdk::{where}] Failed to deliver the request")
        if reply.get("ok"):
            return reply.get("result")
        raise EXCEPTIONS.get(str(reply.get("kind")), RuntimeError)(reply.get("message", "request refused"))

    def send(self, op: str, where: str, **args: Any) -> None:
        """Send `op` and return without waiting: a [non-blocking] command, already checked by the caller."""
        self._send(op, where, args, None)

    def close(self) -> None:
        with self._lock:
            sock, self._socket = self._socket, None
            pending, self._pending = list(self._pending.values()), {}
        for waiting in pending:
            waiting.done.set()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _send(self, op: str, where: str, args: dict[str, Any], pending: _Pending | None) -> int:
        with self._lock:
            sock = self._socket
            if sock is None:
                raise RuntimeError(f"[flexiv::rdk::{where}] Failed to deliver the request")
            self._next_id += 1
            request_id = self._next_id
            if pending is not None:
                self._pending[request_id] = pending
        message: dict[str, Any] = {"id": request_id, "op": op, "args": args}
        if pending is None:
            message["wait"] = False
        try:
            with self._send_lock:
                sock.sendall(json.dumps(message).encode() + b"\n")
        except OSError:
            self.close()
            raise RuntimeError(f"[flexiv::rdk::{where}] Failed to deliver the request") from None
        return request_id

    def _read(self, sock: socket.socket) -> None:
        """The background thread: pushed states into the cache, replies to their callers (the state a reply
        carries first, so a caller sees the robot as its request left it)."""
        try:
            with sock.makefile("rb") as reader:
                for line in reader:
                    message = json.loads(line)
                    state = message.get("state")
                    if isinstance(state, dict) and state.get("seq", 0) > self._state.get("seq", 0):
                        self._state = state
                    if "id" in message:
                        with self._lock:
                            pending = self._pending.pop(message["id"], None)
                        if pending is not None:
                            pending.reply = message
                            pending.done.set()
                    elif "sync" in message:
                        self._send("synced", "Robot", {"sync": message["sync"]}, None)
        except (OSError, ValueError, RuntimeError, AttributeError):
            pass
        if self._socket is sock:
            self.close()
