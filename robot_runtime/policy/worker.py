"""Inference off the control tick: one thread turns an observation snapshot into a policy request
(letterbox, encode), waits for the reply and maps it back to joint actions. One request is in flight at
a time, as the protocol is strictly one request, one reply."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from robot_runtime.policy.client import PolicyClient
from robot_runtime.policy.mapping import PolicyIO
from robot_runtime.queues import drain


@dataclass(frozen=True)
class Snapshot:
    """What the policy is asked about: the state and camera images read on one tick."""

    tick: int
    state: np.ndarray
    images: Mapping[str, np.ndarray]
    taken_s: float
    timeout_s: float | None = None
    """How long the reply may take; None: the client's request timeout."""


@dataclass(frozen=True)
class Inference:
    """A reply, mapped to joint actions [horizon, joints]; not yet checked for finiteness."""

    obs_tick: int
    actions: np.ndarray
    latency_s: float
    """Snapshot taken to actions mapped."""
    server_infer_ms: float | None


@dataclass(frozen=True)
class Failure:
    obs_tick: int
    error: Exception


Result = Inference | Failure


class InferenceWorker:
    def __init__(self, client: PolicyClient, io: PolicyIO, prompt: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.io = io
        self.prompt = prompt
        self._clock = clock
        self._requests: queue.SimpleQueue[Snapshot | None] = queue.SimpleQueue()
        self._results: queue.SimpleQueue[Result] = queue.SimpleQueue()
        self._busy = threading.Event()
        self._submitted_s = 0.0
        self._thread = threading.Thread(target=self._serve, name="inference", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        return self._busy.is_set()

    def in_flight_s(self) -> float | None:
        """How long the request in flight has been waiting, None when there is none."""
        return self._clock() - self._submitted_s if self._busy.is_set() else None

    def submit(self, snapshot: Snapshot) -> None:
        if self._busy.is_set():
            raise RuntimeError("a request is already in flight")
        self._submitted_s = self._clock()
        self._busy.set()
        self._requests.put(snapshot)

    def results(self) -> list[Result]:
        """Replies that arrived since the last call; never blocks."""
        return drain(self._results)

    def wait(self, timeout_s: float) -> Result | None:
        """Block for the reply in flight (synchronous scheduling); None when none came in time."""
        try:
            return self._results.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def close(self) -> None:
        """Stop the thread; a request in flight is abandoned by closing the connection under it."""
        self._requests.put(None)
        self.client.close()
        self._thread.join(timeout=5.0)

    def _serve(self) -> None:
        while (snapshot := self._requests.get()) is not None:
            try:
                observation = self.io.observation(snapshot.state, snapshot.images, self.prompt)
                reply = self.client.infer(observation, snapshot.timeout_s)
                actions = self.io.actions(reply.actions, snapshot.state)
                infer_ms = reply.server_timing.get("infer_ms")
                result: Result = Inference(
                    snapshot.tick, actions, self._clock() - snapshot.taken_s, None if infer_ms is None else float(infer_ms)
                )
            except Exception as exc:  # every failure is the control loop's to judge (hold, retry or stop)
                result = Failure(snapshot.tick, exc)
            self._results.put(result)
            self._busy.clear()
