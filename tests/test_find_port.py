"""`robot-runtime find-port`: the USB serial listing and its stable names, the watch that finds the port
unplugged and plugged back, the simulated USB bench, and the command end to end."""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path

import pytest
from cli import run_cli
from serial.tools.list_ports_common import ListPortInfo

from apps.cli import main
from apps.common import console
from apps.find_port import Target, find
from drivers.feetech.bus import FeetechBus
from drivers.feetech.config import FeetechArmConfig
from drivers.feetech.models import SO_MOTORS
from drivers.feetech.sim_servo import Fault
from drivers.feetech.sim_usb import ARM_ADAPTER, ARM_ADAPTER_BY_ID, SimulatedUsbBench
from drivers.feetech.tools import check_motors
from robot_runtime import ports
from robot_runtime.config import load_robot_config
from robot_runtime.ports import PortWatchTimeout, SerialPort, list_serial_ports, watch_replug, with_links


def port(device: str, **details: str) -> SerialPort:
    return SerialPort(device, "USB Single Serial", usb_id="1a86:55d3", **details)


ACM0, ACM1, USB0, USB1 = port("/dev/ttyACM0"), port("/dev/ttyACM1"), port("/dev/ttyUSB0"), port("/dev/ttyUSB1")
GPS = port("/dev/ttyACM7")


class ScriptedPorts:
    """A port list that changes from one poll to the next as the test scripted it; the last list stays.
    A watch that never gives up fails the test instead of hanging it."""

    max_polls = 10_000

    def __init__(self, *lists: list[SerialPort]) -> None:
        self.lists = lists
        self.polls = 0

    def __call__(self) -> list[SerialPort]:
        assert self.polls < self.max_polls, f"still polling after {self.polls} lists: the watch never gave up"
        listed = self.lists[min(self.polls, len(self.lists) - 1)]
        self.polls += 1
        return listed


def watch(*lists: list[SerialPort], fake_clock, timeout_s: float = 60.0, unplugged: list | None = None) -> ports.Replug:
    """Run the watch over scripted lists; the first list is what the command showed before asking."""
    source = ScriptedPorts(*lists)
    on_unplugged = unplugged.append if unplugged is not None else (lambda found: None)
    return watch_replug(source, source(), timeout_s, on_unplugged=on_unplugged, clock=fake_clock, sleep=fake_clock.sleep)


# -- the listing ---------------------------------------------------------------------------------


@pytest.fixture
def no_usb_serial_attached() -> None:
    if glob.glob("/dev/ttyUSB*") + glob.glob("/dev/ttyACM*"):
        pytest.skip("USB serial adapters are attached to this machine")


def test_with_no_adapter_attached_the_list_is_empty_and_the_command_says_so_then_waits_for_one(
    no_usb_serial_attached, capsys, monkeypatch
):
    monkeypatch.setattr(console, "width", 400)
    assert list_serial_ports() == []
    assert main(["find-port", "--timeout-s", "0.2"]) == 1
    err = capsys.readouterr().err
    assert "no USB serial ports found" in err and "brltty" in err
    assert "plug the arm's USB cable in now" in err
    assert "error: no serial port appeared within 0.2 s: plug the cable (back) in" in err


def test_usb_ports_keep_their_usb_details_and_built_in_uarts_are_left_out(monkeypatch, tmp_path):
    uart = ListPortInfo("/dev/ttyS0", skip_link_detection=True)
    adapter = ListPortInfo("/dev/ttyACM0", skip_link_detection=True)
    adapter.vid, adapter.pid, adapter.serial_number, adapter.location = 0x1A86, 0x55D3, "5A46083062", "1-2:1.0"
    adapter.manufacturer, adapter.product, adapter.description = "QinHeng Electronics", "USB Single Serial", "USB Single Serial"
    monkeypatch.setattr(ports, "comports", lambda: [uart, adapter])
    assert list_serial_ports(tmp_path) == [
        SerialPort(
            device="/dev/ttyACM0",
            description="USB Single Serial",
            manufacturer="QinHeng Electronics",
            product="USB Single Serial",
            serial_number="5A46083062",
            usb_id="1a86:55d3",
            location="1-2:1.0",
        )
    ]


def udev_links(root: Path) -> tuple[Path, Path]:
    """/dev/serial as udev lays it out (relative links), for a CH343 with a serial number and a CH340 without."""
    dev, links = root / "dev", root / "dev" / "serial"
    for kind, link, node in (
        ("by-id", "usb-1a86_USB_Single_Serial_5A46083062-if00", "ttyACM0"),
        ("by-id", "usb-1a86_USB2.0-Serial-if00-port0", "ttyUSB0"),
        ("by-path", "pci-0000:00:14.0-usb-0:2:1.0", "ttyACM0"),
        ("by-path", "pci-0000:00:14.0-usb-0:3:1.0-port0", "ttyUSB0"),
    ):
        (links / kind).mkdir(parents=True, exist_ok=True)
        (dev / node).touch()
        (links / kind / link).symlink_to(Path("../..") / node)
    return dev, links


