"""Bringing a robot setup up and down: simulators for `--sim`, cameras opened, rigs built and connected,
and a safe stop (park, then torque-safe) on every way out, including Ctrl-C and errors during start-up."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from dataclasses import replace
from types import TracebackType

from cameras.base import Camera
from cameras.camera_set import CameraSet
from cameras.config import as_simulated, build_camera
from cameras.sim import SceneArm, SimCamera
from robot_runtime.config import ArmSpec, ConfigError, RobotConfig
from robot_runtime.family import SimulatedArm
from robot_runtime.rig import Rig
from robot_runtime.robot import StopReport

log = logging.getLogger(__name__)


class Session:
    """`with Session(config, sim=...) as s:` gives connected `s.follower` and `s.leader` rigs and the
open `s.cameras`."""

    def __init__(self, config: RobotConfig, *, sim: bool, with_leaders: bool = True, with_cameras: bool = True, observe_only: bool = False) -> None:
        """`observe_only` connects the followers to be read only: nothing is written to them, ever."""
        self.config = config
        self.observe_only = observe_only
        self.sim = sim
        self.with_leaders = with_leaders
        self.with_cameras = with_cameras
        self.simulated: dict[str, SimulatedArm] = {}
        self.cameras = CameraSet({})
        self.stop_reports: list[StopReport] = []
        self.follower: Rig
        self.leader: Rig | None = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Session:
        try:
            self._open()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        with _interrupts_deferred():
            self._stack.close()

    def _open(self) -> None:
        config = self.config
        leaders = config.leaders if self.with_leaders else ()
        if self.sim:
            if config.sim is None:
                raise ConfigError(f"{config.source}: --sim needs a 'sim' section (start_pose and demo)")
            followers, leaders = self._simulate(config.followers), self._simulate(leaders)
        else:
            followers = config.followers
        if self.with_cameras and config.cameras:
            self.cameras = CameraSet(self._cameras(followers), config.camera_selection)
            self._stack.enter_context(self.cameras)
        if leaders:
            self.leader = self._rig(leaders, "leader")
        self.follower = self._rig(followers, "follower", observe_only=self.observe_only)

    def _simulate(self, arms: tuple[ArmSpec, ...]) -> tuple[ArmSpec, ...]:
        out = []
        for spec in arms:
            (simulated,) = spec.family.simulate([spec], self.config.sim, self._stack)
            self.simulated[spec.label] = simulated
            out.append(replace(spec, config=simulated.config))
        return tuple(out)

    def _cameras(self, followers: tuple[ArmSpec, ...]) -> dict[str, Camera]:
        """The configured cameras, or with --sim simulated ones in the same modes viewing the followers."""
        if not self.sim:
            return {name: build_camera(name, camera) for name, camera in self.config.cameras.items()}
        scene = tuple(SceneArm(s.label, self.simulated[s.label].joint_names, self.simulated[s.label].pose) for s in followers)
        return {
            name: SimCamera(name, as_simulated(camera, view_deg=_view_deg(index)), scene)
            for index, (name, camera) in enumerate(self.config.cameras.items())
        }

    def _rig(self, arms: tuple[ArmSpec, ...], role: str, observe_only: bool = False) -> Rig:
        rig = Rig({spec.prefix: spec.family.build(spec.config, spec.label) for spec in arms}, name=role)
        self._stack.callback(self._close_rig, rig)  # registered before connecting: a half-connected rig is still stopped
        rig.connect(observe_only=observe_only)
        return rig

    def _close_rig(self, rig: Rig) -> None:
        self.stop_reports.extend(rig.safe_stop())
        rig.disconnect()

    @property
    def stopped_safely(self) -> bool:
        return all(r.torque_safe for r in self.stop_reports)


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
