"""The path users with hardware take, for tests: simulated devices started as their own processes (as real
arms are powered up on their own), the robot config pointed at them with `--set` or a written YAML, and
the command run without `--sim` in its own process, with the simulator acted on once the command runs.

    with simulated_robot("feetech", "so100") as sim:           # `robot-runtime sim feetech --robot so100`
        result = run_control(
            "teleop", "--robot", "so100", *sim.overrides, "--no-cameras", "--duration", "4",
            stats_json=tmp_path / "stats.json", once_running=sim.start_demo,
        )

    with trossen_controllers(2) as (follower_ip, leader_ip):   # the vendor's `trossen-arm-sim --host IP`
        ...
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from cli import WIDE, read_until, robot_cli, run_cli, serve_policy

from drivers.trossen.config import TCP_PORT, UDP_PORT
from recorders.action_log import read_action_log
from recorders.reader import DatasetReader

SIM_READY_TIMEOUT_S = 90.0
"""Start-up of a simulator process: imports, a MuJoCo model per WidowX AI arm; generous for a loaded 2-core machine."""
SIM_REPLY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 30.0
COMMAND_TIMEOUT_S = 240.0
"""A whole control command, start-up and safe stop included; a hang fails the test instead of the suite."""
RUNNING_MARK = "Ctrl-C"
"""Every control command tells how to stop it once it runs: the moment to act on the simulators."""
TRACEBACK = "Traceback"
"""Python's and rich's traceback headers both contain it."""


class LineReader:
    """Whole lines from a pipe, each waited for with a bound: a simulator that hangs fails the test."""

    def __init__(self, fd: int, describe: Callable[[], str]) -> None:
        self._fd = fd
        self._describe = describe
        self._pending = b""

    def line(self, timeout_s: float, waiting_for: str) -> str:
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._pending:
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                raise AssertionError(f"no {waiting_for} within {timeout_s:g} s; {self._describe()}")
            ready, _, _ = select.select([self._fd], [], [], min(remaining_s, 0.5))
            if ready:
                chunk = os.read(self._fd, 65536)
                if not chunk:
                    raise AssertionError(f"the simulator closed its output before {waiting_for}; {self._describe()}")
                self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line.decode().rstrip("\r")


@dataclass
class SimulatedRobot:
    """A running `robot-runtime sim FAMILY --robot R`: each arm's address, the `--set` overrides that point the
    robot config at them, and its command channel (one line in, `ok ...` or `error: ...` out)."""

    process: subprocess.Popen[bytes]
    arms: dict[str, str]
    """Arm label -> where it is served (a pty path, a loopback address)."""
    overrides: tuple[str, ...]
    """`--set=KEY=VALUE` arguments, as printed by the simulator."""
    log: Path
    lines: LineReader
    written_config: Path | None = None
    """The robot YAML the simulator wrote (--write-config), pointed at its arms."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def command(self, line: str) -> str:
        """Send one command and return what follows `ok` in its reply; any other reply fails the test."""
        assert self.process.stdin is not None
        with self._lock:  # one command at a time: replies come in order, on one pipe
            self.process.stdin.write(f"{line}\n".encode())
            self.process.stdin.flush()
            reply = self.lines.line(SIM_REPLY_TIMEOUT_S, f"reply to {line!r}")
        assert reply == "ok" or reply.startswith("ok "), f"the simulator answered {line!r} with {reply!r}; {self.describe()}"
        return reply[3:]

    def robot_args(self, robot: str) -> tuple[str, ...]:
        """How a command is pointed at the simulated arms: the YAML the simulator wrote, else `robot` and the overrides."""
        return ("--robot", str(self.written_config)) if self.written_config is not None else ("--robot", robot, *self.overrides)

    def start_demo(self) -> None:
        """The simulated leaders start their demonstration (until now they held their start pose)."""
        self.command("demo")

    def fault(self, arm: str, joint: str, fault: str) -> None:
        self.command(f"fault {arm}:{joint}:{fault}")

    def pose(self, arm: str) -> dict[str, float]:
        """Where the simulated arm's joints are, as the simulator itself knows it (not over the wire)."""
        return json.loads(self.command(f"pose {arm}"))

    def writes(self, arm: str) -> dict[str, int]:
        """What a client commanded the simulated arm: register (or command) name -> writes received."""
        return json.loads(self.command(f"writes {arm}"))

    def describe(self) -> str:
        code = self.process.poll()
        state = "running" if code is None else f"exited with code {code}"
        return f"simulator {state}, its stderr: {_tail(self.log)}"

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it; its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"the simulator did not stop within {STOP_TIMEOUT_S:g} s of SIGTERM; {self.describe()}"
            ) from None


