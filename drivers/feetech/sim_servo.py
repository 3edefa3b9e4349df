"""One simulated STS3215: register memory, lazily integrated motion and injectable faults.

The bus simulator serves these over a pseudo-terminal, so clients exercise their real protocol code.
"""

from __future__ import annotations

import collections
import enum
import threading
import time
from collections.abc import Callable

from drivers.feetech.control_table import (
    BAUD_RATE_CODES,
    EEPROM_END_ADDRESS,
    ERR_OVERLOAD,
    MEMORY_SIZE,
    REGISTERS,
    RESOLUTION_TICKS,
    STS3215_MODEL_NUMBER,
    Register,
    from_wire,
    to_wire,
)

Trajectory = Callable[[float], float]
"""Clock time in seconds to a position in ticks: present coordinates, or shaft ticks when followed as physical."""

OVERLOAD_LOAD = 1000
"""Present_Load magnitude reported while overloaded (1000 = 100 % of rated torque)."""

_DEFAULTS: dict[str, int] = {
    "Firmware_Major_Version": 3,
    "Firmware_Minor_Version": 10,
    "Model_Number": STS3215_MODEL_NUMBER,
    "Baud_Rate": 0,
    "Return_Delay_Time": 0,
    "Response_Status_Level": 1,
    "Min_Position_Limit": 0,
    "Max_Position_Limit": RESOLUTION_TICKS - 1,
    "Max_Temperature_Limit": 70,
    "Max_Voltage_Limit": 140,
    "Min_Voltage_Limit": 40,
    "Max_Torque_Limit": 1000,
    "Unloading_Condition": 44,
    "LED_Alarm_Condition": 47,
    "P_Coefficient": 32,
    "D_Coefficient": 32,
    "I_Coefficient": 0,
    "Minimum_Startup_Force": 16,
    "CW_Dead_Zone": 1,
    "CCW_Dead_Zone": 1,
    "Protection_Current": 500,
    "Angular_Resolution": 1,
    "Protective_Torque": 20,
    "Protection_Time": 200,
    "Overload_Torque": 80,
    "Torque_Limit": 1000,
    "Lock": 1,
    "Present_Voltage": 120,
    "Present_Temperature": 30,
}


class Fault(enum.Enum):
    """Failures a test can inject to see how a client copes."""

    NO_REPLY = "no_reply"
    """The servo is absent: it ignores every packet."""
    CORRUPT_CHECKSUM = "corrupt_checksum"
    """Replies carry a wrong checksum; writes are still applied."""
    OVERLOAD = "overload"
    """Status replies carry ERR_OVERLOAD and the servo stops driving toward its goal."""
    LATE_REPLY = "late_reply"
    """Replies arrive LATE_REPLY_S late, after a client's timeout, as behind a slow USB adapter."""


LATE_REPLY_S = 0.06
"""Past a bus's reply timeout (5 ms by default; configs that raise it stay well below this)."""


def _owner_by_address() -> dict[int, Register]:
    """Map every byte address to the register covering it, so writes can be filtered byte by byte."""
    return {register.address + i: register for register in REGISTERS.values() for i in range(register.size)}


_OWNER = _owner_by_address()


