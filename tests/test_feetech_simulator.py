"""The simulated STS3215 bus, specified through the real Feetech SDK (scservo_sdk) and raw pyserial bytes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import serial
from fakes import FakeClock
from hypothesis import given, settings
from hypothesis import strategies as st
from scservo_sdk import (
    BROADCAST_ID,
    COMM_RX_CORRUPT,
    COMM_RX_TIMEOUT,
    COMM_SUCCESS,
    GroupSyncRead,
    GroupSyncWrite,
    PacketHandler,
    PortHandler,
)

from drivers.feetech.control_table import ERR_OVERLOAD, REGISTERS, from_wire, to_wire
from drivers.feetech.sim_bus import FeetechBusSimulator
from drivers.feetech.sim_servo import Fault, SimServo

REPO_ROOT = Path(__file__).resolve().parents[1]
NO_REPLY_WAIT_S = 0.05
"""How long raw-byte tests listen before concluding that nothing answered."""


@dataclass
class Bench:
    """A running simulator with the SDK connected to its pty."""

    bus: FeetechBusSimulator
    port: PortHandler
    sdk: PacketHandler

    def read(self, servo_id: int, name: str) -> int:
        """Raw register value as the SDK reads it; fails the test if the servo does not answer cleanly."""
        register = REGISTERS[name]
        read = {1: self.sdk.read1ByteTxRx, 2: self.sdk.read2ByteTxRx}[register.size]
        value, result, error = read(self.port, servo_id, register.address)
        assert result == COMM_SUCCESS, self.sdk.getTxRxResult(result)
        assert error == 0, self.sdk.getRxPacketError(error)
        return int(value)

    def write(self, servo_id: int, name: str, value: int) -> tuple[int, int]:
        """Write an engineering value (sign-magnitude applied); returns the SDK's (result, error)."""
        register = REGISTERS[name]
        write = {1: self.sdk.write1ByteTxRx, 2: self.sdk.write2ByteTxRx}[register.size]
        result, error = write(self.port, servo_id, register.address, to_wire(register, value))
        return int(result), int(error)

    def unlock_eeprom(self, servo_id: int) -> None:
        assert self.write(servo_id, "Lock", 0) == (COMM_SUCCESS, 0)

    def send_raw(self, data: bytes) -> None:
        self.port.ser.write(data)

    def receive_raw(self, length: int, timeout_s: float = 0.5) -> bytes:
        """Up to length bytes, returning early once they have all arrived."""
        received = b""
        deadline_s = time.monotonic() + timeout_s
        while len(received) < length and time.monotonic() < deadline_s:
            received += self.port.ser.read(length - len(received))
            time.sleep(0.0005)
        return received


SWITCH_INTERVAL_S = 0.0005
"""The stock SDK waits for a reply by polling the port in a loop that holds the GIL, and here the servos
answer from a thread of the same process: Python's default 5 ms switch interval would let the client's
loop starve them for several of those per exchange on a busy machine. A real servo is not in the
client's process; a short interval takes that artefact of the bench away."""


@pytest.fixture
def connect() -> Iterator[Callable[..., Bench]]:
    """Start a simulator for the given servos and open the SDK on it; always closed and stopped afterwards."""
    benches: list[Bench] = []
    switch_interval_s = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_S)

    def _connect(*servos: SimServo) -> Bench:
        bus = FeetechBusSimulator(servos)
        bench = Bench(bus, PortHandler(bus.start()), PacketHandler(0))
        benches.append(bench)
        assert bench.port.openPort()
        return bench

    try:
        yield _connect
    finally:
        for bench in benches:
            if bench.port.is_open:
                bench.port.closePort()
            bench.bus.stop()
        sys.setswitchinterval(switch_interval_s)


def instruction(servo_id: int, code: int, *params: int) -> bytes:
    """FF FF ID LEN INST P... CHK as any client sends it."""
    body = bytes([servo_id, len(params) + 2, code, *params])
    return b"\xff\xff" + body + bytes([~sum(body) & 0xFF])


