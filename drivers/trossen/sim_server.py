"""One simulated WidowX AI controller per process: trossen_arm_sim's MuJoCo arm behind its wire-protocol
server, on its own loopback address (the controller's ports are fixed, so two arms need two addresses).

    python -m drivers.trossen.sim_server --host 127.0.0.2 --state-file PATH [--start-pose JSON] [--leader-demo JSON]

Prints `ready <host>` once listening, then answers one command per stdin line with `ok` or
`error <why>`: `fault <ERROR_STATE> <joint>` puts the controller in that error state with a log line
naming the joint (as a hardware fault would), `clear` clears it, `demo` starts the leader's
demonstration (nothing without --leader-demo, or once it plays). Exits on SIGTERM or stdin EOF.

The simulator is position-mode only, so a simulated leader cannot be back-driven by a hand: instead,
while the driver does not command it in position mode, this process drives its joints along the
scripted demonstration, holding the start pose until `demo`. The joint pose and counts of what the
driver commanded are published in a small memory-mapped state file (sim_setup.StateFile), so the
runtime can draw and check the arm without a second TCP client (the controller serves one at a
time). The collision WebSocket stream of
trossen-arm-sim is not started: nothing here uses it, and it would hold one more fixed port.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

import numpy as np
from trossen_arm_sim import TrossenArmSimServer, WidowXSim
from trossen_arm_sim.protocol import INSTALLED_DRIVER_VERSION, SUPPORTED_DRIVER_VERSIONS, ErrorState, Mode
from trossen_arm_sim.sim import ACTUATOR_NAMES, JOINT_NAMES

from drivers.trossen.config import JOINT_NAMES as RUNTIME_JOINT_NAMES
from drivers.trossen.sim_setup import READY, StateFile
from robot_runtime.demo import Demonstration, ScriptedDemo


class RecordingSim(WidowXSim):
    """The MuJoCo arm, counting the position commands it receives, publishing its pose after every
    physics step, and, for a leader, following the demonstration unless commanded in position mode."""

    def __init__(self, state: StateFile, demo: Demonstration | None) -> None:
        super().__init__()
        self._state = state
        self._demo = demo
        self._qpos_index = np.array([self.model.joint(n).qposadr[0] for n in JOINT_NAMES])
        self._ctrl_index = np.array([self.model.actuator(n).id for n in ACTUATOR_NAMES])
        self._last_goal: list[float | None] = []
        self._position_commanded = False
        self.add_step_hook(self._after_step)

    def start_demonstration(self) -> None:
        if self._demo is not None:
            self._demo.start()

    def place(self, pose: np.ndarray) -> None:
        """Start at `pose` (before start()): joints there and actuators holding it."""
        self.data.qpos[self._qpos_index] = pose
        self.data.ctrl[self._ctrl_index] = pose
        self._state.pose[:] = pose

    def apply_joint_commands(self, modes: list[Mode], positions: list[float]) -> None:
        goal = [p if m == Mode.POSITION else None for m, p in zip(modes, positions, strict=True)]
        self._position_commanded = Mode.POSITION in modes
        if self._position_commanded:
            self._state.count("position_inputs")
            if goal != self._last_goal:
                self._state.count("position_goal_changes")
            self._state.goal[:] = [np.nan if p is None else p for p in goal]
        self._last_goal = goal
        super().apply_joint_commands(modes, positions)

    def _after_step(self) -> None:
        if self._demo is not None and not self._position_commanded:
            self.data.ctrl[self._ctrl_index] = self._demo(time.monotonic())
        self._state.pose[:] = self.data.qpos[self._qpos_index]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", required=True, help="loopback address to listen on, e.g. 127.0.0.2")
    parser.add_argument("--state-file", type=Path, required=True, help="file created by the runtime for pose and counters")
    parser.add_argument("--start-pose", type=json.loads, help="JSON list of 7 joint positions to start at")
    parser.add_argument("--leader-demo", type=json.loads, help="JSON {start, waypoints, hold_s, segment_s}, played on `demo`")
    parser.add_argument(
        "--firmware-version",
        choices=SUPPORTED_DRIVER_VERSIONS,
        default=INSTALLED_DRIVER_VERSION,
        help="major.minor firmware version the controller reports (default: the installed trossen_arm's)",
    )
    args = parser.parse_args(argv)
    sim = RecordingSim(StateFile.open(args.state_file), _demo(args.leader_demo))
    if args.start_pose is not None:
        sim.place(np.array(args.start_pose, dtype=np.float64))
    sim.start()
    server = TrossenArmSimServer(sim, host=args.host, driver_version=args.firmware_version)
    try:
        server.start()
    except OSError as exc:
        sim.stop()
        print(f"cannot listen on {args.host}: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"{READY} {args.host}", flush=True)
    try:
        for line in sys.stdin:
            print(_command(server, sim, line.split()), flush=True)
    finally:
        server.stop()
        sim.stop()
    return 0


def _demo(spec: dict | None) -> Demonstration | None:
    if spec is None:
        return None
    script = ScriptedDemo(
        np.array(spec["start"], dtype=np.float64),
        np.array(spec["waypoints"], dtype=np.float64),
        hold_s=spec["hold_s"],
        segment_s=spec["segment_s"],
    )
    return Demonstration(script)


def _command(server: TrossenArmSimServer, sim: RecordingSim, words: list[str]) -> str:
    match words:
        case ["fault", state, joint] if state in ErrorState.__members__ and joint in RUNTIME_JOINT_NAMES:
            server.fault(ErrorState[state], f"{joint}: {state.lower().replace('_', ' ')} (simulated fault)")
            return "ok"
        case ["clear"]:
            server.clear_error()
            return "ok"
        case ["demo"]:
            sim.start_demonstration()
            return "ok"
    return f"error unknown command {' '.join(words)!r}: expected 'fault <ERROR_STATE> <joint>', 'clear' or 'demo'"


if __name__ == "__main__":
    sys.exit(main())
