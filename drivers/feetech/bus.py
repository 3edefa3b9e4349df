"""A Feetech servo bus on the vendor SDK (scservo_sdk): sync reads and writes by register name, bounded
timeouts, retries, and errors that say which motor, which port and what to check."""

from __future__ import annotations

import contextlib
import logging
import select
import termios
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import scservo_sdk as scs
import serial

from drivers.feetech.control_table import (
    BROADCAST_ID,
    ERROR_BITS,
    REGISTERS,
    STS3215_MODEL_NUMBER,
    Register,
    checksum,
    from_wire,
    to_wire,
)
from robot_runtime.ports import DIALOUT_FIX
from robot_runtime.robot import ArmError

log = logging.getLogger(__name__)

SILENT_BEFORE_MISSING_S = 0.2
"""A motor is reported missing only once it has ignored pings this long. A busy computer misses a reply
window now and then (beside two CPU hogs a request reached the bus up to 60 ms late); a motor that is
really gone never answers, and saying so 0.2 s later costs nothing."""
USB_SERIAL_SYSFS = Path("/sys/bus/usb-serial/devices")
"""Where Linux exposes FTDI adapters' latency timer (default 16 ms)."""

SDK_BAUD_RATES = (4800, 9600, 14400, 19200, 38400, 57600, 115200, 128000, 250000, 500000, 1000000)

PING_STATUS_BYTES = 6
"""FF FF ID LEN ERR CHK: the status packet that answers a PING."""
BROADCAST_PING_REPLIES = 12
"""A broadcast ping listens long enough for this many answers back to back (two arms' worth)."""
BROADCAST_PING_STAGGER_MS = 3.0 * 20
"""Servos may delay a broadcast-ping answer by about 3 ms per id (Dynamixel does; LeRobot's Feetech bus
waits as if they did): the window covers ids up to 20, far beyond an arm's."""


class BusError(ArmError):
    """The bus or a motor on it failed; the message names the port and motor and says what to check."""


class MotorNotRespondingError(BusError):
    def __init__(self, message: str, motor_ids: tuple[int, ...]) -> None:
        super().__init__(message)
        self.motor_ids = motor_ids


class MotorFaultError(BusError):
    """A motor answered with its error byte set (overload, overheating, voltage...)."""

    def __init__(self, message: str, motor_id: int, error_byte: int) -> None:
        super().__init__(message)
        self.motor_id = motor_id
        self.error_byte = error_byte


@dataclass(frozen=True)
class PingScan:
    """What answered one broadcast ping at one baud rate."""

    baud_bps: int
    ids: tuple[int, ...]
    """One entry per status packet, in arrival order: two motors sharing an id appear twice."""
    garbled: bool
    """Bytes came back that formed no valid status packet, as when motors answer at the same time."""


@dataclass(frozen=True)
class Motor:
    name: str
    id: int
    model_number: int = STS3215_MODEL_NUMBER


