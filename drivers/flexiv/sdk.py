"""One small adapter over both generations of Flexiv's RDK that drive a Rizon: 1.9.4.x (flat calls:
`states() -> RobotStates`, `SendCartesianMotionForce(pose, wrench, ...)`) and 2.0.0 (per joint group:
`states() -> {JointGroup.ARMS: RobotStates}`, `SendCartesianMotionForce({ARMS: NrtCartesianCmd(...)})`).
2.1 and later drive Enlight and MICO only. The module is the installed `flexivrdk` or a stand-in with
exactly its API (drivers.flexiv.standin.v1 / v2), so the arm never asks which one it talks to.

Every SDK exception becomes an ArmError naming the arm, the serial and what to check."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar

import numpy as np

from drivers.flexiv.config import FlexivArmConfig
from robot_runtime.robot import ArmError

INSTALL = "pip install 'robot-runtime[flexiv]'"
PAIRING = "flexivrdk 1.9.4.x pairs with Flexiv software v3.11.x; Flexiv's release notes name the RDK of other versions"
POLL_S = 0.02
ZERO_FT_TIMEOUT_S = 10.0
"""The ZeroFTSensor primitive takes about a second on a robot."""

NOT_OPERATIONAL: dict[str, str] = {
    # OperationalStatus -> why a robot is not operational and what to do; none of these passes by waiting.
    "ESTOP_NOT_RELEASED": "the E-stop is pressed: make the area safe, release the E-stop (twist it), then connect again",
    "IN_MANUAL_MODE": (
        "the robot is in Manual mode: turn the mode key on the control box to Auto and enable Remote mode "
        "(Flexiv Elements -> Settings -> Remote mode: Ethernet), then connect again"
    ),
    "IN_AUTO_MODE": (
        "the robot is in regular Auto mode, which takes no RDK commands: enable Remote mode "
        "(Flexiv Elements -> Settings -> Remote mode: Ethernet), then connect again"
    ),
    "MINOR_FAULT": "a minor fault remains after clearing it: read it in Flexiv Elements, remove its cause, then connect again",
    "CRITICAL_FAULT": (
        "a critical fault: read it in Flexiv Elements, remove its cause, then power-cycle the control box "
        "(clearing a critical fault without a power cycle needs a device older robots lack)"
    ),
    "IN_REDUCED_STATE": (
        "the robot is in the reduced state (a safety input such as a safeguard stop or light curtain is active): "
        "clear the safety input, then connect again"
    ),
    "IN_RECOVERY_STATE": (
        "a joint is outside its allowed range (recovery state): bring it back with auto recovery in Flexiv Elements, "
        "reboot the robot, then connect again"
    ),
}


@dataclass(frozen=True)
class RizonStates:
    """One reading of the robot, in SI units; `timestamp_s` is host monotonic time when it was read."""

    q: np.ndarray
    """Joint positions, rad."""
    dq: np.ndarray
    """Joint velocities, rad/s."""
    tau: np.ndarray
    """Joint torques, Nm."""
    tcp_pose: np.ndarray
    """[x, y, z, qw, qx, qy, qz] of the TCP in the robot's WORLD frame, metres."""
    ext_wrench: np.ndarray
    """Estimated external wrench on the TCP in the WORLD frame, [fx, fy, fz, mx, my, mz] in N and Nm."""
    timestamp_s: float


@dataclass(frozen=True)
class CartesianLimits:
    max_linear_vel: float
    max_angular_vel: float
    max_linear_acc: float
    max_angular_acc: float


@dataclass(frozen=True)
class GripperRange:
    min_width_m: float
    max_width_m: float
    min_vel_m_s: float
    max_vel_m_s: float


T = TypeVar("T")


def load_api(config: FlexivArmConfig) -> ModuleType:
    """The RDK module the config asks for: the installed flexivrdk, or the stand-in told where its robots are."""
    if config.sdk == "standin":
        module = importlib.import_module(f"drivers.flexiv.standin.{config.standin_api}")
        module.discover_at(config.standin_address)
        return module
    try:
        module = importlib.import_module("flexivrdk")
    except ImportError:
        raise ArmError(f"Flexiv's RDK (flexivrdk) is not installed: {INSTALL}") from None
    version = str(getattr(module, "__version__", ""))
    if version and not version.startswith(("1.9.", "2.0.")):
        raise ArmError(
            f"flexivrdk {version} cannot drive a Rizon (2.1 and later support Enlight and MICO only): install the RDK "
            f"that matches the robot's software ({PAIRING})"
        )
    return module


