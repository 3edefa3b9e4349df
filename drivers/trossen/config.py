"""The settings of one Trossen WidowX AI arm in a robot config, and the arm model's fixed facts."""

from __future__ import annotations

import ipaddress
import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from robot_runtime.robot import JointSpec

JOINTS: tuple[JointSpec, ...] = (
    # Names as Trossen's LeRobot plugin (widowxai_follower / widowxai_leader) writes its datasets:
    # `joint_0.pos` .. `left_carriage_joint.pos`. Limits are the WidowX AI's documented joint limits
    # (Trossen arm specifications), which are also what a wxai_v0 controller reports through
    # TrossenArmDriver.get_joint_limits(); the arm checks the controller's own at connect.
    JointSpec("joint_0", "rad", -3.054, 3.054),
    JointSpec("joint_1", "rad", 0.0, math.pi),
    JointSpec("joint_2", "rad", 0.0, 2.356),
    JointSpec("joint_3", "rad", -math.pi / 2, math.pi / 2),
    JointSpec("joint_4", "rad", -math.pi / 2, math.pi / 2),
    JointSpec("joint_5", "rad", -math.pi, math.pi),
    JointSpec("left_carriage_joint", "m", 0.0, 0.044),
    # The gripper joint is the carriage travel of one finger, in metres (0 = closed).
)
JOINT_NAMES: tuple[str, ...] = tuple(j.name for j in JOINTS)

STAGED_POSITION: dict[str, float] = dict(
    zip(JOINT_NAMES, (0.0, math.pi / 3, math.pi / 6, math.pi / 5, 0.0, 0.0, 0.0), strict=True)
)
"""Trossen's "staged" pose (their LeRobot plugin and examples): arm raised clear of the table, the way
point between any working pose and the folded sleep pose."""

TCP_PORT, UDP_PORT = 50001, 50000
"""The controller's fixed ports (trossen_arm's wire protocol)."""
ROLES: dict[str, str] = {"wxai_v0_follower": "follower", "wxai_v0_base": "follower", "wxai_v0_leader": "leader"}


class TrossenArmConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Literal["wxai_v0"] = "wxai_v0"
    end_effector: Literal["wxai_v0_follower", "wxai_v0_leader", "wxai_v0_base"]
    """The trossen_arm StandardEndEffector mounted on the arm; it decides the arm's role."""
    ip: str
    """The arm controller's IPv4 address (factory default 192.168.1.2)."""
    connect_timeout_s: float = Field(5.0, gt=0, le=60)
    """How long to wait for the controller to answer before telling the user what to check."""
    goal_time_s: float | None = Field(None, gt=0, le=1.0)
    """How long the controller takes to reach each streamed target; default one 30 Hz control period."""
    park_position: dict[str, float] | None = None
    """Where the arm rests before its joints go idle (joint units); default Trossen's sleep pose, all zeros."""
    staged_position: dict[str, float] | None = None
    """The way point on the way to the park pose; default Trossen's staged pose."""
    park_speed_per_s: float = Field(0.5, gt=0, le=3.0)
    """Arm joint speed of the parking moves, rad/s."""
    park_gripper_speed_per_s: float = Field(0.02, gt=0, le=0.2)
    """Gripper speed of the parking moves, m/s."""

    @field_validator("ip")
    @classmethod
    def _ipv4(cls, value: str) -> str:
        try:
            ipaddress.IPv4Address(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an IPv4 address like 192.168.1.2 (the arm controller's address)") from None
        return value

    @field_validator("park_position", "staged_position")
    @classmethod
    def _known_joints(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        unknown = sorted(set(value or {}) - set(JOINT_NAMES))
        if unknown:
            raise ValueError(f"unknown joints {unknown} (joints: {list(JOINT_NAMES)})")
        return value

    @property
    def role(self) -> str:
        return ROLES[self.end_effector]
