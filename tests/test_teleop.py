"""Teleoperation end to end on simulated hardware: the follower mirrors the leader through the real
SDK, a large start gap is refused, and every way out parks the follower and leaves torque safe."""

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from cli import robot_cli, run_cli

from robot_runtime.config import load_robot_config
from robot_runtime.loop import FixedRateLoop
from robot_runtime.session import Session
from robot_runtime.teleop import StartRefused, Teleop


def test_follower_tracks_the_scripted_leader():
    config = load_robot_config("so100")
    with Session(config, sim=True) as session:
        assert session.leader is not None, "so100 has a leader arm"
        teleop = Teleop(session.leader, session.follower, config.safety, config.fps)
        teleop.start()
        session.start_demonstrations()
        errors = []

        def tick(t):
            step = teleop.tick(t)
            if t.elapsed_s > config.safety.ramp_s + 0.5:
                errors.append(np.abs(step.follower.position - step.leader.position).max())

        stats = FixedRateLoop(30).run(tick, duration_s=4.5)
        assert teleop.last is not None
        moved = np.abs(teleop.last.leader.position - session.leader.park_position).max()
    assert moved > 10, "the scripted leader should have moved"
    assert np.median(errors) < 5.0  # degrees: the follower lags by about a tick of motion
    assert stats.ticks + stats.missed_deadlines >= 135, "every slot of 4.5 s at 30 Hz ticked or was counted missed"
    assert stats.ticks >= 135 // 2  # a loaded machine skips some slots, never most
    assert [r.torque_safe for r in session.stop_reports] == [True, True]
    assert session.stop_reports[0].parked is True


def test_a_large_start_gap_is_refused_and_the_follower_never_moves_toward_the_leader():
    config = load_robot_config("so100")
    with Session(config, sim=True) as session:
        assert session.leader is not None, "so100 has a leader arm"
        follower = session.follower
        offset = follower.read().position + np.array([0, 40, 0, 0, 0, 0])
        follower.write(offset)
        time.sleep(0.5)
        teleop = Teleop(session.leader, follower, config.safety, config.fps)
        refused = r"differ too much to start on shoulder_lift leader -95.0 follower -55.0 deg \(more than 25\)"
        with pytest.raises(StartRefused, match=refused):
            teleop.start()


def test_the_safety_filter_bounds_each_step():
    config = load_robot_config("so100")
    with Session(config, sim=True) as session:
        assert session.leader is not None, "so100 has a leader arm"
        teleop = Teleop(session.leader, session.follower, config.safety, config.fps)
        teleop.start()
        sent = teleop.follower.read().position
        jump = sent + 50
        safe = teleop.filter(jump, sent)
    assert config.safety.max_step == 8  # degrees and percent alike
    assert np.allclose(np.abs(safe - sent), 8)
    assert teleop.filter.interventions.step_clipped == 1


def test_cli_runs_for_the_duration_and_writes_stats(tmp_path):
    stats_path = tmp_path / "stats.json"
    result = run_cli("teleop", "--robot", "so100", "--sim", "--duration", "3", "--stats-json", str(stats_path))
    assert result.returncode == 0, result.stderr
    stats = json.loads(stats_path.read_text())
    assert stats["outcome"] == "duration reached"
    loop = stats["loop"]
    assert loop["ticks"] + loop["missed_deadlines"] >= 90, "every slot of 3 s at 30 Hz ticked or was counted missed"
    assert 90 // 2 <= loop["ticks"] <= 91  # a loaded machine skips some slots, never most
    assert 0 < loop["achieved_hz"] <= 30 * 1.05, "a late tick never makes the loop burst to catch up"
    assert {"period_p50_ms", "period_p99_ms", "lateness_p99_ms", "late_ticks", "missed_deadlines"} <= set(stats["loop"])
    assert stats["stop"][0] == {"arm": "follower", "parked": True, "torque_safe": True, "detail": ""}
    assert "follower: parked, torque safe" in result.stderr


def test_cli_honours_fps(tmp_path):
    stats_path = tmp_path / "stats.json"
    result = run_cli("teleop", "--robot", "so101", "--sim", "--duration", "2", "--fps", "50", "--stats-json", str(stats_path))
    assert result.returncode == 0, result.stderr
    assert json.loads(stats_path.read_text())["loop"]["target_hz"] == 50


