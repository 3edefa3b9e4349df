"""The settings of one Feetech arm in a robot config."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from drivers.feetech.bus import SDK_BAUD_RATES, FeetechBus, Motor
from drivers.feetech.models import MODELS, ArmModel


class FeetechArmConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    """One of the models in drivers.feetech.models.MODELS, e.g. so100_follower."""
    port: str
    id: str
    """The calibration id, as given to LeRobot (`--robot.id`): the calibration file is `<id>.json`."""
    calibration_dir: Path | None = None
    """Folder holding `<id>.json`; default: LeRobot's calibration location."""
    body_norm: Literal["degrees", "range_m100_100"] = "degrees"
    """How body joints are normalised; grippers are always 0..100."""
    baudrate: int = 1_000_000
    reply_timeout_ms: float = Field(5.0, gt=0, le=100)
    """How long to wait for a servo's reply before retrying; bounds what a missing motor costs a tick."""
    retries: int = Field(1, ge=0, le=5)
    max_read_gap_ms: float = Field(250.0, ge=0, le=1000)
    """A read whose replies are late or lost (after its retries) is answered with the last state while the
    last good read is at most this old: one late reply on a busy computer must not stop a recording, while
    a motor that is really gone stops the run within this time. 0: every failed read stops the run."""
    park_position: dict[str, float] | None = None
    """Where to park before torque off (joint units); default: the pose the arm had when connected."""
    park_speed_per_s: float = Field(30.0, gt=0)
    """Joint speed of the parking move (deg/s, or percent/s for the gripper)."""

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if value not in MODELS:
            raise ValueError(f"unknown Feetech arm model {value!r} (known: {', '.join(MODELS)})")
        return value

    @field_validator("baudrate")
    @classmethod
    def _sdk_baud(cls, value: int) -> int:
        if value not in SDK_BAUD_RATES:
            raise ValueError(f"{value} is not a baud rate the Feetech SDK supports ({', '.join(map(str, SDK_BAUD_RATES))})")
        return value

    @property
    def arm_model(self) -> ArmModel:
        return MODELS[self.model]

    def bus(self, port: str | None = None, motors: Sequence[Motor] | None = None) -> FeetechBus:
        """An unopened bus with this arm's line settings, on its port or another (--port, a simulator),
        for its motors or others (none while setting ids)."""
        return FeetechBus(
            port or self.port,
            self.arm_model.motors if motors is None else motors,
            baudrate=self.baudrate,
            reply_timeout_ms=self.reply_timeout_ms,
            retries=self.retries,
        )