def test_each_port_gets_the_by_id_and_by_path_links_that_lead_to_it(tmp_path):
    dev, links = udev_links(tmp_path)
    acm, other, usb = with_links([port(str(dev / "ttyUSB0")), port(str(dev / "ttyACM0")), port(str(dev / "ttyACM1"))], links)
    assert acm.by_id == str(links / "by-id/usb-1a86_USB_Single_Serial_5A46083062-if00")
    assert acm.by_path == str(links / "by-path/pci-0000:00:14.0-usb-0:2:1.0")
    assert usb.by_id == str(links / "by-id/usb-1a86_USB2.0-Serial-if00-port0")
    assert other.device == str(dev / "ttyACM1") and other.by_id is None and other.by_path is None


def test_without_a_dev_serial_folder_there_are_no_links(tmp_path):
    assert with_links([ACM0], tmp_path / "missing") == [ACM0]


def test_a_port_linked_in_the_folder_is_listed_even_when_it_is_no_usb_adapter(monkeypatch, tmp_path):
    dev, links = udev_links(tmp_path)
    adapter = ListPortInfo(str(dev / "ttyACM0"), skip_link_detection=True)
    adapter.vid, adapter.pid = 0x1A86, 0x55D3
    monkeypatch.setattr(ports, "comports", lambda: [adapter])
    master, slave = os.openpty()
    try:
        served = os.ttyname(slave)  # a pty, as socat makes for a serial server's port
        (links / "by-id" / "socat-arm").symlink_to(served)
        (links / "by-id" / "unplugged").symlink_to(dev / "ttyACM9")
        listed = {port.device: port for port in list_serial_ports(links)}
    finally:
        os.close(master)
        os.close(slave)
    assert sorted(listed) == sorted([str(dev / "ttyACM0"), str(dev / "ttyUSB0"), served])  # each once; no dangling link
    assert listed[str(dev / "ttyACM0")].usb_id == "1a86:55d3"
    assert listed[served].usb_id is None and listed[served].stable_path == str(links / "by-id" / "socat-arm")


def test_a_serial_links_folder_that_does_not_exist_is_refused(tmp_path):
    result = run_cli("find-port", "--serial-links", str(tmp_path / "missing"))
    assert result.returncode == 2
    assert f"argument --serial-links: {tmp_path / 'missing'} is not a folder" in result.stderr


def test_the_stable_name_is_by_id_with_a_serial_number_by_path_without_one_else_the_device():
    by_id, by_path = "/dev/serial/by-id/usb-x-if00", "/dev/serial/by-path/pci-usb-0:2:1.0"
    assert port("/dev/ttyACM0", serial_number="5A46083062", by_id=by_id, by_path=by_path).stable_path == by_id
    assert port("/dev/ttyUSB0", by_id=by_id, by_path=by_path).stable_path == by_path
    assert port("/dev/ttyUSB0", by_id=by_id).stable_path == by_id
    assert port("/dev/ttyUSB0").stable_path == "/dev/ttyUSB0"


# -- the watch -----------------------------------------------------------------------------------


def test_an_unplug_then_a_replug_under_a_new_name_is_found(fake_clock):
    unplugged: list = []
    found = watch([ACM0, GPS], [ACM0, GPS], [GPS], [GPS], [ACM1, GPS], fake_clock=fake_clock, unplugged=unplugged)
    assert found == ports.Replug(unplugged=(ACM0,), replugged=(ACM1,))
    assert unplugged == [(ACM0,)]


def test_two_ports_vanishing_at_once_are_both_reported(fake_clock):
    found = watch([ACM0, USB0, GPS], [GPS], [ACM1, USB1, GPS], fake_clock=fake_clock)
    assert found.unplugged == (ACM0, USB0)
    assert found.replugged == (ACM1, USB1)


def test_a_replug_landing_in_the_same_poll_as_the_unplug_is_still_seen(fake_clock):
    assert watch([ACM0], [ACM1], fake_clock=fake_clock) == ports.Replug(unplugged=(ACM0,), replugged=(ACM1,))


def test_an_adapter_plugged_in_before_the_unplug_is_not_taken_for_the_replugged_arm(fake_clock):
    assert watch([ACM0], [ACM0, GPS], [GPS], [ACM0, GPS], fake_clock=fake_clock).replugged == (ACM0,)


def test_with_nothing_attached_it_waits_only_for_a_port_to_appear(fake_clock):
    unplugged: list = []
    assert watch([], [], [ACM0], fake_clock=fake_clock, unplugged=unplugged) == ports.Replug(unplugged=(), replugged=(ACM0,))
    assert unplugged == []


def test_the_replugged_port_is_listed_again_once_udev_has_added_its_by_id_link(fake_clock):
    linked = port("/dev/ttyACM1", by_id="/dev/serial/by-id/usb-x-if00")
    assert watch([ACM0], [], [ACM1], [linked], fake_clock=fake_clock).replugged == (linked,)


def test_when_nothing_is_unplugged_the_timeout_says_what_to_check(fake_clock):
    with pytest.raises(PortWatchTimeout, match=r"no serial port disappeared within 2 s: check that the arm's USB cable is"):
        watch([ACM0, GPS], fake_clock=fake_clock, timeout_s=2)


