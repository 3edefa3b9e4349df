"""Simulated Rizon controllers, served over loopback TCP to the RDK stand-in (drivers.flexiv.standin).

Flexiv has no offline controller, so this plays the robot's side of the RDK: operational status, enable and
brakes, E-stop, faults, control modes, the NRT motion generator (drivers.flexiv.model) integrated in a
background thread, and a Grav-like gripper (0-0.1 m). Each simulated robot is keyed by its serial number.
It is kinematic: force control settings are checked and accepted, target wrenches are ignored (every axis
is motion-controlled), and measured torques and wrenches read zero. An arm with nothing to do (no target, or
its target reached and at rest) is not integrated.

    python -m drivers.flexiv.sim_controller --serial Rizon4-SIM001 [--serial Rizon4-SIM002] [--port 0]

prints `ready <host:port>` once listening, then answers one command per stdin line: `inject <serial>
<fault|minor_fault|estop|release_estop>` -> `ok`, `counts <serial>` and `pose <serial>` -> one JSON line,
or `error <why>`; it serves until SIGTERM or SIGINT (stdin may be closed).

The wire is one JSON object per line each way. A request is {"id": int, "op": str, "args": {...}}; the first
must be `hello` with the serial. A reply is {"id": int, "ok": true, "result": ...} or {"id": int, "ok": false,
"kind": "invalid_argument" | "logic_error" | "runtime_error", "message": str}: the C++ exception the real
controller's RDK would raise, with the RDK's own message text where it has one. Every field is validated
(type, length, finite numbers) before it reaches the model; nothing from the wire picks a code path
beyond the listed ops.

As a real robot streams its states to the RDK, a link whose hello says {"push": true} is sent {"state": {...}}
(status, mode, joint and TCP states, gripper, the controller's timestamp and a sequence number `seq`, newer
states having larger ones) at every integration step, and each reply to it carries the state after the
request as "state". A request with "wait": false (a non-blocking command) gets no reply. inject() returns once
every pushed link has the injected state: its push carries "sync": int, which the link acknowledges with the
request {"op": "synced", "args": {"sync": int}, "wait": false}.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import select
import signal
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

import numpy as np

from drivers.flexiv.model import (
    DOF,
    DQ_MAX_RAD_S,
    HOME_Q_RAD,
    Q_MAX_RAD,
    Q_MIN_RAD,
    TAU_MAX_NM,
    CartesianTarget,
    JointTarget,
    MotionGenerator,
    RizonKinematics,
    pose_from_matrix,
)
from drivers.flexiv.standin._rules import (
    CARTESIAN_LIMITS,
    CARTESIAN_MODES,
    JOINT_VECTORS,
    WireError,
    check_cartesian,
    check_joint,
    require_mode,
    require_operational,
)
from drivers.flexiv.standin._rules import bad as _bad

MODES = (
    "UNKNOWN",
    "IDLE",
    "NRT_JOINT_IMPEDANCE",
    "NRT_JOINT_POSITION",
    "NRT_PLAN_EXECUTION",
    "NRT_PRIMITIVE_EXECUTION",
    "NRT_CARTESIAN_MOTION_FORCE",
    "NRT_SUPER_PRIMITIVE",
)
INJECTIONS = ("fault", "minor_fault", "estop", "release_estop")
COMMANDS = (
    "enable",
    "switch_mode",
    "stop",
    "clear_fault",
    "cartesian_motion",
    "joint_position",
    "primitive",
    "force_control_axis",
    "max_contact_wrench",
    "null_space_posture",
    "gripper_enable",
    "gripper_move",
    "gripper_stop",
)
MINOR_FAULT_CLEAR_S = 0.3
ZERO_FT_S = 0.5
MAX_LINE_BYTES = 1 << 16
READY = "ready"
RATE_HZ = 100.0
"""Integration and state-push rate: arrivals are exact at any rate (the generator lands on its target), and
100 Hz is the fastest NRT command rate Flexiv supports."""
HEARTBEAT_S = 0.05
"""An unchanged state is pushed at this period only, and a resting robot is integrated as seldom."""
SYNC_WAIT_S = 2.0
"""How long inject() waits for each pushed link to acknowledge the injected state."""
_SYNC_TOKENS = itertools.count(1)
T = TypeVar("T")


@dataclass(frozen=True)
class GripperSpec:
    """A Flexiv Grav-like parallel gripper as GripperParams reports it."""

    name: str = "Flexiv-GN01"
    min_width: float = 0.0
    max_width: float = 0.1
    min_vel: float = 0.001
    max_vel: float = 0.2
    min_force: float = 0.0
    max_force: float = 100.0


@dataclass(frozen=True)
class RizonSimSpec:
    """How one simulated Rizon 4 starts. It starts like a robot at power-on in Remote mode: E-stop released,
    no fault, not enabled (Enable() releases the brakes; operational `brake_release_s` later)."""

    q_start_rad: tuple[float, ...] = tuple(float(v) for v in HOME_Q_RAD)
    tcp_offset_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """The TCP in the flange frame (the tool configured in Flexiv Elements)."""
    auto_mode: bool = True
    """False: the mode key is on Manual, operational_status IN_MANUAL_MODE, never operational."""
    enabled: bool = False
    """True: already enabled and operational at start."""
    estop_pressed: bool = False
    brake_release_s: float = 0.3
    gripper: GripperSpec = GripperSpec()
    gripper_width_m: float = 0.1
    software_ver: str = "v3.11.3"


def rdk_serial(serial: str) -> str:
    """A Rizon 4 serial as the RDK keeps it, spaces dropped ("Rizon 4s-123456" -> "Rizon4s-123456")."""
    compact = serial.replace(" ", "")
    parts = compact.split("-")
    if len(parts) != 2 or not parts[0].startswith("Rizon4") or not parts[1]:
        raise ValueError(
            f"simulated robot serial {serial!r} is not a Rizon 4 serial: the model, a dash and the number "
            "(e.g. Rizon4-SIM001 or Rizon 4s-123456); the simulator models a Rizon 4 only"
        )
    return compact


class Link(Protocol):
    """A connection the robot pushes its state to."""

    def push(self, line: bytes, *, sync: int | None = None) -> threading.Event | None: ...


class SimulatedRizon:
    """One robot's controller state. Every method takes the lock: the server's connection threads and the
    integration thread share it."""

    def __init__(self, serial: str, spec: RizonSimSpec) -> None:
        serial = rdk_serial(serial)
        if len(spec.q_start_rad) != DOF:
            raise ValueError(f"{serial}: q_start_rad needs {DOF} joint positions, got {len(spec.q_start_rad)}")
        self.serial = serial
        self.spec = spec
        self.model_name = serial.split("-")[0]
        self._lock = threading.Lock()
        self._motion = MotionGenerator(RizonKinematics(spec.tcp_offset_m), np.array(spec.q_start_rad))
        self._time_s = time.time()
        self._mode = "IDLE"
        self._auto = spec.auto_mode
        self._estop = spec.estop_pressed
        self._fault: str | None = None
        self._fault_clears_at: float | None = None
        self._enabled = spec.enabled and not spec.estop_pressed
        self._brakes_released_at = 0.0 if self._enabled else math.inf
        self._primitive: dict[str, Any] | None = None
        self._gripper_enabled: str | None = None
        self._gripper_width = float(np.clip(spec.gripper_width_m, spec.gripper.min_width, spec.gripper.max_width))
        self._gripper_target = self._gripper_width
        self._gripper_vel = 0.0
        self._counts = dict.fromkeys(COMMANDS, 0)
        self._links: set[Link] = set()
        self.wake: threading.Event | None = None
        """Set when a request sets a resting robot going, so the integrator starts integrating at once."""
        self._pushed: dict[str, Any] = {}
        self._pushed_at = -math.inf
        self._seq = 0
        self._kinematic_key = b""
        self._kinematic: dict[str, Any] = {}

    # -- what tests and the CLI read and do --------------------------------------------------------
    # The readings return once every pushed link has a state at least as new as what they report (as inject()
    # does), so what a test reads here and then through the RDK compares like with like.

    def tcp_pose(self) -> np.ndarray:
        """[x, y, z, qw, qx, qy, qz] of the TCP in WORLD, metres."""
        return self._observed(lambda: pose_from_matrix(self._motion.flange_and_tcp()[1]))

    def q(self) -> np.ndarray:
        return self._observed(lambda: np.array(self._motion.q_rad))

    def gripper_width(self) -> float:
        return self._observed(lambda: self._gripper_width)

    def _observed(self, read: Callable[[], T]) -> T:
        with self._lock:
            value = read()
        self.publish(sync_s=SYNC_WAIT_S)
        return value

    def command_counts(self) -> dict[str, int]:
        """How many of each command the controller received (refused ones included); `motion_commands` is the
        sum of Cartesian, joint and primitive commands."""
        with self._lock:
            counts = dict(self._counts)
        counts["motion_commands"] = counts["cartesian_motion"] + counts["joint_position"] + counts["primitive"]
        return counts

    def inject(self, what: str) -> None:
        """`fault`: a critical fault (stops; ClearFault cannot clear it); `minor_fault`: ClearFault clears it;
        `estop`: the E-stop is pressed (stops, disables); `release_estop`: released (Enable again)."""
        if what not in INJECTIONS:
            raise ValueError(f"unknown injection {what!r}: expected one of {', '.join(INJECTIONS)}")
        with self._lock:
            if what == "release_estop":
                self._estop = False
            else:
                self._halt()
                if what == "estop":
                    self._estop = True
                    self._gripper_target = self._gripper_width
                else:
                    self._fault = "critical" if what == "fault" else "minor"
                    self._fault_clears_at = None
        self.publish(sync_s=SYNC_WAIT_S)

    # -- the links its state is pushed to -----------------------------------------------------------

    def subscribe(self, link: Link) -> None:
        with self._lock:
            self._links.add(link)

    def unsubscribe(self, link: Link) -> None:
        with self._lock:
            self._links.discard(link)

    def state(self) -> dict[str, Any]:
        """What the RDK caches of the robot, newest `seq` last."""
        with self._lock:
            return self._state()

    def publish(self, sync_s: float = 0.0) -> None:
        """Push the state to every link when it changed, and at least every HEARTBEAT_S (the timestamp);
        with `sync_s`, always, and wait up to that long until each link has acknowledged it."""
        with self._lock:
            if not self._links:
                return
            state, links = self._state(), list(self._links)
            content = {k: v for k, v in state.items() if k not in ("seq", "timestamp")}
            now_s = time.monotonic()
            if not sync_s and content == self._pushed and now_s - self._pushed_at < HEARTBEAT_S:
                return
            self._pushed, self._pushed_at = content, now_s
        if not sync_s:
            line = json.dumps({"state": state}).encode() + b"\n"
            for link in links:
                link.push(line)
            return
        waits = []
        for link in links:
            token = next(_SYNC_TOKENS)
            waits.append(link.push(json.dumps({"state": state, "sync": token}).encode() + b"\n", sync=token))
        deadline = time.monotonic() + sync_s
        for acknowledged in waits:
            if acknowledged is not None:
                acknowledged.wait(max(0.0, deadline - time.monotonic()))

    # -- the integration thread ---------------------------------------------------------------------

    def step(self, now_s: float) -> bool:
        """Integrate up to `now_s`; True while the robot changes by itself (moving, a primitive, brakes
        releasing or a fault clearing), False when it waits for a command."""
        with self._lock:
            self._step(now_s)
            return self._active()

    def _step(self, now_s: float) -> None:
        dt_s = min(max(now_s - self._time_s, 0.0), 0.05)
        self._time_s = now_s
        if self._fault_clears_at is not None and now_s >= self._fault_clears_at:
            self._fault, self._fault_clears_at = None, None
        if dt_s <= 0:
            return
        if not self._motion.idle:
            self._motion.step(dt_s)
        if self._primitive is not None and now_s >= self._primitive["done_at"]:
            self._primitive["terminated"] = 1
        if self._primitive is not None and self._primitive["name"] == "Home" and not self._motion.moving:
            self._primitive["terminated"] = int(bool(np.allclose(self._motion.q_rad, HOME_Q_RAD, atol=1e-4)))
        if self._gripper_target != self._gripper_width:
            travel = self._gripper_target - self._gripper_width
            self._gripper_width += float(np.clip(travel, -self._gripper_vel * dt_s, self._gripper_vel * dt_s))

    def _active(self) -> bool:
        return (
            not self._motion.idle
            or self._gripper_target != self._gripper_width
            or (self._primitive is not None and not self._primitive["terminated"])
            or self._fault_clears_at is not None
            or self._time_s < self._brakes_released_at < math.inf
        )

    # -- the RDK's requests ----------------------------------------------------------------------------

    def handle(self, op: str, args: dict[str, Any]) -> Any:
        handler = _HANDLERS.get(op)
        if handler is None:
            raise WireError("runtime_error", f"unknown request {op!r}")
        with self._lock:
            resting = not self._active()
            if resting:
                self._step(time.time())  # the integrator may be resting: bring the robot to now first
            if op in self._counts:
                self._counts[op] += 1
            result = handler(self, args)
            started = resting and self._active()
        if started and self.wake is not None:
            self.wake.set()
        return result

    def _status(self) -> str:
        if self._estop:
            return "ESTOP_NOT_RELEASED"
        if self._fault == "critical":
            return "CRITICAL_FAULT"
        if self._fault == "minor":
            return "MINOR_FAULT"
        if not self._auto:
            return "IN_MANUAL_MODE"
        if not self._enabled:
            return "NOT_ENABLED"
        if self._time_s < self._brakes_released_at:
            return "RELEASING_BRAKE"
        return "READY"

    def _halt(self) -> None:
        """What a fault or the E-stop does: stop at once, IDLE, brakes on."""
        self._motion.stop()
        self._primitive = None
        self._mode = "IDLE"
        self._enabled = False
        self._brakes_released_at = math.inf

    def _require(self, where: str, modes: tuple[str, ...]) -> None:
        require_mode(where, self._mode, modes)

    def _require_operational(self, where: str, kind: str = "runtime_error") -> None:
        require_operational(where, self._status(), kind)

    def _info(self, _: dict[str, Any]) -> dict[str, Any]:
        return {
            "serial_num": self.serial,
            "software_ver": self.spec.software_ver,
            "model_name": self.model_name,
            "license_type": "Basic",
            "DoF": DOF,
            "DoF_m": DOF,
            "DoF_e": 0,
            "K_x_nom": [10000.0, 10000.0, 10000.0, 1500.0, 1500.0, 1500.0],
            "K_q_nom": [10000.0, 10000.0, 5000.0, 5000.0, 3000.0, 2000.0, 2000.0],
            "q_min": Q_MIN_RAD.tolist(),
            "q_max": Q_MAX_RAD.tolist(),
            "dq_max": DQ_MAX_RAD_S.tolist(),
            "tau_max": TAU_MAX_NM.tolist(),
            "has_FT_sensor": False,
        }

    def _poll(self, _: dict[str, Any]) -> dict[str, Any]:
        return self._state()

    def _state(self) -> dict[str, Any]:
        motion = self._motion
        key = motion.q_rad.tobytes() + motion.dq_rad_s.tobytes() + motion.tcp_twist.tobytes()
        if key != self._kinematic_key:  # an arm at rest is not recomputed
            flange, tcp = motion.flange_and_tcp()
            self._kinematic_key = key
            self._kinematic = {
                "q": motion.q_rad.tolist(),
                "dq": motion.dq_rad_s.tolist(),
                "tcp_pose": pose_from_matrix(tcp).tolist(),
                "flange_pose": pose_from_matrix(flange).tolist(),
                "tcp_vel": motion.tcp_twist.tolist(),
            }
        seconds = math.floor(self._time_s)
        self._seq += 1
        gripper = self._gripper_state({})
        del gripper["params"]
        return {
            "seq": self._seq,
            "status": self._status(),
            "mode": self._mode,
            "fault": self._fault is not None,
            "estop_released": not self._estop,
            "busy": motion.moving or (self._primitive is not None and not self._primitive["terminated"]),
            "stopped": not motion.moving,
            "timestamp": [seconds, int((self._time_s - seconds) * 1e9)],
            **self._kinematic,
            "gripper": gripper,
        }

    def _enable(self, _: dict[str, Any]) -> None:
        if self._estop:
            raise WireError("logic_error", "[flexiv::rdk::Robot::Enable] E-stop is not released")
        if self._fault is None and not self._enabled:
            self._enabled = True
            self._brakes_released_at = self._time_s + self.spec.brake_release_s

    def _switch_mode(self, args: dict[str, Any]) -> None:
        mode = _text(args, "mode", "Robot::SwitchMode")
        if mode not in MODES or mode == "UNKNOWN":
            raise _bad("Robot::SwitchMode", "Invalid control mode input")
        self._require_operational("SwitchMode", kind="logic_error")
        self._motion.stop()
        self._primitive = None
        self._mode = mode

    def _stop(self, _: dict[str, Any]) -> None:
        self._motion.stop()
        self._primitive = None
        self._mode = "IDLE"

    def _clear_fault(self, _: dict[str, Any]) -> None:
        if self._fault == "minor" and self._fault_clears_at is None:
            self._fault_clears_at = self._time_s + MINOR_FAULT_CLEAR_S

    def _cartesian_motion(self, args: dict[str, Any]) -> None:
        where = "Robot::SendCartesianMotionForce"
        vectors = {key: _floats(args, key, size, where) for key, size in (("pose", 7), ("wrench", 6), ("velocity", 6))}
        limits = [_number(args, key, where) for key in CARTESIAN_LIMITS]
        check_cartesian({k: v.tolist() for k, v in vectors.items()}, limits, self._mode, self._status())
        pose = vectors["pose"]
        pose[3:] /= float(np.linalg.norm(pose[3:]))
        self._motion.track(CartesianTarget(pose, *limits))

    def _joint_position(self, args: dict[str, Any]) -> None:
        where = "Robot::SendJointPosition"
        vectors = {key: _floats(args, key, None, where) for key in JOINT_VECTORS}
        check_joint({k: v.tolist() for k, v in vectors.items()}, DOF, self._mode, self._status())
        goal = np.clip(vectors["positions"], Q_MIN_RAD, Q_MAX_RAD)
        self._motion.track(JointTarget(goal, vectors["max_vel"], vectors["max_acc"]))

    def _force_control_axis(self, args: dict[str, Any]) -> None:
        where = "Robot::SetForceControlAxis"
        axes = args.get("enabled_axes")
        if not (isinstance(axes, list) and len(axes) == 6 and all(isinstance(a, bool) for a in axes)):
            raise _bad(where, "Input parameter [enabled_axes] must be 6 booleans")
        max_vel = _floats(args, "max_linear_vel", 3, where)
        if min(max_vel) < 0.005 or max(max_vel) > 2.0:
            raise _bad(where, "Input parameter [max_linear_vel] contains value outside the valid range")
        self._require("SetForceControlAxis", CARTESIAN_MODES)

    def _max_contact_wrench(self, args: dict[str, Any]) -> None:
        where = "Robot::SetMaxContactWrench"
        wrench = _floats(args, "max_wrench", 6, where, allow_inf=True)
        if min(wrench) < 0:
            raise _bad(where, "Input parameter [max_wrench] contains negative value")
        self._require("SetMaxContactWrench", CARTESIAN_MODES)

    def _null_space_posture(self, args: dict[str, Any]) -> None:
        where = "Robot::SetNullSpacePosture"
        ref = _floats(args, "ref_positions", None, where)
        if len(ref) != DOF:
            raise _bad(where, "Size of input vector [ref_positions] does not match robot DoF")
        if np.any(ref < Q_MIN_RAD) or np.any(ref > Q_MAX_RAD):
            raise _bad(where, "Input parameter [ref_positions] contains value outside the valid range")
        self._require("SetNullSpacePosture", CARTESIAN_MODES)

    def _primitive_start(self, args: dict[str, Any]) -> None:
        name = _text(args, "name", "Robot::ExecutePrimitive")
        if not isinstance(args.get("params"), dict):
            raise _bad("Robot::ExecutePrimitive", "Input map [input_params] must be a map")
        self._require("ExecutePrimitive", ("NRT_PRIMITIVE_EXECUTION",))
        self._require_operational("ExecutePrimitive")
        if name == "ZeroFTSensor":
            self._primitive = {"name": name, "done_at": self._time_s + ZERO_FT_S, "terminated": 0}
        elif name == "Home":
            self._motion.track(JointTarget(HOME_Q_RAD.copy(), DQ_MAX_RAD_S * 0.3, np.full(DOF, 2.0)))
            self._primitive = {"name": name, "done_at": math.inf, "terminated": 0}
        else:
            raise WireError(
                "runtime_error",
                f"[flexiv::rdk::Robot::ExecutePrimitive] The simulated robot has no primitive [{name}] "
                "(it has ZeroFTSensor, Home)",
            )

    def _primitive_states(self, _: dict[str, Any]) -> dict[str, Any]:
        if self._primitive is None:
            return {"name": "", "values": {}}
        values = {"terminated": self._primitive["terminated"], "reachedTarget": self._primitive["terminated"]}
        return {"name": self._primitive["name"], "values": values}

    def _gripper_params(self) -> dict[str, Any]:
        g = self.spec.gripper
        return {
            "name": g.name,
            "min_width": g.min_width,
            "max_width": g.max_width,
            "min_vel": g.min_vel,
            "max_vel": g.max_vel,
            "min_force": g.min_force,
            "max_force": g.max_force,
        }

    def _gripper_enable(self, args: dict[str, Any]) -> dict[str, Any]:
        name = _text(args, "name", "Gripper::Enable")
        if name != self.spec.gripper.name:
            raise _bad("Gripper::Enable", f"The specified gripper [{name}] does not exist")
        if self._gripper_enabled is not None:
            raise WireError("logic_error", f"[flexiv::rdk::Gripper::Enable] Gripper [{self._gripper_enabled}] is already enabled")
        self._gripper_enabled = name
        return self._gripper_params()

    def _gripper_disable(self, _: dict[str, Any]) -> None:
        self._gripper_check("Disable")
        self._gripper_enabled = None

    def _gripper_check(self, where: str) -> None:
        if self._gripper_enabled is None:
            raise WireError("logic_error", f"[flexiv::rdk::Gripper::{where}] No gripper enabled")

    def _gripper_move(self, args: dict[str, Any]) -> None:
        where = "Gripper::Move"
        values = {key: _number(args, key, where) for key in ("width", "velocity", "force_limit")}
        self._gripper_check("Move")
        g = self.spec.gripper
        ranges = {
            "width": (g.min_width, g.max_width),
            "velocity": (g.min_vel, g.max_vel),
            "force_limit": (g.min_force, g.max_force),
        }
        for key, (low, high) in ranges.items():
            if not low <= values[key] <= high or (key == "velocity" and values[key] == 0):
                raise _bad(where, f"Input parameter [{key}] is outside the valid range")
        self._gripper_target = values["width"]
        self._gripper_vel = values["velocity"]

    def _gripper_stop(self, _: dict[str, Any]) -> None:
        self._gripper_check("Stop")
        self._gripper_target = self._gripper_width

    def _gripper_state(self, _: dict[str, Any]) -> dict[str, Any]:
        enabled = self._gripper_enabled is not None
        return {
            "width": self._gripper_width if enabled else 0.0,
            "force": 0.0,
            "is_moving": enabled and abs(self._gripper_target - self._gripper_width) > 1e-9,
            "params": self._gripper_params() if enabled else None,
        }


_HANDLERS: dict[str, Callable[[SimulatedRizon, dict[str, Any]], Any]] = {
    "info": SimulatedRizon._info,
    "poll": SimulatedRizon._poll,
    "enable": SimulatedRizon._enable,
    "switch_mode": SimulatedRizon._switch_mode,
    "stop": SimulatedRizon._stop,
    "clear_fault": SimulatedRizon._clear_fault,
    "cartesian_motion": SimulatedRizon._cartesian_motion,
    "joint_position": SimulatedRizon._joint_position,
    "force_control_axis": SimulatedRizon._force_control_axis,
    "max_contact_wrench": SimulatedRizon._max_contact_wrench,
    "null_space_posture": SimulatedRizon._null_space_posture,
    "primitive": SimulatedRizon._primitive_start,
    "primitive_states": SimulatedRizon._primitive_states,
    "gripper_enable": SimulatedRizon._gripper_enable,
    "gripper_disable": SimulatedRizon._gripper_disable,
    "gripper_move": SimulatedRizon._gripper_move,
    "gripper_stop": SimulatedRizon._gripper_stop,
    "gripper_state": SimulatedRizon._gripper_state,
}


def _number(args: dict[str, Any], key: str, where: str) -> float:
    value = args.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad(where, f"Input parameter [{key}] must be a finite number")
    return float(value)


def _floats(args: dict[str, Any], key: str, size: int | None, where: str, *, allow_inf: bool = False) -> np.ndarray:
    value = args.get(key)
    if not isinstance(value, list) or (size is not None and len(value) != size) or len(value) > 64:
        raise _bad(where, f"Input parameter [{key}] must be a list of {size or 'some'} numbers")
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int | float) or math.isnan(item):
            raise _bad(where, f"Input parameter [{key}] must hold numbers only")
        if not allow_inf and math.isinf(item):
            raise _bad(where, f"Input parameter [{key}] must hold finite numbers only")
    return np.array(value, dtype=np.float64)


def _text(args: dict[str, Any], key: str, where: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or len(value) > 256:
        raise _bad(where, f"Input parameter [{key}] must be a string")
    return value


class _Connection(socketserver.StreamRequestHandler):
    """One RDK instance's link: `hello` names the robot, then one reply per waited request, in order, and the
    robot's state pushed in between when the hello asked for it."""

    server: _Server

    def setup(self) -> None:
        super().setup()
        self._write_lock = threading.Lock()
        self._syncs: dict[int, threading.Event] = {}
        self._robot: SimulatedRizon | None = None
        with self.server.lock:
            self.server.connections.add(self.request)

    def finish(self) -> None:
        if self._robot is not None:
            self._robot.unsubscribe(self)
        with self.server.lock:
            self.server.connections.discard(self.request)
        super().finish()

    def push(self, line: bytes, *, sync: int | None = None) -> threading.Event | None:
        """Send a state; a routine one is skipped while the RDK is not reading (the next one is newer), a sync
        one returns the event its acknowledgement sets."""
        acknowledged = None
        if sync is not None:
            acknowledged = self._syncs[sync] = threading.Event()
        with self._write_lock:
            try:
                if sync is None and not select.select([], [self.request], [], 0)[1]:
                    return None
                self.wfile.write(line)
            except (OSError, ValueError):
                if sync is not None:
                    self._syncs.pop(sync, None)
                return None
        return acknowledged

    def _reply(self, reply: dict[str, Any]) -> bool:
        with self._write_lock:
            try:
                self.wfile.write(json.dumps(reply).encode() + b"\n")
            except OSError:
                return False
        return True

    def handle(self) -> None:
        robot: SimulatedRizon | None = None
        pushed = False
        while True:
            try:
                line = self.rfile.readline(MAX_LINE_BYTES + 1)
            except OSError:
                return
            if not line:
                return
            request_id: Any = None
            wait = True
            try:
                if len(line) > MAX_LINE_BYTES:
                    raise WireError("runtime_error", f"request longer than {MAX_LINE_BYTES} bytes")
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise WireError("runtime_error", "a request must be a JSON object")
                request_id = request.get("id")
                op, args = request.get("op"), request.get("args", {})
                wait = request.get("wait", True) is not False
                if not isinstance(request_id, int) or not isinstance(op, str) or not isinstance(args, dict):
                    raise WireError("runtime_error", 'a request needs {"id": int, "op": str, "args": object}')
                if op == "synced":
                    acknowledged = self._syncs.pop(args.get("sync"), None)  # type: ignore[arg-type]
                    if acknowledged is not None:
                        acknowledged.set()
                    continue
                if op == "hello":
                    serial = args.get("serial")
                    robot = self.server.robots.get(serial) if isinstance(serial, str) else None
                    if robot is None:
                        raise WireError("runtime_error", f"no simulated robot [{serial}] here")
                    result = robot.handle("info", {})
                    if args.get("push") is True and not pushed:
                        pushed, self._robot = True, robot
                        robot.subscribe(self)
                elif robot is None:
                    raise WireError("runtime_error", "say hello with the serial number first")
                else:
                    result = robot.handle(op, args)
                reply: dict[str, Any] = {"id": request_id, "ok": True, "result": result}
            except json.JSONDecodeError as exc:
                reply = {"id": None, "ok": False, "kind": "runtime_error", "message": f"not JSON: {exc}"}
            except WireError as exc:
                reply = {"id": request_id, "ok": False, "kind": exc.kind, "message": exc.message}
            if not wait:
                continue
            if pushed and robot is not None:
                reply["state"] = robot.state()
            if not self._reply(reply):
                return


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], robots: dict[str, SimulatedRizon]) -> None:
        super().__init__(address, _Connection)
        self.robots = robots
        self.lock = threading.Lock()
        self.connections: set[socket.socket] = set()

    def drop_connections(self) -> None:
        """A stopped controller drops its RDK links, as a powered-off robot does."""
        with self.lock:
            for connection in self.connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)


