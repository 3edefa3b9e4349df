"""A client for openpi policy servers: the metadata handshake, then strictly one request and one reply,
with the timeouts, reconnects, message limits and clear errors that openpi's own client leaves out.
Every frame from the server is decoded by the checked decoder in `wire`, never by openpi's."""

from __future__ import annotations

import contextlib
import http.client
import logging
import socket
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Self
from urllib.parse import urlsplit

import numpy as np
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.frames import CloseCode
from websockets.protocol import State
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from robot_runtime.policy.wire import DEFAULT_MAX_MESSAGE_BYTES, WireError, WireLimits, decode, encode

logger = logging.getLogger(__name__)


def _not_a_read_after_close(record: logging.LogRecord) -> bool:
    """websockets' receiving thread logs data that arrives after the stream was closed (the run closing the
    connection mid-reply) as an internal error with a traceback; the close itself is this client's doing."""
    return not (record.exc_info and isinstance(record.exc_info[1], EOFError))


CONNECTION_LOG = logging.getLogger(f"{__name__}.connection")
CONNECTION_LOG.addFilter(_not_a_read_after_close)

DEFAULT_PORT = 8000
"""openpi's serve_policy.py port, used when a URL gives none (`wss://` keeps TLS's 443)."""
CLOSE_TIMEOUT_S = 1.0
"""How long a polite close waits for the server's close frame: a frozen server must not hold up a stop."""
SERVER_TEXT_CHARS = 300
"""The most of a server's error text put into one error line; the whole text stays in .traceback."""


class PolicyError(RuntimeError):
    """Base of every policy server failure; the message names the server's URL and what to check."""

    def __init__(self, url: str, problem: str) -> None:
        super().__init__(f"policy server {url}: {problem}")
        self.url = url


class PolicyUnreachable(PolicyError):
    """No working connection after every attempt: refused, unknown host, timed out, or the handshake was rejected."""


class PolicyHandshakeTimeout(PolicyUnreachable):
    """TCP connected, but no WebSocket handshake or no metadata followed within connect_timeout_s: whatever
    listens there is not a working policy server, and asking again would only wait as long again."""


class PolicyTimeout(PolicyError):
    """A request got no reply in time. The connection is closed (a late reply would pass for the next
    one's); the next infer reconnects."""


class PolicyServerError(PolicyError):
    """The server failed the request: it sent an error text (openpi's servers a traceback, ours one line)
    and/or closed the connection with 1011. The message carries one cleaned line of it."""

    def __init__(self, url: str, traceback: str, problem: str | None = None) -> None:
        lines = [line for line in traceback.strip().splitlines() if line.strip()]
        if traceback.lstrip().startswith("Traceback") and lines:  # openpi's servers send the policy's traceback
            summary = f"the policy raised {_one_line(lines[-1])} (the whole traceback is in .traceback and the server's log)"
        else:
            summary = f"the server answered with an error: {_one_line(traceback) or 'no details given'}"
        super().__init__(url, problem or summary)
        self.traceback = traceback


class PolicyConnectionLost(PolicyError):
    """The connection ended while a request was in flight; the next infer reconnects."""


class PolicyProtocolError(PolicyError):
    """A message breaks the protocol or its limits: the metadata or a reply is not a msgpack-numpy map of
    allowed dtypes and checked shapes within the size limit, or the reply has no numeric [horizon, dim]
    "actions"; or the server refused an observation as too large. The message says where and why."""


@dataclass(frozen=True)
class PolicyReply:
    actions: np.ndarray
    """float64 [horizon, action_dim], a writable copy. NaN passes through: the safety layer judges values."""
    server_timing: dict[str, float]
    """The server's own timing ("infer_ms", "prev_total_ms"); {} if it sent none."""
    round_trip_s: float
    """Request sent -> reply received, on the monotonic clock."""
    extra: dict[str, Any]
    """Every other key of the reply (arrays are writable copies)."""


