"""Simulated WidowX AI arms: one simulated controller process per arm (drivers.trossen.sim_server), each
on its own loopback address, leaders playing the demo once told to. `robot-runtime sim trossen` and
`--sim` run these from a simulator process of their own."""

from __future__ import annotations

import contextlib
import errno
import json
import queue
import random
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drivers.trossen.config import JOINT_NAMES, TCP_PORT, UDP_PORT, TrossenArmConfig
from robot_runtime.config import ArmSpec, SimConfig
from robot_runtime.demo import ScriptedDemo
from robot_runtime.family import SimulatedArm
from robot_runtime.robot import ArmError
from robot_runtime.sim_console import stop_process

READY = "ready"
HOSTS = [f"127.0.0.{x}" for x in range(2, 255)]
"""127.0.0.1 is left to other local services; every 127.0.0.x is loopback on Linux without setup."""
READY_TIMEOUT_S = 30.0
"""Start-up is about 1 s (MuJoCo import and model load); generous for a loaded 2-core machine."""
REPLY_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 5.0
START_ATTEMPTS = 20
"""Simulators started at once (by other commands or tests) race for free addresses; a lost race costs one try."""
FAULTS = (
    "JOINT_OVERHEATED",
    "JOINT_DISABLED_UNEXPECTEDLY",
    "JOINT_FEEDBACK_FAILED",
    "JOINT_COMMAND_FAILED",
    "JOINT_LIMIT_EXCEEDED",
)
"""The controller error states (trossen_arm ErrorState) that belong to one joint."""
WRITE_COUNTERS = ("position_inputs", "position_goal_changes")
"""position_inputs: realtime cycles carrying a position-mode command (the driver sends one per cycle,
at kHz, while it holds or moves the arm); position_goal_changes: those whose targets differed from
the previous cycle's, i.e. the arm was commanded to move. Configuration writes are not counted."""
_JOINTS = len(JOINT_NAMES)
STATE_LENGTH = 2 * _JOINTS + len(WRITE_COUNTERS)


@dataclass(frozen=True)
class StateFile:
    """Pose (joint units), the last position goal received over the wire (before the simulator's own
    silent clipping) and write counters, shared through a memory-mapped file: one writer (the
    simulator process), any number of readers; a torn read only mixes two consecutive values."""

    values: np.ndarray

    @classmethod
    def create(cls, path: Path) -> StateFile:
        return cls(np.memmap(path, dtype=np.float64, mode="w+", shape=(STATE_LENGTH,)))

    @classmethod
    def open(cls, path: Path) -> StateFile:
        return cls(np.memmap(path, dtype=np.float64, mode="r+", shape=(STATE_LENGTH,)))

    @property
    def pose(self) -> np.ndarray:
        return self.values[:_JOINTS]

    @property
    def goal(self) -> np.ndarray:
        """NaN for joints never commanded in position mode."""
        return self.values[_JOINTS : 2 * _JOINTS]

    def count(self, counter: str) -> None:
        self.values[2 * _JOINTS + WRITE_COUNTERS.index(counter)] += 1

    def writes(self) -> Mapping[str, int]:
        return {name: int(v) for name, v in zip(WRITE_COUNTERS, self.values[2 * _JOINTS :], strict=True)}


