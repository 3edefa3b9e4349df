"""What the two RDK generations share: the enums, the plain data structures (attribute names and defaults
as the RDK's), and the robot calls whose signatures did not change between 1.9.4.1 and 2.0.0."""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum
from typing import Any

from drivers.flexiv.standin._link import EXCEPTIONS, Link, checked_serial, vector
from drivers.flexiv.standin._rules import CARTESIAN_LIMITS, WireError, check_cartesian, check_joint

POLL_S = 0.02


class RdkEnum(Enum):
    """An enum as pybind11 makes them: `Mode.IDLE`, `.name`, `.value`, int(), never equal to a bare int."""

    def __int__(self) -> int:
        return int(self.value)

    def __index__(self) -> int:
        return int(self.value)


class Mode(RdkEnum):
    UNKNOWN = 0
    IDLE = 1
    NRT_JOINT_IMPEDANCE = 4
    NRT_JOINT_POSITION = 6
    NRT_PLAN_EXECUTION = 7
    NRT_PRIMITIVE_EXECUTION = 8
    NRT_CARTESIAN_MOTION_FORCE = 10
    NRT_SUPER_PRIMITIVE = 11


class OperationalStatus(RdkEnum):
    UNKNOWN = 0
    READY = 1
    BOOTING = 2
    ESTOP_NOT_RELEASED = 3
    NOT_ENABLED = 4
    RELEASING_BRAKE = 5
    MINOR_FAULT = 6
    CRITICAL_FAULT = 7
    IN_REDUCED_STATE = 8
    IN_RECOVERY_STATE = 9
    IN_MANUAL_MODE = 10
    IN_AUTO_MODE = 11


class RobotInfo:
    __slots__ = (
        "DoF",
        "DoF_e",
        "DoF_m",
        "K_q_nom",
        "K_x_nom",
        "dq_max",
        "has_FT_sensor",
        "license_type",
        "model_name",
        "q_max",
        "q_min",
        "serial_num",
        "software_ver",
        "tau_max",
    )

    def __init__(self) -> None:
        self.serial_num = ""
        self.software_ver = ""
        self.model_name = ""
        self.license_type = ""
        self.DoF_e = 0
        self.DoF_m = 0
        self.DoF = 0
        self.K_x_nom: list[float] = []
        self.K_q_nom: list[float] = []
        self.q_min: list[float] = []
        self.q_max: list[float] = []
        self.dq_max: list[float] = []
        self.tau_max: list[float] = []
        self.has_FT_sensor = False


class GripperStates:
    __slots__ = ("force", "is_moving", "width")

    def __init__(self) -> None:
        self.width = 0.0
        self.force = 0.0
        self.is_moving = False


class GripperParams:
    __slots__ = ("max_force", "max_vel", "max_width", "min_force", "min_vel", "min_width", "name")

    def __init__(self) -> None:
        self.name = ""
        self.max_width = 0.0
        self.min_width = 0.0
        self.max_force = 0.0
        self.min_force = 0.0
        self.max_vel = 0.0
        self.min_vel = 0.0


def export_values(namespace: dict[str, Any], *enums: type[RdkEnum]) -> list[str]:
    """pybind11's export_values(): every member also at module level (a later enum wins a shared name)."""
    for enum in enums:
        namespace.update(enum.__members__)
    return sorted({name for enum in enums for name in enum.__members__})


def fill_states(out: Any, polled: dict[str, Any], *, zeros: tuple[str, ...], tcp_velocity: str) -> Any:
    """A pushed state copied into an RDK RobotStates: the fields every generation has, the torques it
    lists (zero: no forces are simulated) and its own name for the TCP velocity."""
    dof = len(polled["q"])
    out.timestamp = tuple(polled["timestamp"])
    out.q, out.theta = list(polled["q"]), list(polled["q"])
    out.dq, out.dtheta = list(polled["dq"]), list(polled["dq"])
    for name in zeros:
        setattr(out, name, [0.0] * dof)
    out.temperature = [25.0] * dof
    out.tcp_pose, out.flange_pose = list(polled["tcp_pose"]), list(polled["flange_pose"])
    setattr(out, tcp_velocity, list(polled["tcp_vel"]))
    return out


def fill(target: Any, values: dict[str, Any]) -> Any:
    for name in target.__slots__:
        if name in values:
            setattr(target, name, values[name])
    return target