@contextlib.contextmanager
def simulated_robot(family: str, robot: str, *args: str, write_config: bool = False) -> Iterator[SimulatedRobot]:
    """`robot-runtime sim FAMILY --robot ROBOT ARGS...` once it has printed `ready`; stopped on exit, whatever
    happened. `write_config`: the simulator also writes the robot YAML pointed at its arms (--write-config)."""
    with tempfile.TemporaryDirectory(prefix="hardware-path-sim-") as workdir:
        log = Path(workdir) / "stderr.txt"
        written = Path(workdir) / f"{Path(robot).stem}.yaml" if write_config else None
        command = robot_cli("sim", family, "--robot", robot, *args, *(("--write-config", str(written)) if written else ()))
        with log.open("wb") as sink:  # a file, not a pipe: nobody drains a pipe while the test runs
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=sink, env=WIDE)
        assert process.stdout is not None
        sim = SimulatedRobot(process, {}, (), log, LineReader(process.stdout.fileno(), lambda: f"its stderr: {_tail(log)}"))
        try:
            sim.arms, sim.overrides = _announcement(sim)
            if written is not None:
                assert written.is_file(), f"--write-config {written}: no file written; {sim.describe()}"
                sim.written_config = written
            yield sim
        finally:
            with contextlib.suppress(AssertionError):  # the test's own failure, if any, is the one to see
                sim.stop()
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    pipe.close()


def _announcement(sim: SimulatedRobot) -> tuple[dict[str, str], tuple[str, ...]]:
    """Parse `<label> <address>` lines, then `overrides --set=... ...`, then `ready`."""
    arms: dict[str, str] = {}
    deadline = time.monotonic() + SIM_READY_TIMEOUT_S
    while True:
        line = sim.lines.line(max(0.0, deadline - time.monotonic()), "'overrides' line")
        words = shlex.split(line)
        if words and words[0] == "overrides":
            overrides = tuple(words[1:])
            break
        assert len(words) == 2, f"expected '<label> <address>' or 'overrides ...', got {line!r}; {sim.describe()}"
        arms[words[0]] = words[1]
    assert arms, f"the simulator named no arm; {sim.describe()}"
    assert overrides and all(o.startswith("--set=") for o in overrides), f"overrides must be --set=KEY=VALUE: {overrides}"
    ready = sim.lines.line(max(0.0, deadline - time.monotonic()), "'ready' line")
    assert ready == "ready", f"expected 'ready', got {ready!r}; {sim.describe()}"
    return arms, overrides


def _tail(path: Path, lines: int = 30) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


# -- the vendor's WidowX AI controller simulator -----------------------------------------------------

TROSSEN_WS_PORT = 50002
"""trossen-arm-sim's collision stream, beside the controller's own fixed ports."""
TROSSEN_HOSTS = [f"127.0.0.{x}" for x in range(200, 255)]
"""`--sim` takes a free address from 127.0.0.2 up (starting below .66); these are far from it, so tests running
beside each other do not meet."""


@contextlib.contextmanager
def trossen_controllers(count: int) -> Iterator[list[str]]:
    """`count` vendor `trossen-arm-sim --host IP` processes, each on a free loopback address and accepting
    connections on its TCP port, as powered-up controllers on the network; their addresses."""
    executable = shutil.which("trossen-arm-sim", path=str(Path(sys.executable).parent))
    assert executable is not None, f"trossen-arm-sim is not installed beside {sys.executable} (pip install trossen-arm-sim)"
    with tempfile.TemporaryDirectory(prefix="hardware-path-trossen-") as workdir, contextlib.ExitStack() as stack:
        candidates = random.sample(TROSSEN_HOSTS, len(TROSSEN_HOSTS))
        hosts: list[str] = []
        while len(hosts) < count:
            assert candidates, "every loopback address 127.0.0.200-254 has a WidowX AI controller port in use"
            host = candidates.pop()
            if _controller_ports_free(host) and _start_controller(executable, host, Path(workdir), stack):
                hosts.append(host)
        yield hosts


def _start_controller(executable: str, host: str, workdir: Path, stack: contextlib.ExitStack) -> bool:
    """Start one controller and wait until it accepts connections; False if another process took the
    address between the check and the bind."""
    log = workdir / f"{host}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen([executable, "--host", host], stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT)
    stack.callback(_end, process)
    deadline = time.monotonic() + SIM_READY_TIMEOUT_S
    while process.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection((host, TCP_PORT), timeout=1.0):
            return True
        assert time.monotonic() < deadline, (
            f"trossen-arm-sim --host {host} did not accept connections within {SIM_READY_TIMEOUT_S:g} s: {_tail(log)}"
        )
        time.sleep(0.1)
    output = _tail(log)
    assert "Address already in use" in output, f"trossen-arm-sim --host {host} exited with code {process.returncode}: {output}"
    return False


