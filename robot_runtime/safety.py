"""The filter every commanded target passes before it reaches an arm: finite values of the right shape
only, joint limits, a bounded step per tick, a hold when no fresh action came, and a software e-stop.
Each intervention is counted so a run reports how often it stepped in."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from robot_runtime.config import ConfigError, SafetyConfig
from robot_runtime.rig import Rig
from robot_runtime.spaces import Space, UnitError

log = logging.getLogger(__name__)


@dataclass
class Interventions:
    rejected: int = 0
    """Targets that were not finite, had the wrong shape or a rotation vector longer than 2 pi: the previous
    target was held instead."""
    limited: int = 0
    """Targets clamped into the joint limits or a pose's workspace box."""
    step_clipped: int = 0
    """Targets that moved further than the step allowed in one tick (max_step, or max_velocity / rate)."""
    held: int = 0
    """Ticks with no fresh action (a late or failed policy reply): the previous target was held."""
    estops: int = 0
    """Software e-stops: every later tick held the previous target until the arm was parked."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def per_unit(rig: Rig, value: float | Mapping[str, float], key: str) -> dict[str, float]:
    """A safety setting for each of the rig's units; a ConfigError when it does not fit them."""
    try:
        return rig.space.unit_values(value, key)
    except UnitError as exc:
        raise ConfigError(str(exc)) from None


class SafetyFilter:
    def __init__(self, space: Space, lower: np.ndarray, upper: np.ndarray, max_step: Mapping[str, float]) -> None:
        """`max_step` per unit: per tick, joints by their unit, a pose's position by distance (m) and its
        rotation by geodesic angle (rad)."""
        self.space = space
        self.lower = np.asarray(lower, dtype=np.float64)
        self.upper = np.asarray(upper, dtype=np.float64)
        self.max_step = dict(max_step)
        self._steps = space.step_limits(self.max_step)
        self.interventions = Interventions()
        self.estop_reason: str | None = None

    @classmethod
    def for_rig(cls, rig: Rig, safety: SafetyConfig, rate_hz: float) -> SafetyFilter:
        """Limits from the arms (their calibration, a pose's workspace box), narrowed by the config's
        `safety.limits`; the step per tick is, per unit, the smaller of `max_step` and `max_velocity / rate_hz`."""
        lower, upper = rig.lower_limits.copy(), rig.upper_limits.copy()
        names = rig.feature_names
        rotation_values = {names[i] for pose in rig.poses for i in range(pose.rotation.start, pose.rotation.stop)}
        for feature, (low, high) in safety.limits.items():
            if feature not in names:
                raise ConfigError(f"safety.limits: unknown joint {feature!r} (joints: {', '.join(names)})")
            if feature in rotation_values:
                raise ConfigError(
                    f"safety.limits.{feature}: a rotation vector's component has no meaningful range; "
                    "a rotation is bounded per tick by safety.max_step's rad"
                )
            i = names.index(feature)
            lower[i], upper[i] = max(lower[i], low), min(upper[i], high)
            if not lower[i] < upper[i]:
                raise ConfigError(
                    f"safety.limits.{feature}: [{low:g}, {high:g}] leaves nothing of the calibrated range "
                    f"[{rig.lower_limits[i]:g}, {rig.upper_limits[i]:g}]"
                )
        step = per_unit(rig, safety.max_step, "safety.max_step")
        if safety.max_velocity is not None:
            velocity = per_unit(rig, safety.max_velocity, "safety.max_velocity")
            step = {unit: min(step[unit], velocity[unit] / rate_hz) for unit in step}
        return cls(rig.space, lower, upper, step)

    @property
    def estopped(self) -> bool:
        return self.estop_reason is not None

    def engage_estop(self, reason: str) -> None:
        """From now on every target is the previous one; the caller ends the run, which parks the arm."""
        if self.estop_reason is None:
            self.estop_reason = reason
            self.interventions.estops += 1
            log.warning("e-stop: %s", reason)

    def hold(self, previous: np.ndarray) -> np.ndarray:
        """No fresh action this tick: keep the previous target."""
        self.interventions.held += 1
        return previous.copy()

    def __call__(self, target: np.ndarray, previous: np.ndarray) -> np.ndarray:
        """The target that may be sent this tick, given the one sent on the last tick."""
        if self.estopped:
            return previous.copy()
        target = np.asarray(target, dtype=np.float64)
        if target.shape != previous.shape or not np.isfinite(target).all() or self.space.unusable_rotations(target):
            self.interventions.rejected += 1
            log.warning("rejected target %s: holding the previous one", target)
            return previous.copy()
        limited, changed = self.space.clip(target, self.lower, self.upper)
        if changed.any():
            self.interventions.limited += 1
        stepped, was_stepped = self.space.step(limited, previous, self._steps)
        if was_stepped:
            self.interventions.step_clipped += 1
        return stepped


class Watchdog:
    """Trips when no fresh action has arrived for `timeout_s`: the caller holds until then, then stops."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._last_fresh_s: float | None = None

    def feed(self, now_s: float) -> None:
        self._last_fresh_s = now_s

    def starved_s(self, now_s: float) -> float:
        return 0.0 if self._last_fresh_s is None else max(0.0, now_s - self._last_fresh_s)

    def expired(self, now_s: float) -> bool:
        return self._last_fresh_s is not None and now_s - self._last_fresh_s > self.timeout_s