def test_when_nothing_comes_back_the_timeout_names_the_port_that_went(fake_clock):
    with pytest.raises(PortWatchTimeout, match=r"/dev/ttyACM0 disappeared but no serial port appeared within 2 s: .*dmesg"):
        watch([ACM0, GPS], [GPS], fake_clock=fake_clock, timeout_s=2)


def test_the_command_lists_every_port_that_vanished_at_once(capsys, monkeypatch):
    monkeypatch.setattr(console, "width", 400)
    find(ScriptedPorts([ACM0, USB0, GPS], [GPS], [ACM1, USB1, GPS]), timeout_s=5)
    err = capsys.readouterr().err
    assert "2 ports disappeared at once" in err
    assert "  - /dev/ttyACM0 (USB Single Serial, 1a86:55d3)" in err and "  - /dev/ttyUSB0 (USB Single Serial, 1a86:55d3)" in err
    assert "plug them back in" in err
    assert "2 ports appeared at once" in err


# -- the arm on the port found -------------------------------------------------------------------


def test_the_motor_check_names_the_motor_that_does_not_answer(so_bus_sim):
    so_bus_sim.servo(4).inject(Fault.NO_REPLY)
    arm = load_robot_config("so100").followers[0].config
    assert isinstance(arm, FeetechArmConfig)
    check = check_motors(so_bus_sim.port_path, arm)
    assert [m.name for m in check.missing] == ["wrist_flex"]
    assert [m.id for m in check.answering] == [1, 2, 3, 5, 6]
    assert check.problem is not None and "motor 4 (wrist_flex) did not answer" in check.problem


def test_the_config_key_follows_the_arm_position_in_the_config():
    config = load_robot_config("bi_so100")
    keys = [Target(config, arm).key for arm in config.followers + config.leaders]
    assert keys == ["followers.0", "followers.1", "leaders.0", "leaders.1"]


def test_arm_without_robot_is_refused(capsys):
    assert main(["find-port", "--arm", "leader"]) == 2
    assert "--arm and --set need --robot" in capsys.readouterr().err


# -- the simulated bench -------------------------------------------------------------------------


def test_the_bench_unplug_removes_the_pty_and_the_replug_brings_a_new_one_behind_the_same_by_id_link():
    with SimulatedUsbBench([m.id for m in SO_MOTORS]) as bench:
        (arm,) = (p for p in bench.ports() if p.usb_id == ARM_ADAPTER.usb_id)
        assert "simulated" in arm.description and arm.by_id == str(bench.links_root / "by-id" / ARM_ADAPTER_BY_ID)
        bench.unplug()
        assert not os.path.exists(arm.device) and not os.path.lexists(arm.by_id)
        assert [p.usb_id for p in bench.ports()] == ["2341:0043"]
        bench.plug_in()
        (back,) = (p for p in bench.ports() if p.usb_id == ARM_ADAPTER.usb_id)
        assert back.device != arm.device and back.by_id == arm.by_id
        bus = FeetechBus(back.by_id, SO_MOTORS)
        bus.open()
        try:
            bus.check_motors()
        finally:
            bus.close()
    assert not bench.links_root.exists() and not os.path.exists(back.device)


def test_find_port_sim_runs_unattended_and_ends_with_the_motors_answering_on_the_replugged_port():
    result = run_cli("find-port", "--sim", "--robot", "so100")
    assert result.returncode == 0, result.stderr
    err = result.stderr
    assert "USB Single Serial (simulated)" in err and "Arduino Uno (simulated)" in err
    assert "unplug the arm's USB cable now (no need to press Enter" in err
    went = re.search(r"disappeared: (/dev/pts/\d+) \(USB Single Serial \(simulated\), 1a86:55d3", err)
    came = re.search(r"appeared: (/dev/pts/\d+) .*\(was (/dev/pts/\d+): device names change on replug\)", err)
    assert went and came, err
    assert came[1] != went[1] and came[2] == went[1]
    assert "plug it back in" in err
    assert "all 6 motors answer" in err
    advice = re.search(rf"--set followers\.0\.port=(/\S+/by-id/{ARM_ADAPTER_BY_ID})$", err, re.MULTILINE)
    assert advice, err
    assert f"    port: {advice[1]}" in err
    assert not Path(advice[1]).exists()  # the bench is gone with the command


@pytest.mark.hardware
def test_attached_adapters_are_listed_with_their_usb_ids_and_links_that_lead_to_them():
    attached = list_serial_ports()
    if not attached:
        pytest.skip("no USB serial port attached")
    for found in attached:
        assert Path(found.device).exists()
        assert re.fullmatch(r"[0-9a-f]{4}:[0-9a-f]{4}", found.usb_id or ""), found
        for link in filter(None, (found.by_id, found.by_path)):
            assert os.path.realpath(link) == os.path.realpath(found.device)
    result = run_cli("find-port", "--timeout-s", "0.5")
    assert result.returncode == 1
    assert "no serial port disappeared within 0.5 s" in result.stderr
    assert all(found.device in result.stderr for found in attached)