def status(servo_id: int, error: int, *params: int) -> bytes:
    """FF FF ID LEN ERR P... CHK as a servo answers."""
    body = bytes([servo_id, len(params) + 2, error, *params])
    return b"\xff\xff" + body + bytes([~sum(body) & 0xFF])


def test_ping_reports_the_sts3215_model_number(connect: Callable[..., Bench]) -> None:
    bench = connect(SimServo(1))

    assert bench.sdk.ping(bench.port, 1) == (777, COMM_SUCCESS, 0)


def test_ping_of_an_absent_id_times_out(connect: Callable[..., Bench]) -> None:
    bench = connect(SimServo(1))

    _, result, _ = bench.sdk.ping(bench.port, 2)

    assert result == COMM_RX_TIMEOUT


def test_one_and_two_byte_registers_read_back_what_was_written(connect: Callable[..., Bench]) -> None:
    bench = connect(SimServo(1))

    assert bench.write(1, "Acceleration", 254) == (COMM_SUCCESS, 0)
    assert bench.write(1, "Torque_Limit", 500) == (COMM_SUCCESS, 0)
    assert bench.write(1, "Goal_Velocity", -300) == (COMM_SUCCESS, 0)

    assert bench.read(1, "Acceleration") == 254
    assert bench.read(1, "Torque_Limit") == 500
    assert bench.read(1, "Goal_Velocity") == 0x8000 | 300


def test_defaults_look_like_a_fresh_sts3215(connect: Callable[..., Bench]) -> None:
    bench = connect(SimServo(1))

    assert bench.read(1, "Baud_Rate") == 0
    assert (bench.read(1, "Min_Position_Limit"), bench.read(1, "Max_Position_Limit")) == (0, 4095)
    assert [bench.read(1, name) for name in ("P_Coefficient", "D_Coefficient", "I_Coefficient")] == [32, 32, 0]
    assert bench.read(1, "Lock") == 1
    assert bench.read(1, "Present_Voltage") == 120
    assert bench.read(1, "Torque_Enable") == 0


def test_negative_homing_offset_is_sign_magnitude_and_shifts_present_position(connect: Callable[..., Bench]) -> None:
    bench = connect(SimServo(1, physical_ticks=2048))
    bench.unlock_eeprom(1)

    bench.write(1, "Homing_Offset", -1024)

    assert bench.read(1, "Homing_Offset") == 0x800 | 1024
    assert bench.read(1, "Present_Position") == 3072


def test_present_position_is_physical_minus_homing_offset_modulo_4096(connect: Callable[..., Bench]) -> None:
    bench = connect(SimServo(1))
    bench.unlock_eeprom(1)
    servo = bench.bus.servo(1)

    @settings(max_examples=60, deadline=None)
    @given(physical_ticks=st.integers(0, 4095), offset_ticks=st.integers(-2047, 2047))
    def check(physical_ticks: int, offset_ticks: int) -> None:
        bench.write(1, "Homing_Offset", 0)
        servo.set_present_position(physical_ticks)
        bench.write(1, "Homing_Offset", offset_ticks)

        assert bench.read(1, "Present_Position") == (physical_ticks - offset_ticks) % 4096

    check()


def test_eeprom_writes_are_ignored_while_locked_and_applied_after_unlock(connect: Callable[..., Bench]) -> None:
    bench = connect(SimServo(1))

    assert bench.write(1, "Min_Position_Limit", 100) == (COMM_SUCCESS, 0)
    assert bench.read(1, "Min_Position_Limit") == 0

    bench.unlock_eeprom(1)
    bench.write(1, "Min_Position_Limit", 100)
    assert bench.read(1, "Min_Position_Limit") == 100


def test_read_only_registers_ignore_writes(connect: Callable[..., Bench]) -> None:
    bench = connect(SimServo(1, physical_ticks=1000))
    bench.unlock_eeprom(1)

    assert bench.write(1, "Present_Position", 3000) == (COMM_SUCCESS, 0)
    assert bench.write(1, "Model_Number", 1) == (COMM_SUCCESS, 0)

    assert bench.read(1, "Present_Position") == 1000
    assert bench.read(1, "Model_Number") == 777