class BoundedPortHandler(scs.PortHandler):
    """The SDK's port with three changes: the reply timeout is ours (the SDK's is derived from a 16 ms
    latency timer, 34 ms per missing reply), waiting for bytes blocks in select() instead of spinning
    a core, and stale input is dropped before every instruction."""

    def __init__(self, port_name: str, reply_timeout_ms: float) -> None:
        super().__init__(port_name)
        self.reply_timeout_ms = reply_timeout_ms

    def setPacketTimeout(self, packet_length: int) -> None:  # the SDK's name
        self.packet_start_time = self.getCurrentTime()
        self.packet_timeout = self.tx_time_per_byte * packet_length + self.reply_timeout_ms

    def readPort(self, length: int) -> bytes:  # the SDK's name
        remaining_s = max(0.0, (self.packet_timeout - self.getTimeSinceStart()) / 1e3)
        select.select([self.ser.fileno()], [], [], remaining_s)
        return self.ser.read(length)

    def clearPort(self) -> None:  # the SDK's name
        """Called by the SDK before every instruction: also drop unread input, so a reply that came
        after an earlier timeout is never taken for the answer to this one."""
        self.ser.reset_input_buffer()
        super().clearPort()

    def drain(self, quiet_s: float, limit_s: float) -> None:
        """After a failed exchange, discard bytes until the line has been quiet for `quiet_s`."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            readable, _, _ = select.select([self.ser.fileno()], [], [], quiet_s)
            if not readable:
                break
            self.ser.read(self.ser.in_waiting or 1)
        self.ser.reset_input_buffer()


class FeetechBus:
    """One serial port with a chain of Feetech servos. Thread-safe. A call waits at most
    `(retries + 1) * reply_timeout_ms` plus transfer time; one that fails then pings the other motors
    (same bound each) so its error can name every motor that is missing."""

    def __init__(
        self,
        port: str,
        motors: Sequence[Motor],
        *,
        baudrate: int = 1_000_000,
        reply_timeout_ms: float = 5.0,
        retries: int = 1,
    ) -> None:
        _check_sdk_baud(baudrate)
        self.port = port
        self.motors = tuple(sorted(motors, key=lambda m: m.id))
        self.baudrate = baudrate
        self.retries = retries
        self._by_name = {m.name: m for m in self.motors}
        self._by_id = {m.id: m for m in self.motors}
        self._port = BoundedPortHandler(port, reply_timeout_ms)
        self._packets = scs.PacketHandler(0)
        self._lock = threading.Lock()
        self._cut_short = False
        """Whether the last exchange ended in an exception (Ctrl-C during a read): its replies may come late."""
        self.is_open = False

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        try:
            ok = self._port.openPort() and self._port.setBaudRate(self.baudrate)
        except serial.SerialException as exc:
            raise BusError(_open_hint(self.port, exc)) from exc
        if not ok:
            raise BusError(f"cannot set {self.baudrate} baud on {self.port}")
        self.is_open = True
        try:
            self._check_adapter_latency()
        except BusError:
            self.close()
            raise

    def _check_adapter_latency(self) -> None:
        """An FTDI adapter holds replies back for its latency timer; longer than our reply timeout,
        every read would time out and look like a missing motor."""
        device = Path(self.port).resolve().name
        timer = USB_SERIAL_SYSFS / device / "latency_timer"
        if not timer.is_file():
            return
        latency_ms = int(timer.read_text().strip())
        if latency_ms >= self._port.reply_timeout_ms:
            raise BusError(
                f"the USB adapter of {self.port} delays replies by {latency_ms} ms (its latency timer), not less than "
                f"reply_timeout_ms={self._port.reply_timeout_ms:g}: set it to 1 ms with "
                f"`echo 1 | sudo tee {timer}` (or a udev rule), or raise reply_timeout_ms in the robot config"
            )

    def close(self) -> None:
        if self.is_open:
            self._port.closePort()
            self.is_open = False

    # -- finding motors ----------------------------------------------------------------------

    def set_baudrate(self, baud_bps: int) -> None:
        """Switch the open port to another line speed, to reach motors set to it."""
        _check_sdk_baud(baud_bps)
        with self._exchange():
            if not self._port.setBaudRate(baud_bps):  # the SDK reopens the port at the new speed
                raise BusError(f"cannot set {baud_bps} baud on {self.port}")
        self.baudrate = baud_bps

    def ping(self, motor_id: int) -> bool:
        """Whether a motor with this id answers at the current baud rate (with retries)."""
        with self._exchange():
            for _ in range(self.retries + 1):
                try:
                    _, result, _ = self._packets.ping(self._port, motor_id)
                except IndexError:  # a stray short reply taken for the model-number read
                    result = scs.COMM_RX_CORRUPT
                if result == scs.COMM_SUCCESS:
                    return True
                self._recover()
        return False

    def broadcast_ping(self) -> PingScan:
        """PING every id at once and collect each status packet that arrives within the listening window:
        how a motor whose id is unknown is found. The SDK has no broadcast ping for protocol 0. Instead of
        resending (a late answer would then be counted twice), it listens as long as a call with retries waits."""
        packet = [0] * PING_STATUS_BYTES
        packet[scs.PKT_ID] = BROADCAST_ID
        packet[scs.PKT_LENGTH] = 2
        packet[scs.PKT_INSTRUCTION] = scs.INST_PING
        transfer_ms = self._port.tx_time_per_byte * PING_STATUS_BYTES * BROADCAST_PING_REPLIES
        window_ms = (self.retries + 1) * self._port.reply_timeout_ms + transfer_ms + BROADCAST_PING_STAGGER_MS
        received = bytearray()
        with self._exchange():
            self._sent(self._packets.txPacket(self._port, packet), "a broadcast ping")
            self._port.setPacketTimeoutMillis(window_ms)
            while not self._port.isPacketTimeout():  # readPort blocks until bytes come or the window ends
                received += self._port.readPort(PING_STATUS_BYTES * BROADCAST_PING_REPLIES)
        ids, garbled = _status_ids(bytes(received))
        return PingScan(self.baudrate, ids, garbled)

    def check_motors(self) -> None:
        """Ping every motor and check its model; raise naming every missing or unexpected motor."""
        missing = self.silent([m.id for m in self.motors])
        if missing:
            raise self._not_responding(missing, "ping")
        for motor in self.motors:
            model = self.read("Model_Number", motor.name)
            if model != motor.model_number:
                raise BusError(
                    f"motor {motor.id} ({motor.name}) on {self.port} reports model {model}, expected "
                    f"{motor.model_number}: check that the right arm is on this port and the motor IDs are set"
                )

    # -- register access ---------------------------------------------------------------------

    def sync_read(self, register: str, names: Sequence[str] | None = None) -> dict[str, int]:
        reg = REGISTERS[register]
        return {name: values[register] for name, values in self.sync_read_span(reg, reg, names).items()}

    def sync_read_span(self, first: Register, last: Register, names: Sequence[str] | None = None) -> dict[str, dict[str, int]]:
        """Read every register from `first` to `last` inclusive in one SYNC_READ, decoded per motor."""
        motors = self._motors(names)
        length = last.address + last.size - first.address
        ids = [m.id for m in motors]
        raw = self._with_retries(lambda: self._sync_read_once(first.address, length, ids), ids, "sync read")
        span = [r for r in REGISTERS.values() if first.address <= r.address and r.address + r.size <= first.address + length]
        return {
            self._by_id[i].name: {r.name: from_wire(r, _le(data, r.address - first.address, r.size)) for r in span}
            for i, data in raw.items()
        }

    def sync_write(self, register: str, values: dict[str, int]) -> None:
        """Write one register on several motors in one SYNC_WRITE. Servos do not answer a sync write,
        so this works even when a motor is missing: use it for the stop path."""
        reg = REGISTERS[register]
        group = scs.GroupSyncWrite(self._port, self._packets, reg.address, reg.size)
        for name, value in values.items():
            group.addParam(self._motor(name).id, list(to_wire(reg, value).to_bytes(reg.size, "little")))
        with self._exchange():
            self._sent(group.txPacket(), f"{register} to {', '.join(values)}")

    def read(self, register: str, name: str) -> int:
        return self.read_by_id(register, self._motor(name).id)

    def read_by_id(self, register: str, motor_id: int) -> int:
        """Like read(), for a motor addressed by id, such as one whose id is being set."""
        reg = REGISTERS[register]

        def once() -> dict[int, bytes]:
            self._check(motor_id, self._packets.readTx(self._port, motor_id, reg.address, reg.size), 0)
            return {motor_id: self._reply(motor_id, reg.size)}

        data = self._with_retries(once, [motor_id], f"read of {register}")[motor_id]
        return from_wire(reg, _le(data, 0, reg.size))

    def write(self, register: str, name: str, value: int) -> None:
        """Write one register and wait for the motor's acknowledgement."""
        self.write_by_id(register, self._motor(name).id, value)

    def write_by_id(self, register: str, motor_id: int, value: int) -> None:
        """Like write(), for a motor addressed by id, such as one whose id is being set."""
        reg = REGISTERS[register]
        payload = list(to_wire(reg, value).to_bytes(reg.size, "little"))

        def once() -> dict[int, bytes]:
            result, error = self._packets.writeTxRx(self._port, motor_id, reg.address, reg.size, payload)
            self._check(motor_id, result, error)
            return {}

        self._with_retries(once, [motor_id], f"write of {register}")

    @contextlib.contextmanager
    def eeprom_unlocked(self, names: Sequence[str] | None = None) -> Iterator[None]:
        """Torque off and EEPROM unlocked inside the block, locked again after it; torque stays off."""
        motors = self._motors(names)
        self.sync_write("Torque_Enable", {m.name: 0 for m in motors})
        self.sync_write("Lock", {m.name: 0 for m in motors})
        try:
            yield
        finally:
            self.sync_write("Lock", {m.name: 1 for m in motors})

    @contextlib.contextmanager
    def torque_disabled(self, names: Sequence[str] | None = None) -> Iterator[None]:
        """Like eeprom_unlocked, and torque back on after the block."""
        with self.eeprom_unlocked(names):
            yield
        self.sync_write("Torque_Enable", {m.name: 1 for m in self._motors(names)})

    # -- internals ---------------------------------------------------------------------------

    def _sync_read_once(self, address: int, length: int, ids: list[int]) -> dict[int, bytes]:
        # GroupSyncRead drops each reply's error byte, so the reply loop uses the SDK's primitives.
        self._check(ids[0], self._packets.syncReadTx(self._port, address, length, ids, len(ids)), 0)
        return {motor_id: self._reply(motor_id, length) for motor_id in ids}

    def _reply(self, motor_id: int, length: int) -> bytes:
        """The data of the motor's next status packet. The SDK's readers slice out `length` bytes whatever the
        packet holds, so a late reply to another read (two position bytes for a one-byte torque read) would
        pass; its declared length must match."""
        while True:
            packet, result = self._packets.rxPacket(self._port)
            if result != scs.COMM_SUCCESS or packet[scs.PKT_ID] == motor_id:
                break
        self._check(motor_id, result, packet[scs.PKT_ERROR] if result == scs.COMM_SUCCESS else 0)
        if packet[scs.PKT_LENGTH] != length + 2:  # error byte, data, checksum
            raise _Failure(motor_id, scs.COMM_RX_CORRUPT, 0)
        return bytes(packet[scs.PKT_PARAMETER0 : scs.PKT_PARAMETER0 + length])

    def _with_retries(self, once, ids: list[int], what: str):
        """`once` with the bus's retries. When they all time out, every motor is pinged: a missing one is
        named; when all of them answer, the replies were late, not lost (a busy computer delays the
        serial port's input), so the call gets one more round of tries before it reports that."""
        failure: _Failure | None = None
        corrupt: _Failure | None = None
        for _round in range(2):
            for _ in range(self.retries + 1):
                with self._exchange():
                    try:
                        return once()
                    except (_Failure, IndexError) as exc:  # IndexError: the SDK parsed a reply too short for it
                        failure = exc if isinstance(exc, _Failure) else _Failure(ids[0], scs.COMM_RX_CORRUPT, 0)
                        self._recover()
                        if failure.error_byte:
                            break  # the motor answered: retrying will not clear its fault
                        if failure.result == scs.COMM_RX_CORRUPT:
                            corrupt = failure  # a later try that times out (a busy computer) does not hide it
            assert failure is not None
            if failure.error_byte:
                raise self._fault(failure.motor_id, failure.error_byte)
            if corrupt is not None:
                raise BusError(
                    f"{self._label(corrupt.motor_id)} sent corrupted replies on {self.port} ({what}, {self.retries + 1} tries): "
                    f"check the cable at motor {corrupt.motor_id}, that the baud rate is {self.baudrate}, "
                    "and that no other program uses the port"
                )
            missing = self.silent(ids)
            if missing:
                raise self._not_responding(missing, what)
        assert failure is not None
        raise BusError(
            f"{self._label(failure.motor_id)} on {self.port} answers pings but its replies ({what}) came later than "
            f"reply_timeout_ms={self._port.reply_timeout_ms:g} in {2 * (self.retries + 1)} tries: the computer may be too busy "
            "to read the port in time, or the USB adapter holds replies back (its latency timer); raise reply_timeout_ms "
            "or retries in the robot config if it happens again"
        )

    def silent(self, ids: Sequence[int]) -> tuple[int, ...]:
        """The motors that ignored every ping for SILENT_BEFORE_MISSING_S."""
        deadline_s = time.monotonic() + SILENT_BEFORE_MISSING_S
        silent = [i for i in ids if not self.ping(i)]
        while silent and time.monotonic() < deadline_s:
            silent = [i for i in silent if not self.ping(i)]
        return tuple(silent)

    def _check(self, motor_id: int, result: int, error: int) -> None:
        if result != scs.COMM_SUCCESS or error:
            raise _Failure(motor_id, result, error)

    def _recover(self) -> None:
        """Make the port usable after a failed exchange: late replies must not answer the next one."""
        self._port.is_using = False
        self._port.drain(quiet_s=0.001, limit_s=self._port.reply_timeout_ms / 1e3)

    def _not_responding(self, missing: tuple[int, ...], what: str) -> MotorNotRespondingError:
        names = ", ".join(self._label(i).removeprefix("motor ") for i in missing)
        noun = "motor" if len(missing) == 1 else "motors"
        message = f"{noun} {names} did not answer on {self.port} ({what}): {self._chain_hint(missing)}"
        return MotorNotRespondingError(message, missing)

    def _chain_hint(self, missing: tuple[int, ...]) -> str:
        """Where to look, from which motors of the chain still answer."""
        first = missing[0]
        order = [m.id for m in self.motors]
        if first not in order:  # addressed by id, not one of the arm's motors
            return f"check that it is connected and powered, and that its id is {first} and its baud rate {self.baudrate}"
        index = order.index(first)
        if any(i not in missing for i in order[index + 1 :]):
            return (
                f"motors after it still answer, so the chain is intact: check motor {first} itself "
                "(its connector, its ID and baud rate) and the power supply"
            )
        before = "the controller board" if index == 0 else f"motor {order[index - 1]}"
        return f"check the cable between {before} and motor {first} and the power supply"

    def _fault(self, motor_id: int, error_byte: int) -> MotorFaultError:
        problems = [text for bit, text in ERROR_BITS.items() if error_byte & bit]
        what = "; ".join(f"{problem} ({advice})" for problem, advice in problems) or f"error byte 0x{error_byte:02x}"
        return MotorFaultError(f"{self._label(motor_id)} on {self.port} reports {what}", motor_id, error_byte)

    def _label(self, motor_id: int) -> str:
        motor = self._by_id.get(motor_id)
        return f"motor {motor_id} ({motor.name})" if motor else f"motor {motor_id}"

    def _motor(self, name: str) -> Motor:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no motor named {name!r} on {self.port} (motors: {', '.join(self._by_name)})") from None

    def _motors(self, names: Sequence[str] | None) -> list[Motor]:
        return list(self.motors) if names is None else [self._motor(n) for n in names]

    @contextlib.contextmanager
    def _exchange(self) -> Iterator[None]:
        """One exchange at a time on the port. The lock is what keeps them apart: the SDK's own in-use flag
        stays set when an exchange is cut short (Ctrl-C during a read), and the SDK would then refuse every
        later instruction as "port busy", a refusal a write gets no reply to notice by."""
        with self._lock:
            self._port.is_using = False
            try:
                if self._cut_short:
                    self._recover()  # the replies to an exchange cut short may still be on their way
                self._cut_short = True
                yield
            except (OSError, termios.error, serial.SerialException) as exc:  # termios.error: the device went away
                raise BusError(f"serial port {self.port} failed: {exc}: check that the USB cable is still plugged in") from exc
            else:
                self._cut_short = False
            finally:
                self._port.is_using = False

    def _sent(self, result: int, what: str) -> None:
        if result != scs.COMM_SUCCESS:
            raise BusError(f"cannot send {what} on {self.port}: {self._packets.getTxRxResult(result)}")


