"""An openpi-compatible policy server: on the wire it behaves as openpi's WebsocketPolicyServer, and it
also runs in the background (tests, dry runs), adds latency, checks an API key and injects faults, so a
client's timeouts, reconnects and safety checks can be exercised without a GPU.

Unlike openpi's server it trusts no client: observations are decoded by the checked decoder in `wire`
within a message size limit, and a client whose request fails gets one line saying why (the traceback
stays in this server's log), then the connection closes; every other connection carries on."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import http
import logging
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, Self, get_args, runtime_checkable

import numpy as np
from websockets.asyncio.server import Request, Response, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode

from robot_runtime.policy.wire import DEFAULT_MAX_MESSAGE_BYTES, WireError, WireLimits, decode, encode

logger = logging.getLogger(__name__)

FaultKind = Literal["drop", "stall", "nan", "shape", "error"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
ERROR_CHARS = 300
"""The most of an error's text sent to a client in its one line."""


class ServedPolicy(Protocol):
    metadata: dict
    """Sent to every client when it connects."""

    def infer(self, obs: dict) -> dict:
        """At least {"actions": ndarray [horizon, action_dim]}. Called from worker threads, possibly concurrently."""
        ...


@runtime_checkable
class PerConnectionPolicy(Protocol):
    """A policy with state of its own for each client (a clock, a first state): one client's requests
    never move where another's motion is centred or how far its replay has got."""

    metadata: dict
    """Sent to every client when it connects."""

    def connection(self) -> ServedPolicy:
        """A fresh policy for one new connection, serving its requests only."""
        ...


@dataclass(frozen=True)
class Fault:
    """`KIND@N`: do KIND on the server's Nth request (1-based, counted over its lifetime, across
    connections); `KIND@N+`: on every request from the Nth on.

    drop: abort the TCP connection without a close frame. stall: answer only after stall_s, keeping the
    connection open. nan: NaN actions. shape: one action column fewer (1-D for a one-action chunk).
    error: the policy raises, so the client gets a traceback and a 1011 close.
    """

    kind: FaultKind
    at_request: int
    onwards: bool = False

    @classmethod
    def parse(cls, text: str) -> Fault:
        match = re.fullmatch(r"([a-z]+)@([0-9]+)(\+?)", text.strip())
        if match is None or match[1] not in FAULT_KINDS or int(match[2]) < 1:
            raise ValueError(
                f"fault {text!r}: expected KIND@N or KIND@N+ with N >= 1 and KIND one of {', '.join(FAULT_KINDS)} (e.g. nan@5, "
                "drop@3+)"
            )
        return cls(match[1], int(match[2]), bool(match[3]))  # type: ignore[arg-type]  # checked against FAULT_KINDS

    def applies_to(self, request: int) -> bool:
        return request == self.at_request or (self.onwards and request > self.at_request)

    def __str__(self) -> str:
        return f"{self.kind}@{self.at_request}{'+' if self.onwards else ''}"


