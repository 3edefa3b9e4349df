"""Calibrating a bus arm, as logic over a bus: homing at mid-range, recording each joint's range of
motion, validation, and the EEPROM writes, so any front end (the TUI, a test) drives the same steps and
any servo family that implements `CalibrationBus` (Feetech now, Dynamixel next) gets them."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from calibration.store import Calibration, CalibrationError, MotorCalibration, load_calibration, save_calibration

NEVER_MOVED_TICKS = 20
"""A recorded span at most this wide is sensor noise: the joint was not moved."""
WRAPPED_FRACTION = 7 / 8
"""A limited joint recorded over more of the turn than this went across the encoder's wrap point (its
readings jumped from one end to the other); no limited joint of an arm travels that far."""


class Step(enum.Enum):
    CHECK = "check"
    """Every motor must answer before anything is written."""
    HOMING = "homing"
    """The operator puts every joint in the middle of its travel."""
    RANGES = "ranges"
    """The operator moves every joint through its full range; min and max are recorded."""
    REVIEW = "review"
    """The new calibration is shown against the existing one; nothing is saved until confirmed."""
    WRITTEN = "written"


@dataclass(frozen=True)
class Encoder:
    """How a servo family counts and homes: offsets make the mid-range pose read half a turn."""

    resolution_ticks: int
    max_homing_offset: int
    """The largest |Homing_Offset| the register can hold (Feetech: 2047, sign-magnitude bit 11)."""
    offset_sign: int
    """Feetech: offset = position - half turn (+1); Dynamixel: offset = half turn - position (-1)."""

    @property
    def half_turn(self) -> int:
        return (self.resolution_ticks - 1) // 2

    def homing_offset(self, position: int) -> int:
        return self.offset_sign * (position - self.half_turn)


@dataclass(frozen=True)
class MotorReading:
    """One motor's live values; `position` is None when the motor answered with a fault instead."""

    position: int | None
    temperature_c: float | None = None
    voltage_v: float | None = None
    load_percent: float | None = None
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class MissingMotor:
    name: str
    id: int
    hint: str
    """What to check, e.g. the cable between motor 2 and motor 3."""


class CalibrationBus(Protocol):
    """What calibrating needs from a servo bus. Register writes here go to EEPROM: implementations
    switch torque off, unlock, write, lock, then read every value back and raise if one differs."""

    port: str
    encoder: Encoder

    @property
    def motor_ids(self) -> Mapping[str, int]: ...

    def missing_motors(self) -> list[MissingMotor]: ...

    def release_torque(self) -> None:
        """Torque off on every motor, so the operator can move the joints by hand."""
        ...

    def read(self) -> dict[str, MotorReading]: ...

    def held(self) -> dict[str, tuple[int, int, int]]:
        """(homing_offset, range_min, range_max) each motor holds now."""
        ...

    def write(self, values: Mapping[str, tuple[int, int, int]]) -> None:
        """Store (homing_offset, range_min, range_max) per motor, verified by reading back."""
        ...


@dataclass(frozen=True)
class Difference:
    motor: str
    key: str
    before: int
    after: int


def diff(before: Calibration, after: Calibration) -> list[Difference]:
    """Every field that differs, motor by motor, in `after`'s order."""
    out = []
    for motor, new in after.items():
        old = before.get(motor)
        for key in ("id", "drive_mode", "homing_offset", "range_min", "range_max"):
            if old is not None and getattr(old, key) != getattr(new, key):
                out.append(Difference(motor, key, getattr(old, key), getattr(new, key)))
    return out


@dataclass
class JointRange:
    """The extremes a joint reached while ranges were recorded (homed ticks)."""

    low: int
    high: int

    def widen(self, position: int) -> None:
        self.low, self.high = min(self.low, position), max(self.high, position)

    @property
    def span(self) -> int:
        return self.high - self.low


@dataclass(frozen=True)
class Problem:
    motor: str
    reason: str


