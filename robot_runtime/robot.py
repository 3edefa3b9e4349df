"""The interface every arm family implements (bus servos, IP arms, RDK arms) and the types it speaks."""

from __future__ import annotations

import abc
import functools
from dataclasses import dataclass, field

import numpy as np

from robot_runtime.spaces import Space


@dataclass(frozen=True)
class JointSpec:
    """One controllable joint: its name, the unit positions are given in, and its position limits."""

    name: str
    unit: str
    """"deg", "rad", "percent" (grippers 0..100) or "m"."""
    lower: float
    upper: float

    def __post_init__(self) -> None:
        if not self.lower < self.upper:
            raise ValueError(f"joint {self.name}: lower limit {self.lower} must be below upper limit {self.upper}")


@dataclass(frozen=True)
class PoseSpec:
    """Six consecutive values of an arm's vector that are one Cartesian pose, from `start`: the position
    x, y, z in metres in `frame`, then the orientation as a rotation vector (radians). Their JointSpecs
    still name them and bound the position (the workspace box); the rotation values are never clipped,
    stepped or blended one by one (robot_runtime.spaces)."""

    start: int
    frame: str = "world"

    @property
    def position(self) -> slice:
        return slice(self.start, self.start + 3)

    @property
    def rotation(self) -> slice:
        return slice(self.start + 3, self.start + 6)


@dataclass(frozen=True)
class JointState:
    """What an arm reported at one instant; `timestamp_s` is host monotonic time when the read completed."""

    timestamp_s: float
    position: np.ndarray
    velocity: np.ndarray | None = None
    effort: np.ndarray | None = None


@dataclass(frozen=True)
class WriteResult:
    """The targets actually sent to the hardware after the driver's own clipping, and which joints were clipped."""

    sent: np.ndarray
    clipped: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))


@dataclass(frozen=True)
class StopReport:
    """How one arm's safe stop went, so every exit path can tell the user what state the arm is in."""

    arm: str
    parked: bool | None
    """True when a read confirmed the park pose; False when it was not reached or not confirmed;
    None for arms that are not parked (leaders, and arms that were only observed)."""
    torque_safe: bool
    detail: str = ""

    def describe(self) -> str:
        park = {True: "parked", False: "not confirmed parked", None: "not parked"}[self.parked]
        torque = "torque safe" if self.torque_safe else "TORQUE STATE UNKNOWN"
        return f"{self.arm}: {park}, {torque}" + (f" ({self.detail})" if self.detail else "")


class ArmError(RuntimeError):
    """A hardware problem the user can act on; the message names the arm, the part and what to check."""


class ObserveOnlyError(RuntimeError):
    """Something tried to move an arm that was connected to be observed only: a bug, never a hardware fault."""


class Arm(abc.ABC):
    """One physical arm (follower or leader) behind a vendor SDK.

    Positions are in each joint's unit, in the order of `joints`. Implementations must make
    `safe_stop` and `disconnect` safe to call at any time, including after a failed connect.
    """

    name: str
    joints: tuple[JointSpec, ...]
    poses: tuple[PoseSpec, ...] = ()
    """The Cartesian poses among the values (none for joint-space arms)."""
    park_position: np.ndarray
    """Where the arm rests safely with torque off (bus arms) or holds before power-down (IP arms)."""

    @property
    def joint_names(self) -> list[str]:
        return [j.name for j in self.joints]

    @property
    def transport(self) -> str:
        """The wire the arm talks over (a serial port, a controller's address): arms on separate transports
        stop at the same time, arms sharing one take turns on it. By default each arm has its own."""
        return self.name

    @functools.cached_property
    def space(self) -> Space:
        """What the values mean (joints, poses): how targets are clipped, stepped and blended."""
        return Space(self.joints, self.poses)

    @functools.cached_property
    def lower_limits(self) -> np.ndarray:
        """Computed once: `joints` is fixed when an arm is constructed, and `clip` runs every tick."""
        return np.array([j.lower for j in self.joints], dtype=np.float64)

    @functools.cached_property
    def upper_limits(self) -> np.ndarray:
        return np.array([j.upper for j in self.joints], dtype=np.float64)

    observe_only: bool = False
    """Set by `connect`: a dry run, in which nothing may be written to the arm."""

    @property
    @abc.abstractmethod
    def is_connected(self) -> bool: ...

    def connect(self, *, observe_only: bool = False) -> None:
        """Open the transport, check every joint answers, and bring the arm into its control mode.

        `observe_only` checks and reads but never writes a goal or changes torque, and then `write`,
        `set_torque` and `safe_stop` move nothing: a dry run of a policy leaves the arm provably still."""
        self.observe_only = observe_only
        self._connect(observe_only=observe_only)

    def write(self, targets: np.ndarray) -> WriteResult:
        """Command joint position targets; returns what was actually sent after clipping to the limits.
        Every arm goes through here, so no driver can skip the observe-only rule or the clip."""
        self._refuse_if_observing("write a goal")
        checked = self.clip(targets)
        return WriteResult(sent=self._send(checked.sent), clipped=checked.clipped)

    def set_torque(self, enabled: bool) -> None:
        self._refuse_if_observing("change torque")
        self._set_torque(enabled)

    def safe_stop(self) -> list[StopReport]:
        """Move to the park position at a gentle speed, then leave the arm torque-safe. Never raises for
        a single unresponsive joint: it parks what it can and says so in its report. An arm that is
        not connected has nothing to stop; an observed one was never moved."""
        if not self.is_connected:
            return []
        if self.observe_only:
            return [StopReport(self.name, parked=None, torque_safe=True, detail="observed only: nothing was written")]
        return self._safe_stop()

    @abc.abstractmethod
    def read(self) -> JointState: ...

    @abc.abstractmethod
    def disconnect(self) -> None:
        """Release the transport. Does not move the arm; call `safe_stop` first."""

    @abc.abstractmethod
    def _connect(self, *, observe_only: bool) -> None:
        """The family's connect; observe-only must configure nothing and write nothing."""

    @abc.abstractmethod
    def _send(self, targets: np.ndarray) -> np.ndarray:
        """Send targets already checked and clipped; return what reached the wire (after quantisation)."""

    @abc.abstractmethod
    def _set_torque(self, enabled: bool) -> None: ...

    @abc.abstractmethod
    def _safe_stop(self) -> list[StopReport]:
        """The family's stop of a connected arm that may be moved."""

    def _refuse_if_observing(self, what: str) -> None:
        if self.observe_only:
            raise ObserveOnlyError(f"{self.name} is connected observe-only: refusing to {what}")

    def clip(self, targets: np.ndarray) -> WriteResult:
        """Clip targets into the joint limits (poses: the workspace box, rotations to canonical form); every
        driver's `write` goes through this, so a NaN or a wrong-length vector never reaches a motor
        whatever the caller did."""
        targets = np.asarray(targets, dtype=np.float64)
        if targets.shape != (len(self.joints),):
            raise ValueError(f"{self.name}: expected {len(self.joints)} targets, got shape {targets.shape}")
        bad = ~np.isfinite(targets)
        if bad.any():
            names = [self.joints[i].name for i in np.flatnonzero(bad)]
            raise ValueError(f"{self.name}: non-finite target for {', '.join(names)}; nothing was sent")
        unusable = self.space.unusable_rotations(targets)
        if unusable:
            raise ValueError(f"{self.name}: the rotation vector at {', '.join(unusable)} is longer than 2 pi; nothing was sent")
        sent, clipped = self.space.clip(targets, self.lower_limits, self.upper_limits)
        return WriteResult(sent=sent, clipped=clipped)
