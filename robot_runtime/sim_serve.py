"""A family's simulated arms served to other processes, as real arms are: what `robot-runtime sim FAMILY`
runs, and what `--sim` starts (robot_runtime.sim_client), one such process per family.

stdout carries machine-readable lines only (human text goes to stderr):

    <label> <address>            one per arm of the family: `follower /dev/pts/7`, `left_leader 127.0.0.3`
    overrides --set=K=V ...      every config key that must change for the robot config to reach the
                                 simulators, as shell words (`shlex`); values are YAML, as `--set` reads them
    ready

then one reply line per command line on stdin: `ok`, `ok <JSON>` or `error: <what is wrong>`.

    demo [LABEL]                 the simulated leaders (or one arm) start their demonstration now; until
                                 then they hold the start pose
    fault LABEL:JOINT:FAULT      break a joint (the names `--sim-fault` takes)
    pose LABEL                   ok {"joint": position, ...}: where the simulator has the arm now
    writes LABEL                 ok {"register or command": count, ...}: what clients commanded
    describe LABEL               ok {"joints": [...], "faults": [...], "pose_file": PATH}: from then on PATH
                                 holds the arm's pose as float64 values in joint order, rewritten every
                                 POSE_PERIOD_S, for readers such as a simulated camera

It stops on SIGINT or SIGTERM. When stdin is a pipe or a socket its end stops it too: the program that
drove it has gone. Any other stdin (a terminal, /dev/null, a file) is read for commands and its end
changes nothing, so a simulator run in the background (`robot-runtime sim ... &`) keeps serving.

Driven through a pipe, it runs in a session of its own: a terminal's Ctrl-C is then for the driving
program, and Linux's autogroup scheduling shares the CPU out to the simulator apart from the driving
program's session (where CPU hogs started beside a test run), so its servos miss a real bus's 5 ms
reply window less often on a busy machine.

    python -m robot_runtime.sim_serve FAMILY ROBOT_YAML
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import json
import os
import shlex
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import yaml

from robot_runtime.config import ArmSpec, ConfigError, RobotConfig, load_robot_config
from robot_runtime.family import SimulatedArm
from robot_runtime.sim_console import interrupt, is_pipe

READY = "ready"
OVERRIDES = "overrides"
POSE_PERIOD_S = 0.01
"""How often described poses are rewritten: a 30 fps camera sees an arm at most this stale."""
COMMANDS = "demo [LABEL], fault LABEL:JOINT:FAULT, pose LABEL, writes LABEL, describe LABEL"


@dataclass(frozen=True)
class ServedArm:
    label: str
    key: str
    """Where the arm is in the robot config, as `--set` names it: `followers.0`."""
    simulated: SimulatedArm


class FamilySimulation:
    """A family's arms simulated in this process, and the robot config changes that reach them."""

    def __init__(self, config: RobotConfig, arms: list[ServedArm], overrides: dict[str, Any], workdir: Path) -> None:
        self.config = config
        self.arms = {arm.label: arm for arm in arms}
        self.overrides = overrides
        """`--set` key -> the value the simulated arm needs there."""
        self._workdir = workdir
        self._pose_files: dict[str, np.memmap] = {}

    @classmethod
    def start(cls, config: RobotConfig, family: str, stack: contextlib.ExitStack) -> FamilySimulation:
        """Start every arm of `family` in the config (stopped by the exit stack)."""
        keyed = [(f"followers.{i}", spec) for i, spec in enumerate(config.followers)]
        keyed += [(f"leaders.{i}", spec) for i, spec in enumerate(config.leaders)]
        mine = [(key, spec) for key, spec in keyed if spec.family.name == family]
        if not mine:
            listed = ", ".join(f"{spec.label} ({spec.family.name})" for _, spec in keyed)
            raise ConfigError(f"{config.source}: no arm of family {family!r} (arms: {listed})")
        if config.sim is None:
            raise ConfigError(f"{config.source}: simulating needs a 'sim' section (start_pose and demo)")
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"robot-runtime-sim-{family}-")))
        specs = [spec for _, spec in mine]
        simulated = specs[0].family.simulate(specs, config.sim, stack)
        pairs = list(zip(mine, simulated, strict=True))
        arms = [ServedArm(spec.label, key, arm) for (key, spec), arm in pairs]
        overrides = dict(change for (key, spec), arm in pairs for change in _changes(key, spec, arm))
        return cls(config, arms, overrides, workdir)

    def announcement(self) -> list[str]:
        """The lines before `ready`: each arm's address, then the overrides."""
        sets = [f"--set={key}={_yaml_text(value)}" for key, value in self.overrides.items()]
        return [f"{label} {arm.simulated.address}" for label, arm in self.arms.items()] + [shlex.join([OVERRIDES, *sets])]

    def pointed_config(self) -> dict[str, Any]:
        """The robot config as a YAML mapping, with the overrides applied: `--robot` takes it as a file."""
        raw = copy.deepcopy(dict(self.config.resolved))
        for key, value in self.overrides.items():
            *parents, leaf = key.split(".")
            node: Any = raw
            for part in parents:
                node = node[int(part)] if isinstance(node, list) else node[part]
            node[leaf] = value
        return raw

    def answer(self, line: str) -> str | None:
        """The reply to one command line; None for a blank line."""
        words = line.split()
        if not words:
            return None
        try:
            return self._run(words)
        except Exception as exc:  # the client gets the reason; the simulator keeps serving
            return f"error: {exc}"

    def serve(self, commands: TextIO, out: TextIO) -> None:
        """Answer commands and rewrite described poses until KeyboardInterrupt (SIGINT, SIGTERM) or, when
        `commands` is a pipe or socket, its end. Call from the main thread."""
        stop = threading.Event()
        threading.Thread(target=self._answer_all, args=(commands, out, stop), name="sim-commands", daemon=True).start()
        with contextlib.suppress(KeyboardInterrupt):
            while not stop.wait(POSE_PERIOD_S):
                self._publish()

    def _run(self, words: list[str]) -> str:
        match words:
            case ["demo"]:
                for arm in self.arms.values():
                    arm.simulated.start_demonstration()
                return "ok"
            case ["demo", label]:
                self._arm(label).start_demonstration()
                return "ok"
            case ["fault", target]:
                label, joint, fault = _fault_target(target)
                faulty = self._arm(label)
                if fault not in faulty.faults:
                    raise ValueError(f"unknown fault {fault!r} for {label} (faults: {', '.join(faulty.faults)})")
                faulty.inject(joint, fault)
                return "ok"
            case ["pose", label]:
                posed = self._arm(label)
                return "ok " + json.dumps(dict(zip(posed.joint_names, posed.pose().tolist(), strict=True)))
            case ["writes", label]:
                return "ok " + json.dumps(dict(self._arm(label).writes()))
            case ["describe", label]:
                described = self._arm(label)
                joints, faults = list(described.joint_names), list(described.faults)
                return "ok " + json.dumps({"joints": joints, "faults": faults, "pose_file": str(self._pose_file(label))})
        return f"error: unknown command {' '.join(words)!r} (commands: {COMMANDS})"

    def _arm(self, label: str) -> SimulatedArm:
        if label not in self.arms:
            raise ValueError(f"no simulated arm {label!r} (arms: {', '.join(self.arms)})")
        return self.arms[label].simulated

    def _pose_file(self, label: str) -> Path:
        path = self._workdir / f"{label}.pose"
        if label not in self._pose_files:
            pose = self._arm(label).pose()
            values = np.memmap(path, dtype="<f8", mode="w+", shape=pose.shape)
            values[:] = pose
            self._pose_files[label] = values
        return path

    def _publish(self) -> None:
        for label, values in list(self._pose_files.items()):
            values[:] = self.arms[label].simulated.pose()

    def _answer_all(self, commands: TextIO, out: TextIO, stop: threading.Event) -> None:
        driven = is_pipe(commands)
        try:
            for line in commands:
                reply = self.answer(line)
                if reply is not None:
                    print(reply, file=out, flush=True)
        except OSError as exc:  # EIO: a terminal this process runs in the background of (SIGTTIN is ignored)
            if not driven:
                print(f"stdin is not readable ({exc}): no commands; serving until Ctrl-C or SIGTERM", file=sys.stderr, flush=True)
                return
        if driven:
            stop.set()