class _Failure(Exception):
    """One failed exchange inside a retry loop (never escapes the bus)."""

    def __init__(self, motor_id: int, result: int, error_byte: int) -> None:
        super().__init__(motor_id, result, error_byte)
        self.motor_id = motor_id
        self.result = result
        self.error_byte = error_byte


def _check_sdk_baud(baud_bps: int) -> None:
    if baud_bps not in SDK_BAUD_RATES:
        raise ValueError(f"baud rate {baud_bps} is not supported by the Feetech SDK (use one of {SDK_BAUD_RATES})")


def _status_ids(data: bytes) -> tuple[tuple[int, ...], bool]:
    """Ids of the valid status packets in `data`, in order, and whether any bytes belonged to none."""
    ids: list[int] = []
    garbled = False
    rest = data
    while rest:
        start = rest.find(b"\xff\xff")
        if start < 0:
            return tuple(ids), True
        garbled |= start > 0
        rest = rest[start:]
        length = rest[3] if len(rest) > 3 else 0
        packet = rest[: 4 + length]
        if length < 2 or len(packet) < 4 + length or checksum(packet[2:-1]) != packet[-1]:
            garbled = True
            rest = rest[1:]
            continue
        ids.append(packet[2])
        rest = rest[4 + length :]
    return tuple(ids), garbled


def _le(data: bytes, offset: int, size: int) -> int:
    return int.from_bytes(data[offset : offset + size], "little")


def _open_hint(port: str, exc: serial.SerialException) -> str:
    text = str(exc)
    if "No such file" in text or ("could not open port" in text and "Errno 2" in text):
        advice = "the port does not exist: check the USB cable and the port name (ls /dev/serial/by-id/ lists attached adapters)"
    elif "Permission denied" in text or "Errno 13" in text:
        advice = f"permission denied: {DIALOUT_FIX}"
    elif "busy" in text.lower() or "Errno 16" in text:
        advice = "the port is busy: close any other program using it"
    else:
        advice = "check the USB cable and the port name in the robot config"
    return f"cannot open serial port {port}: {advice} ({text})"