class SimServo:
    """A servo whose registers behave like an STS3215's; thread-safe, motion integrated on access."""

    def __init__(
        self,
        servo_id: int,
        *,
        physical_ticks: float = 2048.0,
        max_speed_ticks_per_s: float = 3400.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.RLock()
        self._clock = clock
        self._max_speed_ticks_per_s = max_speed_ticks_per_s
        self._physical_ticks = float(physical_ticks)
        self._velocity_ticks_per_s = 0.0
        self._last_update_s = clock()
        self._trajectory: Trajectory | None = None
        self._trajectory_is_physical = False
        self._pending_write: tuple[int, bytes] | None = None
        self._faults: set[Fault] = set()
        self.writes: collections.Counter[str] = collections.Counter()
        """Register name -> WRITE instructions received that start at it (applied or not): lets tests
        prove what a client did or did not command."""
        self._memory = bytearray(MEMORY_SIZE)
        for name, value in _DEFAULTS.items():
            self._set(name, value)
        self._set("ID", servo_id)
        self._set("Goal_Position", round(self._present_ticks()) % RESOLUTION_TICKS)
        self._refresh_present_registers()

    @property
    def id(self) -> int:
        with self._lock:
            return self._get("ID")

    @property
    def baud_code(self) -> int:
        with self._lock:
            return self._get("Baud_Rate")

    @property
    def baud_bps(self) -> int | None:
        """Line speed the servo listens at, None for a code outside the table (it then hears nobody)."""
        return BAUD_RATE_CODES.get(self.baud_code)

    @property
    def response_status_level(self) -> int:
        with self._lock:
            return self._get("Response_Status_Level")

    def read(self, address: int, length: int) -> bytes:
        """Register bytes as a READ returns them; bytes beyond the table read as zero."""
        with self._lock:
            self._update()
            self._refresh_present_registers()
            data = bytes(self._memory[address : address + length])
            return data + bytes(length - len(data))

    def write(self, address: int, data: bytes) -> None:
        """Apply a WRITE byte by byte: read-only bytes are ignored, EEPROM bytes only while unlocked."""
        with self._lock:
            owner = _OWNER.get(address)
            self.writes[owner.name if owner is not None else f"address {address}"] += 1
            self._update()
            eeprom_unlocked = self._get("Lock") == 0
            for offset, value in enumerate(data):
                byte_address = address + offset
                register = _OWNER.get(byte_address)
                if byte_address >= MEMORY_SIZE or (register is not None and not register.writable):
                    continue
                if byte_address < EEPROM_END_ADDRESS and not eeprom_unlocked:
                    continue
                self._memory[byte_address] = value

    def reg_write(self, address: int, data: bytes) -> None:
        """Hold a write until ACTION, so several servos can start moving together."""
        with self._lock:
            self._pending_write = (address, bytes(data))

    def action(self) -> None:
        """Apply the write held by REG_WRITE, if any."""
        with self._lock:
            if self._pending_write is not None:
                self.write(*self._pending_write)
                self._pending_write = None

    def error_byte(self) -> int:
        """Error bits every status packet carries."""
        with self._lock:
            return ERR_OVERLOAD if Fault.OVERLOAD in self._faults else 0

    def inject(self, fault: Fault) -> None:
        with self._lock:
            self._update()
            self._faults.add(fault)

    def clear(self, fault: Fault | None = None) -> None:
        """Clear one fault, or all of them when fault is None."""
        with self._lock:
            self._update()
            if fault is None:
                self._faults.clear()
            else:
                self._faults.discard(fault)

    def has_fault(self, fault: Fault) -> bool:
        with self._lock:
            return fault in self._faults

    def set_present_position(self, ticks: float) -> bool:
        """Move the servo by hand (present coordinates); ignored while torque holds it. Stops follow()."""
        with self._lock:
            return self.set_physical_position(self._homing_offset_ticks() + ticks)

    def set_physical_position(self, ticks: float) -> bool:
        """Move the servo by hand to where its shaft is, whatever offset it holds (what an operator's hand
        does); ignored while torque holds it. Stops follow()."""
        with self._lock:
            self._update()
            if self._torque_enabled():
                return False
            self._trajectory = None
            self._physical_ticks = float(ticks)
            self._velocity_ticks_per_s = 0.0
            return True

    def present_ticks(self) -> float:
        """Where the servo is now (present coordinates), for observers such as a simulated camera."""
        with self._lock:
            self._update()
            return self._present_ticks()

    def follow(self, trajectory: Trajectory | None, *, physical: bool = False) -> None:
        """Let trajectory(t) move the servo by hand; it only takes effect while torque is off. With
        `physical`, trajectory gives shaft positions, unaffected by offsets written meanwhile."""
        with self._lock:
            self._update()
            self._trajectory = trajectory
            self._trajectory_is_physical = physical

    def _get(self, name: str) -> int:
        """Register value decoded from its wire form (sign-magnitude where the table says so)."""
        register = REGISTERS[name]
        raw = int.from_bytes(self._memory[register.address : register.address + register.size], "little")
        return from_wire(register, raw)

    def _set(self, name: str, value: int) -> None:
        register = REGISTERS[name]
        raw = to_wire(register, value)
        self._memory[register.address : register.address + register.size] = raw.to_bytes(register.size, "little")

    def _torque_enabled(self) -> bool:
        return self._get("Torque_Enable") == 1

    def _homing_offset_ticks(self) -> int:
        return self._get("Homing_Offset")

    def _present_ticks(self) -> float:
        return (self._physical_ticks - self._homing_offset_ticks()) % RESOLUTION_TICKS

    def _goal_ticks(self) -> float:
        goal = self._get("Goal_Position")
        low, high = self._get("Min_Position_Limit"), self._get("Max_Position_Limit")
        return min(max(goal, low), high) if high > low else goal

    def _speed_limit_ticks_per_s(self) -> float:
        goal_velocity = self._get("Goal_Velocity")
        return min(self._max_speed_ticks_per_s, goal_velocity) if goal_velocity > 0 else self._max_speed_ticks_per_s

    def _update(self) -> None:
        """Advance the motion to the current clock time; called on every access instead of a physics thread."""
        now_s = self._clock()
        dt_s = now_s - self._last_update_s
        if dt_s <= 0:
            return
        self._last_update_s = now_s
        before_ticks = self._physical_ticks
        if self._torque_enabled():
            if Fault.OVERLOAD not in self._faults:
                error_ticks = self._goal_ticks() - self._present_ticks()
                max_step_ticks = self._speed_limit_ticks_per_s() * dt_s
                self._physical_ticks += max(-max_step_ticks, min(max_step_ticks, error_ticks))
        elif self._trajectory is not None:
            origin = 0 if self._trajectory_is_physical else self._homing_offset_ticks()
            self._physical_ticks = origin + self._trajectory(now_s)
        self._velocity_ticks_per_s = (self._physical_ticks - before_ticks) / dt_s

    def _refresh_present_registers(self) -> None:
        velocity_ticks_per_s = max(-32767, min(32767, round(self._velocity_ticks_per_s)))
        overloaded = Fault.OVERLOAD in self._faults
        self._set("Present_Position", round(self._present_ticks()) % RESOLUTION_TICKS)
        self._set("Present_Velocity", velocity_ticks_per_s)
        self._set("Present_Load", OVERLOAD_LOAD if overloaded else 0)
        self._set("Moving", int(velocity_ticks_per_s != 0))
        self._set("Status", self.error_byte())
