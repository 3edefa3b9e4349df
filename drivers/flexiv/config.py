"""The settings of one Flexiv Rizon arm in a robot config, and the arm model's fixed facts."""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from robot_runtime.robot import JointSpec

JOINTS: tuple[JointSpec, ...] = (
    # The Rizon 4 joint limits (Flexiv's flexiv_description URDF); the arm checks the controller's own
    # (RobotInfo q_min / q_max) at connect.
    JointSpec("joint1", "rad", -2.7925, 2.7925),
    JointSpec("joint2", "rad", -2.2689, 2.2689),
    JointSpec("joint3", "rad", -2.9671, 2.9671),
    JointSpec("joint4", "rad", -1.8675, 2.6878),
    JointSpec("joint5", "rad", -2.9671, 2.9671),
    JointSpec("joint6", "rad", -1.3963, 4.5379),
    JointSpec("joint7", "rad", -2.9671, 2.9671),
)
JOINT_NAMES: tuple[str, ...] = tuple(j.name for j in JOINTS)
HOME_Q_RAD: tuple[float, ...] = tuple(math.radians(d) for d in (0.0, -40.0, 0.0, 90.0, 0.0, 40.0, 0.0))
"""Flexiv's home pose (the "Home" primitive and PLAN-Home): the TCP above the table in front of the base,
pointing down."""

TCP_NAMES: tuple[str, ...] = ("tcp_x", "tcp_y", "tcp_z", "tcp_rx", "tcp_ry", "tcp_rz")
GRIPPER_NAME = "gripper_width"
SERIAL = re.compile(
    "^ *(?:"
    + "|".join(
        " *".join(model) for model in ("Rizon4", "Rizon4s", "Rizon4R", "Rizon4sR", "Rizon4M", "Rizon10", "Rizon10s", "Rizon10R")
    )
    + ") *-[^-]*[^- ][^-]*$"
)
"""As the RDK (1.9.4 / 2.0.0) takes a Rizon's: a Rizon model, one dash and any suffix, spaces dropped
("Rizon4-123456", "Rizon 4s-123456", "Rizon4-SIM001")."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Vector3 = tuple[float, float, float]


class WorkspaceConfig(_Strict):
    """The box the TCP position is kept in, metres in the robot's WORLD frame (Flexiv's: origin at the base,
    z up). Every commanded position is clipped into it; the default is a conservative box in front of a
    Rizon 4 that holds its home pose."""

    min_m: Vector3 = (0.30, -0.35, 0.10)
    max_m: Vector3 = (0.80, 0.35, 0.60)

    @model_validator(mode="after")
    def _ordered(self) -> WorkspaceConfig:
        for axis, low, high in zip("xyz", self.min_m, self.max_m, strict=True):
            if not low < high:
                raise ValueError(f"workspace {axis}: min_m {low} must be below max_m {high}")
        return self


class CartesianLimitsConfig(_Strict):
    """What the robot's motion generator may use to reach each streamed target (Flexiv's defaults are 0.5 m/s,
    1 rad/s, 2 m/s2, 5 rad/s2; these are gentler, for policies that may jump)."""

    max_linear_vel: float = Field(0.25, gt=0, le=2.0)
    """m/s."""
    max_angular_vel: float = Field(0.8, gt=0, le=3.0)
    """rad/s."""
    max_linear_acc: float = Field(1.0, gt=0, le=5.0)
    """m/s2."""
    max_angular_acc: float = Field(2.5, gt=0, le=10.0)
    """rad/s2."""


class GripperConfig(_Strict):
    name: str = "Flexiv-GN01"
    """The gripper's full name as Flexiv Elements shows it (Settings -> Device)."""
    velocity_m_s: float = Field(0.1, gt=0, le=0.5)
    """Finger speed of each move; the RDK refuses 0."""
    force_n: float = Field(20.0, gt=0, le=200.0)
    """Force limit of each move."""
    min_change_m: float = Field(0.002, ge=0, le=0.05)
    """A new width target is sent only when it differs from the last one sent by more than this: each Move
    re-plans the fingers, so a policy's jitter must not reach them."""
    max_width_m: float = Field(0.1, gt=0, le=0.3)
    """The opening the vector allows (0..max); the arm narrows it to the gripper's own at connect."""


class BasePoseConfig(_Strict):
    """Where this robot's WORLD frame sits in the setup's shared frame (both arms of a bimanual setup). Commands
    and states stay in the robot's own WORLD frame, as Flexiv's controller and datasets use them; this is for
    tools that place the arms in one scene."""

    position_m: Vector3 = (0.0, 0.0, 0.0)
    rotation_rad: Vector3 = (0.0, 0.0, 0.0)
    """Rotation vector (axis * angle)."""