SIMULATOR_NICE = -10
"""Real arms answer from processors of their own; simulated ones share this computer's cores with the runtime
and whatever else runs. Beside CPU hogs, a simulated bus went unserved for half a second at normal priority.
A negative nice value (allowed for root or with CAP_SYS_NICE) lets the simulators keep time the way devices do.
Linux keeps nice values per thread: set before any simulator thread or controller process starts."""


def _prefer_cpu() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, 0, SIMULATOR_NICE)
    except PermissionError:
        print(
            f"note: the simulators run at normal priority (nice {SIMULATOR_NICE} needs root or CAP_SYS_NICE); "
            "on a busy computer they may answer late",
            file=sys.stderr,
        )


def serve_family(
    config: RobotConfig, family: str, *, write_config: Path | None = None, tell: Callable[[FamilySimulation], None] | None = None
) -> None:
    """Run a simulator process: start the family's arms, print the announcement and `ready` on stdout, then
    serve until stopped. `write_config` also writes the pointed robot YAML there; `tell(simulation)`
    says on stderr what runs, for people. Call from the main thread; SIGTERM must raise KeyboardInterrupt.
    Once stopping, the process ignores SIGINT and SIGTERM (a second one must not cut the stop short): end it after."""
    signal.signal(signal.SIGTTIN, signal.SIG_IGN)  # a background read of the terminal fails instead of stopping us
    _prefer_cpu()
    if is_pipe(sys.stdin) and os.getpgid(0) != os.getpid():  # (a process group leader cannot start a session)
        os.setsid()  # driven by a program: its own session, so the kernel shares CPU out to it apart from that program's load
    stack = contextlib.ExitStack()
    try:
        simulation = FamilySimulation.start(config, family, stack)
        if write_config is not None:
            write_config.write_text(yaml.safe_dump(simulation.pointed_config(), sort_keys=False))
        for line in simulation.announcement():
            print(line, flush=True)
        if tell is not None:
            tell(simulation)
        gc.freeze()  # collections then scan only what serving allocates, not every module: no pause of several ms
        print(READY, flush=True)
        simulation.serve(sys.stdin, sys.stdout)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
        stack.close()


