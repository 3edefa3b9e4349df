"""Our Feetech bus through the real SDK over a real pty: round trips, and every fault gives a clear
error quickly (never a hang, never tens of milliseconds per missing motor)."""

import os
import threading
import time

import pytest

from drivers.feetech.bus import BusError, FeetechBus, MotorFaultError, MotorNotRespondingError
from drivers.feetech.control_table import REGISTERS
from drivers.feetech.models import SO_MOTORS
from drivers.feetech.sim_servo import Fault


def test_check_motors_passes_when_all_six_answer(so_bus):
    so_bus.check_motors()


def test_sync_read_span_decodes_position_velocity_and_load(so_bus, so_bus_sim):
    so_bus_sim.servo(3).set_present_position(1000)
    values = so_bus.sync_read_span(REGISTERS["Present_Position"], REGISTERS["Present_Load"])
    assert values["elbow_flex"]["Present_Position"] == 1000
    assert set(values["elbow_flex"]) == {"Present_Position", "Present_Velocity", "Present_Load"}
    assert list(values) == [m.name for m in SO_MOTORS]


def test_sync_write_moves_every_servo_with_torque_on(so_bus):
    goals = {m.name: 1500 + 100 * m.id for m in SO_MOTORS}
    so_bus.sync_write("Goal_Position", goals)
    so_bus.sync_write("Torque_Enable", {m.name: 1 for m in SO_MOTORS})
    deadline = time.monotonic() + 2
    while so_bus.sync_read("Present_Position") != goals and time.monotonic() < deadline:
        time.sleep(0.02)
    assert so_bus.sync_read("Present_Position") == goals


def test_signed_registers_round_trip_through_sign_magnitude(so_bus):
    with so_bus.torque_disabled():
        so_bus.write("Homing_Offset", "wrist_flex", -1500)
    assert so_bus.read("Homing_Offset", "wrist_flex") == -1500


def test_eeprom_writes_need_the_unlock_that_torque_disabled_gives(so_bus):
    so_bus.write("Min_Position_Limit", "gripper", 100)  # locked: the servo ignores it
    assert so_bus.read("Min_Position_Limit", "gripper") == 0
    with so_bus.torque_disabled(["gripper"]):
        so_bus.write("Min_Position_Limit", "gripper", 100)
    assert so_bus.read("Min_Position_Limit", "gripper") == 100
    assert so_bus.read("Lock", "gripper") == 1 and so_bus.read("Torque_Enable", "gripper") == 1


def test_a_missing_motor_is_named_with_the_cable_to_check(so_bus, so_bus_sim):
    for motor_id in (4, 5, 6):
        so_bus_sim.servo(motor_id).inject(Fault.NO_REPLY)
    with pytest.raises(MotorNotRespondingError) as info:
        so_bus.sync_read("Present_Position")
    message = str(info.value)
    assert "motors 4 (wrist_flex), 5 (wrist_roll), 6 (gripper) did not answer on " + so_bus.port in message
    assert "check the cable between motor 3 and motor 4 and the power supply" in message
    assert info.value.motor_ids == (4, 5, 6)


def test_a_single_dead_motor_inside_a_working_chain_points_at_that_motor(so_bus, so_bus_sim):
    so_bus_sim.servo(4).inject(Fault.NO_REPLY)
    with pytest.raises(MotorNotRespondingError, match=r"motor 4 \(wrist_flex\) did not answer.*check motor 4 itself"):
        so_bus.sync_read("Present_Position")


def test_the_first_motor_missing_points_at_the_controller_cable(so_bus, so_bus_sim):
    for servo in so_bus_sim.servos:
        servo.inject(Fault.NO_REPLY)
    with pytest.raises(MotorNotRespondingError, match="between the controller board and motor 1"):
        so_bus.check_motors()


def test_a_motor_that_misses_a_few_reply_windows_is_not_called_missing(so_bus, so_bus_sim):
    """A busy computer can miss several 5 ms windows in a row; a motor is missing only if it stays silent."""
    so_bus_sim.servo(2).inject(Fault.NO_REPLY)
    answers_again = threading.Timer(0.06, so_bus_sim.servo(2).clear, (Fault.NO_REPLY,))
    answers_again.start()
    try:
        so_bus.check_motors()
    finally:
        answers_again.cancel()


def test_a_missing_motor_costs_a_bounded_time(so_bus, so_bus_sim):
    so_bus_sim.servo(2).inject(Fault.NO_REPLY)
    started = time.monotonic()
    with pytest.raises(MotorNotRespondingError):
        so_bus.sync_read("Present_Position")
    # 2 tries x 5 ms for the read, then 2 x 5 ms per ping of 6 motors: far from the SDK's 34 ms per
    # reply x 6; a generous bound, since the machine is shared.
    assert time.monotonic() - started < 1.0


