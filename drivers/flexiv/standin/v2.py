"""Stand-in for flexivrdk 2.0.0 (Flexiv software v3.12.x): commands and states per joint group; a single
Rizon is `JointGroup.ARMS`."""

from typing import Any as _Any

from drivers.flexiv.standin import _common
from drivers.flexiv.standin._common import GripperParams as GripperParams
from drivers.flexiv.standin._common import GripperStates as GripperStates
from drivers.flexiv.standin._common import Mode as Mode
from drivers.flexiv.standin._common import OperationalStatus as OperationalStatus
from drivers.flexiv.standin._common import RobotInfo as RobotInfo
from drivers.flexiv.standin._link import discover_at as discover_at

__version__ = "2.0.0"

kCartDoF = 6
kPoseSize = 7
kSerialJointDoF = 7

_ZEROS_6 = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


class JointGroup(_common.RdkEnum):
    UNKNOWN = 0
    ARMS = 2
    ARM_1 = 3
    ARM_2 = 4
    FIRST = 2
    LAST = 4


class RobotStates:
    __slots__ = (
        "dq",
        "dtheta",
        "flange_pose",
        "q",
        "raw_ft_sensor",
        "raw_tcp_wrench",
        "raw_tcp_wrench_local",
        "tau",
        "tau_des",
        "tau_dot",
        "tau_ext",
        "tau_interact",
        "tcp_pose",
        "tcp_twist",
        "tcp_wrench",
        "tcp_wrench_local",
        "temperature",
        "theta",
        "timestamp",
    )

    timestamp: tuple[int, ...]
    q: list[float]
    theta: list[float]
    dq: list[float]
    dtheta: list[float]
    tau: list[float]
    tau_des: list[float]
    tau_dot: list[float]
    tau_ext: list[float]
    tau_interact: list[float]
    temperature: list[float]
    flange_pose: list[float]
    tcp_pose: list[float]
    tcp_twist: list[float]
    tcp_wrench: list[float]
    tcp_wrench_local: list[float]
    raw_tcp_wrench: list[float]
    raw_tcp_wrench_local: list[float]
    raw_ft_sensor: list[float]

    def __init__(self) -> None:
        self.timestamp = (0, 0)
        for name in ("q", "theta", "dq", "dtheta", "tau", "tau_des", "tau_dot", "tau_ext", "tau_interact", "temperature"):
            setattr(self, name, [])
        self.flange_pose = [0.0] * 7
        self.tcp_pose = [0.0] * 7
        for name in ("tcp_twist", "tcp_wrench", "tcp_wrench_local", "raw_tcp_wrench", "raw_tcp_wrench_local", "raw_ft_sensor"):
            setattr(self, name, [0.0] * 6)


class NrtCartesianCmd:
    """Commands data for a single waypoint in non-real-time Cartesian motion-force control."""

    __slots__ = ("max_angular_acc", "max_angular_vel", "max_linear_acc", "max_linear_vel", "pose_d", "twist_d", "wrench_d")

    def __init__(
        self,
        pose_d: _Any,
        wrench_d: _Any = _ZEROS_6,
        twist_d: _Any = _ZEROS_6,
        max_linear_vel: float = 0.5,
        max_angular_vel: float = 1.0,
        max_linear_acc: float = 2.0,
        max_angular_acc: float = 5.0,
    ) -> None:
        self.pose_d = _common.vector(pose_d, 7, "__init__")
        self.wrench_d = _common.vector(wrench_d, 6, "__init__")
        self.twist_d = _common.vector(twist_d, 6, "__init__")
        limits = _common.vector([max_linear_vel, max_angular_vel, max_linear_acc, max_angular_acc], 4, "__init__")
        self.max_linear_vel, self.max_angular_vel, self.max_linear_acc, self.max_angular_acc = limits


class NrtJointPositionCmd:
    """Commands data for non-real-time joint position control."""

    __slots__ = ("ddq_max", "dq_d", "dq_max", "q_d")

    def __init__(self, q_d: _Any, dq_d: _Any, dq_max: _Any, ddq_max: _Any) -> None:
        self.q_d = _common.vector(q_d, None, "__init__")
        self.dq_d = _common.vector(dq_d, None, "__init__")
        self.dq_max = _common.vector(dq_max, None, "__init__")
        self.ddq_max = _common.vector(ddq_max, None, "__init__")


class PrimitiveArgs:
    __slots__ = ("input_params", "pt_name")

    def __init__(self, pt_name: str, input_params: dict) -> None:
        self.pt_name = pt_name
        self.input_params = input_params