def test_sync_read_returns_all_six_servos_in_one_transaction(connect: Callable[..., Bench]) -> None:
    bench = connect(*(SimServo(i, physical_ticks=1000 + 100 * i) for i in range(1, 7)))
    address = REGISTERS["Present_Position"].address
    group = GroupSyncRead(bench.port, bench.sdk, address, 2)
    for servo_id in range(1, 7):
        group.addParam(servo_id)

    assert group.txRxPacket() == COMM_SUCCESS
    assert [group.getData(i, address, 2) for i in range(1, 7)] == [1100, 1200, 1300, 1400, 1500, 1600]


def test_sync_read_answers_in_the_order_listed_and_skips_absent_servos(connect: Callable[..., Bench]) -> None:
    bench = connect(*(SimServo(i, physical_ticks=1000 + i) for i in (1, 2, 3)))
    bench.bus.servo(2).inject(Fault.NO_REPLY)

    bench.send_raw(instruction(BROADCAST_ID, 0x82, 56, 2, 3, 1, 2))

    expected = status(3, 0, 0xEB, 0x03) + status(1, 0, 0xE9, 0x03)  # 1003 = 0x03EB, 1001 = 0x03E9
    assert bench.receive_raw(len(expected) + 1, timeout_s=NO_REPLY_WAIT_S) == expected


def test_sync_write_drives_torqued_servos_toward_goal_at_bounded_speed(connect: Callable[..., Bench]) -> None:
    speed_ticks_per_s = 1000.0
    bench = connect(*(SimServo(i, physical_ticks=1000, max_speed_ticks_per_s=speed_ticks_per_s) for i in range(1, 7)))
    torque = GroupSyncWrite(bench.port, bench.sdk, REGISTERS["Torque_Enable"].address, 1)
    goals = GroupSyncWrite(bench.port, bench.sdk, REGISTERS["Goal_Position"].address, 2)
    for servo_id in range(1, 7):
        torque.addParam(servo_id, [1])
        goals.addParam(servo_id, [0xB8, 0x0B])  # 3000
    assert torque.txPacket() == COMM_SUCCESS

    started_s = time.monotonic()
    assert goals.txPacket() == COMM_SUCCESS
    time.sleep(0.1)
    positions = [bench.read(i, "Present_Position") for i in range(1, 7)]
    elapsed_s = time.monotonic() - started_s

    for position in positions:
        moved_ticks = position - 1000
        assert 0.9 * speed_ticks_per_s * 0.1 <= moved_ticks <= speed_ticks_per_s * elapsed_s + 1


def test_sync_write_gets_no_reply(connect: Callable[..., Bench]) -> None:
    bench = connect(SimServo(1), SimServo(2))
    group = GroupSyncWrite(bench.port, bench.sdk, REGISTERS["Acceleration"].address, 1)
    group.addParam(1, [10])
    group.addParam(2, [20])

    assert group.txPacket() == COMM_SUCCESS
    assert bench.receive_raw(1, timeout_s=NO_REPLY_WAIT_S) == b""
    assert (bench.read(1, "Acceleration"), bench.read(2, "Acceleration")) == (10, 20)


def test_goal_velocity_caps_speed_and_present_velocity_reports_it(connect: Callable[..., Bench], fake_clock: FakeClock) -> None:
    bench = connect(SimServo(1, physical_ticks=2000, clock=fake_clock))
    bench.write(1, "Goal_Velocity", 200)
    bench.write(1, "Goal_Position", 1000)
    bench.write(1, "Torque_Enable", 1)

    fake_clock.advance(1.0)

    assert bench.read(1, "Present_Position") == 1800
    assert bench.read(1, "Present_Velocity") == 0x8000 | 200
    assert bench.read(1, "Moving") == 1