class SimulatedRizons:
    """Several simulated Rizons behind one loopback address, integrated and their states pushed at `rate_hz`
    in a background thread.

    with SimulatedRizons({"Rizon4-SIM001": RizonSimSpec()}) as sims:
        standin.discover_at(sims.address)
        sims["Rizon4-SIM001"].inject("estop")
    """

    def __init__(self, robots: dict[str, RizonSimSpec], host: str = "127.0.0.1", port: int = 0, rate_hz: float = RATE_HZ) -> None:
        if not robots:
            raise ValueError("SimulatedRizons needs at least one robot (serial -> RizonSimSpec)")
        self.robots = {rdk_serial(serial): SimulatedRizon(serial, spec) for serial, spec in robots.items()}
        self._wake = threading.Event()
        for robot in self.robots.values():
            robot.wake = self._wake
        self._host, self._port = host, port
        self._period_s = 1.0 / rate_hz
        self._server: _Server | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    @property
    def address(self) -> str:
        if self._server is None:
            raise RuntimeError("the simulated controllers are not serving: use SimulatedRizons as a context manager")
        return f"{self._host}:{self._server.server_address[1]}"

    def __getitem__(self, serial: str) -> SimulatedRizon:
        try:
            return self.robots[serial.replace(" ", "")]
        except KeyError:
            raise KeyError(f"no simulated robot {serial!r} (serving {', '.join(self.robots)})") from None

    def start(self) -> None:
        self._server = _Server((self._host, self._port), self.robots)
        self._stopping.clear()
        self._threads = [
            threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="rizon-sim-server", daemon=True
            ),
            threading.Thread(target=self._integrate, name="rizon-sim-integrator", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.drop_connections()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()

    def _integrate(self) -> None:
        """Step and push at `rate_hz` while any robot changes by itself; at rest, every HEARTBEAT_S or when a
        request arrives."""
        deadline = time.monotonic()
        while not self._stopping.is_set():
            now_s = time.time()
            active = False
            for robot in self.robots.values():
                active = robot.step(now_s) or active
                robot.publish()
            deadline = max(deadline + (self._period_s if active else HEARTBEAT_S), time.monotonic())
            if self._wake.wait(max(0.0, deadline - time.monotonic())):
                self._wake.clear()
                deadline = time.monotonic()


def _command(sims: SimulatedRizons, words: list[str]) -> str:
    match words:
        case ["inject", serial, what] if serial in sims.robots and what in INJECTIONS:
            sims[serial].inject(what)
            return "ok"
        case ["counts", serial] if serial in sims.robots:
            return json.dumps(sims[serial].command_counts())
        case ["pose", serial] if serial in sims.robots:
            return json.dumps({"tcp_pose": sims[serial].tcp_pose().tolist(), "q": sims[serial].q().tolist()})
    return (
        f"error unknown command {' '.join(words)!r}: expected 'inject <serial> <{'|'.join(INJECTIONS)}>', "
        f"'counts <serial>' or 'pose <serial>' (serials: {', '.join(sims.robots)})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serial", action="append", required=True, help="serial number of a simulated robot, e.g. Rizon4-SIM001")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: any free one)")
    parser.add_argument("--manual-mode", action="append", default=[], metavar="SERIAL", help="start this robot in Manual mode")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.manual_mode) - set(args.serial))
    if unknown:
        parser.error(f"--manual-mode names robots not given with --serial: {', '.join(unknown)}")
    specs = {serial: RizonSimSpec(auto_mode=serial not in args.manual_mode) for serial in args.serial}
    try:
        sims = SimulatedRizons(specs, host=args.host, port=args.port)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        sims.start()
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"{READY} {sims.address}", flush=True)
    threading.Thread(target=_read_commands, args=(sims,), daemon=True).start()
    while not stop.wait(0.2):
        pass
    sims.close()
    return 0


def _read_commands(sims: SimulatedRizons) -> None:
    try:
        for line in sys.stdin:
            if line.split():
                print(_command(sims, line.split()), flush=True)
    except (OSError, ValueError):
        return


if __name__ == "__main__":
    sys.exit(main())