class PrimitiveStates:
    __slots__ = ("names_and_values", "pt_name")

    def __init__(self) -> None:
        self.pt_name = ""
        self.names_and_values: dict = {}


def _arms_only(commands: object, kind: type, function: str) -> _Any:
    """The one command of a single Rizon's ARMS group, refused as the RDK refuses other shapes."""
    if not isinstance(commands, dict) or not all(isinstance(k, JointGroup) and isinstance(v, kind) for k, v in commands.items()):
        raise TypeError(f"{function}(): incompatible function arguments: expected dict[JointGroup, {kind.__name__}]")
    if set(commands) != {JointGroup.ARMS}:
        groups = ", ".join(k.name for k in commands) or "none"
        raise ValueError(f"[flexiv::rdk::Robot::{function}] This robot has joint group [ARMS] only, got [{groups}]")
    return commands[JointGroup.ARMS]


def _check_group(group: object, function: str) -> None:
    if not isinstance(group, JointGroup):
        raise TypeError(f"{function}(): incompatible function arguments: expected a flexivrdk.JointGroup")
    if group is not JointGroup.ARMS:
        raise ValueError(f"[flexiv::rdk::Robot::{function}] This robot has joint group [ARMS] only, got [{group.name}]")


class Robot(_common.RobotBase):
    """Main interface to control the robot (flexivrdk 2.0.0's signatures)."""

    _MODELS = (
        "Rizon4",
        "Rizon4s",
        "Rizon4R",
        "Rizon4sR",
        "Rizon4M",
        "Rizon10",
        "Rizon10s",
        "Moonlight",
        "EnlightL",
        "EnlightH",
        "DualArms",
        "MICOCore",
        "MICOPlus",
        "MICOUltra",
    )

    def states(self) -> dict:
        zeros = ("tau", "tau_des", "tau_dot", "tau_ext", "tau_interact")
        states = _common.fill_states(RobotStates(), self._stream("states"), zeros=zeros, tcp_velocity="tcp_twist")
        return {JointGroup.ARMS: states}

    def groups(self) -> list:
        return [JointGroup.ARMS]

    def stopped(self) -> dict:
        return {JointGroup.ARMS: bool(self._stream("stopped")["stopped"])}

    def all_stopped(self) -> bool:
        return bool(self._stream("all_stopped")["stopped"])

    def SwitchMode(self, arg0: Mode, /) -> None:
        self._switch_mode(arg0)

    def SendCartesianMotionForce(self, arg0: dict, /) -> None:
        cmd = _arms_only(arg0, NrtCartesianCmd, "SendCartesianMotionForce")
        limits = (cmd.max_linear_vel, cmd.max_angular_vel, cmd.max_linear_acc, cmd.max_angular_acc)
        self._cartesian(cmd.pose_d, cmd.wrench_d, cmd.twist_d, limits)

    def SendJointPosition(self, arg0: dict, /) -> None:
        cmd = _arms_only(arg0, NrtJointPositionCmd, "SendJointPosition")
        self._joint(cmd.q_d, cmd.dq_d, cmd.dq_max, cmd.ddq_max)

    def SetForceControlAxis(self, group: JointGroup, enabled_axes: _Any, max_linear_vel: _Any = (1.0, 1.0, 1.0)) -> None:
        _check_group(group, "SetForceControlAxis")
        self._force_axis(enabled_axes, max_linear_vel)

    def SetMaxContactWrench(self, arg0: JointGroup, arg1: _Any, /) -> None:
        _check_group(arg0, "SetMaxContactWrench")
        self._max_wrench(arg1)

    def SetNullSpacePosture(self, arg0: JointGroup, arg1: _Any, /) -> None:
        _check_group(arg0, "SetNullSpacePosture")
        self._null_space(arg1)

    def ExecutePrimitive(self, primitive_args: dict, block_until_started: bool = True) -> None:
        args = _arms_only(primitive_args, PrimitiveArgs, "ExecutePrimitive")
        self._primitive(args.pt_name, args.input_params, block_until_started)

    def primitive_states(self) -> dict:
        out = PrimitiveStates()
        out.pt_name, out.names_and_values = self._primitive_states()
        return {JointGroup.ARMS: out}


class Gripper(_common.GripperBase):
    """The gripper on a Robot (flexivrdk 2.0.0's signatures: positional arguments only)."""

    def __init__(self, arg0: Robot, /) -> None:
        super().__init__(arg0)

    def Enable(self, arg0: str, /) -> None:
        self._enable(arg0)

    def Move(self, arg0: float, arg1: float, arg2: float, /) -> None:
        self._move(arg0, arg1, arg2)


_common.export_values(globals(), OperationalStatus, JointGroup, Mode)