def test_goal_outside_the_position_limits_is_clamped(connect: Callable[..., Bench], fake_clock: FakeClock) -> None:
    bench = connect(SimServo(1, physical_ticks=2000, clock=fake_clock))
    bench.unlock_eeprom(1)
    bench.write(1, "Max_Position_Limit", 2500)
    bench.write(1, "Torque_Enable", 1)

    bench.write(1, "Goal_Position", 4000)
    fake_clock.advance(10.0)

    assert bench.read(1, "Present_Position") == 2500
    fake_clock.advance(0.1)
    assert bench.read(1, "Moving") == 0


def test_torque_off_servo_can_be_moved_by_hand(connect: Callable[..., Bench], fake_clock: FakeClock) -> None:
    bench = connect(SimServo(1, clock=fake_clock))
    servo = bench.bus.servo(1)

    assert servo.set_present_position(1000)
    assert bench.read(1, "Present_Position") == 1000

    servo.follow(lambda t_s: 500 + 100 * (t_s - 100.0))
    fake_clock.advance(2.0)
    assert bench.read(1, "Present_Position") == 700
    fake_clock.advance(1.0)
    assert bench.read(1, "Present_Position") == 800
    assert from_wire(REGISTERS["Present_Velocity"], bench.read(1, "Present_Velocity")) == 100


def test_torque_on_servo_ignores_moves_from_outside(connect: Callable[..., Bench], fake_clock: FakeClock) -> None:
    bench = connect(SimServo(1, physical_ticks=1500, clock=fake_clock))
    servo = bench.bus.servo(1)
    bench.write(1, "Torque_Enable", 1)

    assert not servo.set_present_position(3000)
    servo.follow(lambda t_s: 3000)
    fake_clock.advance(1.0)
    assert bench.read(1, "Present_Position") == 1500

    bench.write(1, "Torque_Enable", 0)
    fake_clock.advance(0.1)
    assert bench.read(1, "Present_Position") == 3000


def test_enabling_torque_holds_the_current_position(connect: Callable[..., Bench], fake_clock: FakeClock) -> None:
    bench = connect(SimServo(1, physical_ticks=1234, clock=fake_clock))

    bench.write(1, "Torque_Enable", 1)
    fake_clock.advance(1.0)

    assert bench.read(1, "Present_Position") == 1234
    assert bench.read(1, "Moving") == 0


def test_status_packet_for_a_read_is_byte_exact(connect: Callable[..., Bench]) -> None:
    bench = connect(SimServo(3, physical_ticks=1234))

    # READ id 3, Present_Position (56 = 0x38), 2 bytes: CHK = ~(3 + 4 + 2 + 0x38 + 2) = ~0x43 = 0xBC.
    bench.send_raw(bytes([0xFF, 0xFF, 0x03, 0x04, 0x02, 0x38, 0x02, 0xBC]))

    # 1234 = 0x04D2, little-endian; CHK = ~(3 + 4 + 0 + 0xD2 + 0x04) = ~0xDD = 0x22.
    assert bench.receive_raw(9, timeout_s=NO_REPLY_WAIT_S) == bytes([0xFF, 0xFF, 0x03, 0x04, 0x00, 0xD2, 0x04, 0x22])


def test_garbage_before_a_packet_is_skipped(connect: Callable[..., Bench]) -> None:
    bench = connect(SimServo(3, physical_ticks=1234))

    bench.send_raw(b"\x00\x13\xff\x42\xff" + instruction(3, 0x02, 56, 2))

    assert bench.receive_raw(8) == status(3, 0, 0xD2, 0x04)


def test_packet_with_a_bad_checksum_is_dropped_silently(connect: Callable[..., Bench]) -> None:
    bench = connect(SimServo(1))
    good = instruction(1, 0x03, REGISTERS["Acceleration"].address, 77)

    bench.send_raw(good[:-1] + bytes([good[-1] ^ 0x01]))

    assert bench.receive_raw(1, timeout_s=NO_REPLY_WAIT_S) == b""
    assert bench.read(1, "Acceleration") == 0
    assert bench.bus.stats.packets_dropped == 1