def _raise(refusal: WireError) -> None:
    raise EXCEPTIONS[refusal.kind](refusal.message) from None


class RobotBase:
    """The calls both generations spell alike. As the RDK, it keeps the robot's states and status in a cache
    the controller's pushes keep current, so reading them is local; the streamed commands are checked here
    against the cache and sent without waiting; the [blocking] calls wait for the controller. A lite instance
    has no cache and makes one-shot requests only."""

    _MODELS: tuple[str, ...] = ()

    def __init__(
        self, robot_sn: str, network_interface_whitelist: tuple[str, ...] = (), verbose: bool = True, lite: bool = False
    ) -> None:
        serial = checked_serial(robot_sn, self._MODELS)
        if isinstance(network_interface_whitelist, str) or not all(isinstance(a, str) for a in network_interface_whitelist):
            raise TypeError("__init__(): incompatible constructor arguments: network_interface_whitelist must be a list of str")
        self._lite = bool(lite)
        self._link = Link(serial, push=not self._lite)

    def __del__(self) -> None:
        link = getattr(self, "_link", None)
        if link is not None:
            link.close()  # the RDK disconnects when its Robot goes

    def _poll(self) -> dict[str, Any]:
        """The robot's state: the cached one, or a lite instance's one-shot request."""
        if self._lite:
            result: dict[str, Any] = self._link.request("poll", "Robot")
            return result
        return self._link.state("Robot")

    def _stream(self, function: str) -> dict[str, Any]:
        if self._lite:
            raise RuntimeError(f"[flexiv::rdk::Robot::{function}] This lite instance has limited functionalities")
        return self._link.state(f"Robot::{function}")

    def lite(self) -> bool:
        return self._lite

    def connected(self) -> bool:
        return self._link.connected

    def info(self) -> RobotInfo:
        return fill(RobotInfo(), self._link.info)

    def mode(self) -> Mode:
        return Mode[self._stream("mode")["mode"]]

    def operational(self) -> bool:
        return self._stream("operational")["status"] == "READY"

    def operational_status(self) -> OperationalStatus:
        return OperationalStatus[self._stream("operational_status")["status"]]

    def busy(self) -> bool:
        return bool(self._stream("busy")["busy"])

    def fault(self) -> bool:
        return bool(self._stream("fault")["fault"])

    def reduced(self) -> bool:
        return False

    def recovery(self) -> bool:
        return False

    def estop_released(self) -> bool:
        return bool(self._stream("estop_released")["estop_released"])

    def enabling_button_pressed(self) -> bool:
        return False

    def Enable(self) -> None:
        self._link.request("enable", "Robot::Enable")

    def Stop(self) -> None:
        self._link.request("stop", "Robot::Stop")

    def ClearFault(self, timeout_sec: int = 30) -> bool:
        if isinstance(timeout_sec, bool) or not isinstance(timeout_sec, int):
            raise TypeError("ClearFault(): incompatible function arguments: timeout_sec must be an int")
        if not self._poll()["fault"]:
            return True
        self._link.request("clear_fault", "Robot::ClearFault")
        deadline = time.monotonic() + timeout_sec
        while time.monotonic() < deadline:
            time.sleep(POLL_S)
            if not self._poll()["fault"]:
                return True
        return False

    def _switch_mode(self, mode: Mode) -> None:
        if not isinstance(mode, Mode):
            raise TypeError("SwitchMode(): incompatible function arguments: expected a flexivrdk.Mode")
        self._link.request("switch_mode", "Robot::SwitchMode", mode=mode.name)

    def _cartesian(
        self,
        pose: object,
        wrench: object,
        velocity: object,
        limits: tuple[object, object, object, object],
    ) -> None:
        function = "SendCartesianMotionForce"
        args = {
            "pose": vector(pose, 7, function),
            "wrench": vector(wrench, 6, function),
            "velocity": vector(velocity, 6, function),
        }
        values = vector(list(limits), 4, function)
        self._command(
            "cartesian_motion",
            function,
            lambda state: check_cartesian(args, values, state["mode"], state["status"]),
            **args,
            **dict(zip(CARTESIAN_LIMITS, values, strict=True)),
        )

    def _joint(self, positions: object, velocities: object, max_vel: object, max_acc: object) -> None:
        function = "SendJointPosition"
        args = {
            "positions": vector(positions, None, function),
            "velocities": vector(velocities, None, function),
            "max_vel": vector(max_vel, None, function),
            "max_acc": vector(max_acc, None, function),
        }
        dof = int(self._link.info.get("DoF", 0))
        self._command("joint_position", function, lambda state: check_joint(args, dof, state["mode"], state["status"]), **args)

    def _command(self, op: str, function: str, check: Callable[[dict[str, Any]], None], **args: Any) -> None:
        """A [non-blocking] command: refused here, as the RDK refuses it, on the cached mode and status; else
        sent without waiting. A lite instance waits for the controller's checks instead."""
        if self._lite:
            self._link.request(op, f"Robot::{function}", **args)
            return
        try:
            check(self._link.state(f"Robot::{function}"))
        except WireError as refusal:
            _raise(refusal)
        self._link.send(op, f"Robot::{function}", **args)

    def _force_axis(self, enabled_axes: object, max_linear_vel: object) -> None:
        try:
            axes = [bool(a) for a in enabled_axes]  # type: ignore[attr-defined]
        except TypeError:
            axes = []
        if len(axes) != 6:
            raise TypeError("SetForceControlAxis(): incompatible function arguments: enabled_axes must be 6 booleans")
        self._link.request(
            "force_control_axis",
            "Robot::SetForceControlAxis",
            enabled_axes=axes,
            max_linear_vel=vector(max_linear_vel, 3, "SetForceControlAxis"),
        )

    def _max_wrench(self, max_wrench: object) -> None:
        wrench = vector(max_wrench, 6, "SetMaxContactWrench")
        self._link.request("max_contact_wrench", "Robot::SetMaxContactWrench", max_wrench=wrench)

    def _null_space(self, ref_positions: object) -> None:
        ref = vector(ref_positions, None, "SetNullSpacePosture")
        self._link.request("null_space_posture", "Robot::SetNullSpacePosture", ref_positions=ref)

    def _primitive(self, name: object, params: object, block_until_started: bool) -> None:
        if not isinstance(name, str) or not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
            raise TypeError("ExecutePrimitive(): incompatible function arguments: expected a name and a dict of parameters")
        for value in params.values():
            if not isinstance(value, int | float | str | list | tuple):
                raise TypeError(f"ExecutePrimitive(): incompatible function arguments: parameter value {value!r}")
        self._link.request("primitive", "Robot::ExecutePrimitive", name=name, params=params)

    def _primitive_states(self) -> tuple[str, dict[str, Any]]:
        result = self._link.request("primitive_states", "Robot::primitive_states")
        return result["name"], result["values"]


