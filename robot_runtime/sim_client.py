"""`--sim`: a robot's simulated arms started as simulator processes (robot_runtime.sim_serve, what
`robot-runtime sim` runs), one per family, and the robot config pointed at them with the overrides they
print, as a user would with `--set`. From there a command runs exactly the code it runs on hardware."""

from __future__ import annotations

import contextlib
import json
import queue
import shlex
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

import numpy as np
import yaml
from pydantic import BaseModel

from robot_runtime.config import ConfigError, RobotConfig, load_robot_config
from robot_runtime.family import SimulatedArm
from robot_runtime.robot import ArmError
from robot_runtime.sim_console import stop_process
from robot_runtime.sim_serve import OVERRIDES, READY

READY_TIMEOUT_S = 120.0
"""Start-up of a simulator process: imports, then for WidowX AI one MuJoCo controller process per arm,
one after another; generous for a loaded 2-core machine."""
REPLY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0
LOG_TAIL_LINES = 20


class SimulatorError(ArmError):
    """A simulator process did not start, or stopped answering; the message quotes the end of its log."""


class SimulatorProcess:
    """One running `python -m robot_runtime.sim_serve FAMILY ROBOT_YAML`: its arms' addresses, the
    overrides that reach them, and its command channel (stdin lines, one reply line each)."""

    def __init__(self, family: str, robot_yaml: Path, log_path: Path) -> None:
        self.family = family
        self.robot_yaml = robot_yaml
        self.log_path = log_path
        self.addresses: dict[str, str] = {}
        """Arm label -> where it is served."""
        self.overrides: list[str] = []
        """`KEY=VALUE`, as `--set` takes them."""
        self._process: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()

    def launch(self) -> None:
        """Start the process. In a session of its own: a Ctrl-C at the terminal is the command's to handle
        (park the arms), not the simulator's; the command stops it after parking."""
        with self.log_path.open("w") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "robot_runtime.sim_serve", self.family, str(self.robot_yaml)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                bufsize=1,
                start_new_session=True,
            )
        threading.Thread(target=_pump, args=(self._process.stdout, self._lines), name=f"sim-{self.family}", daemon=True).start()

    def wait_ready(self) -> None:
        """Read the announcement up to `ready`: each arm's address, then the overrides."""
        while (line := self._line(READY_TIMEOUT_S, "start")) != READY:
            words = shlex.split(line)
            if words[:1] == [OVERRIDES]:
                self.overrides = [word.removeprefix("--set=") for word in words[1:]]
            elif len(words) == 2:
                self.addresses[words[0]] = words[1]
            else:
                raise self._error(f"printed {line!r}, which is neither '<label> <address>', '{OVERRIDES} ...' nor '{READY}'")

    def request(self, line: str) -> str:
        """Send one command and return what follows `ok` in its reply. A refusal (`error: ...`) raises ValueError."""
        process = self._process
        if process is None or process.stdin is None:
            raise SimulatorError(f"the {self.family} simulator is not running")
        with self._lock:
            try:
                process.stdin.write(line + "\n")
                process.stdin.flush()
            except OSError:
                raise self._error(f"stopped before {line!r}") from None
            reply = self._line(REPLY_TIMEOUT_S, f"reply to {line!r}")
        if reply.startswith("error: "):
            raise ValueError(f"the {self.family} simulator refused {line!r}: {reply.removeprefix('error: ')}")
        if reply != "ok" and not reply.startswith("ok "):
            raise self._error(f"answered {line!r} with {reply!r}")
        return reply[3:]

    def attach(self, label: str, config: BaseModel) -> SimulatedArm:
        """The served arm `label` as this process sees it: poses from the simulator's pose file (shared
        memory, not the arm's wire), faults and writes through commands."""
        described = json.loads(self.request(f"describe {label}"))
        pose = np.memmap(described["pose_file"], dtype="<f8", mode="r", shape=(len(described["joints"]),))
        return SimulatedArm(
            config=config,
            address=self.addresses[label],
            inject=lambda joint, fault: self._command(f"fault {label}:{joint}:{fault}"),
            faults=tuple(described["faults"]),
            joint_names=tuple(described["joints"]),
            pose=lambda: np.array(pose),
            writes=lambda: json.loads(self.request(f"writes {label}")),
            start_demonstration=lambda: self._command(f"demo {label}"),
        )

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not stop in time."""
        process, self._process = self._process, None
        if process is not None:
            stop_process(process, STOP_TIMEOUT_S)

    def _command(self, line: str) -> None:
        self.request(line)

    def _line(self, timeout_s: float, waiting_for: str) -> str:
        try:
            line = self._lines.get(timeout=timeout_s)
        except queue.Empty:
            raise self._error(f"gave no {waiting_for} within {timeout_s:g} s") from None
        if line is None:
            raise self._error(f"exited (code {self._exit_code()}) before its {waiting_for}")
        return line

    def _exit_code(self) -> int | None:
        """Its exit code once its output has ended (None if it is still running after all)."""
        if self._process is None:
            return None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(STOP_TIMEOUT_S)
        return self._process.returncode

    def _error(self, what: str) -> SimulatorError:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        tail = "\n".join(text.splitlines()[-LOG_TAIL_LINES:]) or "(empty)"
        return SimulatorError(f"the {self.family} simulator process {what}; its log ends:\n{tail}")


@dataclass(frozen=True)
class Simulators:
    """The simulator processes of one robot setup, and its config pointed at them."""

    config: RobotConfig
    """The setup's config with the simulators' overrides applied (its `source` stays the user's file)."""
    arms: dict[str, SimulatedArm]
    """Arm label -> the simulated arm."""
    processes: tuple[SimulatorProcess, ...]

    @classmethod
    def start(cls, config: RobotConfig, stack: contextlib.ExitStack, *, with_leaders: bool = True) -> Simulators:
        """One simulator process per family among the followers (and the leaders, `with_leaders`); each is
        stopped by the exit stack, even when starting is interrupted."""
        if config.sim is None:
            raise ConfigError(f"{config.source}: --sim needs a 'sim' section (start_pose and demo)")
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="robot-runtime-sim-")))
        raw = dict(config.resolved) if with_leaders else {**config.resolved, "leaders": []}
        robot_yaml = workdir / "robot.yaml"
        robot_yaml.write_text(yaml.safe_dump(raw, sort_keys=False))
        arms = config.followers + (config.leaders if with_leaders else ())
        processes = []
        for family in dict.fromkeys(spec.family.name for spec in arms):
            process = SimulatorProcess(family, robot_yaml, workdir / f"{family}.log")
            stack.callback(process.stop)
            process.launch()
            processes.append(process)
        for process in processes:
            process.wait_ready()
        pointed = load_robot_config(str(robot_yaml), [override for p in processes for override in p.overrides])
        pointed = replace(pointed, source=config.source)
        specs = {spec.label: spec for spec in pointed.followers + pointed.leaders}
        simulated = {label: p.attach(label, specs[label].config) for p in processes for label in p.addresses}
        return cls(pointed, simulated, tuple(processes))

    def start_demonstrations(self) -> None:
        """Every simulated leader plays its demonstration from now on."""
        for process in self.processes:
            process.request("demo")


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)