def _controller_ports_free(host: str) -> bool:
    for kind, port in (
        (socket.SOCK_STREAM, TCP_PORT),
        (socket.SOCK_DGRAM, UDP_PORT),
        (socket.SOCK_STREAM, TROSSEN_WS_PORT),
    ):
        with socket.socket(socket.AF_INET, kind) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError:
                return False
    return True


def _end(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)  # trossen-arm-sim stops its server and simulation on Ctrl-C
        try:
            process.wait(STOP_TIMEOUT_S)
            return
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait()


# -- control commands as a user runs them --------------------------------------------------------------


@dataclass(frozen=True)
class Finished:
    """A control command that ended: its exit code, everything it said, and its --stats-json."""

    returncode: int
    stderr: str
    stats: Mapping[str, Any]

    def assert_clean(self) -> None:
        assert self.returncode == 0, f"exit code {self.returncode}:\n{self.stderr}"
        assert TRACEBACK not in self.stderr, self.stderr

    def stops(self) -> dict[str, dict[str, Any]]:
        """Arm label -> its stop report."""
        return {stop["arm"]: stop for stop in self.stats["stop"]}

    def assert_stopped_safely(self, followers: tuple[str, ...], leaders: tuple[str, ...] = ()) -> None:
        """Every follower parked with torque safe, every leader torque safe, each said on the console."""
        stops = self.stops()
        assert sorted(stops) == sorted(followers + leaders), stops
        for arm in followers:
            assert stops[arm]["parked"] is True and stops[arm]["torque_safe"] is True, stops[arm]
            assert f"{arm}: parked, torque safe" in self.stderr, self.stderr
        for arm in leaders:
            assert stops[arm]["torque_safe"] is True, stops[arm]


