"""Stand-in for flexivrdk 1.9.4.1 (Flexiv software v3.11.x): flat commands, `states() -> RobotStates`."""

from typing import Any as _Any

from drivers.flexiv.standin import _common
from drivers.flexiv.standin._common import GripperParams as GripperParams
from drivers.flexiv.standin._common import GripperStates as GripperStates
from drivers.flexiv.standin._common import Mode as Mode
from drivers.flexiv.standin._common import OperationalStatus as OperationalStatus
from drivers.flexiv.standin._common import RobotInfo as RobotInfo
from drivers.flexiv.standin._link import discover_at as discover_at

__version__ = "1.9.4.1"

_ZEROS_6 = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


class RobotStates:
    __slots__ = (
        "dq",
        "dtheta",
        "ext_wrench_in_tcp",
        "ext_wrench_in_tcp_raw",
        "ext_wrench_in_world",
        "ext_wrench_in_world_raw",
        "flange_pose",
        "ft_sensor_raw",
        "q",
        "tau",
        "tau_dot",
        "tau_ext",
        "tau_interact",
        "tcp_pose",
        "tcp_vel",
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
    tau_dot: list[float]
    tau_ext: list[float]
    tau_interact: list[float]
    temperature: list[float]
    tcp_pose: list[float]
    tcp_vel: list[float]
    flange_pose: list[float]
    ft_sensor_raw: list[float]
    ext_wrench_in_tcp: list[float]
    ext_wrench_in_world: list[float]
    ext_wrench_in_tcp_raw: list[float]
    ext_wrench_in_world_raw: list[float]

    def __init__(self) -> None:
        self.timestamp = (0, 0)
        for name in ("q", "theta", "dq", "dtheta", "tau", "tau_dot", "tau_ext", "tau_interact", "temperature"):
            setattr(self, name, [])
        self.tcp_pose = [0.0] * 7
        self.flange_pose = [0.0] * 7
        for name in ("tcp_vel", "ft_sensor_raw", "ext_wrench_in_tcp", "ext_wrench_in_world"):
            setattr(self, name, [0.0] * 6)
        self.ext_wrench_in_tcp_raw = [0.0] * 6
        self.ext_wrench_in_world_raw = [0.0] * 6


class Robot(_common.RobotBase):
    """Main interface to control the robot (flexivrdk 1.9.4.1's signatures)."""

    _MODELS = (
        "Rizon4",
        "Rizon4s",
        "Rizon4R",
        "Rizon4sR",
        "Rizon4M",
        "Rizon10",
        "Rizon10s",
        "Rizon10R",
        "Moonlight",
        "EnlightL",
        "EnlightH",
    )

    def states(self) -> RobotStates:
        zeros = ("tau", "tau_dot", "tau_ext", "tau_interact")
        states: RobotStates = _common.fill_states(RobotStates(), self._stream("states"), zeros=zeros, tcp_velocity="tcp_vel")
        return states

    def stopped(self) -> bool:
        return bool(self._stream("stopped")["stopped"])

    def SwitchMode(self, mode: Mode) -> None:
        self._switch_mode(mode)

    def SendCartesianMotionForce(
        self,
        pose: _Any,
        wrench: _Any = _ZEROS_6,
        velocity: _Any = _ZEROS_6,
        max_linear_vel: float = 0.5,
        max_angular_vel: float = 1.0,
        max_linear_acc: float = 2.0,
        max_angular_acc: float = 5.0,
    ) -> None:
        self._cartesian(pose, wrench, velocity, (max_linear_vel, max_angular_vel, max_linear_acc, max_angular_acc))

    def SendJointPosition(self, positions: _Any, velocities: _Any, max_vel: _Any, max_acc: _Any) -> None:
        self._joint(positions, velocities, max_vel, max_acc)

    def SetForceControlAxis(self, enabled_axes: _Any, max_linear_vel: _Any = (1.0, 1.0, 1.0)) -> None:
        self._force_axis(enabled_axes, max_linear_vel)

    def SetMaxContactWrench(self, max_wrench: _Any) -> None:
        self._max_wrench(max_wrench)

    def SetNullSpacePosture(self, ref_positions: _Any) -> None:
        self._null_space(ref_positions)

    def ExecutePrimitive(self, primitive_name: str, input_params: dict, block_until_started: bool = True) -> None:
        self._primitive(primitive_name, input_params, block_until_started)

    def primitive_states(self) -> dict:
        return self._primitive_states()[1]


class Gripper(_common.GripperBase):
    """The gripper on a Robot (flexivrdk 1.9.4.1's signatures)."""

    def __init__(self, robot: Robot) -> None:
        super().__init__(robot)

    def Enable(self, name: str) -> None:
        self._enable(name)

    def Move(self, width: float, velocity: float, force_limit: float) -> None:
        self._move(width, velocity, force_limit)


_common.export_values(globals(), OperationalStatus, Mode)