def test_truncated_packet_does_not_swallow_the_next_one(connect: Callable[..., Bench]) -> None:
    bench = connect(SimServo(1))

    bench.send_raw(b"\xff\xff\x01\x20\x03\x29" + instruction(1, 0x01))

    assert bench.receive_raw(6) == status(1, 0)


def test_broadcast_write_reaches_every_servo_and_gets_no_reply(connect: Callable[..., Bench]) -> None:
    bench = connect(SimServo(1), SimServo(2), SimServo(3))

    assert bench.write(BROADCAST_ID, "Acceleration", 100) == (COMM_SUCCESS, 0)

    assert bench.receive_raw(1, timeout_s=NO_REPLY_WAIT_S) == b""
    assert bench.bus.stats.replies_sent == 0
    assert [bench.read(i, "Acceleration") for i in (1, 2, 3)] == [100, 100, 100]


def test_reg_write_waits_for_a_broadcast_action(connect: Callable[..., Bench]) -> None:
    bench = connect(SimServo(1), SimServo(2))
    address = REGISTERS["Acceleration"].address

    for servo_id in (1, 2):
        assert bench.sdk.regWriteTxRx(bench.port, servo_id, address, 1, [50]) == (COMM_SUCCESS, 0)
    assert [bench.read(i, "Acceleration") for i in (1, 2)] == [0, 0]

    assert bench.sdk.action(bench.port, BROADCAST_ID) == COMM_SUCCESS
    assert [bench.read(i, "Acceleration") for i in (1, 2)] == [50, 50]


def test_status_level_zero_answers_only_ping_and_read(connect: Callable[..., Bench]) -> None:
    bench = connect(SimServo(1))
    bench.unlock_eeprom(1)
    assert bench.write(1, "Response_Status_Level", 0) == (COMM_SUCCESS, 0)

    assert bench.write(1, "Acceleration", 9) == (COMM_RX_TIMEOUT, 0)
    assert bench.read(1, "Acceleration") == 9
    assert bench.sdk.ping(bench.port, 1) == (777, COMM_SUCCESS, 0)


def test_new_id_takes_effect_after_the_reply(connect: Callable[..., Bench]) -> None:
    bench = connect(SimServo(1))
    servo = bench.bus.servo(1)
    bench.unlock_eeprom(1)

    assert bench.write(1, "ID", 7) == (COMM_SUCCESS, 0)

    assert bench.sdk.ping(bench.port, 7) == (777, COMM_SUCCESS, 0)
    assert bench.sdk.ping(bench.port, 1)[1] == COMM_RX_TIMEOUT
    assert bench.bus.servo(7) is servo


def test_servo_answers_only_at_its_own_baud_rate(connect: Callable[..., Bench]) -> None:
    bench = connect(SimServo(1), SimServo(2))
    bench.unlock_eeprom(1)

    assert bench.write(1, "Baud_Rate", 5) == (COMM_SUCCESS, 0)  # 57600; the reply still goes out at 1 Mbaud
    assert bench.sdk.ping(bench.port, 1)[1] == COMM_RX_TIMEOUT

    assert bench.port.setBaudRate(57_600)
    assert bench.sdk.ping(bench.port, 1) == (777, COMM_SUCCESS, 0)
    assert bench.sdk.ping(bench.port, 2)[1] == COMM_RX_TIMEOUT


def test_no_reply_fault_makes_the_servo_absent(connect: Callable[..., Bench]) -> None:
    bench = connect(SimServo(1))
    servo = bench.bus.servo(1)
    servo.inject(Fault.NO_REPLY)

    assert bench.sdk.ping(bench.port, 1)[1] == COMM_RX_TIMEOUT
    assert bench.write(1, "Acceleration", 5) == (COMM_RX_TIMEOUT, 0)

    servo.clear()
    assert bench.read(1, "Acceleration") == 0


