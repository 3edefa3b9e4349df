"""A Trossen WidowX AI arm (follower or leader) on the vendor's trossen_arm driver, in rad and metres."""

from __future__ import annotations

import logging
import re
import time

import numpy as np
import trossen_arm

from drivers.trossen.config import JOINT_NAMES, JOINTS, STAGED_POSITION, UDP_PORT, TrossenArmConfig
from robot_runtime.robot import Arm, ArmError, JointState, StopReport

log = logging.getLogger(__name__)

DEFAULT_GOAL_TIME_S = 1 / 30
"""The controller interpolates linearly from its current goal to each new target over the goal time
(trossen_arm: linear below 0.2 s). One control period means a target is reached just as the next
one arrives: streaming neither stutters (shorter) nor lags behind by several ticks (longer). The arm
cannot know the loop rate, so the default is the WidowX AI's usual 30 Hz (the camera rate of the
bimanual setups); set `goal_time_s` to 1/fps for other rates."""
MIN_PARK_MOVE_S = 1.0
PARK_SETTLE_S = 1.0
PARK_TOLERANCE = np.array([0.03] * 6 + [0.003])
"""rad for the arm joints, m for the gripper: how close to the park pose counts as arrived."""
NO_JOINT_OUTPUTS = "Failed to receive initial joint outputs"
FIRST_OUTPUTS_WINDOW_S = 1.0
"""How long trossen_arm's configure waits for the first joint outputs over UDP (100 tries), measured."""
MIN_CONFIGURE_S = 1.0
LIMIT_SLACK = 1e-3
"""Controller limits are float32: differences below this are rounding, not a narrower range."""
_DRIVER_NOISE = re.compile(r"\s*Please refer to our troubleshooting guide.*$", re.DOTALL)
_JOINT_INDEX = re.compile(r"\bjoint[ _]?(\d)\b", re.IGNORECASE)

_ADVICE = {
    "overheated": "let the arm cool down for a few minutes and lower the load or speed",
    "limit exceeded": "a target went past the controller's joint limits: check the arm's limits against the runtime's",
    "disabled unexpectedly": "check that joint's cable and the arm's 24 V supply",
    "feedback failed": "check that joint's cable and the arm's 24 V supply",
    "command failed": "check that joint's cable and the arm's 24 V supply",
}


