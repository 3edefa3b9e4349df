"""The Feetech side of calibrating: STS3215 registers, sign-magnitude offsets and EEPROM writes that are
read back before anyone relies on them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from calibration.procedure import Encoder, MissingMotor, MotorReading
from calibration.store import CalibrationError, calibration_root, find_calibration_file
from drivers.feetech.bus import FeetechBus, MotorFaultError, MotorNotRespondingError
from drivers.feetech.config import FeetechArmConfig
from drivers.feetech.control_table import ERROR_BITS, REGISTERS, RESOLUTION_TICKS


def _largest_magnitude(register: str) -> int:
    """The largest magnitude a sign-magnitude register holds."""
    sign_bit = REGISTERS[register].sign_bit
    if sign_bit is None:
        raise TypeError(f"{register} is not a sign-magnitude register")
    return (1 << sign_bit) - 1


FEETECH_ENCODER = Encoder(resolution_ticks=RESOLUTION_TICKS, max_homing_offset=_largest_magnitude("Homing_Offset"), offset_sign=1)
CALIBRATION_REGISTERS = ("Homing_Offset", "Min_Position_Limit", "Max_Position_Limit")
_LIVE = (REGISTERS["Present_Position"], REGISTERS["Status"])
"""One sync read from Present_Position to Status covers position, load, voltage, temperature and error bits."""


def calibration_path(config: FeetechArmConfig, calibration_dir: Path | None = None) -> Path:
    """Where an arm's calibration is: `calibration_dir`, the config's folder, the file LeRobot already has
    for this id, or LeRobot's default location for this arm's kind and id (where a new one goes)."""
    folder = calibration_dir or config.calibration_dir
    if folder is not None:
        return folder / f"{config.id}.json"
    model = config.arm_model
    root = calibration_root()
    found = find_calibration_file(root, model.calibration_kind, model.calibration_names, config.id)
    return found or root / model.calibration_kind / model.calibration_names[0] / f"{config.id}.json"


class FeetechCalibrationBus:
    """A FeetechBus seen by the calibration procedure."""

    encoder = FEETECH_ENCODER

    def __init__(self, bus: FeetechBus) -> None:
        self.bus = bus
        self.port = bus.port

    @property
    def motor_ids(self) -> dict[str, int]:
        return {m.name: m.id for m in self.bus.motors}

    def missing_motors(self) -> list[MissingMotor]:
        try:
            self.bus.check_motors()
        except MotorNotRespondingError as exc:
            by_id = {i: n for n, i in self.motor_ids.items()}
            return [MissingMotor(by_id[i], i, str(exc)) for i in exc.motor_ids]
        return []

    def release_torque(self) -> None:
        self.bus.sync_write("Torque_Enable", dict.fromkeys(self.motor_ids, 0))

    def read(self) -> dict[str, MotorReading]:
        """Every motor's live values; a motor answering with a fault is read alone, so the others still show."""
        try:
            return {name: _reading(values) for name, values in self.bus.sync_read_span(*_LIVE).items()}
        except MotorFaultError:
            return {name: self._read_one(name) for name in self.motor_ids}

    def held(self) -> dict[str, tuple[int, int, int]]:
        values = {register: self.bus.sync_read(register) for register in CALIBRATION_REGISTERS}
        return {name: tuple(values[r][name] for r in CALIBRATION_REGISTERS) for name in self.motor_ids}  # type: ignore[misc]

    def write(self, values: Mapping[str, tuple[int, int, int]]) -> None:
        """Torque off, unlock, write, lock; then read everything back: an EEPROM write that did not take
        (a brown-out, a locked motor) is an error here, not a wrong position later."""
        names = list(values)
        with self.bus.eeprom_unlocked(names):
            for name, triple in values.items():
                for register, value in zip(CALIBRATION_REGISTERS, triple, strict=True):
                    self.bus.write(register, name, value)
        held = self.held()
        wrong = [
            f"motor {self.motor_ids[n]} ({n}) {r} holds {h} after writing {w}"
            for n, triple in values.items()
            for r, w, h in zip(CALIBRATION_REGISTERS, triple, held[n], strict=True)
            if w != h
        ]
        unlocked = [n for n, lock in self.bus.sync_read("Lock", names).items() if lock != 1]
        if wrong or unlocked:
            detail = "; ".join(wrong + [f"{n}: EEPROM still unlocked" for n in unlocked])
            raise CalibrationError(f"EEPROM write on {self.port} did not take: {detail}: check the power supply and retry")

    def _read_one(self, name: str) -> MotorReading:
        try:
            return _reading(self.bus.sync_read_span(*_LIVE, [name])[name])
        except MotorFaultError as exc:
            return MotorReading(position=None, flags=_flags(exc.error_byte))


def _reading(values: Mapping[str, int]) -> MotorReading:
    return MotorReading(
        position=values["Present_Position"],
        temperature_c=float(values["Present_Temperature"]),
        voltage_v=values["Present_Voltage"] / 10,
        load_percent=values["Present_Load"] / 10,
        flags=_flags(values["Status"]),
    )


def _flags(error_byte: int) -> tuple[str, ...]:
    return tuple(text for bit, (text, _) in ERROR_BITS.items() if error_byte & bit)
