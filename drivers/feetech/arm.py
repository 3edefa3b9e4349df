"""An SO-100/SO-101 arm (follower or leader) on a Feetech bus, in LeRobot's joint units."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from calibration.normalization import Normalizer
from calibration.store import Calibration, CalibrationError, calibration_root, load_calibration
from drivers.feetech.bus import BusError, MotorFaultError
from drivers.feetech.calibration import CALIBRATION_REGISTERS, FeetechCalibrationBus
from drivers.feetech.calibration import calibration_path as locate_calibration
from drivers.feetech.config import FeetechArmConfig
from drivers.feetech.control_table import REGISTERS, RESOLUTION_TICKS
from drivers.feetech.models import norm_modes
from robot_runtime.robot import Arm, JointSpec, JointState, StopReport

log = logging.getLogger(__name__)

PARK_RATE_HZ = 50.0
PARK_TOLERANCE = 3.0
"""Joint units: how close to the park pose counts as arrived."""
PARK_SETTLE_S = 1.0


class FeetechArm(Arm):
    def __init__(self, config: FeetechArmConfig, name: str) -> None:
        self.name = name
        self.config = config
        self.model = config.arm_model
        self.bus = config.bus()
        self.motor_names = [m.name for m in self.model.motors]
        self.modes = norm_modes(self.motor_names, config.body_norm)
        unknown = set(config.park_position or {}) - set(self.motor_names)
        if unknown:
            raise ValueError(f"{name}: park_position names unknown joints {sorted(unknown)} (joints: {self.motor_names})")
        self._calibration_source = self.calibration_path
        self.calibration = self._load_calibration(self._calibration_source)
        self._norm = Normalizer.from_calibration(self.calibration, self.modes, RESOLUTION_TICKS)
        self._units_per_tick = self._norm.units_per_tick
        lower, upper = self._norm.limits()
        self.joints = tuple(
            JointSpec(n, m.unit, float(lo), float(hi))
            for n, m, lo, hi in zip(self.motor_names, self.modes, lower, upper, strict=True)
        )
        self.park_position = np.clip(np.zeros(len(self.joints)), lower, upper)
        self._last_position: np.ndarray | None = None
        self._last_state: JointState | None = None
        self.late_reads = 0
        """Reads answered with the previous state because the bus's replies were late or lost."""
        self._connected = False

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        return self._connected

    @property
    def transport(self) -> str:
        return self.config.port

    @property
    def calibration_path(self) -> Path:
        path = locate_calibration(self.config)
        if self.config.calibration_dir is None and not path.is_file():
            tried = ", ".join(
                str(calibration_root() / self.model.calibration_kind / n / f"{self.config.id}.json")
                for n in self.model.calibration_names
            )
            raise CalibrationError(
                f"{self.name}: no calibration for id '{self.config.id}' (looked for {tried}); calibrate this arm "
                f"with `robot-runtime calibrate --robot ROBOT --arm {self.name}` (or LeRobot's lerobot-calibrate), "
                "or set calibration_dir in the robot config"
            )
        return path

    def _connect(self, *, observe_only: bool) -> None:
        self.bus.open()
        try:
            self.bus.check_motors()
            self._verify_calibration(self.calibration)
            if not observe_only:
                self._configure()
            start = self.read().position
            park = self.config.park_position or {}
            self.park_position = np.array([park.get(n, p) for n, p in zip(self.motor_names, start, strict=True)])
        except BaseException:
            self.bus.close()
            raise
        self._connected = True

    def disconnect(self) -> None:
        self.bus.close()
        self._connected = False

    # -- control -----------------------------------------------------------------------------

    def read(self) -> JointState:
        """The present state; a failed read within `max_read_gap_ms` of the last good one repeats that one
        (with its own timestamp, so its age shows) and is counted in `late_reads`."""
        try:
            values = self.bus.sync_read_span(REGISTERS["Present_Position"], REGISTERS["Present_Load"])
        except BusError as exc:  # a motor that answers with a fault (MotorFaultError) stops the run at once
            last = self._last_state
            gap_s = time.monotonic() - last.timestamp_s if last is not None else float("inf")
            if isinstance(exc, MotorFaultError) or last is None or gap_s > self.config.max_read_gap_ms / 1e3:
                raise
            self.late_reads += 1
            log.warning("%s: %s; using the state read %.0f ms ago", self.name, exc, gap_s * 1e3)
            return last
        stamp = time.monotonic()
        raw = np.array([values[n]["Present_Position"] for n in self.motor_names], dtype=np.float64)
        ticks_per_s = np.array([values[n]["Present_Velocity"] for n in self.motor_names], dtype=np.float64)
        load = np.array([values[n]["Present_Load"] for n in self.motor_names], dtype=np.float64)
        position = self._norm.to_units(raw)
        self._last_position = position
        self._last_state = JointState(
            timestamp_s=stamp,
            position=position,
            velocity=ticks_per_s * self._units_per_tick,
            effort=load / 10.0,  # per mille of the maximum torque -> percent
        )
        return self._last_state

    def _send(self, targets: np.ndarray) -> np.ndarray:
        raw = self._norm.to_raw(targets)
        self.bus.sync_write("Goal_Position", {n: int(v) for n, v in zip(self.motor_names, raw, strict=True)})
        return self._norm.to_units(raw)

    def _set_torque(self, enabled: bool) -> None:
        if enabled:
            # Hold where the arm is: enabling torque on a stale goal would jump.
            present = self.bus.sync_read("Present_Position")
            self.bus.sync_write("Goal_Position", present)
        self.bus.sync_write("Torque_Enable", {n: int(enabled) for n in self.motor_names})

    def _safe_stop(self) -> list[StopReport]:
        """Followers glide to the park pose, then torque goes off; leaders only lose torque.

        The move uses sync writes only (servos do not answer them), so one lost motor cannot stop
        the others from parking; arrival is checked with reads when they still work.
        """
        parked, detail = None, "leaders are not parked"
        try:
            if self.model.role == "follower":
                parked, detail = self._glide_to_park()
        finally:
            self.bus.sync_write("Torque_Enable", dict.fromkeys(self.motor_names, 0))
        return [StopReport(self.name, parked=parked, torque_safe=True, detail=detail)]

    # -- internals ---------------------------------------------------------------------------

    def _load_calibration(self, path: Path) -> Calibration:
        calibration = load_calibration(path)
        if list(calibration) != self.motor_names:
            raise CalibrationError(
                f"{self.name}: calibration {path} lists motors {list(calibration)}, expected {self.motor_names}"
            )
        for name, motor in zip(self.motor_names, self.model.motors, strict=True):
            cal = calibration[name]
            if cal.id != motor.id:
                raise CalibrationError(f"{self.name}: calibration {path}: motor '{name}' has id {cal.id}, expected {motor.id}")
            if not 0 <= cal.range_min < cal.range_max < RESOLUTION_TICKS:
                raise CalibrationError(
                    f"{self.name}: calibration {path}: motor '{name}' range {cal.range_min}..{cal.range_max} is invalid: "
                    f"recalibrate it (robot-runtime calibrate --arm {self.name})"
                )
        return calibration

    def _verify_calibration(self, calibration: Calibration) -> None:
        """The motors store their homing offset and limits; a file that disagrees means the wrong arm
        or a stale file, and positions would be silently wrong."""
        held = FeetechCalibrationBus(self.bus).held()
        for name in self.motor_names:
            cal = calibration[name]
            expected = (cal.homing_offset, cal.range_min, cal.range_max)
            diff = [(r, f, m) for r, f, m in zip(CALIBRATION_REGISTERS, expected, held[name], strict=True) if f != m]
            if diff:
                detail = ", ".join(f"{r} file {f} motor {m}" for r, f, m in diff)
                raise CalibrationError(
                    f"{self.name}: motor '{name}' on {self.config.port} does not hold the calibration in "
                    f"{self._calibration_source} ({detail}): is the right arm on this port? "
                    f"Otherwise recalibrate it (robot-runtime calibrate --arm {self.name})"
                )

    def _configure(self) -> None:
        """Write the model's registers where they differ (EEPROM wears), leaving a follower holding its pose."""
        with self.bus.torque_disabled():
            for name in self.motor_names:
                for register, value in self.model.configure_values(name).items():
                    if self.bus.read(register, name) != value:
                        self.bus.write(register, name, value)
            if self.model.role == "follower":
                self.bus.sync_write("Goal_Position", self.bus.sync_read("Present_Position"))
        if self.model.role == "leader":
            self.bus.sync_write("Torque_Enable", dict.fromkeys(self.motor_names, 0))

    def _glide_to_park(self) -> tuple[bool, str]:
        start = self._last_position
        if start is None:
            start = self.read().position
        target = np.clip(self.park_position, self.lower_limits, self.upper_limits)
        duration_s = float(np.max(np.abs(target - start)) / self.config.park_speed_per_s)
        steps = max(1, int(np.ceil(duration_s * PARK_RATE_HZ)))
        t0 = time.monotonic()
        for k in range(1, steps + 1):
            s = k / steps
            blend = 0.5 - 0.5 * np.cos(np.pi * s)  # zero velocity at both ends
            self.write(start + blend * (target - start))
            time.sleep(max(0.0, t0 + k / PARK_RATE_HZ - time.monotonic()))
        deadline = time.monotonic() + PARK_SETTLE_S
        while True:
            try:
                error = float(np.max(np.abs(self.read().position - target)))
            except BusError as exc:
                return False, f"arrival not confirmed: {exc}"
            if error <= PARK_TOLERANCE:
                return True, ""
            if time.monotonic() > deadline:
                return False, f"still {error:.1f} from the park pose after {PARK_SETTLE_S:g} s; torque went off there"
            time.sleep(1.0 / PARK_RATE_HZ)