def _changes(key: str, spec: ArmSpec, simulated: SimulatedArm) -> Iterator[tuple[str, Any]]:
    """The settings the simulated arm's config changed, as `--set` keys (`key` is the arm's entry)."""
    yield from _diff(spec.config.model_dump(mode="json"), simulated.config.model_dump(mode="json"), f"{key}.")


def _diff(before: Mapping[str, Any], after: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in after.items():
        old = before.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            yield from _diff(old, value, f"{prefix}{key}.")
        elif value != old:
            yield f"{prefix}{key}", value


def _yaml_text(value: Any) -> str:
    """`value` as `--set` reads it back (YAML): plain where that is unambiguous, else JSON, which is YAML."""
    text = value if isinstance(value, str) else json.dumps(value)
    return text if yaml.safe_load(text) == value else json.dumps(value)


def _fault_target(text: str) -> tuple[str, str, str]:
    parts = text.split(":")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"expected fault LABEL:JOINT:FAULT, e.g. fault follower:wrist_flex:no_reply; got {text!r}")
    return parts[0], parts[1], parts[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("family", help="the arm family to simulate, e.g. feetech")
    parser.add_argument("robot", help="robot YAML (a built-in name or a path)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        serve_family(load_robot_config(args.robot), args.family)
    except (ValueError, RuntimeError) as exc:  # a config or arm that cannot be simulated; tracebacks are for bugs
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # while starting
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