class PolicyServer:
    """Serves a policy on a background thread with its own event loop. Each request's inference runs in
    a worker thread and latency is an asyncio sleep, so a slow policy never holds up other connections.
    Frames over `max_message_bytes` are refused by the WebSocket layer (close code 1009)."""

    def __init__(
        self,
        policy: ServedPolicy | PerConnectionPolicy,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        latency_s: float = 0.0,
        faults: Sequence[Fault] = (),
        stall_s: float = 3600.0,
        api_key: str | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.policy = policy
        self.host = host
        self.port = port
        """The bound port once started (port=0 picks a free one)."""
        self.latency_s = latency_s
        self.faults = tuple(faults)
        self.stall_s = stall_s
        self._api_key = api_key
        self.limits = WireLimits(max_message_bytes, text=True)
        """What an observation may be; text arrays are allowed, as a prompt may come as numpy text."""
        self.requests = 0
        """Requests received so far, over every connection; each is answered or faulted."""
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._start_error: OSError | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"

    def start(self) -> None:
        """Listen and serve on a background thread; returns once listening."""
        if self._thread is not None:
            raise RuntimeError(f"the policy server on {self.url} is already running")
        listening = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(listening),), name="policy-server", daemon=True)
        self._thread.start()
        listening.wait()
        if self._start_error is not None:
            error, self._start_error = self._start_error, None
            self._thread.join()
            self._thread = None
            if error.errno == errno.EADDRINUSE:
                problem = "the port is in use; is another server running on it?"
            else:
                problem = f"{error.strerror or error}; check the host is an address of this machine"
            raise OSError(f"cannot listen on {self.url}: {problem}") from error

    def stop(self) -> None:
        """Close every connection (1001 going away) and join the serving thread. A policy call in progress is waited for."""
        if self._thread is None:
            return
        assert self._loop is not None and self._stop_requested is not None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop_requested.set)
        self._thread.join()
        self._thread = None

    def serve_forever(self) -> None:
        """Serve in the foreground until KeyboardInterrupt, which propagates once the server has stopped."""
        if self._thread is None:
            self.start()
        assert self._thread is not None
        try:
            self._thread.join()
        finally:
            self.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _serve(self, listening: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        try:
            server = await serve(
                self._handle,
                self.host,
                self.port,
                compression=None,
                max_size=self.limits.max_message_bytes,
                process_request=self._process_request,
            )
        except OSError as exc:
            self._start_error = exc
            listening.set()
            return
        async with server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            listening.set()
            await self._stop_requested.wait()

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """/healthz answers without a key (load balancers probe it); every handshake needs the key when one is set."""
        if request.path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        if self._api_key is not None:
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, f"Api-Key {self._api_key}".encode()):
                return connection.respond(
                    http.HTTPStatus.UNAUTHORIZED, "missing or wrong API key: send 'Authorization: Api-Key <key>'\n"
                )
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        logger.info("policy client %s connected", ws.remote_address)
        try:
            with contextlib.suppress(ConnectionClosed):
                await self._serve_connection(ws)
        finally:
            logger.info("policy client %s disconnected", ws.remote_address)

    async def _serve_connection(self, ws: ServerConnection) -> None:
        """The metadata, then strictly one reply per request, as openpi's server does. A request that
        fails is answered with one line of text and the connection is closed: 1008 for an observation
        that breaks the protocol, 1011 when the policy failed."""
        policy = self.policy.connection() if isinstance(self.policy, PerConnectionPolicy) else self.policy
        await ws.send(encode(self.policy.metadata))
        prev_total_s: float | None = None
        while True:
            message = await ws.recv()
            received_s = time.monotonic()
            self.requests += 1
            number = self.requests
            kind = next((fault.kind for fault in self.faults if fault.applies_to(number)), None)
            if kind == "drop":
                ws.transport.abort()
                return
            loop = asyncio.get_running_loop()
            try:
                obs = await loop.run_in_executor(None, decode, message, self.limits)  # a big frame holds up no one
            except WireError as exc:
                logger.warning("request %d from %s refused: the observation %s", number, ws.remote_address, exc)
                await _refuse(ws, CloseCode.POLICY_VIOLATION, f"request {number} refused: the observation {exc}")
                return
            try:
                started_s = time.monotonic()
                reply = await loop.run_in_executor(None, self._faulty_infer, policy, obs, kind, number)
                infer_s = time.monotonic() - started_s
                delay_s = self.latency_s + (self.stall_s if kind == "stall" else 0.0)
                if not await _wait_while_open(ws, delay_s):
                    return
                reply["server_timing"] = {"infer_ms": infer_s * 1000}
                if prev_total_s is not None:
                    reply["server_timing"]["prev_total_ms"] = prev_total_s * 1000
                payload = encode(reply)
            except Exception as exc:  # the policy's failure is this request's, never the server's
                logger.warning("request %d failed", number, exc_info=True)
                problem = f"{type(exc).__name__}: {exc}"
                await _refuse(ws, CloseCode.INTERNAL_ERROR, f"request {number} failed: the policy raised {problem}")
                return
            await ws.send(payload)
            prev_total_s = time.monotonic() - received_s

    def _faulty_infer(self, policy: ServedPolicy, obs: dict, kind: FaultKind | None, number: int) -> dict:
        if kind == "error":
            raise RuntimeError(f"injected fault error@{number}")
        reply = dict(policy.infer(obs))
        if kind == "nan":
            reply["actions"] = np.full(np.shape(reply["actions"]), np.nan)
        elif kind == "shape":
            actions = np.asarray(reply["actions"])
            reply["actions"] = actions[0, :-1] if len(actions) == 1 else actions[:, :-1]
        return reply


async def _refuse(ws: ServerConnection, code: CloseCode, text: str) -> None:
    """One line for the client (openpi's client raises it; ours reports it), then close: the
    protocol has no way to go on after a request without its reply."""
    line = " ".join(text.split())
    line = line if len(line) <= ERROR_CHARS else line[: ERROR_CHARS - 3] + "..."
    await ws.send(f"{line} (details in the server's log)")
    await ws.close(code, "request failed; the reason is in the previous frame")


async def _wait_while_open(ws: ServerConnection, delay_s: float) -> bool:
    """Sleep delay_s unless the connection closes first; True if it is still open."""
    if delay_s <= 0:
        return True
    try:
        await asyncio.wait_for(ws.wait_closed(), delay_s)
    except TimeoutError:
        return True
    return False