class TrossenArm(Arm):
    def __init__(self, config: TrossenArmConfig, name: str) -> None:
        self.name = name
        self.config = config
        self.joints = JOINTS
        self.park_position = self._pose(config.park_position, {})
        self._staged_position = self._pose(config.staged_position, STAGED_POSITION)
        self._goal_time_s = config.goal_time_s or DEFAULT_GOAL_TIME_S
        self._driver: trossen_arm.TrossenArmDriver | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        return self._driver is not None

    @property
    def transport(self) -> str:
        return self.config.ip

    def _connect(self, *, observe_only: bool) -> None:
        """Configure the controller (which clears a latched error and, by the driver's own doing, leaves
        every joint idle, i.e. braked), then: followers hold their pose in position mode; leaders go to
        zero external effort, the gravity-compensated back-drivable mode of Trossen's teleoperation.
        Observe-only stops after configure."""
        driver = self._configure()
        try:
            if not observe_only:
                self._enter_control_mode(driver)
        except BaseException:
            driver.cleanup()
            raise
        self._driver = driver

    def disconnect(self) -> None:
        """Release the controller; trossen_arm's cleanup() also sets every joint idle (braked)."""
        driver, self._driver = self._driver, None
        if driver is not None:
            driver.cleanup()

    # -- control -----------------------------------------------------------------------------

    def read(self) -> JointState:
        """One snapshot of the driver's cache, which its own UDP cycle keeps fresh (microseconds)."""
        driver = self._connected_driver()
        try:
            joints = driver.get_robot_output().joint.all
        except RuntimeError as exc:
            raise self._error(exc, "reading the joints") from exc
        stamp = time.monotonic()
        return JointState(
            timestamp_s=stamp,
            position=np.array(joints.positions, dtype=np.float64),
            velocity=np.array(joints.velocities, dtype=np.float64),
            effort=np.array(joints.efforts, dtype=np.float64),
        )

    def _send(self, targets: np.ndarray) -> np.ndarray:
        try:
            self._connected_driver().set_all_positions(targets.tolist(), self._goal_time_s, False)
        except RuntimeError as exc:
            raise self._error(exc, "commanding positions") from exc
        return targets

    def _set_torque(self, enabled: bool) -> None:
        """Enabled: hold the present pose in position mode. Disabled: zero external effort, which
        compensates gravity, so the arm can be moved by hand but does not fall as a torque-off
        servo arm would."""
        driver = self._connected_driver()
        try:
            if enabled:
                self._hold(driver)
            else:
                self._back_drivable(driver)
        except RuntimeError as exc:
            raise self._error(exc, "changing the control mode") from exc

    def _safe_stop(self) -> list[StopReport]:
        """Both roles move, in position mode, through the staged pose to the park pose (Trossen's
        sleep pose: folded onto the base), and hold there. A WidowX AI leader has motors too and is
        parked like a follower: idling it mid-air would let it sag onto the table.

        Torque safe for this arm means it will not drop: holding in position mode, or resting at the
        park pose where idle (braked) joints hold it when disconnect() idles them. After a controller
        error the controller has already idled the joints where they stood, which the runtime cannot
        confirm as safe, so it says so."""
        try:
            parked, detail = self._park(self._connected_driver())
        except Exception as exc:  # never raise from a stop: report what state the arm is in
            return [
                StopReport(
                    self.name,
                    parked=False,
                    torque_safe=False,
                    detail=f"{_controller_text(exc)}; the controller idles its joints on an error: support the arm, "
                    f"then reconnect (connecting clears the error)",
                )
            ]
        return [StopReport(self.name, parked=parked, torque_safe=True, detail=detail)]

    # -- internals ---------------------------------------------------------------------------

    @property
    def _where(self) -> str:
        return f"{self.name} (WidowX AI at {self.config.ip})"

    def _pose(self, given: dict[str, float] | None, default: dict[str, float]) -> np.ndarray:
        pose = {**default, **(given or {})}
        return np.clip([pose.get(n, 0.0) for n in JOINT_NAMES], self.lower_limits, self.upper_limits)

    def _connected_driver(self) -> trossen_arm.TrossenArmDriver:
        if self._driver is None:
            raise RuntimeError(f"{self.name} is not connected")
        return self._driver

    def _configure(self) -> trossen_arm.TrossenArmDriver:
        """A driver configured within connect_timeout_s. trossen_arm gives the controller's first UDP joint
        outputs a fixed window of about 1 s after the TCP handshake; a controller that answered over TCP
        but missed that window (a busy computer or network) gets another driver while the timeout lasts
        (a driver that failed to configure refuses to configure again)."""
        deadline_s = time.monotonic() + self.config.connect_timeout_s
        while True:
            driver = trossen_arm.TrossenArmDriver()
            try:
                self._configure_once(driver, max(deadline_s - time.monotonic(), MIN_CONFIGURE_S))
                return driver
            except _NoJointOutputs as exc:
                driver.cleanup()
                if time.monotonic() + FIRST_OUTPUTS_WINDOW_S > deadline_s:
                    raise ArmError(
                        f"{self._where}: the controller answered over TCP but sent no joint outputs over UDP (port "
                        f"{UDP_PORT}) within {self.config.connect_timeout_s:g} s ({exc}); check that no firewall "
                        f"blocks UDP between this computer and {self.config.ip}"
                    ) from None
                log.warning("%s: no joint outputs over UDP in the driver's first window; configuring again", self._where)
            except BaseException:
                driver.cleanup()
                raise

    def _configure_once(self, driver: trossen_arm.TrossenArmDriver, timeout_s: float) -> None:
        try:
            driver.configure(
                trossen_arm.Model.wxai_v0,
                getattr(trossen_arm.StandardEndEffector, self.config.end_effector),
                self.config.ip,
                True,
                timeout_s,
            )
        except trossen_arm.LogicError as exc:  # the driver's refusals: version mismatch, malformed settings
            text = _controller_text(exc)
            if "versions of the driver and controller firmware must match" in text:
                raise ArmError(
                    f"{self._where}: the controller firmware and the installed trossen_arm {driver.get_driver_version()} "
                    f"differ in major.minor version ({text}); update the firmware or install the matching trossen_arm"
                ) from exc
            raise ArmError(f"{self._where}: the driver refused the configuration: {text}") from exc
        except RuntimeError as exc:
            text = _controller_text(exc)
            if NO_JOINT_OUTPUTS in text:
                raise _NoJointOutputs(text) from exc
            raise ArmError(
                f"{self._where}: no answer within {self.config.connect_timeout_s:g} s ({text}); check "
                f"the arm is powered on, its Ethernet cable is plugged in, {self.config.ip} is the arm's address, and "
                f"this computer has an address in the same subnet (e.g. 192.168.1.100/24 for an arm at 192.168.1.2)"
            ) from exc

    def _enter_control_mode(self, driver: trossen_arm.TrossenArmDriver) -> None:
        try:
            limits = driver.get_joint_limits()
        except RuntimeError as exc:
            raise self._error(exc, "reading the joint limits") from exc
        self._check_controller_limits(limits)
        try:
            if self.config.role == "follower":
                self._hold(driver)
            else:
                self._back_drivable(driver)
        except RuntimeError as exc:
            raise self._error(exc, "setting up the control mode") from exc

    def _check_controller_limits(self, limits: list[trossen_arm.JointLimit]) -> None:
        """Real controllers fault on a target past their limits (the simulator clips silently), so a
        controller configured narrower than the runtime's limits would fault mid-run: refuse early."""
        for spec, limit in zip(self.joints, limits, strict=True):  # the driver sizes `limits` by the configured model
            if limit.position_min > spec.lower + LIMIT_SLACK or limit.position_max < spec.upper - LIMIT_SLACK:
                raise ArmError(
                    f"{self._where}: the controller limits {spec.name} to [{limit.position_min:.3f}, "
                    f"{limit.position_max:.3f}] {spec.unit}, narrower than the runtime's [{spec.lower:.3f}, "
                    f"{spec.upper:.3f}]; restore the controller's default joint limits"
                )

    def _hold(self, driver: trossen_arm.TrossenArmDriver) -> None:
        driver.set_all_modes(trossen_arm.Mode.position)
        # pybind11 converts a list to the stub's VectorDouble at run time.
        driver.set_all_positions(list(driver.get_all_positions()), self._goal_time_s, False)  # type: ignore[arg-type]

    @staticmethod
    def _back_drivable(driver: trossen_arm.TrossenArmDriver) -> None:
        driver.set_all_modes(trossen_arm.Mode.external_effort)
        # pybind11 converts a list to the stub's VectorDouble at run time.
        driver.set_all_external_efforts([0.0] * len(JOINTS), 0.0, False)  # type: ignore[arg-type]

    def _park(self, driver: trossen_arm.TrossenArmDriver) -> tuple[bool, str]:
        self._hold(driver)
        at_park = (np.abs(np.array(driver.get_all_positions()) - self.park_position) <= PARK_TOLERANCE).all()
        for target in () if at_park else (self._staged_position, self.park_position):  # folded already: no detour
            start = np.array(driver.get_all_positions())
            driver.set_all_positions(target.tolist(), self._park_move_s(start, target), True)
        deadline = time.monotonic() + PARK_SETTLE_S
        while True:
            error = np.abs(np.array(driver.get_all_positions()) - self.park_position)
            if (error <= PARK_TOLERANCE).all():
                return True, ""
            if time.monotonic() > deadline:
                worst = int(np.argmax(error / PARK_TOLERANCE))
                return False, (
                    f"{JOINTS[worst].name} still {error[worst]:.3f} {JOINTS[worst].unit} from the park pose after "
                    f"{PARK_SETTLE_S:g} s; holding there in position mode"
                )
            time.sleep(0.02)

    def _park_move_s(self, start: np.ndarray, target: np.ndarray) -> float:
        distance = np.abs(target - start)
        return max(
            MIN_PARK_MOVE_S,
            float(distance[:-1].max()) / self.config.park_speed_per_s,
            float(distance[-1]) / self.config.park_gripper_speed_per_s,
        )

    def _error(self, exc: Exception, doing: str) -> ArmError:
        """The driver's error (e.g. "Joint overheated" followed by the controller's log) as an ArmError
        naming the arm, its address, the joint when the log names one, and what to do."""
        text = _controller_text(exc)
        joint = _named_joint(text)
        advice = next((a for key, a in _ADVICE.items() if key in text.lower()), "check the arm's power and Ethernet cable")
        where = f"{self._where}, joint {joint}" if joint else self._where
        return ArmError(
            f"{where}: {doing} failed: {text}; {advice}, then connect again (connecting clears the controller's error)"
        )


class _NoJointOutputs(Exception):
    """The controller answered over TCP, but its first joint outputs over UDP did not come in time."""


def _controller_text(exc: BaseException) -> str:
    """The driver's message on one line, without its generic troubleshooting link."""
    return " ".join(_DRIVER_NOISE.sub("", str(exc)).split())


def _named_joint(text: str) -> str | None:
    """The joint the controller's log names last (its most recent entry): ours by name, or "joint N"."""
    found = [(m.start(), m.group(0)) for name in JOINT_NAMES for m in re.finditer(rf"\b{name}\b", text)]
    found += [(m.start(), JOINT_NAMES[int(m.group(1))]) for m in _JOINT_INDEX.finditer(text) if int(m.group(1)) < len(JOINTS)]
    return max(found)[1] if found else None