def normalize_url(url: str) -> str:
    """`ws://HOST:PORT` from `ws://HOST[:PORT][/path]`, `wss://...`, `HOST:PORT` or `HOST`; a missing ws port is 8000."""
    text = url.strip()
    expected = "expected ws://HOST:PORT, wss://HOST:PORT, HOST:PORT or HOST"
    parts = urlsplit(text if "://" in text else f"ws://{text}")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"policy server URL {url!r}: {exc}; {expected}") from None
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"policy server URL {url!r}: the scheme must be ws or wss, not {parts.scheme!r}; {expected}")
    if "://" not in text and parts.path:
        raise ValueError(f"policy server URL {url!r}: a path needs a ws:// or wss:// scheme; {expected}")
    if not parts.hostname or any(c.isspace() for c in text) or "@" in parts.netloc or port == 0:
        raise ValueError(f"policy server URL {url!r} is not a usable address; {expected}")
    netloc = parts.netloc if port is not None or parts.scheme == "wss" else f"{parts.netloc}:{DEFAULT_PORT}"
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{netloc}{parts.path}{query}"


class PolicyClient:
    """A blocking client for one openpi policy server, one request at a time.

    `infer` connects when there is no open connection, which is also how it recovers after a drop or a
    timeout. `close` may be called from another thread to abort a blocked `infer`; a later `connect` or
    `infer` opens a new connection. Refused, unresolvable or silent addresses are tried again
    (`reconnect_attempts`); a server that accepts TCP but completes no handshake is not.
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        connect_timeout_s: float = 10.0,
        request_timeout_s: float = 5.0,
        reconnect_attempts: int = 3,
        backoff_s: float = 0.25,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        if connect_timeout_s <= 0 or request_timeout_s <= 0:
            raise ValueError(
                f"timeouts must be positive (connect_timeout_s={connect_timeout_s}, request_timeout_s={request_timeout_s})"
            )
        if reconnect_attempts < 0 or backoff_s < 0:
            raise ValueError(f"reconnect_attempts ({reconnect_attempts}) and backoff_s ({backoff_s}) must not be negative")
        self.url = normalize_url(url)
        parts = urlsplit(self.url)
        self._secure = parts.scheme == "wss"
        self._host = parts.hostname or ""
        self._port = parts.port or 443
        self._headers = {"Authorization": f"Api-Key {api_key}"} if api_key else {}
        self.connect_timeout_s = connect_timeout_s
        self.request_timeout_s = request_timeout_s
        self.reconnect_attempts = reconnect_attempts
        self.backoff_s = backoff_s
        self.limits = WireLimits(max_message_bytes)
        """What a reply or the metadata may be: the size limit also bounds WebSocket frames."""
        self.metadata: dict = {}
        self._request_lock = threading.Lock()
        """Held by connect and infer: one request on the wire at a time."""
        self._state = threading.Condition()
        """Guards _ws and _closes; close() notifies it to cut a backoff wait short."""
        self._ws: ClientConnection | None = None
        self._closes = 0
        """close() calls so far: a connect or infer that began before a close() is aborted by it."""
        self._ever_connected = False

    def connect(self) -> dict:
        """Open a connection unless one is open (several attempts, exponential backoff); return the metadata."""
        closes = self._closes
        with self._request_lock:
            self._connection(closes)
            return self.metadata

    def infer(self, obs: dict, timeout_s: float | None = None) -> PolicyReply:
        """Send one observation (a msgpack-numpy-able dict) and wait up to `timeout_s` (default
        request_timeout_s; a first request may need longer, as servers compile on it) for its reply.

        Raises PolicyUnreachable, PolicyTimeout, PolicyServerError, PolicyConnectionLost or PolicyProtocolError.
        """
        closes = self._closes
        with self._request_lock:
            payload = encode(obs)
            ws = self._connection(closes)
            sent_s = time.monotonic()
            timeout_s = self.request_timeout_s if timeout_s is None else timeout_s
            try:
                ws.send(payload)
                message = ws.recv(timeout=timeout_s)
            except TimeoutError:
                self._drop(ws, abort=True)
                raise PolicyTimeout(
                    self.url,
                    f"no reply within {timeout_s:g} s, so the connection was closed and the next request reconnects; "
                    "check the server is not stuck or overloaded (a freshly started model can take over 10 s to compile on its "
                    "first request)",
                ) from None
            except ConnectionClosed as exc:
                self._drop(ws, abort=True)
                raise self._lost(exc, closes) from None
            round_trip_s = time.monotonic() - sent_s
            if isinstance(message, str):
                self._drop(ws, abort=False)  # the server closes with 1011 right after its error text
                raise PolicyServerError(self.url, message)
            try:
                return _parse_reply(self.url, message, round_trip_s, self.limits)
            except PolicyProtocolError:
                self._drop(ws, abort=True)  # a server that breaks the protocol once is not asked again on this connection
                raise

    def health(self, timeout_s: float = 2.0) -> bool:
        """GET /healthz on the server's host and port: True on 200, False on anything else (never raises)."""
        connection_type = http.client.HTTPSConnection if self._secure else http.client.HTTPConnection
        connection = connection_type(self._host, self._port, timeout=timeout_s)
        try:
            connection.request("GET", "/healthz", headers=self._headers)
            return connection.getresponse().status == HTTPStatus.OK
        except Exception:  # a probe: every failure means "not healthy"
            return False
        finally:
            connection.close()

    def close(self) -> None:
        """Close the connection; an infer blocked on it in another thread raises PolicyConnectionLost at once
        (one in the middle of a connection attempt, when that attempt ends: within connect_timeout_s)."""
        with self._state:
            self._closes += 1
            ws, self._ws = self._ws, None
            self.metadata = {}
            self._state.notify_all()
        if ws is not None:
            _close_connection(ws, abort=self._request_lock.locked())

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _connection(self, closes: int) -> ClientConnection:
        """The open connection, or a new one."""
        self._raise_if_closed(closes)
        ws = self._ws
        if ws is not None and ws.state is State.OPEN:
            return ws
        if ws is not None:
            logger.info("%s closed the idle connection", self.url)
            self._drop(ws, abort=True)
        return self._open(closes)

    def _open(self, closes: int) -> ClientConnection:
        attempts = 1 + self.reconnect_attempts
        if self._ever_connected:
            logger.warning("reconnecting to the policy server %s", self.url)
        for attempt in range(1, attempts + 1):
            try:
                ws, metadata = self._handshake()
                break
            except _NoHandshake as exc:
                raise PolicyHandshakeTimeout(self.url, str(exc)) from None
            except (OSError, InvalidHandshake) as exc:
                problem, retry = self._connect_problem(exc)
            if not retry or attempt == attempts:
                raise PolicyUnreachable(self.url, f"{problem} (attempt {attempt} of {attempts})")
            delay_s = self.backoff_s * 2 ** (attempt - 1)
            logger.warning(
                "policy server %s: %s (attempt %d of %d); retrying in %.2f s", self.url, problem, attempt, attempts, delay_s
            )
            with self._state:
                self._state.wait_for(lambda: self._closes != closes, timeout=delay_s)
            self._raise_if_closed(closes)
        with self._state:
            if self._closes == closes:
                self._ws, self.metadata, self._ever_connected = ws, metadata, True
                return ws
        _close_connection(ws, abort=False)
        raise PolicyConnectionLost(self.url, "close() was called while connecting")

    def _handshake(self) -> tuple[ClientConnection, dict]:
        """TCP first, then the WebSocket handshake and the metadata, so that a server that accepts
        connections but never answers is told apart from one that cannot be reached."""
        sock = socket.create_connection((self._host, self._port), timeout=self.connect_timeout_s)
        sock.settimeout(None)  # from here on open_timeout bounds the handshake
        deadline_s = time.monotonic() + self.connect_timeout_s
        where = f"connected to {self._host}:{self._port}"
        try:
            ws = ws_connect(
                self.url,
                sock=sock,
                compression=None,
                max_size=self.limits.max_message_bytes,
                additional_headers=self._headers or None,
                open_timeout=self.connect_timeout_s,
                close_timeout=CLOSE_TIMEOUT_S,
                logger=CONNECTION_LOG,
            )
        except TimeoutError:
            sock.close()
            raise _NoHandshake(
                f"{where} but no WebSocket handshake within {self.connect_timeout_s:g} s; is it a policy server?"
            ) from None
        except BaseException:
            sock.close()
            raise
        try:
            frame = ws.recv(timeout=max(0.0, deadline_s - time.monotonic()))
        except TimeoutError:
            _close_connection(ws, abort=True)
            raise _NoHandshake(
                f"{where} but no metadata within {self.connect_timeout_s:g} s of connecting; is it an openpi policy server?"
            ) from None
        except ConnectionClosed as exc:
            if _closed_as_too_big(exc) is not None:
                raise PolicyProtocolError(self.url, self._too_big("metadata")) from None
            raise _NoMetadata(f"the server closed the connection before sending its metadata ({exc})") from None
        try:
            metadata = _unpack_map(self.url, frame, "metadata", self.limits)
        except PolicyError:
            _close_connection(ws, abort=False)
            raise
        return ws, metadata

    def _connect_problem(self, exc: OSError | InvalidHandshake) -> tuple[str, bool]:
        """What went wrong opening a connection, said for the user, and whether another attempt may help."""
        if isinstance(exc, InvalidStatus):
            status = exc.response.status_code
            if status in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN):
                sent = "the API key given was refused" if self._headers else "no API key was given"
                return f"the server rejected the connection with HTTP {status}: {sent}; check --api-key", False
            return f"the server answered HTTP {status} instead of a WebSocket handshake; check the URL and port", status >= 500
        if isinstance(exc, InvalidHandshake):
            return f"the WebSocket handshake failed ({exc}); is an openpi policy server listening on this port?", True
        if isinstance(exc, _NoMetadata):
            return str(exc), True
        if isinstance(exc, ConnectionRefusedError):
            return f"connection refused; is the policy server running and listening on port {self._port}?", True
        if isinstance(exc, socket.gaierror):
            return f"cannot resolve the host {self._host!r} ({exc.strerror}); check the hostname", True
        if isinstance(exc, TimeoutError):
            return (
                (
                    f"no answer within {self.connect_timeout_s:g} s; check the host is up and reachable (network, VPN, firewall) "
                    "and the port"
                ),
                True,
            )
        return f"cannot connect ({exc})", True

    def _raise_if_closed(self, closes: int) -> None:
        if self._closes != closes:
            raise PolicyConnectionLost(self.url, "close() was called")

    def _drop(self, ws: ClientConnection, *, abort: bool) -> None:
        """Forget and close a connection that can no longer carry requests."""
        with self._state:
            if self._ws is ws:
                self._ws = None
        _close_connection(ws, abort=abort)

    def _too_big(self, what: str) -> str:
        return (
            f"the {what} is larger than this client's limit of {self.limits.max_message_bytes} bytes "
            "(max_message_bytes), so the connection was closed"
        )

    def _lost(self, exc: ConnectionClosed, closes: int) -> PolicyError:
        """The error for a connection that ended while a request was in flight."""
        if self._closes != closes:
            return PolicyConnectionLost(self.url, "close() was called while waiting for the reply")
        too_big = _closed_as_too_big(exc)
        if too_big == "sent":
            return PolicyProtocolError(self.url, self._too_big("reply"))
        if too_big == "received":
            reason = f" ({_one_line(exc.rcvd.reason)})" if exc.rcvd is not None and exc.rcvd.reason else ""
            return PolicyProtocolError(
                self.url,
                f"the server refused the observation as too large{reason}; send smaller images (policy.image_size) or raise "
                "the server's message limit",
            )
        if exc.rcvd is not None and exc.rcvd.code == CloseCode.INTERNAL_ERROR:
            return PolicyServerError(
                self.url,
                exc.rcvd.reason,
                f"the server closed the connection with 1011 (internal error): "
                f"{_one_line(exc.rcvd.reason) or 'no reason given'}; check the server's log",
            )
        if exc.rcvd is None:
            ours = f" (closed on this side: {exc.sent.reason})" if exc.sent is not None and exc.sent.reason else ""
            return PolicyConnectionLost(
                self.url,
                f"the connection dropped while waiting for the reply, without a close frame{ours}: did the server crash or "
                "restart, "
                "or the network fail? The next request reconnects",
            )
        reason = f", {_one_line(exc.rcvd.reason)}" if exc.rcvd.reason else ""
        return PolicyConnectionLost(
            self.url,
            f"the server closed the connection while waiting for the reply (code {exc.rcvd.code}{reason}); the next request "
            "reconnects",
        )