class SimServerProcess:
    """A running drivers.trossen.sim_server: its address, its state file, and its command channel."""

    def __init__(
        self, workdir: Path, *, start_pose: np.ndarray, leader_demo: dict | None = None, firmware_version: str | None = None
    ) -> None:
        self.state_path = workdir / "state.bin"
        self.state = StateFile.create(self.state_path)
        self.state.goal[:] = np.nan
        self.log_path = workdir / "sim_server.log"
        self._args = ["--state-file", str(self.state_path), "--start-pose", json.dumps(start_pose.tolist())]
        if leader_demo is not None:
            self._args += ["--leader-demo", json.dumps(leader_demo)]
        if firmware_version is not None:
            self._args += ["--firmware-version", firmware_version]
        self.host = ""
        self._process: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()

    def start(self) -> SimServerProcess:
        """Start on a free loopback address; another process may take an address between the
        check and the bind, so a bind failure moves on to the next one."""
        for _ in range(START_ATTEMPTS):
            host = _free_host()
            try:
                self._start_on(host)
                return self
            except _AddressTaken:
                continue
        raise ArmError(f"could not start a WidowX AI simulator: the addresses tried were taken; see {self.log_path}")

    def command(self, line: str) -> None:
        """Send one command and wait for its reply, so its effect is in place when this returns."""
        if self._process is None or self._process.stdin is None:
            raise ArmError(f"the WidowX AI simulator on {self.host} is not running")
        with self._lock:
            self._process.stdin.write(line + "\n")
            self._process.stdin.flush()
            try:
                reply = self._lines.get(timeout=REPLY_TIMEOUT_S)
            except queue.Empty:
                raise ArmError(
                    f"the WidowX AI simulator on {self.host} did not answer {line!r}; see {self.log_path}"
                ) from None
        if reply is None:
            raise ArmError(f"the WidowX AI simulator on {self.host} exited; see {self.log_path}")
        if reply != "ok":
            raise ArmError(f"the WidowX AI simulator on {self.host} refused {line!r}: {reply}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_process(process, STOP_TIMEOUT_S)

    def _start_on(self, host: str) -> None:
        log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("a") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "drivers.trossen.sim_server", "--host", host, *self._args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                bufsize=1,
                start_new_session=True,  # a Ctrl-C at the terminal is for the command to handle (park), not for us
            )
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True, name=f"trossen-sim-{host}").start()
        try:
            first = lines.get(timeout=READY_TIMEOUT_S)
        except queue.Empty:
            first = None
            process.kill()
        if first == f"{READY} {host}":
            self._process, self.host, self._lines = process, host, lines
            return
        process.wait()
        log_text = self.log_path.read_text()[log_start:]
        if "Address already in use" in log_text:
            raise _AddressTaken(host)
        tail = "\n".join(log_text.splitlines()[-15:])
        raise ArmError(
            f"the WidowX AI simulator on {host} did not come up within {READY_TIMEOUT_S:g} s "
            f"(exit code {process.returncode}); its log {self.log_path} ends:\n{tail}"
        )


class _AddressTaken(Exception):
    pass


def simulate(arms: Sequence[ArmSpec], sim: SimConfig, stack: contextlib.ExitStack) -> list[SimulatedArm]:
    """One simulator process per arm, stopped by the exit stack; leaders hold their start pose until told
    to play the demo."""
    return [_simulate_arm(spec, sim, stack) for spec in arms]


def _simulate_arm(spec: ArmSpec, sim: SimConfig, stack: contextlib.ExitStack) -> SimulatedArm:
    config: TrossenArmConfig = spec.config  # type: ignore[assignment]
    script = ScriptedDemo.from_config(sim, JOINT_NAMES)
    demo = None
    if spec.role == "leader":
        demo = {
            "start": script.start.tolist(),
            "waypoints": script.waypoints.tolist(),
            "hold_s": script.hold_s,
            "segment_s": script.segment_s,
        }
    workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"robot-runtime-trossen-{spec.label}-")))
    server = SimServerProcess(workdir, start_pose=script.start, leader_demo=demo)
    stack.callback(server.stop)
    server.start()

    def inject(joint: str, fault: str) -> None:
        if joint not in JOINT_NAMES:
            raise ValueError(f"{spec.label} has no joint {joint!r} (joints: {list(JOINT_NAMES)})")
        if fault not in FAULTS:
            raise ValueError(f"unknown WidowX AI fault {fault!r} (known: {', '.join(FAULTS)})")
        server.command(f"fault {fault} {joint}")

    return SimulatedArm(
        config=config.model_copy(update={"ip": server.host}),
        address=server.host,
        inject=inject,
        faults=FAULTS,
        joint_names=JOINT_NAMES,
        pose=lambda: np.array(server.state.pose),
        writes=server.state.writes,
        start_demonstration=lambda: server.command("demo"),
    )


def _free_host() -> str:
    """A loopback address where nothing holds the controller's TCP or UDP port: from 127.0.0.2 up, starting at
    a random one of the first 64, so that simulators started at the same moment seldom pick the same."""
    start = random.randrange(64)
    for host in HOSTS[start:] + HOSTS[:start]:
        if _port_free(host, socket.SOCK_STREAM, TCP_PORT) and _port_free(host, socket.SOCK_DGRAM, UDP_PORT):
            return host
    raise ArmError(f"every loopback address 127.0.0.2-254 has port {TCP_PORT} or {UDP_PORT} in use")


def _port_free(host: str, kind: socket.SocketKind, port: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the simulator binds: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def _pump(stream, lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)