@dataclass
class Existing:
    """The calibration already on disk and what the motors hold, compared when calibrating starts."""

    path: Path
    file: Calibration | None
    file_error: str | None
    motors: Calibration

    @property
    def differences(self) -> list[Difference]:
        return [] if self.file is None else diff(self.file, self.motors)


@dataclass
class CalibrationProcedure:
    """One arm's calibration, step by step. Motors are only changed from homing on; quitting before the
    calibration is written puts back what they held, so the existing file keeps matching them."""

    bus: CalibrationBus
    path: Path
    full_turn: frozenset[str] = frozenset()
    """Joints that turn freely (SO arms' wrist_roll): their range is the whole encoder turn."""
    drive_modes: Mapping[str, int] = field(default_factory=dict)
    min_span_ticks: int = 200
    """A limited joint must travel at least this far (about 18 degrees) to be a plausible range."""
    step: Step = Step.CHECK
    missing: list[MissingMotor] = field(default_factory=list)
    existing: Existing | None = None
    offsets: dict[str, int] = field(default_factory=dict)
    ranges: dict[str, JointRange] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    proposed: Calibration | None = None
    _held_at_start: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    _motors_changed: bool = False

    @property
    def motors(self) -> list[str]:
        return list(self.bus.motor_ids)

    def check(self) -> bool:
        """Ping every motor; when all answer, read what they hold and the existing file, then go to homing."""
        self.missing = self.bus.missing_motors()
        if self.missing:
            self.step = Step.CHECK
            return False
        self.bus.release_torque()
        self._held_at_start = self.bus.held()
        self.existing = self._existing()
        self.step = Step.HOMING
        return True

    def read(self) -> dict[str, MotorReading]:
        """Live values; while ranges are recorded, every position widens its joint's range."""
        readings = self.bus.read()
        if self.step is Step.RANGES:
            for motor, reading in readings.items():
                if reading.position is not None and motor in self.ranges:
                    self.ranges[motor].widen(reading.position)
        return readings

    def set_homing(self) -> dict[str, int]:
        """Clear offsets and limits, read the mid-range pose, and store offsets that make it read half a turn."""
        self._require(Step.HOMING)
        full = self.bus.encoder.resolution_ticks - 1
        self._store(dict.fromkeys(self.motors, (0, 0, full)))
        positions = self._positions()
        offsets = {m: self.bus.encoder.homing_offset(p) for m, p in positions.items()}
        limit = self.bus.encoder.max_homing_offset
        too_far = [f"{m} reads {positions[m]} (offset {o})" for m, o in offsets.items() if abs(o) > limit]
        if too_far:
            raise CalibrationError(
                f"homing offsets beyond +-{limit}: {', '.join(too_far)}: the joint sits at the encoder's wrap point; "
                "move it a little toward the middle of its travel and set homing again"
            )
        self._store({m: (o, 0, full) for m, o in offsets.items()})
        self.offsets = offsets
        self.restart_ranges()
        return offsets

    def restart_ranges(self) -> None:
        """Record ranges from the present pose (after homing, or to redo a joint that went wrong)."""
        if not self.offsets or self.step in (Step.CHECK, Step.WRITTEN):
            raise RuntimeError(f"ranges are recorded after homing, not at step {self.step.value}")
        positions = self._positions()
        self.ranges = {m: JointRange(p, p) for m, p in positions.items() if m not in self.full_turn}
        self.problems, self.proposed = [], None
        self.step = Step.RANGES

    def finish_ranges(self) -> list[Problem]:
        """Validate the recorded ranges; without problems, the calibration to write is proposed."""
        self._require(Step.RANGES)
        self.problems = validate(self.ranges, self.bus.encoder, self.min_span_ticks)
        if self.problems:
            return self.problems
        full = self.bus.encoder.resolution_ticks - 1
        self.proposed = {
            motor: MotorCalibration(
                id=motor_id,
                drive_mode=self.drive_modes.get(motor, 0),
                homing_offset=self.offsets[motor],
                range_min=0 if motor in self.full_turn else self.ranges[motor].low,
                range_max=full if motor in self.full_turn else self.ranges[motor].high,
            )
            for motor, motor_id in self.bus.motor_ids.items()
        }
        self.step = Step.REVIEW
        return []

    def write(self) -> Calibration:
        """Store the proposed calibration in the motors (verified), then the JSON (atomically), then check
        the file loads back and matches the motors."""
        self._require(Step.REVIEW)
        assert self.proposed is not None
        self._store({m: (c.homing_offset, c.range_min, c.range_max) for m, c in self.proposed.items()})
        save_calibration(self.path, self.proposed)
        if load_calibration(self.path) != self.proposed:
            raise CalibrationError(f"calibration {self.path} did not read back as written")
        self._motors_changed = False
        self.step = Step.WRITTEN
        return self.proposed

    def abandon(self) -> bool:
        """Put back what the motors held when calibrating started; True if anything had to be restored."""
        if not self._motors_changed:
            return False
        self._store(self._held_at_start)
        self._motors_changed = False
        return True

    def live_calibration(self) -> Calibration | None:
        """The calibration positions are shown in right now: the proposed one, the ranges recorded so far,
        or before homing the existing file when the motors hold it."""
        if self.proposed is not None:
            return self.proposed
        if self.offsets and self.ranges:
            full = self.bus.encoder.resolution_ticks - 1
            return {
                m: MotorCalibration(
                    i,
                    self.drive_modes.get(m, 0),
                    self.offsets[m],
                    *((0, full) if m in self.full_turn else (self.ranges[m].low, self.ranges[m].high)),
                )
                for m, i in self.bus.motor_ids.items()
            }
        if self.existing is not None and self.existing.file is not None and not self.existing.differences:
            return self.existing.file
        return None

    def _store(self, values: Mapping[str, tuple[int, int, int]]) -> None:
        self._motors_changed = True
        self.bus.write(values)

    def _positions(self) -> dict[str, int]:
        readings = self.bus.read()
        faulty = [f"{m} ({', '.join(r.flags)})" for m, r in readings.items() if r.position is None]
        if faulty:
            raise CalibrationError(f"motors report faults: {'; '.join(faulty)}: clear them before calibrating")
        return {m: r.position for m, r in readings.items() if r.position is not None}

    def _existing(self) -> Existing:
        motors = {
            m: MotorCalibration(i, self.drive_modes.get(m, 0), *self._held_at_start[m]) for m, i in self.bus.motor_ids.items()
        }
        if not self.path.is_file():
            return Existing(self.path, None, None, motors)
        try:
            return Existing(self.path, load_calibration(self.path), None, motors)
        except CalibrationError as exc:
            return Existing(self.path, None, str(exc), motors)

    def _require(self, step: Step) -> None:
        if self.step is not step:
            raise RuntimeError(f"calibration is at step {self.step.value}, not {step.value}")


def validate(ranges: Mapping[str, JointRange], encoder: Encoder, min_span_ticks: int) -> list[Problem]:
    """Ranges that cannot be right: a joint never moved, moved too little, or went past the encoder's wrap."""
    problems = []
    for motor, span in ranges.items():
        where = f"range {span.low}..{span.high}"
        if span.span > WRAPPED_FRACTION * encoder.resolution_ticks:
            problems.append(
                Problem(
                    motor,
                    f"{where} covers almost the whole turn: it passed the encoder's wrap point, so homing was not at mid-range; "
                    "set homing again",
                )
            )
        elif span.span <= NEVER_MOVED_TICKS:
            problems.append(Problem(motor, "never moved: move it through its full range"))
        elif span.span < min_span_ticks:
            problems.append(Problem(motor, f"{where} is only {span.span} ticks: move it all the way to both ends"))
    return problems


def describe(differences: Sequence[Difference]) -> list[str]:
    return [f"{d.motor}.{d.key}: {d.before} -> {d.after}" for d in differences]