class _NoMetadata(OSError):
    """Connected, but the server closed the connection before its metadata: another attempt may do better."""


class _NoHandshake(Exception):
    """TCP connected, but the handshake or the metadata did not come in time: not retried."""


def _closed_as_too_big(exc: ConnectionClosed) -> str | None:
    """ "sent" when this side closed the connection over a message too large, "received" when the server did."""
    if exc.rcvd is not None and exc.rcvd.code == CloseCode.MESSAGE_TOO_BIG and (exc.sent is None or exc.rcvd_then_sent):
        return "received"
    if exc.sent is not None and exc.sent.code == CloseCode.MESSAGE_TOO_BIG:
        return "sent"
    return None


def _one_line(text: str) -> str:
    """Text from the server as one printable line of bounded length: it may hold anything, terminal escapes too."""
    line = "".join(c if c.isprintable() else " " for c in " ".join(text.split()))
    return line if len(line) <= SERVER_TEXT_CHARS else line[: SERVER_TEXT_CHARS - 3] + "..."


def _close_connection(ws: ClientConnection, *, abort: bool) -> None:
    """Close politely, or abort (no close handshake) when the server may be frozen or a reply is due."""
    if abort:
        with contextlib.suppress(OSError):
            ws.socket.shutdown(socket.SHUT_RDWR)
    ws.close()