def test_corrupted_replies_are_retried_then_reported(so_bus, so_bus_sim):
    so_bus_sim.servo(5).inject(Fault.CORRUPT_CHECKSUM)
    with pytest.raises(BusError, match=r"motor 5 \(wrist_roll\) sent corrupted replies .*2 tries"):
        so_bus.sync_read("Present_Position")


def faults_cleared_after_first_try(bus, sim, monkeypatch) -> None:
    """The next sync read's first try meets the injected faults; its retry finds the servos healthy."""
    first_try = bus._sync_read_once

    def once_then_healed(*args):
        try:
            return first_try(*args)
        finally:
            for servo in sim.servos:
                servo.clear()
            monkeypatch.setattr(bus, "_sync_read_once", first_try)

    monkeypatch.setattr(bus, "_sync_read_once", once_then_healed)


def test_a_transient_corruption_is_absorbed_by_the_retry(so_bus, so_bus_sim, monkeypatch):
    so_bus_sim.servo(5).inject(Fault.CORRUPT_CHECKSUM)
    faults_cleared_after_first_try(so_bus, so_bus_sim, monkeypatch)
    assert len(so_bus.sync_read("Present_Position")) == 6


def test_overload_is_reported_with_what_to_do(so_bus, so_bus_sim):
    so_bus_sim.servo(6).inject(Fault.OVERLOAD)
    with pytest.raises(MotorFaultError, match=r"motor 6 \(gripper\) on .* reports overload \(the joint is blocked") as info:
        so_bus.sync_read("Present_Position")
    assert info.value.error_byte & 0x20


def test_sync_write_still_reaches_the_others_when_one_motor_is_gone(so_bus, so_bus_sim):
    so_bus_sim.servo(1).inject(Fault.NO_REPLY)
    so_bus.sync_write("Torque_Enable", {m.name: 1 for m in SO_MOTORS})
    assert so_bus.read("Torque_Enable", "gripper") == 1


def test_a_read_cut_short_by_ctrl_c_leaves_the_next_writes_going_out(so_bus, monkeypatch):
    """The parking move after a Ctrl-C that landed mid-read is made of writes, which get no reply to fail by."""
    port = so_bus._port
    read_port = port.readPort

    def interrupted(length: int) -> bytes:
        monkeypatch.setattr(port, "readPort", read_port)
        raise KeyboardInterrupt

    monkeypatch.setattr(port, "readPort", interrupted)
    with pytest.raises(KeyboardInterrupt):
        so_bus.sync_read("Present_Position")
    so_bus.sync_write("Torque_Enable", {m.name: 1 for m in SO_MOTORS})
    assert so_bus.sync_read("Torque_Enable") == {m.name: 1 for m in SO_MOTORS}, "the cut-short read's replies are not taken"


def test_a_reply_of_another_length_is_never_taken_for_the_register_asked(so_bus, so_bus_sim, monkeypatch):
    """A late two-byte position reply from the same motor must not pass for a one-byte read."""
    position_reply = so_bus_sim.servo(6).read(REGISTERS["Present_Position"].address, 2)
    gripper = so_bus_sim.servo(6)
    real_read = gripper.read
    monkeypatch.setattr(gripper, "read", lambda address, length: position_reply if length == 1 else real_read(address, length))
    with pytest.raises(BusError, match=r"motor 6 .*gripper.* sent corrupted replies"):
        so_bus.read("Torque_Enable", "gripper")
    with pytest.raises(BusError, match="sent corrupted replies"):
        so_bus.sync_read("Torque_Enable")


def test_a_write_the_port_cannot_send_is_an_error(so_bus, monkeypatch):
    monkeypatch.setattr(so_bus._port, "writePort", lambda packet: 0)
    sent = r"cannot send Goal_Position to shoulder_pan, .*gripper on .*: \[TxRxResult\] Failed transmit"
    with pytest.raises(BusError, match=sent):
        so_bus.sync_write("Goal_Position", {m.name: 2048 for m in SO_MOTORS})


def test_a_wrong_model_number_is_named(so_bus, so_bus_sim):
    so_bus_sim.servo(3)._set("Model_Number", 1234)
    with pytest.raises(BusError, match=r"motor 3 \(elbow_flex\) .* reports model 1234, expected 777"):
        so_bus.check_motors()


def test_a_wrong_port_says_what_to_check():
    bus = FeetechBus("/dev/ttyDOESNOTEXIST", SO_MOTORS)
    with pytest.raises(BusError, match="cannot open serial port /dev/ttyDOESNOTEXIST: the port does not exist"):
        bus.open()


def test_an_unsupported_baud_rate_is_refused_before_opening():
    with pytest.raises(ValueError, match="not supported by the Feetech SDK"):
        FeetechBus("/dev/null", SO_MOTORS, baudrate=2_000_000)


