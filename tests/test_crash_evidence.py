"""A run that dies where no safe stop can run (SIGKILL, a fatal signal) leaves evidence: its log holds the
trace of the fatal signal, and the next command that opens the same arm, or the dataset the run wrote, says
that the last run ended without a safe stop and where its log is, once."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from cli import WIDE, read_until, robot_cli

from robot_runtime import run_evidence
from robot_runtime.run_evidence import STATE_DIR_ENV, RunLog, RunMarker, unsafe_ends

TELEOP = ("teleop", "--robot", "so100", "--sim", "--no-cameras")
ARMS = "the follower at /dev/ttyACM0 (simulated) and the leader at /dev/ttyACM1 (simulated)"


def env(state: Path) -> dict[str, str]:
    return {**WIDE, STATE_DIR_ENV: str(state)}


def cli(state: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        robot_cli(*args), check=False, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, env=env(state)
    )


def killed_mid_run(state: Path, signum: int, *args: str, ready: str = "Ctrl-C to stop") -> int:
    """Start a command, kill it with `signum` once it printed `ready`, and return its pid."""
    process = subprocess.Popen(
        robot_cli(*args), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env(state)
    )
    try:
        read_until(process, ready, timeout_s=90)
        time.sleep(0.5)  # the loop is driving the arm
        os.kill(process.pid, signum)
        assert process.wait(timeout=30) == -signum
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)
    return process.pid


def warnings(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("warning: ")]


def test_after_sigkill_the_next_command_on_the_arm_says_the_last_run_ended_without_a_safe_stop(tmp_path: Path) -> None:
    pid = killed_mid_run(tmp_path, signal.SIGKILL, *TELEOP)
    after = cli(tmp_path, *TELEOP, "--duration", "0.5")
    assert after.returncode == 0, after.stderr
    (warning,) = warnings(after)
    assert f"the last run on {ARMS} ('teleop so100', pid {pid}, started " in warning
    assert "ended without a safe stop" in warning
    log = re.search(r"its log: (\S+\.log)$", warning)
    assert log, warning
    assert "it left no trace (killed by SIGKILL, or the power went)" in warning
    assert f"teleop so100: pid {pid}" in Path(log[1]).read_text()

    again = cli(tmp_path, *TELEOP, "--duration", "0.5")
    assert again.returncode == 0 and warnings(again) == [], again.stderr  # told once


def test_after_a_segfault_the_log_holds_its_trace_and_the_next_command_says_where(tmp_path: Path) -> None:
    killed_mid_run(tmp_path, signal.SIGSEGV, *TELEOP)
    after = cli(tmp_path, *TELEOP, "--duration", "0.5")
    assert after.returncode == 0, after.stderr
    (warning,) = warnings(after)
    log = re.search(r"the trace of its fatal signal is in (\S+\.log)$", warning)
    assert log, warning
    trace = Path(log[1]).read_text()
    assert "Fatal Python error: Segmentation fault" in trace
    assert "most recent call first" in trace and "robot_runtime/loop.py" in trace  # every thread's stack, the loop's too


def test_a_run_that_stops_safely_leaves_its_log_and_no_marker(tmp_path: Path) -> None:
    result = cli(tmp_path, *TELEOP, "--duration", "0.5")
    assert result.returncode == 0, result.stderr
    (log,) = (tmp_path / "logs").glob("*.log")
    assert re.search(rf"run log\s+│ {re.escape(str(log))}", result.stderr), result.stderr
    text = log.read_text()
    assert "teleop so100: pid " in text and "outcome: duration reached; follower: parked, torque safe" in text
    assert list((tmp_path / "running").iterdir()) == []


def test_a_dataset_whose_recording_was_killed_is_named_when_it_is_next_opened(tmp_path: Path) -> None:
    state, dataset = tmp_path / "state", tmp_path / "demo"
    record = ("record", "--robot", "so100", "--sim", "--no-cameras", "--dataset", str(dataset), "--task", "stack")
    killed_mid_run(state, signal.SIGKILL, *record, "--episode-time", "30", ready="recording episode 0")
    check = cli(state, "dataset", "check", str(dataset), "--no-decode")
    dataset_warnings = [w for w in warnings(check) if str(dataset) in w]
    assert len(dataset_warnings) == 1, check.stderr
    assert f"the last run writing {dataset} ('record so100', pid " in dataset_warnings[0]
    assert "`record --resume` commits them" in dataset_warnings[0]
    # the arms were not told yet: the next command on them is
    after = cli(state, *TELEOP, "--duration", "0.5")
    assert any(f"the last run on {ARMS} ('record so100'" in w for w in warnings(after)), after.stderr


# ---- the markers themselves ---------------------------------------------------------------------


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path))
    return tmp_path


def write_marker(state: Path, name: str, pid: int, process: str | None) -> Path:
    path = state / "running" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record: dict[str, object] = {
        "pid": pid,
        "process": process,
        "title": "teleop so100",
        "started": "2026-01-01T00:00:00+00:00",
        "log": str(state / "logs" / f"{name}.log"),
        "arms": {"feetech /dev/ttyACM0": "the follower at /dev/ttyACM0"},
        "datasets": [],
    }
    path.write_text(json.dumps(record))
    return path


def test_a_marker_of_a_process_still_running_is_not_a_crash(state: Path) -> None:
    write_marker(state, "live", os.getpid(), run_evidence.process_token(os.getpid()))
    assert unsafe_ends(arms=["feetech /dev/ttyACM0"]) == []


def test_a_marker_whose_pid_now_belongs_to_another_process_is_a_crash(state: Path) -> None:
    path = write_marker(state, "reused", os.getpid(), "1")  # same pid, another start time: the run is gone
    (message,) = unsafe_ends(arms=["feetech /dev/ttyACM0"])
    assert "the last run on the follower at /dev/ttyACM0 ('teleop so100'" in message
    assert f"its log {state / 'logs' / 'reused.log'} is gone" in message
    assert not path.exists()


def test_a_marker_is_only_told_to_the_arms_and_datasets_it_names(state: Path) -> None:
    path = write_marker(state, "other", 2**22 + 1, None)  # above Linux's pid_max: no such process
    assert unsafe_ends(arms=["feetech /dev/ttyACM1"], dataset=state / "elsewhere") == []
    assert path.exists()


def test_an_unreadable_marker_is_named(state: Path) -> None:
    (state / "running").mkdir()
    (state / "running" / "broken.json").write_text("{")
    (message,) = unsafe_ends(arms=["feetech /dev/ttyACM0"])
    assert message.startswith(f"{state / 'running' / 'broken.json'}: a run marker that cannot be read")


def test_the_safe_stop_takes_the_arms_off_the_marker_and_the_end_of_the_run_deletes_it(state: Path) -> None:
    with RunLog("teleop so100") as run_log:
        marker = RunMarker.create(run_log, {"feetech /dev/ttyACM0": "the follower at /dev/ttyACM0"})
        RunMarker.add_dataset(state / "demo")
        assert json.loads(marker.path.read_text())["datasets"] == [str((state / "demo").resolve())]
        marker.release_arms()
        assert json.loads(marker.path.read_text())["arms"] == {}
        marker.close(arms_safe=True)
        assert not marker.path.exists() and RunMarker.active is None


def test_an_arm_that_could_not_be_stopped_safely_stays_marked(state: Path) -> None:
    with RunLog("teleop so100") as run_log:
        marker = RunMarker.create(run_log, {"feetech /dev/ttyACM0": "the follower at /dev/ttyACM0"})
        marker.close(arms_safe=False)
    assert json.loads(marker.path.read_text())["arms"] == {"feetech /dev/ttyACM0": "the follower at /dev/ttyACM0"}


def test_setup_motors_on_an_arm_a_dead_run_left_under_torque_says_so_before_it_touches_the_bus(state: Path) -> None:
    write_marker(state, "dead", 2**22 + 1, None)  # above Linux's pid_max: no such process
    result = cli(state, "setup-motors", "--robot", "so100", "--arm", "follower", "--port", str(state / "no-such-port"))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert any("the last run on the follower at /dev/ttyACM0 ('teleop so100'" in w for w in warnings(result)), result.stderr