def _unpack_map(url: str, frame: bytes | str, what: str, limits: WireLimits) -> dict:
    if isinstance(frame, str):
        raise PolicyServerError(url, frame)
    try:
        return decode(frame, limits)
    except WireError as exc:
        raise PolicyProtocolError(url, f"the {what} {exc}; is this an openpi policy server?") from None


def _parse_reply(url: str, frame: bytes, round_trip_s: float, limits: WireLimits) -> PolicyReply:
    reply = _unpack_map(url, frame, "reply", limits)
    if "actions" not in reply:
        raise PolicyProtocolError(url, f"the reply has no 'actions' (keys: {', '.join(map(str, reply)) or 'none'})")
    try:
        actions = np.asarray(reply.pop("actions"))
    except ValueError as exc:  # ragged nested lists
        raise PolicyProtocolError(url, f"the reply's actions are not an array ({exc})") from None
    if actions.dtype.kind not in "iuf" or actions.ndim != 2 or 0 in actions.shape:
        raise PolicyProtocolError(
            url, f"the reply's actions are {actions.dtype} with shape {actions.shape}, not a numeric [horizon, action_dim] array"
        )
    timing = reply.pop("server_timing", {})
    try:
        server_timing = {str(key): float(value) for key, value in timing.items()}
    except (AttributeError, TypeError, ValueError):
        raise PolicyProtocolError(url, f"the reply's server_timing is not a map of numbers: {timing!r}") from None
    return PolicyReply(actions.astype(np.float64), server_timing, round_trip_s, reply)
