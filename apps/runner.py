"""The one runner of every control command (teleop, record, replay, run): it opens the session, runs the
command's start-up checks, starts simulated demonstrations, reads the keys (e-stop included), paces the
loop, turns every way out into an outcome, parks the arms and reports. A command only says what it
connects, how it starts, what one tick does and what it adds to the report, so none can forget a step."""

from __future__ import annotations

import abc
import argparse
import contextlib
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from apps.common import SimFault, UsageError, console, print_error, print_warning, report, scheduled_faults, status_line
from cameras.base import CameraError
from recorders.dataset import DatasetError
from recorders.video import VideoError
from robot_runtime.config import RobotConfig
from robot_runtime.keys import ESTOP, STOP, KeyReader
from robot_runtime.loop import FixedRateLoop, Tick
from robot_runtime.policy.client import PolicyError
from robot_runtime.policy.control import SafetyStop
from robot_runtime.policy.mapping import ActionWidthError
from robot_runtime.robot import ArmError
from robot_runtime.run_evidence import RunLog, state_dir
from robot_runtime.safety import SafetyFilter
from robot_runtime.session import Session

log = logging.getLogger(__name__)

STOP_KEYS_HELP = "keys: space = e-stop (hold, then park), Esc or q = stop and park"

FAILURES: tuple[tuple[tuple[type[Exception], ...], str], ...] = (
    ((SafetyStop,), "safety stop"),
    ((PolicyError, ActionWidthError), "policy server failure"),
    ((ArmError, CameraError), "hardware error"),
    ((DatasetError, VideoError), "recording error"),
)
"""Failures the user can act on, each with its outcome label; anything else is logged with its traceback (-v)."""


@dataclass(frozen=True)
class RunOptions:
    """What every control command takes from the command line."""

    sim: bool
    cameras: bool
    faults: tuple[SimFault, ...]
    duration_s: float | None
    stats_json: Path | None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RunOptions:
        return cls(args.sim, not args.no_cameras, tuple(args.sim_fault), getattr(args, "duration", None), args.stats_json)


@dataclass
class Outcome:
    """How the run ended: a label for the report and, when it failed, the error to print."""

    label: str
    failure: Exception | None = None


class ControlCommand(abc.ABC):
    """A control command as the runner drives it."""

    title: str
    """The report's title, e.g. "teleop so100"."""
    with_leaders: bool = True
    with_cameras: bool = True
    observe_only: bool = False
    """Connect the followers read-only (a dry run): nothing is written to them and they are not parked."""
    keys_help: str = STOP_KEYS_HELP
    done_label: str = "done"
    """The outcome when the command finished its work by itself."""
    filter: SafetyFilter
    """The safety filter between the command's actions and the follower: the e-stop engages it."""

    @property
    @abc.abstractmethod
    def rate_hz(self) -> float: ...

    @property
    def done(self) -> bool:
        """True when the command has finished its work (a replayed episode, a recording plan)."""
        return False

    @abc.abstractmethod
    def start(self, session: Session) -> str:
        """Build the command on the connected session, run its start-up checks (raise to refuse), set
        `filter`, and return the line announcing what runs."""

    @abc.abstractmethod
    def tick(self, tick: Tick) -> None: ...

    def on_keys(self, keys: list[str], stop: Callable[[], None]) -> None:
        """Space is the e-stop: the filter holds every target from this tick on and the loop ends, which
        parks the arm. Esc or q ends the loop normally."""
        for key in keys:
            if key == ESTOP:
                self.filter.engage_estop("space pressed")
                stop()
            elif key == STOP:
                stop()

    def status(self, loop: FixedRateLoop) -> str | None:
        """A live one-line status (rich markup) while the loop runs, or None for none."""
        return None

    def ended(self, outcome: Outcome) -> None:  # noqa: B027 - most commands hold nothing to release
        """The loop has ended (any way) and the arms are still connected: release what the command holds."""

    def finish(self, outcome: Outcome) -> tuple[bool, dict[str, Any]]:
        """After the arms are stopped: complete the command's output; (all saved?, report rows)."""
        return True, {}


def run_control(command: ControlCommand, config: RobotConfig, options: RunOptions) -> int:
    """Run a control command to its end and return the exit code."""
    try:
        run_log = RunLog(command.title)
    except OSError as exc:
        print_warning(f"cannot keep a run log in {state_dir()} ({exc}): this run leaves no crash evidence")
        return _run(command, config, options, None)
    with run_log:
        try:
            return _run(command, config, options, run_log)
        except BaseException as exc:  # refused or failed before the loop: the log says why, too
            run_log.exception(f"ended by {type(exc).__name__}", exc)
            raise