class FlexivArmConfig(_Strict):
    serial_number: str
    """The robot's serial number, e.g. "Rizon4-123456" (on the control box; Flexiv Elements -> Settings)."""
    network_interface_whitelist: list[str] = []
    """IPv4 addresses of this computer's interfaces the RDK may search on; empty: every interface."""
    role: Literal["follower"] = "follower"
    """A Rizon is always driven (there are no Flexiv leader arms)."""
    control: Literal["cartesian", "joint"] = "cartesian"
    """cartesian: the vector is the TCP pose (tcp_x..tcp_rz) and the gripper, streamed in
    NRT_CARTESIAN_MOTION_FORCE with pure motion; joint: joint1..joint7 and the gripper, in NRT_JOINT_POSITION."""
    workspace: WorkspaceConfig = WorkspaceConfig()
    cartesian_limits: CartesianLimitsConfig = CartesianLimitsConfig()
    max_contact_wrench: tuple[float, float, float, float, float, float] = (10.0, 10.0, 10.0, 2.0, 2.0, 2.0)
    """N and Nm: the controller keeps contact forces and moments under these (Flexiv's example values)."""
    joint_max_vel_rad_s: float = Field(0.5, gt=0, le=2.0)
    """Joint speed limit of joint control, rad/s per joint."""
    joint_max_acc_rad_s2: float = Field(2.0, gt=0, le=10.0)
    """Joint acceleration limit of joint control and of the park move, rad/s2 per joint."""
    gripper: GripperConfig | None = GripperConfig()
    """None: no gripper; the vector then has no gripper_width."""
    park_q_rad: list[float] = Field(default_factory=lambda: list(HOME_Q_RAD), min_length=7, max_length=7)
    """Joint positions safe_stop glides to before the robot stops (radians); default Flexiv's home pose."""
    park_speed_rad_s: float = Field(0.3, gt=0, le=1.0)
    """Joint speed of the park move."""
    park_timeout_s: float = Field(30.0, gt=0, le=120.0)
    """How long the park move may take before the stop reports it unconfirmed."""
    operational_timeout_s: float = Field(15.0, gt=0, le=120.0)
    """How long enabling (brakes released, operational) may take before connect says why it is not."""
    fault_clear_timeout_s: int = Field(5, ge=1, le=30)
    """How long clearing a minor fault at connect may take (Flexiv: minor faults clear within 3 s)."""
    base_pose: BasePoseConfig | None = None
    sdk: Literal["flexivrdk", "standin"] = "flexivrdk"
    """flexivrdk: the installed RDK (1.9.4.x or 2.0.0, matching the robot's software); standin: the simulated
    robots of drivers.flexiv.standin, which --sim selects."""
    standin_address: str | None = None
    """Where the simulated robots are served (host:port), with sdk: standin."""
    standin_api: Literal["v1", "v2"] = "v2"
    """Which RDK generation the stand-in speaks: v1 (1.9.4) or v2 (2.0.0)."""

    @field_validator("serial_number")
    @classmethod
    def _serial(cls, value: str) -> str:
        if not SERIAL.match(value):
            raise ValueError(
                f"{value!r} is not a Rizon serial number like 'Rizon4-123456' or 'Rizon 4s-123456' "
                "(it is on the control box and in Flexiv Elements -> Settings)"
            )
        return value

    @field_validator("network_interface_whitelist")
    @classmethod
    def _ipv4s(cls, value: list[str]) -> list[str]:
        for address in value:
            try:
                ipaddress.IPv4Address(address)
            except ValueError:
                raise ValueError(
                    f"{address!r} is not an IPv4 address: list this computer's addresses on the robot's network, "
                    "e.g. 192.168.2.100"
                ) from None
        return value

    @field_validator("park_q_rad")
    @classmethod
    def _park_in_limits(cls, value: list[float]) -> list[float]:
        for spec, q in zip(JOINTS, value, strict=True):
            if not spec.lower <= q <= spec.upper:
                raise ValueError(f"{spec.name} {q} rad is outside the Rizon's range [{spec.lower}, {spec.upper}]")
        return value

    @model_validator(mode="after")
    def _standin_has_address(self) -> FlexivArmConfig:
        if self.sdk == "standin" and not self.standin_address:
            raise ValueError("sdk: standin needs standin_address (host:port of the simulated robots)")
        return self
