"""Bringing a robot setup up and down: simulator processes for `--sim` (the config then points at them, and
everything after runs as on hardware), cameras opened, rigs built and connected, and a safe stop (park,
then torque-safe) on every way out, including Ctrl-C and errors during start-up.
A run's evidence for a process that dies anyway is kept by robot_runtime.run_evidence."""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Self

from cameras.base import Camera
from cameras.camera_set import CameraSet
from cameras.config import as_simulated, build_camera
from cameras.sim import SceneArm, SimCamera
from robot_runtime.config import ArmSpec, RobotConfig
from robot_runtime.family import SimulatedArm
from robot_runtime.rig import Rig, stop_rigs
from robot_runtime.robot import Arm, StopReport
from robot_runtime.run_evidence import RunLog, RunMarker, arm_key, arm_name, unsafe_ends
from robot_runtime.sim_client import Simulators

log = logging.getLogger(__name__)

class Session:
    """`with Session(config, sim=...) as s:` gives connected `s.follower` and `s.leader` rigs and the
open `s.cameras`."""

    def __init__(
        self,
        config: RobotConfig,
        *,
        sim: bool,
        with_leaders: bool = True,
        with_cameras: bool = True,
        observe_only: bool = False,
        run_log: RunLog | None = None,
        say: Callable[[str], None] = log.warning,
    ) -> None:
        """`observe_only` connects the followers to be read only: nothing is written to them, ever. With a
        `run_log`, the arms the session drives are marked as under torque until their safe stop, and `say`
        tells of earlier runs on them that ended without one."""
        self.config = config
        self.run_log = run_log
        self.say = say
        self.marker: RunMarker | None = None
        self.observe_only = observe_only
        self.sim = sim
        self.with_leaders = with_leaders
        self.with_cameras = with_cameras
        self.simulated: dict[str, SimulatedArm] = {}
        self._simulators: Simulators | None = None
        self.cameras = CameraSet({})
        self.stop_reports: list[StopReport] = []
        self.follower: Rig
        self.leader: Rig | None = None
        self._rigs: list[Rig] = []
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Self:
        try:
            self._open()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        with _interrupts_deferred():
            self._stack.close()

    def start_demonstrations(self) -> None:
        """The simulated leaders play their scripted demonstration from now on (they hold their start pose
        until then); call once mirroring starts, after the start check. Nothing without --sim."""
        if self._simulators is not None:
            self._simulators.start_demonstrations()

    def _open(self) -> None:
        config = self.config
        if self.run_log is not None:
            self._mark(config)
        if self.sim:
            self._simulators = Simulators.start(config, self._stack, with_leaders=self.with_leaders)
            self.simulated = self._simulators.arms
            self.config = config = self._simulators.config  # from here on, exactly what a user's config pointed at devices is
        followers, leaders = config.followers, (config.leaders if self.with_leaders else ())
        follower = _built(followers, "follower")
        if self.with_cameras and config.cameras:
            self.cameras = CameraSet(self._cameras(follower), config.camera_selection)
            self._stack.enter_context(self.cameras)
        self._stack.callback(self._close_rigs)  # before any rig connects: a half-connected rig is still stopped
        if leaders:
            self.leader = self._connected(_built(leaders, "leader"))
        self.follower = self._connected(follower, observe_only=self.observe_only)

    def _mark(self, config: RobotConfig) -> None:
        """Tell of earlier runs that left the arms to open without a safe stop, then mark those this run
        drives (an observed follower is not)."""
        assert self.run_log is not None
        leaders = config.leaders if self.with_leaders else ()
        for message in unsafe_ends(arms=[arm_key(spec, simulated=self.sim) for spec in config.followers + leaders]):
            self.say(message)
        driven = (() if self.observe_only else config.followers) + leaders
        arms = {arm_key(spec, simulated=self.sim): arm_name(spec, simulated=self.sim) for spec in driven}
        self.marker = RunMarker.create(self.run_log, arms)

    def _cameras(self, follower: Rig) -> dict[str, Camera]:
        """The configured cameras, or with --sim simulated ones in the same modes viewing the followers."""
        if not self.sim:
            return {name: build_camera(name, camera) for name, camera in self.config.cameras.items()}
        labels = [spec.label for spec in self.config.followers]
        arms = zip(labels, follower.arms.values(), strict=True)
        scene = tuple(_scene_arm(label, arm, self.simulated[label]) for label, arm in arms)
        return {
            name: SimCamera(name, as_simulated(camera, view_deg=_view_deg(index)), scene)
            for index, (name, camera) in enumerate(self.config.cameras.items())
        }

    def _connected(self, rig: Rig, observe_only: bool = False) -> Rig:
        self._rigs.insert(0, rig)  # listed before connecting, so a half-connected rig is still stopped; followers report first
        rig.connect(observe_only=observe_only)
        return rig

    def _close_rigs(self) -> None:
        """Followers and leaders park at the same time."""
        self.stop_reports.extend(stop_rigs(self._rigs))
        for rig in self._rigs:
            rig.disconnect()
        if self.marker is not None and self.stopped_safely:
            self.marker.release_arms()

    @property
    def stopped_safely(self) -> bool:
        return all(r.torque_safe for r in self.stop_reports)


def _built(arms: tuple[ArmSpec, ...], role: str) -> Rig:
    return Rig({spec.prefix: spec.family.build(spec.config, spec.label) for spec in arms}, name=role)


def _scene_arm(label: str, arm: Arm, simulated: SimulatedArm) -> SceneArm:
    """How a simulated camera reads the arm's values: from their units, and its pose if it is driven in Cartesian space."""
    per_unit = {"deg": 1.0, "rad": math.degrees(1.0)}
    last = arm.joints[-1]
    in_pose = any(pose.start <= len(arm.joints) - 1 < pose.start + 6 for pose in arm.poses)
    gripper = (last.lower, last.upper) if last.unit in ("percent", "m") and not in_pose else None
    tcp = arm.poses[0] if arm.poses else None
    reach_m = max(max(abs(j.lower), abs(j.upper)) for j in arm.joints[tcp.position]) if tcp is not None else 1.0
    return SceneArm(
        label,
        simulated.pose,
        tuple(per_unit.get(j.unit, 0.0) for j in arm.joints),
        gripper,
        tcp.start if tcp is not None else None,
        reach_m,
    )


def _view_deg(index: int) -> float:
    """Simulated cameras look from different sides: 0, +40, -40, +80, ... degrees."""
    return 40.0 * ((index + 1) // 2) * (-1) ** index


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """A second Ctrl-C must not cut the parking move short and leave the arm mid-air."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda *_: log.warning("parking the arm; it will stop by itself"))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
