"""Bringing a robot setup up and down: simulators for `--sim`, rigs built and connected, and a safe
stop (park, then torque-safe) on every way out, including Ctrl-C and errors during start-up."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from dataclasses import replace
from types import TracebackType

from robot_runtime.config import ArmSpec, ConfigError, RobotConfig
from robot_runtime.family import SimulatedArm
from robot_runtime.rig import Rig
from robot_runtime.robot import StopReport

log = logging.getLogger(__name__)


class Session:
    """`with Session(config, sim=...) as s:` gives connected `s.follower` and `s.leader` rigs."""

    def __init__(self, config: RobotConfig, *, sim: bool, with_leaders: bool = True) -> None:
        self.config = config
        self.sim = sim
        self.with_leaders = with_leaders
        self.simulated: dict[str, SimulatedArm] = {}
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
        if leaders:
            self.leader = self._rig(leaders, "leader")
        self.follower = self._rig(followers, "follower")

    def _simulate(self, arms: tuple[ArmSpec, ...]) -> tuple[ArmSpec, ...]:
        out = []
        for spec in arms:
            (simulated,) = spec.family.simulate([spec], self.config.sim, self._stack)
            self.simulated[spec.label] = simulated
            out.append(replace(spec, config=simulated.config))
        return tuple(out)

    def _rig(self, arms: tuple[ArmSpec, ...], role: str) -> Rig:
        rig = Rig({spec.prefix: spec.family.build(spec.config, spec.label) for spec in arms}, name=role)
        self._stack.callback(self._close_rig, rig)  # registered before connecting: a half-connected rig is still stopped
        rig.connect()
        return rig

    def _close_rig(self, rig: Rig) -> None:
        self.stop_reports.extend(rig.safe_stop())
        rig.disconnect()

    @property
    def stopped_safely(self) -> bool:
        return all(r.torque_safe for r in self.stop_reports)


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
