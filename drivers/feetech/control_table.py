"""STS3215 control table, shared by the driver and the bus simulator so both speak the same registers."""

from __future__ import annotations

from dataclasses import dataclass

STS3215_MODEL_NUMBER = 777
RESOLUTION_TICKS = 4096
"""Encoder ticks per turn; positions are 0..4095."""

BROADCAST_ID = 0xFE
"""Instructions to this id reach every servo; only a PING is answered, by each servo with its own id."""

# Instructions (FF FF ID LEN INST PARAMS CHK).
INST_PING = 0x01
INST_READ = 0x02
INST_WRITE = 0x03
INST_REG_WRITE = 0x04
INST_ACTION = 0x05
INST_SYNC_READ = 0x82
INST_SYNC_WRITE = 0x83

# Status error byte bits.
ERR_VOLTAGE = 0x01
ERR_ANGLE = 0x02
ERR_OVERHEAT = 0x04
ERR_OVERCURRENT = 0x08
ERR_OVERLOAD = 0x20

ERROR_BITS: dict[int, tuple[str, str]] = {
    ERR_VOLTAGE: ("input voltage error", "check the power supply voltage (5 V or 12 V to match the servos)"),
    ERR_ANGLE: ("angle sensor error", "the magnetic encoder reports a fault; the servo may need replacing"),
    ERR_OVERHEAT: ("overheating", "let the servo cool down and reduce its load"),
    ERR_OVERCURRENT: ("overcurrent", "the joint is blocked or the load is too high; free the joint"),
    ERR_OVERLOAD: ("overload", "the joint is blocked or carries too much load; free it and let it cool"),
}


@dataclass(frozen=True)
class Register:
    """One control-table entry: address, size in bytes, and sign bit for sign-magnitude values."""

    name: str
    address: int
    size: int
    sign_bit: int | None = None
    eeprom: bool = False
    writable: bool = True


_REGISTERS = (
    Register("Firmware_Major_Version", 0, 1, eeprom=True, writable=False),
    Register("Firmware_Minor_Version", 1, 1, eeprom=True, writable=False),
    Register("Model_Number", 3, 2, eeprom=True, writable=False),
    Register("ID", 5, 1, eeprom=True),
    Register("Baud_Rate", 6, 1, eeprom=True),
    Register("Return_Delay_Time", 7, 1, eeprom=True),
    Register("Response_Status_Level", 8, 1, eeprom=True),
    Register("Min_Position_Limit", 9, 2, eeprom=True),
    Register("Max_Position_Limit", 11, 2, eeprom=True),
    Register("Max_Temperature_Limit", 13, 1, eeprom=True),
    Register("Max_Voltage_Limit", 14, 1, eeprom=True),
    Register("Min_Voltage_Limit", 15, 1, eeprom=True),
    Register("Max_Torque_Limit", 16, 2, eeprom=True),
    Register("Phase", 18, 1, eeprom=True),
    Register("Unloading_Condition", 19, 1, eeprom=True),
    Register("LED_Alarm_Condition", 20, 1, eeprom=True),
    Register("P_Coefficient", 21, 1, eeprom=True),
    Register("D_Coefficient", 22, 1, eeprom=True),
    Register("I_Coefficient", 23, 1, eeprom=True),
    Register("Minimum_Startup_Force", 24, 2, eeprom=True),
    Register("CW_Dead_Zone", 26, 1, eeprom=True),
    Register("CCW_Dead_Zone", 27, 1, eeprom=True),
    Register("Protection_Current", 28, 2, eeprom=True),
    Register("Angular_Resolution", 30, 1, eeprom=True),
    Register("Homing_Offset", 31, 2, sign_bit=11, eeprom=True),
    Register("Operating_Mode", 33, 1, eeprom=True),
    Register("Protective_Torque", 34, 1, eeprom=True),
    Register("Protection_Time", 35, 1, eeprom=True),
    Register("Overload_Torque", 36, 1, eeprom=True),
    Register("Velocity_closed_loop_P_proportional_coefficient", 37, 1, eeprom=True),
    Register("Over_Current_Protection_Time", 38, 1, eeprom=True),
    Register("Velocity_closed_loop_I_integral_coefficient", 39, 1, eeprom=True),
    Register("Torque_Enable", 40, 1),
    Register("Acceleration", 41, 1),
    Register("Goal_Position", 42, 2, sign_bit=15),
    Register("Goal_Time", 44, 2),
    Register("Goal_Velocity", 46, 2, sign_bit=15),
    Register("Torque_Limit", 48, 2),
    Register("Lock", 55, 1),
    Register("Present_Position", 56, 2, sign_bit=15, writable=False),
    Register("Present_Velocity", 58, 2, sign_bit=15, writable=False),
    Register("Present_Load", 60, 2, sign_bit=10, writable=False),
    Register("Present_Voltage", 62, 1, writable=False),
    Register("Present_Temperature", 63, 1, writable=False),
    Register("Status", 65, 1, writable=False),
    Register("Moving", 66, 1, writable=False),
    Register("Present_Current", 69, 2, sign_bit=15, writable=False),
    Register("Maximum_Acceleration", 85, 1),
)

REGISTERS: dict[str, Register] = {r.name: r for r in _REGISTERS}
EEPROM_END_ADDRESS = 40
"""Addresses below this live in EEPROM: writes need Lock=0 first."""
MEMORY_SIZE = 86

BAUD_RATE_CODES: dict[int, int] = {0: 1_000_000, 1: 500_000, 2: 250_000, 3: 128_000, 4: 115_200, 5: 57_600, 6: 38_400, 7: 19_200}
"""Baud_Rate register code to bits/s, as LeRobot writes them (codes 5..7 differ in other vendor tables)."""

OPERATING_MODE_POSITION = 0


def encode_sign_magnitude(value: int, sign_bit: int) -> int:
    """Encode a signed integer as Feetech sign-magnitude; |value| must fit below the sign bit."""
    magnitude = abs(value)
    if magnitude >= 1 << sign_bit:
        raise ValueError(f"magnitude {magnitude} exceeds {(1 << sign_bit) - 1} (sign bit {sign_bit})")
    return magnitude | (1 << sign_bit) if value < 0 else magnitude


def decode_sign_magnitude(raw: int, sign_bit: int) -> int:
    """Decode a Feetech sign-magnitude register value to a signed integer."""
    magnitude = raw & ((1 << sign_bit) - 1)
    return -magnitude if raw & (1 << sign_bit) else magnitude


def to_wire(register: Register, value: int) -> int:
    """Signed engineering value to the unsigned register value sent on the bus."""
    if register.sign_bit is not None:
        return encode_sign_magnitude(value, register.sign_bit)
    if not 0 <= value < 1 << (8 * register.size):
        raise ValueError(f"{register.name} value {value} does not fit in {register.size} unsigned byte(s)")
    return value


def from_wire(register: Register, raw: int) -> int:
    """Unsigned register value read from the bus to its signed engineering value."""
    return decode_sign_magnitude(raw, register.sign_bit) if register.sign_bit is not None else raw


def checksum(body: bytes | bytearray | list[int]) -> int:
    """Feetech checksum: inverted low byte of the sum of ID, LEN, INST/ERR and params."""
    return ~sum(body) & 0xFF