def test_a_vanished_port_is_a_bus_error_not_a_hang(so_bus, so_bus_sim):
    so_bus_sim.stop()
    with pytest.raises(BusError):  # noqa: PT012 - the first reads may still be answered from buffered bytes
        for _ in range(3):
            so_bus.sync_read("Present_Position")


def test_replies_that_come_after_a_timeout_never_answer_a_later_request(so_bus, so_bus_sim, monkeypatch):
    """A stalled adapter answers one request late, the retry is answered on time, and the late replies
    then sit in the input buffer: they must not be taken as the answers to the next requests."""
    for servo in so_bus_sim.servos:
        servo.inject(Fault.LATE_REPLY)
    faults_cleared_after_first_try(so_bus, so_bus_sim, monkeypatch)
    so_bus.sync_read("Present_Position")  # the retry succeeds
    time.sleep(0.03)  # the late replies arrive now
    elbow = so_bus_sim.servo(3)
    for position in (1111, 2222, 3333):
        elbow.set_present_position(position)
        assert so_bus.sync_read("Present_Position")["elbow_flex"] == position


def test_late_replies_everywhere_give_a_named_error_not_a_crash(so_bus, so_bus_sim):
    for servo in so_bus_sim.servos:
        servo.inject(Fault.LATE_REPLY)
    for _ in range(3):
        with pytest.raises(MotorNotRespondingError):
            so_bus.check_motors()


def test_a_usb_adapter_slower_than_the_reply_timeout_is_refused_with_the_fix(so_bus_sim, tmp_path, monkeypatch):
    import drivers.feetech.bus as bus_module

    device = tmp_path / "sysfs" / os.path.basename(os.path.realpath(so_bus_sim.port_path))
    device.mkdir(parents=True)
    (device / "latency_timer").write_text("16\n")
    monkeypatch.setattr(bus_module, "USB_SERIAL_SYSFS", tmp_path / "sysfs")
    bus = FeetechBus(so_bus_sim.port_path, SO_MOTORS, reply_timeout_ms=5)
    with pytest.raises(BusError, match=r"delays replies by 16 ms .* set it to 1 ms with `echo 1 \| sudo tee .*latency_timer`"):
        bus.open()
    assert not bus.is_open
    (device / "latency_timer").write_text("1\n")
    bus.open()
    bus.close()


def test_stopping_the_simulator_cancels_replies_still_on_their_way(so_bus, so_bus_sim):
    for servo in so_bus_sim.servos:
        servo.inject(Fault.LATE_REPLY)
    with pytest.raises(MotorNotRespondingError):
        so_bus.sync_read("Present_Position")
    so_bus_sim.stop()
    assert not any(t.is_alive() for t in threading.enumerate() if isinstance(t, threading.Timer))


def test_a_broadcast_ping_collects_every_motor_that_answers(so_bus):
    scan = so_bus.broadcast_ping()
    assert sorted(scan.ids) == [1, 2, 3, 4, 5, 6]
    assert scan.baud_bps == 1_000_000 and not scan.garbled


def test_a_broadcast_ping_hears_only_the_motors_at_the_ports_baud_rate(so_bus, so_bus_sim):
    with so_bus.eeprom_unlocked(["wrist_flex"]):
        so_bus.write("Baud_Rate", "wrist_flex", 4)  # 115200
    assert 4 not in so_bus.broadcast_ping().ids
    so_bus.set_baudrate(115_200)
    assert so_bus.broadcast_ping().ids == (4,)
    assert so_bus.read_by_id("Model_Number", 4) == 777


def test_a_broadcast_ping_reports_replies_it_cannot_parse(so_bus, so_bus_sim):
    so_bus_sim.servo(2).inject(Fault.CORRUPT_CHECKSUM)
    scan = so_bus.broadcast_ping()
    assert 2 not in scan.ids and scan.garbled


def test_an_empty_bus_answers_a_broadcast_ping_with_nothing(so_bus, so_bus_sim):
    for servo in so_bus_sim.servos:
        so_bus_sim.detach(servo)
    assert so_bus.broadcast_ping().ids == ()


def test_a_motor_addressed_by_id_is_named_by_id_with_its_settings_to_check(so_bus):
    silent = r"motor 9 did not answer on .* \(read of ID\): .*its id is 9 and its baud rate 1000000"
    with pytest.raises(MotorNotRespondingError, match=silent):
        so_bus.read_by_id("ID", 9)


def test_a_baud_rate_the_sdk_lacks_is_refused_when_switching():
    bus = FeetechBus("/dev/null", SO_MOTORS)
    with pytest.raises(ValueError, match="not supported by the Feetech SDK"):
        bus.set_baudrate(2_000_000)
