"""`robot-runtime run` against policy servers, as a user runs it: test mode logs every action and never
writes to the arm; autonomous mode reproduces a served episode; a stalled, crashed or garbage-sending
server ends in a parked, torque-safe arm with the reason said; the e-stop key holds, then parks."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from cli import WIDE, read_until, robot_cli, run_cli, serve_policy
from openpi_server import WebsocketPolicyServer

from drivers.feetech import FAMILY
from drivers.feetech.config import FeetechArmConfig
from recorders.action_log import read_action_log
from recorders.check import check_dataset
from recorders.reader import DatasetReader
from robot_runtime.config import load_robot_config

SIM_RUN = ("--robot", "so100", "--sim", "--no-cameras", "--task_prompt", "wave")


def cli(*args: str) -> subprocess.CompletedProcess:
    return run_cli(*args, timeout_s=120)


def stats_of(path: Path) -> dict:
    return json.loads(path.read_text())


def assert_parked_safely(stats: dict) -> None:
    (follower,) = stats["stop"]
    assert follower["parked"] is True and follower["torque_safe"], follower


def test_test_mode_logs_every_tick_and_never_writes_to_the_arm(tmp_path: Path) -> None:
    config = load_robot_config("so100")
    assert config.sim is not None, "so100.yaml has a sim section"
    log, stats = tmp_path / "actions.jsonl", tmp_path / "stats.json"
    with contextlib.ExitStack() as stack:
        (arm,) = FAMILY.simulate(config.followers, config.sim, stack)  # the bus lives here, the runtime in its own process
        assert isinstance(arm.config, FeetechArmConfig)
        calibrated = arm.writes()  # the simulator's own set-up
        with serve_policy("--script", "--amplitude", "10") as served:
            result = cli(
                "run", "--robot", "so100", "--no-cameras",
                "--set", f"followers.0.port={arm.address}", "--set", f"followers.0.calibration_dir={arm.config.calibration_dir}",
                "--mode", "test", "--task_prompt", "wave", "--policy", served.url, "--duration", "3",
                "--action-log", str(log), "--stats-json", str(stats),
            )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert arm.writes() == calibrated, "test mode wrote to the bus"
    header, rows = read_action_log(log)
    assert header["mode"] == "test" and header["joints"][0] == "shoulder_pan.pos"
    assert len(rows) == stats_of(stats)["loop"]["ticks"]
    policy_rows = [r for r in rows if r["phase"] == "policy" and r["requested"] is not None]
    assert len(policy_rows) > 20
    requested = np.array([r["requested"] for r in policy_rows])
    states = np.array([r["state"] for r in policy_rows])
    assert np.ptp(requested[:, 0]) > 5, "the scripted policy asks for motion"
    assert np.ptp(states, axis=0).max() < 0.5, "the arm stayed where it was"
    assert all(r["chunk"] is not None and r["inference_ms"] > 0 for r in policy_rows)
    assert "not parked, torque safe (observed only: nothing was written)" in result.stderr


def test_autonomous_mode_reproduces_a_served_episode(tmp_path: Path) -> None:
    demo, rerun, stats = tmp_path / "demo", tmp_path / "rerun", tmp_path / "stats.json"
    recorded = cli(
        "record", "--robot", "so100", "--sim", "--no-cameras", "--dataset", str(demo), "--task", "wave", "--episode-time", "7",
        "--reset-time", "0", "--video-codec", "h264",
    )
    assert recorded.returncode == 0, recorded.stderr
    with serve_policy("--replay", str(demo), "--episode", "0") as served:
        result = cli(
            "run", *SIM_RUN, "--mode", "autonomous", "--policy", served.url, "--duration", "8", "--record", str(rerun),
            "--video-codec", "h264", "--stats-json", str(stats),
        )
    assert result.returncode == 0, result.stderr
    out = stats_of(stats)
    assert out["policy_stats"]["rejected_replies"] == 0 and out["safety_interventions"]["rejected"] == 0
    assert_parked_safely(out)
    taught = DatasetReader(demo).episode(0).states
    followed = DatasetReader(rerun).episode(0).states
    assert len(followed) > 150
    shift, error = best_alignment(taught, followed)
    assert error.max() < 3.0, f"the follower strayed from the demonstration's path by {error} (shift {shift} frames)"
    assert np.ptp(taught, axis=0).max() > 30, "the demonstration should move the arm"
    assert DatasetReader(rerun).episode(0).task == "wave"
    assert check_dataset(rerun).ok


def best_alignment(reference: np.ndarray, trajectory: np.ndarray, slack_frames: int = 10) -> tuple[int, np.ndarray]:
    """The policy takes over after its approach move, so the trajectory starts some frames into the
    reference: the shift that fits best, and the per-joint error there of each frame against the nearest
    reference frame within `slack_frames` of it. A busy computer skips ticks in the recording and in the
    run, which moves frames in time but not off the path."""
    best: tuple[float, int, np.ndarray] | None = None
    for shift in range(len(reference) - 60):
        n = min(len(trajectory), len(reference) - shift)
        error = np.abs(trajectory[:n] - reference[shift : shift + n])
        if best is None or error.mean() < best[0]:
            best = (error.mean(), shift, error)
    assert best is not None
    _, shift, aligned = best
    nearest = np.empty_like(aligned)
    for k in range(len(aligned)):
        window = np.abs(reference[max(0, shift + k - slack_frames) : shift + k + slack_frames + 1] - trajectory[k])
        nearest[k] = window[window.max(axis=1).argmin()]
    return shift, nearest.max(axis=0)


@pytest.mark.parametrize(
    "scheduling", [("--scheduling", "sync"), ("--scheduling", "async", "--ensemble", "0.1"), ("--actions-per-chunk", "5")]
)
def test_every_scheduling_executes_fresh_chunks_to_the_end(tmp_path: Path, scheduling: tuple[str, ...]) -> None:
    stats, log = tmp_path / "stats.json", tmp_path / "actions.jsonl"
    with serve_policy("--script", "--horizon", "20") as served:
        result = cli(
            "run", *SIM_RUN, "--mode", "autonomous", "--policy", served.url, "--duration", "3", *scheduling,
            "--stats-json", str(stats), "--action-log", str(log),
        )
    assert result.returncode == 0, result.stderr
    out = stats_of(stats)
    assert out["policy_stats"]["chunks"] >= 3
    _, rows = read_action_log(log)
    policy = [r for r in rows if r["phase"] == "policy"]
    assert sum(r["requested"] is None for r in policy) <= 1  # at most the tick after the approach, waiting for a fresh chunk
    assert max(r["step"] for r in policy if r["step"] is not None) < 20
    assert_parked_safely(out)


def test_a_first_reply_slower_than_the_request_timeout_is_waited_for(tmp_path: Path) -> None:
    """Servers compile on their first request: it may take far longer than any later one."""
    stats = tmp_path / "stats.json"
    with serve_policy("--script", "--fault", "stall@1", "--stall-s", "3") as served:
        result = cli(
            "run", *SIM_RUN, "--mode", "test", "--policy", served.url, "--duration", "6", "--request-timeout-s", "1",
            "--stats-json", str(stats), "--action-log", str(tmp_path / "log.jsonl"),
        )
    assert result.returncode == 0, result.stderr
    out = stats_of(stats)["policy_stats"]
    assert out["chunks"] >= 2 and out["failed_requests"] == 0
    assert out["inference_max_ms"] > 2500


def test_a_stalled_server_trips_the_watchdog_and_the_arm_parks(tmp_path: Path) -> None:
    stats = tmp_path / "stats.json"
    with serve_policy("--script", "--fault", "stall@4") as served:
        result = cli(
            "run", *SIM_RUN, "--mode", "autonomous", "--policy", served.url, "--duration", "20", "--set", "safety.watchdog_s=0.5",
            "--stats-json", str(stats),
        )
    assert result.returncode == 1
    assert "watchdog: no fresh action from the policy for" in result.stderr
    out = stats_of(stats)
    assert out["outcome"] == "safety stop"
    assert out["loop"]["duration_s"] < 15
    assert out["safety_interventions"]["held"] > 0
    assert_parked_safely(out)


def test_nan_and_misshapen_replies_never_reach_the_arm(tmp_path: Path) -> None:
    stats, log = tmp_path / "stats.json", tmp_path / "actions.jsonl"
    with serve_policy("--script", "--horizon", "10", "--fault", "nan@3", "--fault", "shape@5") as served:
        result = cli(
            "run", *SIM_RUN, "--mode", "autonomous", "--policy", served.url, "--duration", "4", "--stats-json", str(stats),
            "--action-log", str(log),
        )
    assert result.returncode == 0, result.stderr
    out = stats_of(stats)
    assert out["policy_stats"]["rejected_replies"] == 2
    _, rows = read_action_log(log)
    assert all(np.isfinite(r["sent"]).all() for r in rows)
    assert all(r["requested"] is None or np.isfinite(r["requested"]).all() for r in rows)
    assert_parked_safely(out)


def test_a_crashed_server_ends_the_run_with_a_parked_arm(tmp_path: Path) -> None:
    stats = tmp_path / "stats.json"
    with serve_policy("--script") as served:
        run = subprocess.Popen(
            robot_cli(
                "run", *SIM_RUN, "--mode", "autonomous", "--policy", served.url, "--duration", "30", "--stats-json", str(stats),
            ),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=WIDE,
        )
        read_until(run, "AUTONOMOUS")
        time.sleep(2.5)
        served.process.kill()
        stderr = run.communicate(timeout=60)[1]
    assert run.returncode == 1, stderr
    out = stats_of(stats)
    # Whichever comes first: the client giving up reconnecting, or the watchdog while it still tries.
    assert out["outcome"] in ("policy server failure", "safety stop")
    assert f"policy server {served.url}: connection refused" in stderr
    assert_parked_safely(out)


def test_an_unreachable_server_is_an_error_before_anything_moves() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = cli("run", *SIM_RUN, "--mode", "autonomous", "--policy", f"ws://127.0.0.1:{port}")
    assert result.returncode == 1
    assert f"policy server ws://127.0.0.1:{port}" in result.stderr
    assert "parking" not in result.stderr


def test_space_is_an_e_stop_the_arm_holds_then_parks(tmp_path: Path) -> None:
    stats, log = tmp_path / "stats.json", tmp_path / "actions.jsonl"
    master, slave = pty.openpty()  # a terminal for the keys, as over SSH
    with serve_policy("--script", "--amplitude", "20") as served:
        run = subprocess.Popen(
            robot_cli(
                "run", *SIM_RUN, "--mode", "autonomous", "--policy", served.url, "--duration", "30", "--stats-json", str(stats),
                "--action-log", str(log),
            ),
            stdin=slave,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=WIDE,
        )
        os.close(slave)
        try:
            read_until(run, "space = e-stop")
            time.sleep(3.0)
            os.write(master, b" ")
            stderr = run.communicate(timeout=60)[1]
        finally:
            run.kill()
            os.close(master)
    assert run.returncode == 0, stderr
    out = stats_of(stats)
    assert out["outcome"] == "e-stop (space pressed)"
    assert out["safety_interventions"]["estops"] == 1
    assert out["loop"]["duration_s"] < 20
    assert_parked_safely(out)


def test_the_reference_openpi_server_drives_a_test_run(tmp_path: Path) -> None:
    """openpi-server, unmodified, with a stub policy that checks the observation it gets."""
    seen: list[dict] = []

    class Stub:
        def infer(self, obs: dict) -> dict:
            seen.append(obs)
            state = np.asarray(obs["observation/state"], dtype=np.float64)
            return {"actions": np.tile(state + 1.0, (50, 1))}

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = WebsocketPolicyServer(Stub(), host="127.0.0.1", port=port, metadata={"reset_pose": [0.0]})
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stats = tmp_path / "stats.json"
    result = cli(
        "run", *SIM_RUN, "--mode", "test", "--policy", f"ws://127.0.0.1:{port}", "--duration", "2", "--stats-json", str(stats),
        "--action-log", str(tmp_path / "log.jsonl"),
    )
    assert result.returncode == 0, result.stderr
    assert seen and seen[0]["prompt"] == "wave" and seen[0]["observation/state"].shape == (6,)
    assert stats_of(stats)["policy_stats"]["chunks"] == len(seen)