def _run(command: ControlCommand, config: RobotConfig, options: RunOptions, run_log: RunLog | None) -> int:
    loop = FixedRateLoop(command.rate_hz)
    outcome = Outcome("not started")
    session = Session(
        config,
        sim=options.sim,
        with_leaders=command.with_leaders,
        with_cameras=options.cameras and command.with_cameras,
        observe_only=command.observe_only,
        run_log=run_log,
        say=print_warning,
    )
    started = False
    try:
        with session:
            announcement = command.start(session)
            started = True
            _run_loop(command, session, loop, options, outcome, announcement)
            if not command.observe_only:
                console.print("parking the follower ...")  # then torque off, or holding where the arm holds itself
        saved, extra = command.finish(outcome)
    finally:
        if not started:  # refused or failed to start: the arms that connected were still stopped
            _print_stops(session)
        if session.marker is not None:
            session.marker.close(arms_safe=session.stopped_safely)
    extra = {
        "robot": config.name,
        "simulated": options.sim,
        "outcome": outcome.label,
        **extra,
        "safety_interventions": command.filter.interventions.as_dict(),
        "stop": [asdict(r) for r in session.stop_reports],
    }
    if run_log is not None:
        extra["run log"] = str(run_log.path)
        run_log.note(f"outcome: {outcome.label}; " + "; ".join(stop.describe() for stop in session.stop_reports))
        if outcome.failure is not None:
            run_log.exception(f"stopped: {outcome.label}", outcome.failure)
    report(command.title, loop.stats(), extra, options.stats_json, session.cameras.stats())
    _print_stops(session)
    return 0 if outcome.failure is None and saved and session.stopped_safely else 1


def _run_loop(
    command: ControlCommand, session: Session, loop: FixedRateLoop, options: RunOptions, outcome: Outcome, announcement: str
) -> None:
    """From the announcement on, a Ctrl-C or SIGTERM is a normal interrupted run: its report is printed
    whenever it comes (the announcement is what a user, or a test, waits for before signalling)."""
    stopped_by: list[str] = []

    def stop(why: str) -> None:
        stopped_by.append(why)
        loop.stop()

    def tick(t: Tick) -> None:
        command.on_keys(keys.poll(), lambda: stop("stopped"))
        command.tick(t)
        if command.done:
            stop(command.done_label)

    try:
        console.print(announcement)
        with scheduled_faults(session, list(options.faults)), KeyReader() as keys:
            console.print(command.keys_help if keys.enabled else "stdin is not a terminal: no keys; Ctrl-C stops and parks")
            shows_status = command.status(loop) is not None
            live = status_line(lambda: command.status(loop) or "") if shows_status else contextlib.nullcontext()
            session.start_demonstrations()
            with live:
                loop.run(tick, duration_s=options.duration_s)
        outcome.label = stopped_by[0] if stopped_by else "duration reached"
        if command.filter.estopped:
            outcome.label = f"e-stop ({command.filter.estop_reason})"
    except KeyboardInterrupt:
        outcome.label = "interrupted (Ctrl-C)"
    except UsageError:  # a --sim-fault naming nothing simulated: bad input, said as such (exit code 2); the arms still park
        raise
    except Exception as exc:  # every failure still parks, reports and exits non-zero
        outcome.failure, outcome.label = exc, _label(exc)
        print_error(exc)  # at once: parking and the command's own wrap-up (commits) may take a while
    finally:
        command.ended(outcome)


def _label(exc: Exception) -> str:
    for kinds, label in FAILURES:
        if isinstance(exc, kinds):
            return label
    log.debug("stopped by an unexpected error", exc_info=exc)  # the traceback with -v; the message is always printed
    return f"error ({type(exc).__name__})"


def _print_stops(session: Session) -> None:
    for stop in session.stop_reports:
        console.print(stop.describe(), style=None if stop.torque_safe else "red")


def where(session: Session) -> str:
    """Where the session's arms are, for the announcement: ports, controllers."""
    config = session.config
    arms = config.followers + (config.leaders if session.leader is not None else ())
    return ", ".join(spec.family.describe(spec.config) for spec in arms) + (" (simulated)" if session.sim else "")