def run_control(
    *args: str, stats_json: Path, once_running: Callable[[], None] | None = None, timeout_s: float = COMMAND_TIMEOUT_S
) -> Finished:
    """Run `robot-runtime ARGS... --stats-json PATH` (stdin not a terminal); `once_running` is called when
    the command says how to stop it, i.e. after its start-up checks, while its loop runs."""
    process = subprocess.Popen(
        robot_cli(*args, "--stats-json", str(stats_json)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=WIDE,
    )
    try:
        said = ""
        if once_running is not None:
            said = read_until(process, RUNNING_MARK, timeout_s)
            once_running()
        _, rest = process.communicate(timeout=timeout_s)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    stderr = said + rest
    assert stats_json.exists(), f"no {stats_json.name} written (exit code {process.returncode}):\n{stderr}"
    return Finished(process.returncode, stderr, json.loads(stats_json.read_text()))


# -- the control commands, each as one scenario any setup runs ----------------------------------------


@dataclass(frozen=True)
class Setup:
    """A built-in robot setup as these tests drive it, with what its units make a large or a small move."""

    robot: str
    family: str
    followers: tuple[str, ...]
    leaders: tuple[str, ...]
    moves: float
    """Joint travel, in joint units, that only a demonstration or a policy moving the arm explains."""
    tracks: float
    """How near, in joint units, a follower stays to the positions it is sent (median)."""
    worst_lag: float
    """The largest lag of a follower behind a moving target, in joint units, on a loaded machine: less than
    the demonstration's travel, so a wrong episode still fails."""
    still: float
    """Travel, in joint units, below which a follower counts as not moved (its hold and sensor noise)."""
    goal_writes: str
    """The simulator's counter of goal positions the follower was sent."""
    run_options: tuple[str, ...] = ()
    """Options `run` needs on this setup without its cameras (e.g. an observation layout)."""


SO100 = Setup(
    "so100", "feetech", ("follower",), ("leader",),
    moves=30.0, tracks=10.0, worst_lag=10.0, still=1.0, goal_writes="Goal_Position",
)  # fmt: skip
BI_SO100 = Setup(
    "bi_so100", "feetech", ("left_follower", "right_follower"), ("left_leader", "right_leader"),
    moves=30.0, tracks=10.0, worst_lag=10.0, still=1.0, goal_writes="Goal_Position",
)  # fmt: skip
"""Degrees (percent for grippers): the demonstration moves shoulder_lift by 65."""
WIDOWXAI = Setup(
    "widowxai", "trossen", ("follower",), ("leader",),
    moves=0.3, tracks=0.2, worst_lag=0.6, still=0.02, goal_writes="position_goal_changes",
)  # fmt: skip
BI_WIDOWXAI = Setup(
    "bi_widowxai", "trossen", ("left_follower", "right_follower"), ("left_leader", "right_leader"),
    moves=0.3, tracks=0.2, worst_lag=0.6, still=0.02, goal_writes="position_goal_changes",
    run_options=("--set", "policy.preset=custom"),
)  # fmt: skip
"""Radians (metres for grippers): the demonstration moves joint_1 by 1.3. Without cameras the bimanual
setup's ALOHA layout (which needs cam_high) gives way to the custom one. The controller simulator runs
slower than real time beside two CPU hogs and lagged a moving target by up to 0.35 rad there."""


class PoseSampler:
    """Each arm's pose, read from the simulator about ten times a second in a background thread."""

    PERIOD_S = 0.1

    def __init__(self, sim: SimulatedRobot, arms: tuple[str, ...]) -> None:
        self._sim = sim
        self._samples: dict[str, list[list[float]]] = {arm: [] for arm in arms}
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._sample, name="pose-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> dict[str, np.ndarray]:
        """Arm -> samples x joints."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(SIM_REPLY_TIMEOUT_S * len(self._samples) + 1)
        if self._failure is not None:
            raise self._failure
        return {arm: np.array(samples) for arm, samples in self._samples.items()}

    def _sample(self) -> None:
        try:
            while not self._stop.wait(self.PERIOD_S):
                for arm, samples in self._samples.items():
                    samples.append(list(self._sim.pose(arm).values()))
        except BaseException as exc:  # handed to the test by stop()
            self._failure = exc


def teleop_with_demo(
    sim: SimulatedRobot, setup: Setup, tmp_path: Path, duration_s: float = 5.0
) -> tuple[Finished, dict[str, np.ndarray]]:
    """Teleop without --sim; once it runs, the leaders play their demonstration. The result, and every
    arm's pose as the simulator saw it from the demonstration's start to the end of the command."""
    sampler = PoseSampler(sim, setup.followers + setup.leaders)

    def demonstrate() -> None:
        sim.start_demo()
        sampler.start()

    try:
        result = run_control(
            "teleop", *sim.robot_args(setup.robot), "--no-cameras", "--duration", f"{duration_s:g}",
            stats_json=tmp_path / "teleop.json", once_running=demonstrate,
        )  # fmt: skip
    finally:
        poses = sampler.stop()
    return result, poses


def assert_followers_followed(poses: dict[str, np.ndarray], setup: Setup) -> None:
    """Each leader moved far, and its follower moved at least half as far on the leader's most moved joint."""
    for follower, leader in zip(setup.followers, setup.leaders, strict=True):
        assert len(poses[leader]) >= 5, f"too few pose samples of {leader}: {len(poses[leader])}"
        leader_travel, follower_travel = np.ptp(poses[leader], axis=0), np.ptp(poses[follower], axis=0)
        joint = int(np.argmax(leader_travel))
        assert leader_travel[joint] > setup.moves, f"{leader} did not play its demonstration: travel {leader_travel}"
        assert follower_travel[joint] > 0.5 * leader_travel[joint], (
            f"{follower} travelled {follower_travel}, its leader {leader_travel}"
        )


@dataclass(frozen=True)
class Recorded:
    """A dataset `record_with_demo` wrote, how the command ended, and the goals each follower was sent."""

    dataset: Path
    result: Finished
    goals_sent: dict[str, int]
    """Follower -> goal positions it received during the recording, by the simulator's count."""


def record_with_demo(
    sim: SimulatedRobot, setup: Setup, dataset: Path, tmp_path: Path, *options: str, episode_time_s: float = 4.0
) -> Recorded:
    """One episode recorded without --sim, the leaders playing their demonstration once it runs."""
    before = {arm: sim.writes(arm).get(setup.goal_writes, 0) for arm in setup.followers}
    result = run_control(
        "record", *sim.robot_args(setup.robot), "--dataset", str(dataset), "--task", "wave",
        "--episode-time", f"{episode_time_s:g}", "--reset-time", "0", "--video-codec", "h264", *options,
        stats_json=tmp_path / "record.json", once_running=sim.start_demo,
    )  # fmt: skip
    goals = {arm: sim.writes(arm).get(setup.goal_writes, 0) - before[arm] for arm in setup.followers}
    return Recorded(dataset, result, goals)


def assert_dataset_check_passes(dataset: Path) -> None:
    checked = run_cli("dataset", "check", str(dataset), timeout_s=COMMAND_TIMEOUT_S)
    assert checked.returncode == 0, f"dataset check {dataset}:\n{checked.stdout}{checked.stderr}"


def assert_demonstration_recorded(dataset: Path, setup: Setup) -> None:
    """The recorded actions move far (the leaders' demonstration) and the follower's states track them."""
    episode = DatasetReader(dataset).episode(0)
    actions, states = episode.actions, episode.states
    assert np.ptp(actions, axis=0).max() > setup.moves, f"the actions barely move: {np.ptp(actions, axis=0)}"
    assert np.ptp(states, axis=0).max() > setup.moves, f"the follower barely moved: {np.ptp(states, axis=0)}"
    error = np.abs(states - actions).max(axis=1)
    assert np.median(error) < setup.tracks, f"the follower strayed from its actions by {np.median(error):.3g} (median)"


def replay_episode(sim: SimulatedRobot, setup: Setup, dataset: Path, tmp_path: Path) -> Finished:
    return run_control(
        "replay", *sim.robot_args(setup.robot), "--dataset", str(dataset), "--episode", "0", stats_json=tmp_path / "replay.json"
    )


def assert_replayed(result: Finished, dataset: Path, setup: Setup) -> None:
    """Every frame played and the follower within `setup.worst_lag` of each action, by the command's own report."""
    frames = len(DatasetReader(dataset).episode(0).actions)
    assert result.stats["frames replayed"] == f"{frames} / {frames}", result.stats
    errors = [float(part.split()[-1]) for part in result.stats["max tracking error"].split(", ")]
    assert len(errors) == len(DatasetReader(dataset).info["features"]["action"]["names"])
    assert max(errors) < setup.worst_lag, result.stats["max tracking error"]


def run_test_mode(sim: SimulatedRobot, setup: Setup, tmp_path: Path, amplitude: float) -> tuple[Finished, list[dict[str, Any]]]:
    """`run --mode test` against a scripted policy swinging by `amplitude`: the result and the action log's
    rows. Fails unless the simulated followers received nothing at all during the run, by their own count."""
    before = {arm: sim.writes(arm) for arm in setup.followers}
    log = tmp_path / "actions.jsonl"
    with serve_policy("--script", "--amplitude", f"{amplitude:g}") as served:
        result = run_control(
            "run", *sim.robot_args(setup.robot), "--no-cameras", *setup.run_options, "--mode", "test",
            "--task_prompt", "wave", "--policy", served.url, "--duration", "3", "--action-log", str(log),
            stats_json=tmp_path / "run.json",
        )  # fmt: skip
    after = {arm: sim.writes(arm) for arm in setup.followers}
    assert after == before, f"test mode wrote to the followers: before {before}, after {after}"
    return result, read_action_log(log)[1]


def run_autonomous(sim: SimulatedRobot, setup: Setup, dataset: Path, tmp_path: Path) -> tuple[Finished, Path]:
    """`run --mode autonomous` against `serve-policy --replay` of the dataset's episode 0, recorded: the
    result and the dataset of the run."""
    rerun = tmp_path / "rerun"
    episode_s = len(DatasetReader(dataset).episode(0).actions) / DatasetReader(dataset).fps
    with serve_policy("--replay", str(dataset), "--episode", "0") as served:
        result = run_control(
            "run", *sim.robot_args(setup.robot), "--no-cameras", *setup.run_options, "--mode", "autonomous",
            "--task_prompt", "wave", "--policy", served.url, "--duration", f"{episode_s + 2:g}", "--record", str(rerun),
            "--video-codec", "h264", stats_json=tmp_path / "run.json",
        )  # fmt: skip
    return result, rerun


def assert_reproduced(taught: Path, rerun: Path, setup: Setup) -> None:
    """The follower's states in the rerun match the taught episode's, at the shift that fits best (the
    policy takes over after its approach move, some frames into the episode)."""
    reference, trajectory = DatasetReader(taught).episode(0).states, DatasetReader(rerun).episode(0).states
    assert np.ptp(trajectory, axis=0).max() > setup.moves, f"the follower barely moved: {np.ptp(trajectory, axis=0)}"
    errors = []
    for shift in range(len(reference) // 2):
        n = min(len(trajectory), len(reference) - shift)
        errors.append(np.abs(trajectory[:n] - reference[shift : shift + n]).max(axis=1))
    best = min(errors, key=lambda e: float(np.median(e)))
    assert np.median(best) < setup.tracks, f"the follower strayed from the taught episode by {np.median(best):.3g} (median)"