def test_corrupt_checksum_fault_garbles_replies_but_applies_writes(connect: Callable[..., Bench]) -> None:
    bench = connect(SimServo(1))
    servo = bench.bus.servo(1)
    servo.inject(Fault.CORRUPT_CHECKSUM)

    assert bench.sdk.read1ByteTxRx(bench.port, 1, REGISTERS["Lock"].address)[1] == COMM_RX_CORRUPT
    assert bench.write(1, "Acceleration", 5)[0] == COMM_RX_CORRUPT

    servo.clear(Fault.CORRUPT_CHECKSUM)
    assert bench.read(1, "Acceleration") == 5


def test_overload_fault_flags_every_reply_and_unloads_the_servo(connect: Callable[..., Bench], fake_clock: FakeClock) -> None:
    bench = connect(SimServo(1, physical_ticks=1000, max_speed_ticks_per_s=1000, clock=fake_clock))
    servo = bench.bus.servo(1)
    bench.write(1, "Torque_Enable", 1)
    bench.write(1, "Goal_Position", 3000)
    fake_clock.advance(0.5)

    servo.inject(Fault.OVERLOAD)
    fake_clock.advance(0.5)

    position, result, error = bench.sdk.read2ByteTxRx(bench.port, 1, REGISTERS["Present_Position"].address)
    assert (position, result) == (1500, COMM_SUCCESS)
    assert error & ERR_OVERLOAD
    load, _, _ = bench.sdk.read2ByteTxRx(bench.port, 1, REGISTERS["Present_Load"].address)
    assert from_wire(REGISTERS["Present_Load"], load) == 1000
    assert bench.sdk.ping(bench.port, 1)[2] == ERR_OVERLOAD

    servo.clear(Fault.OVERLOAD)
    fake_clock.advance(0.5)
    assert bench.read(1, "Present_Position") == 2000


def test_unknown_servo_lookup_names_the_ids_present() -> None:
    bus = FeetechBusSimulator([SimServo(1), SimServo(2)])

    with pytest.raises(KeyError, match=r"id 9 .*\[1, 2\]"):
        bus.servo(9)


def test_stop_joins_the_thread_and_removes_the_port() -> None:
    bus = FeetechBusSimulator([SimServo(1)])
    path = bus.start()
    assert os.path.exists(path)

    bus.stop()
    bus.stop()

    assert not os.path.exists(path)
    assert not any(thread.name == "feetech-bus-sim" for thread in threading.enumerate())
    with pytest.raises(serial.SerialException):
        serial.Serial(path, 1_000_000)


def test_command_line_serves_until_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "drivers.feetech.sim_bus", "--ids", "4", "5"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        path = process.stdout.readline().strip()
        port = PortHandler(path)
        assert port.openPort()
        assert PacketHandler(0).ping(port, 5) == (777, COMM_SUCCESS, 0)
        port.closePort()

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        process.kill()
        process.wait()


def test_broadcast_ping_is_answered_by_every_servo_with_its_own_id(connect: Callable[..., Bench]) -> None:
    bench = connect(SimServo(1), SimServo(2), SimServo(3))

    bench.send_raw(instruction(BROADCAST_ID, 0x01))

    assert bench.receive_raw(18) == status(1, 0) + status(2, 0) + status(3, 0)


def test_a_detached_servo_stops_answering_and_an_attached_one_starts(connect: Callable[..., Bench]) -> None:
    bench = connect(SimServo(1))
    first, second = bench.bus.servo(1), SimServo(2)

    bench.bus.detach(first)
    bench.bus.attach(second)

    assert bench.sdk.ping(bench.port, 1)[1] == COMM_RX_TIMEOUT
    assert bench.sdk.ping(bench.port, 2) == (777, COMM_SUCCESS, 0)
    with pytest.raises(ValueError, match="not on this bus"):
        bench.bus.detach(first)
    with pytest.raises(ValueError, match="already on this bus"):
        bench.bus.attach(second)