@pytest.mark.parametrize("sigint_ignored", [False, True], ids=["foreground", "background-job"])
def test_ctrl_c_parks_the_follower_and_exits_cleanly(tmp_path, sigint_ignored):
    stats_path = tmp_path / "stats.json"
    process, log = start_cli(
        tmp_path, "teleop", "--robot", "so100", "--sim", "--stats-json", str(stats_path), sigint_ignored=sigint_ignored
    )
    wait_for_text(process, log, "Ctrl-C to stop")
    time.sleep(2.5)  # the leader is mid-demonstration: the follower has somewhere to park from
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0, log.read_text()
    stats = json.loads(stats_path.read_text())
    assert stats["outcome"] == "interrupted (Ctrl-C)"
    assert stats["stop"][0]["parked"] is True and stats["stop"][0]["torque_safe"] is True, stats["stop"]


def test_sigterm_takes_the_same_safe_path(tmp_path):
    stats_path = tmp_path / "stats.json"
    process, log = start_cli(tmp_path, "teleop", "--robot", "so100", "--sim", "--stats-json", str(stats_path))
    wait_for_text(process, log, "Ctrl-C to stop")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, log.read_text()
    assert json.loads(stats_path.read_text())["stop"][0]["torque_safe"] is True


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("no_reply", r"motor 4 \(wrist_flex\) did not answer on /dev/pts/\d+"),
        ("corrupt_checksum", r"motor 4 \(wrist_flex\) sent corrupted replies"),
        ("overload", r"motor 4 \(wrist_flex\) on /dev/pts/\d+ reports overload"),
    ],
)
def test_an_injected_fault_gives_its_error_and_a_safe_stop(tmp_path, fault, message):
    stats_path = tmp_path / "stats.json"
    result = run_cli(
        "teleop", "--robot", "so100", "--sim", "--duration", "10",
        "--sim-fault", f"follower:wrist_flex:{fault}@1.5", "--stats-json", str(stats_path),
    )  # fmt: skip
    assert result.returncode == 1
    stats = json.loads(stats_path.read_text())
    assert stats["outcome"] == "hardware error"
    assert stats["loop"]["ticks"] < 60  # stopped at the fault, not at the 10 s duration
    assert [s["torque_safe"] for s in stats["stop"]] == [True, True]
    error_line = " ".join(result.stderr.split())
    assert re.search("error: " + message, error_line), result.stderr


def test_a_lost_leader_motor_also_stops_safely(tmp_path):
    stats_path = tmp_path / "stats.json"
    result = run_cli(
        "teleop", "--robot", "so100", "--sim", "--duration", "10",
        "--sim-fault", "leader:gripper:no_reply@1", "--stats-json", str(stats_path),
    )  # fmt: skip
    assert result.returncode == 1
    assert "motor 6 (gripper) did not answer" in " ".join(result.stderr.split())
    assert json.loads(stats_path.read_text())["stop"][0] == {"arm": "follower", "parked": True, "torque_safe": True, "detail": ""}


def test_a_config_error_exits_2_with_file_and_key(tmp_path, so100_yaml, write_robot):
    so100_yaml["safety"]["max_step"] = 0
    path = write_robot(so100_yaml)
    result = run_cli("teleop", "--robot", str(path), "--sim", "--duration", "1")
    assert result.returncode == 2
    assert f"{path}: key 'safety.max_step'" in " ".join(result.stderr.split())


def test_sim_fault_needs_sim():
    result = run_cli("teleop", "--robot", "so100", "--duration", "1", "--sim-fault", "follower:gripper:no_reply")
    assert result.returncode in (1, 2)
    assert "error:" in result.stderr


def start_cli(tmp_path: Path, *args: str, sigint_ignored: bool = False) -> tuple[subprocess.Popen, Path]:
    """`sigint_ignored` starts it as a script's background job starts: with SIGINT ignored."""
    log = tmp_path / "stderr.txt"
    command = robot_cli(*args)
    if sigint_ignored:  # as a shell does for a background job; the ignored SIGINT survives the exec
        command = ["sh", "-c", 'trap "" INT; exec "$@"', "sh", *command]
    with log.open("w") as sink:
        return subprocess.Popen(command, stderr=sink, stdout=subprocess.DEVNULL), log


def wait_for_text(process: subprocess.Popen, log, text: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        if text in log.read_text():
            return
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"never printed {text!r}; got {log.read_text()!r}")
