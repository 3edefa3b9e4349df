"""`robot-runtime sim feetech`: simulated buses any Feetech client can use, until Ctrl-C."""

import signal
import subprocess
import time

import scservo_sdk as scs
from cli import robot_cli, run_cli


def test_sim_serves_both_arms_to_a_stock_sdk_client(tmp_path):
    out = tmp_path / "stdout.txt"
    with out.open("w") as sink:
        process = subprocess.Popen(robot_cli("sim", "feetech", "--robot", "so100"), stdout=sink, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and out.read_text().count("\n") < 2:
            time.sleep(0.05)
        ports = dict(line.split() for line in out.read_text().splitlines())
        assert set(ports) == {"follower", "leader"}
        port = scs.PortHandler(ports["follower"])
        assert port.openPort()
        packets = scs.PacketHandler(0)
        assert [packets.ping(port, i)[:2] for i in range(1, 7)] == [(777, scs.COMM_SUCCESS)] * 6
        port.closePort()
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0


def test_sim_of_an_unknown_family_is_a_clear_error():
    result = run_cli("sim", "dynamixel", "--robot", "so100")
    assert result.returncode == 2
    assert "no arm of family 'dynamixel'" in " ".join(result.stderr.split())