class RizonSdk:
    """One Rizon through either RDK generation. `where` names the arm in every error."""

    def __init__(self, api: Any, name: str, serial: str) -> None:
        """`api`: the flexivrdk module or a stand-in with its API (load_api)."""
        self._api = api
        self._v2 = hasattr(api, "JointGroup")
        self._group = api.JointGroup.ARMS if self._v2 else None
        self._robot: Any = None
        self.serial = serial
        self.where = f"{name} (Rizon {serial})"
        self.version = str(getattr(api, "__version__", "2.0" if self._v2 else "1.9"))

    @property
    def generation(self) -> str:
        return "v2" if self._v2 else "v1"

    # -- connection ----------------------------------------------------------------------------

    def connect(self, whitelist: Sequence[str]) -> None:
        """Find the robot on the network (the RDK searches for a few seconds) and open it."""
        try:
            self._robot = self._api.Robot(self.serial, list(whitelist), False)
        except ValueError as exc:
            raise ArmError(f"{self.where}: the RDK refused the serial number: {_text(exc)}; check serial_number") from None
        except RuntimeError as exc:
            raise self._connect_error(exc) from None

    def release(self) -> None:
        """Drop the connection (the RDK closes it with its Robot object). Does not move the robot."""
        self._robot = None

    # -- status --------------------------------------------------------------------------------

    def fault(self) -> bool:
        return bool(self._call("reading the fault state", lambda r: r.fault()))

    def estop_released(self) -> bool:
        return bool(self._call("reading the E-stop", lambda r: r.estop_released()))

    def status(self) -> str:
        """The OperationalStatus name, e.g. READY or ESTOP_NOT_RELEASED."""
        return str(self._call("reading the operational status", lambda r: r.operational_status()).name)

    def mode(self) -> str:
        return str(self._call("reading the control mode", lambda r: r.mode()).name)

    def check_healthy(self) -> None:
        """ArmError when the robot is no longer operational: the E-stop was pressed, it faulted (it stopped, and
        nothing it was sent counts), or a safety input or the mode key took it out of Remote control. One status
        read: the RDK keeps it current, and the tick pays for every call."""
        status = self.status()
        if status != "READY":
            raise ArmError(f"{self.where}: {_why_stopped(status)}")

    def halted(self) -> bool:
        """True when the E-stop or a fault has stopped the robot (its controller then holds it); False when
        it is operational or its state cannot be read."""
        return self._status_or_blank() in ("ESTOP_NOT_RELEASED", "MINOR_FAULT", "CRITICAL_FAULT")

    def joint_limits(self) -> tuple[np.ndarray, np.ndarray]:
        info = self._call("reading the robot info", lambda r: r.info())
        return np.asarray(info.q_min, dtype=np.float64), np.asarray(info.q_max, dtype=np.float64)

    # -- bringing the robot up -----------------------------------------------------------------

    def clear_fault(self, timeout_s: int) -> bool:
        """Clear a fault if there is one; True when there was one and it cleared."""
        if not self.fault():
            return False
        cleared = bool(self._call("clearing the fault", lambda r: r.ClearFault(timeout_s)))
        if not cleared or self.fault():
            status = self.status()
            advice = NOT_OPERATIONAL.get(status, NOT_OPERATIONAL["MINOR_FAULT"])
            raise ArmError(f"{self.where}: the fault did not clear within {timeout_s} s ({status}): {advice}")
        return True

    def enable(self) -> None:
        """Release the brakes (blocks until the request is delivered; operational a few seconds later)."""
        if not self.estop_released():
            raise ArmError(f"{self.where}: cannot enable: {NOT_OPERATIONAL['ESTOP_NOT_RELEASED']}")
        self._call("enabling the robot", lambda r: r.Enable())

    def wait_operational(self, bound_s: float) -> None:
        """Wait until the robot is operational; ArmError naming the reason when it is not, at once for reasons
        that do not pass by waiting (E-stop, Manual or plain Auto mode, fault, reduced or recovery state)."""
        deadline = time.monotonic() + bound_s
        while not self._call("reading the operational state", lambda r: r.operational()):
            status = self.status()
            if status in NOT_OPERATIONAL:
                raise ArmError(f"{self.where}: not operational: {NOT_OPERATIONAL[status]}")
            if time.monotonic() > deadline:
                raise ArmError(
                    f"{self.where}: not operational {bound_s:g} s after enabling (status {status}); check the robot in "
                    "Flexiv Elements and raise operational_timeout_s if it is still releasing its brakes"
                )
            time.sleep(POLL_S)

    def zero_ft_sensor(self, bound_s: float = ZERO_FT_TIMEOUT_S) -> tuple[np.ndarray, np.ndarray]:
        """Run Flexiv's ZeroFTSensor primitive (nothing may touch the arm or tool meanwhile); returns the
        external wrench before and after."""
        before = self.states().ext_wrench
        self.switch_mode("NRT_PRIMITIVE_EXECUTION")
        if self._v2:
            args = {self._group: self._api.PrimitiveArgs("ZeroFTSensor", {})}
            self._call("zeroing the force-torque sensor", lambda r: r.ExecutePrimitive(args))
        else:
            self._call("zeroing the force-torque sensor", lambda r: r.ExecutePrimitive("ZeroFTSensor", {}))
        deadline = time.monotonic() + bound_s
        while not self._primitive_terminated():
            if time.monotonic() > deadline:
                raise ArmError(
                    f"{self.where}: zeroing the force-torque sensor did not finish within {bound_s:g} s; check the "
                    "robot in Flexiv Elements"
                )
            time.sleep(POLL_S)
        return before, self.states().ext_wrench

    def switch_mode(self, mode: str) -> None:
        """[blocking] A Mode name, e.g. NRT_CARTESIAN_MOTION_FORCE; the robot stops first if it is moving."""
        target = getattr(self._api.Mode, mode)
        self._call(f"switching to {mode}", lambda r: r.SwitchMode(target))

    def set_pure_motion(self, max_contact_wrench: Sequence[float]) -> None:
        """In NRT_CARTESIAN_MOTION_FORCE: motion control on every axis, contact wrench regulated under the limit."""
        axes, wrench = [False] * 6, [float(w) for w in max_contact_wrench]
        if self._v2:
            self._call("setting pure motion control", lambda r: r.SetForceControlAxis(self._group, axes))
            self._call("setting the maximum contact wrench", lambda r: r.SetMaxContactWrench(self._group, wrench))
        else:
            self._call("setting pure motion control", lambda r: r.SetForceControlAxis(axes))
            self._call("setting the maximum contact wrench", lambda r: r.SetMaxContactWrench(wrench))

    # -- streaming -----------------------------------------------------------------------------

    def send_cartesian(self, pose: Sequence[float] | np.ndarray, limits: CartesianLimits) -> None:
        """[non-blocking] TCP target [x, y, z, qw, qx, qy, qz] in the WORLD frame, pure motion."""
        pose7 = [float(v) for v in pose]
        zeros = [0.0] * 6
        lims = (limits.max_linear_vel, limits.max_angular_vel, limits.max_linear_acc, limits.max_angular_acc)
        if self._v2:
            cmd = {self._group: self._api.NrtCartesianCmd(pose7, zeros, zeros, *lims)}
            self._call("sending a Cartesian target", lambda r: r.SendCartesianMotionForce(cmd))
        else:
            self._call("sending a Cartesian target", lambda r: r.SendCartesianMotionForce(pose7, zeros, zeros, *lims))

    def send_joint_position(self, q: Sequence[float] | np.ndarray, max_vel_rad_s: float, max_acc_rad_s2: float) -> None:
        """[non-blocking] Joint targets (rad), reached at rest within the speed and acceleration limits."""
        q_d = [float(v) for v in q]
        dq_d, dq_max, ddq_max = [0.0] * len(q_d), [max_vel_rad_s] * len(q_d), [max_acc_rad_s2] * len(q_d)
        if self._v2:
            cmd = {self._group: self._api.NrtJointPositionCmd(q_d, dq_d, dq_max, ddq_max)}
            self._call("sending joint targets", lambda r: r.SendJointPosition(cmd))
        else:
            self._call("sending joint targets", lambda r: r.SendJointPosition(q_d, dq_d, dq_max, ddq_max))

    def states(self) -> RizonStates:
        raw = self._call("reading the robot states", lambda r: r.states())
        stamp = time.monotonic()
        if self._v2:
            raw = raw[self._group]
            wrench = raw.tcp_wrench  # 2.0.0: the external wrench in the WORLD frame (tcp_wrench_local: TCP frame)
        else:
            wrench = raw.ext_wrench_in_world
        return RizonStates(
            q=np.array(raw.q, dtype=np.float64),
            dq=np.array(raw.dq, dtype=np.float64),
            tau=np.array(raw.tau, dtype=np.float64),
            tcp_pose=np.array(raw.tcp_pose, dtype=np.float64),
            ext_wrench=np.array(wrench, dtype=np.float64),
            timestamp_s=stamp,
        )

    def stop(self) -> None:
        """[blocking] Stop and go IDLE: the robot holds where it stopped."""
        self._call("stopping the robot", lambda r: r.Stop())

    def gripper(self) -> RizonGripper:
        handle = self._call("opening the gripper", self._api.Gripper)
        return RizonGripper(handle, self)

    # -- internals -----------------------------------------------------------------------------

    def _primitive_terminated(self) -> bool:
        states = self._call("reading the primitive states", lambda r: r.primitive_states())
        values = states[self._group].names_and_values if self._v2 else states
        return bool(values.get("terminated", False))

    def _call(self, doing: str, action: Callable[[Any], T]) -> T:
        robot = self._robot
        if robot is None:
            raise ArmError(f"{self.where} is not connected")
        try:
            return action(robot)
        except (RuntimeError, ValueError) as exc:
            raise self.error(exc, doing) from None

    def error(self, exc: BaseException, doing: str) -> ArmError:
        """The SDK's exception as an ArmError: what failed, the SDK's words, and what to check. A robot that is no
        longer operational refuses commands for reasons that hide the cause ("not in an applicable control
        mode" after a fault put it in IDLE): the status names it."""
        text = _text(exc)
        status = self._status_or_blank()
        if status and status != "READY":
            return ArmError(f"{self.where}: {doing} failed ({text}): {_why_stopped(status)}")
        return ArmError(
            f"{self.where}: {doing} failed: {text}; check the robot's Ethernet connection and its status in Flexiv Elements"
        )

    def _status_or_blank(self) -> str:
        """The operational status for an error message; blank when it cannot be read either."""
        try:
            return str(self._robot.operational_status().name) if self._robot is not None else ""
        except (RuntimeError, ValueError):
            return ""

    def _connect_error(self, exc: RuntimeError) -> ArmError:
        text = _text(exc)
        if "incompatible" in text.lower() or "not supported" in text.lower():
            return ArmError(
                f"{self.where}: the installed RDK (flexivrdk {self.version}) does not match the robot's software: {text}; "
                f"install the RDK that pairs with it ({PAIRING})"
            )
        if "license" in text.lower():
            return ArmError(f"{self.where}: {text}; install a valid RDK license on the robot (Flexiv support)")
        return ArmError(f"{self.where}: could not connect: {text}")