class GripperBase:
    """The gripper of the robot `robot`: the calls both generations share (their parameter names differ)."""

    def __init__(self, robot: RobotBase) -> None:
        if not isinstance(robot, RobotBase):
            raise TypeError("__init__(): incompatible constructor arguments: expected a flexivrdk.Robot")
        self._robot = robot  # kept alive: the gripper speaks through its connection
        self._link = robot._link
        self._params = GripperParams()

    def _enable(self, name: object) -> None:
        if not isinstance(name, str):
            raise TypeError("Enable(): incompatible function arguments: name must be a str")
        self._params = fill(GripperParams(), self._link.request("gripper_enable", "Gripper::Enable", name=name))

    def _move(self, width: object, velocity: object, force_limit: object) -> None:
        values = vector([width, velocity, force_limit], 3, "Move")
        self._link.request("gripper_move", "Gripper::Move", width=values[0], velocity=values[1], force_limit=values[2])

    def Disable(self) -> None:
        self._link.request("gripper_disable", "Gripper::Disable")
        self._params = GripperParams()

    def Init(self) -> None:
        if not self._params.name:
            raise RuntimeError("[flexiv::rdk::Gripper::Init] No gripper enabled")

    def Stop(self) -> None:
        self._link.request("gripper_stop", "Gripper::Stop")

    def params(self) -> GripperParams:
        return fill(GripperParams(), {name: getattr(self._params, name) for name in GripperParams.__slots__})

    def states(self) -> GripperStates:
        if self._robot.lite():
            return fill(GripperStates(), self._link.request("gripper_state", "Gripper::states"))
        return fill(GripperStates(), self._link.state("Gripper::states")["gripper"])