class RizonGripper:
    """The robot's gripper: Move blocks until the request is delivered, so the arm calls it off the tick."""

    def __init__(self, handle: Any, sdk: RizonSdk) -> None:
        self._handle = handle
        self._sdk = sdk

    def enable(self, name: str) -> GripperRange:
        """A gripper stays enabled on the robot after a program ends, and the RDK enables one gripper at a
        time ("already enabled" otherwise): the one enabled is disabled first, as the RDK documents."""
        try:
            try:
                self._handle.Enable(name)
            except RuntimeError as exc:
                if "already enabled" not in _text(exc):
                    raise
                self._handle.Disable()
                self._handle.Enable(name)
        except (RuntimeError, ValueError) as exc:
            raise ArmError(
                f"{self._sdk.where}: enabling gripper {name!r} failed: {_text(exc)}; check gripper.name against Flexiv "
                "Elements -> Settings -> Device, and that the gripper is connected"
            ) from None
        params = self._call("reading the gripper's parameters", lambda g: g.params())
        return GripperRange(float(params.min_width), float(params.max_width), float(params.min_vel), float(params.max_vel))

    def width_m(self) -> float:
        return float(self._call("reading the gripper", lambda g: g.states().width))

    def move(self, width_m: float, velocity_m_s: float, force_n: float) -> None:
        """[blocking until delivered]"""
        self._call("moving the gripper", lambda g: g.Move(float(width_m), float(velocity_m_s), float(force_n)))

    def _call(self, doing: str, action: Callable[[Any], T]) -> T:
        # No lock: the tick reads the width while the mover thread's Move blocks, as in Flexiv's gripper example.
        try:
            return action(self._handle)
        except (RuntimeError, ValueError) as exc:
            raise self._sdk.error(exc, doing) from None


def _why_stopped(status: str) -> str:
    """What a robot that is not operational (anything but READY) tells the user."""
    if status == "ESTOP_NOT_RELEASED":
        return f"the E-stop was pressed; the robot stopped. {NOT_OPERATIONAL[status]}"
    if status in ("MINOR_FAULT", "CRITICAL_FAULT"):
        kind = "critical fault" if status == "CRITICAL_FAULT" else "minor fault"
        return (
            f"the robot reported a {kind} and stopped: read it in Flexiv Elements, remove its cause, then connect again "
            f"(connecting clears a minor fault; {NOT_OPERATIONAL['CRITICAL_FAULT']})"
        )
    return f"the robot is not operational ({status}): {NOT_OPERATIONAL.get(status, 'check the robot in Flexiv Elements')}"


def _text(exc: BaseException) -> str:
    """The SDK's message on one line."""
    return " ".join(str(exc).split())
