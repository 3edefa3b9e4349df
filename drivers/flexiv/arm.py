"""A Flexiv Rizon arm on Flexiv's RDK (drivers.flexiv.sdk): the TCP pose and gripper width streamed in
non-real-time Cartesian motion control (or joint positions), in metres and radians."""

from __future__ import annotations

import logging
import math
import threading
import time

import numpy as np

from drivers.flexiv.config import GRIPPER_NAME, JOINTS, TCP_NAMES, FlexivArmConfig, GripperConfig
from drivers.flexiv.sdk import CartesianLimits, RizonGripper, RizonSdk, RizonStates, load_api
from robot_runtime.robot import Arm, ArmError, JointSpec, JointState, PoseSpec, StopReport
from robot_runtime.rotations import from_quat_wxyz, to_quat_wxyz

log = logging.getLogger(__name__)

HOME_TCP = np.array([0.687, -0.110, 0.287, 0.0, math.pi, 0.0])
"""A Rizon 4's flange at Flexiv's home pose (forward kinematics of the flexiv_description URDF): in front of
the base, pointing down. The Cartesian park position until a park confirms the real one (the tool decides it)."""
PARK_TOLERANCE_RAD = 0.01
GRIPPER_STOP_S = 2.0
"""How long disconnecting waits for a gripper move being delivered."""


class FlexivArm(Arm):
    def __init__(self, config: FlexivArmConfig, name: str) -> None:
        self.name = name
        self.config = config
        self.cartesian = config.control == "cartesian"
        self.joints = _joints(config)
        self.poses = (PoseSpec(0, "world"),) if self.cartesian else ()
        self.park_q = np.array(config.park_q_rad, dtype=np.float64)
        arm_park = HOME_TCP if self.cartesian else self.park_q
        self.park_position = np.concatenate([arm_park, [0.0] if config.gripper else []])
        self._limits = CartesianLimits(**config.cartesian_limits.model_dump())
        self._sdk: RizonSdk | None = None
        self._gripper: RizonGripper | None = None
        self._mover: _GripperMover | None = None
        self.last_states: RizonStates | None = None
        """The latest full reading (q, dq, tau, TCP pose, external wrench), for logs and tools."""

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        return self._sdk is not None

    @property
    def transport(self) -> str:
        return self.config.serial_number

    def _connect(self, *, observe_only: bool) -> None:
        """Open the robot, clear a minor fault, enable, wait until operational, zero the force-torque sensor,
        then enter pure-motion Cartesian control (or joint position control). Observe-only opens and reads:
        it never enables, switches mode, zeroes the sensor or sends anything."""
        sdk = RizonSdk(load_api(self.config), self.name, self.config.serial_number)
        sdk.connect(self.config.network_interface_whitelist)
        try:
            gripper = sdk.gripper() if self.config.gripper else None
            if not observe_only:
                self._bring_up(sdk, gripper)
        except BaseException:
            self._close_mover()
            sdk.release()
            raise
        self._sdk, self._gripper = sdk, gripper

    def disconnect(self) -> None:
        """Release the robot. It holds where it is (IDLE after safe_stop)."""
        self._close_mover()
        sdk, self._sdk, self._gripper = self._sdk, None, None
        if sdk is not None:
            sdk.release()

    # -- control -----------------------------------------------------------------------------

    def read(self) -> JointState:
        """The TCP pose (canonical rotation vector) or joint positions, and the gripper width. An E-stop or a
        fault is an ArmError here, so a run stops at the next tick (a dry run only watches: it reads on)."""
        sdk = self._connected()
        if not self.observe_only:
            sdk.check_healthy()
            if self._mover is not None:
                self._mover.raise_failure()
        states = sdk.states()
        self.last_states = states
        arm = np.concatenate([states.tcp_pose[:3], from_quat_wxyz(states.tcp_pose[3:])]) if self.cartesian else states.q
        width = [self._gripper.width_m()] if self._gripper is not None else []
        return JointState(timestamp_s=states.timestamp_s, position=np.concatenate([arm, width]))

    def _send(self, targets: np.ndarray) -> np.ndarray:
        sdk = self._connected()  # an E-stop or fault since the last read makes the RDK refuse the command: named too
        sent = targets.copy()
        if self.cartesian:
            # The freshest reading: near a half turn the reported sign can flip between two reads of one pose.
            current = sdk.states().tcp_pose[3:]
            quat = to_quat_wxyz(targets[3:6], reference_wxyz=current)  # the controller never sees a sign flip
            sdk.send_cartesian([*targets[:3], *quat], self._limits)
        else:
            sdk.send_joint_position(targets[:7], self.config.joint_max_vel_rad_s, self.config.joint_max_acc_rad_s2)
        if self._mover is not None:
            sent[-1] = self._mover.post(float(targets[-1]))
        return sent

    def _set_torque(self, enabled: bool) -> None:
        """Enabled: hold the present pose in the control mode. Disabled: stop (IDLE), in which the Rizon holds
        where it is: the RDK's non-real-time modes have no torque-off, and a 7-joint arm must not fall."""
        sdk = self._connected()
        if not enabled:
            sdk.stop()
            return
        self._enter_control_mode(sdk)
        states = sdk.states()
        if self.cartesian:
            sdk.send_cartesian(states.tcp_pose.tolist(), self._limits)
        else:
            sdk.send_joint_position(states.q, self.config.joint_max_vel_rad_s, self.config.joint_max_acc_rad_s2)

    def _safe_stop(self) -> list[StopReport]:
        """Glide in joint position control to the park joint positions at park_speed_rad_s, confirm by
        reading the joints, then Stop(): IDLE, holding there. The gripper stays as it is (it may hold an
        object). After an E-stop or a fault the controller has stopped the arm already and nothing moves it."""
        sdk = self._connected()
        try:
            sdk.check_healthy()
        except ArmError as exc:  # not operational: the controller holds it (brakes, or stopped in place)
            return [StopReport(self.name, parked=False, torque_safe=True, detail=f"not moved: {exc}")]
        try:
            parked, detail = self._park(sdk)
            sdk.stop()
        except ArmError as exc:  # never raise from a stop: say what state the arm is in
            halted = sdk.halted()
            advice = "the controller stopped it and holds it" if halted else "check the robot (an E-stop stops it at once)"
            return [StopReport(self.name, parked=False, torque_safe=halted, detail=f"{exc}; {advice}")]
        return [StopReport(self.name, parked=parked, torque_safe=True, detail=detail or "stopped (IDLE), holding")]

    # -- internals ---------------------------------------------------------------------------

    def _connected(self) -> RizonSdk:
        if self._sdk is None:
            raise RuntimeError(f"{self.name} is not connected")
        return self._sdk

    def _bring_up(self, sdk: RizonSdk, gripper: RizonGripper | None) -> None:
        if sdk.clear_fault(self.config.fault_clear_timeout_s):
            log.warning("%s: cleared a fault the robot reported at connect", sdk.where)
        sdk.enable()
        sdk.wait_operational(self.config.operational_timeout_s)
        if not self.cartesian:
            self._check_controller_limits(sdk)
        log.warning("%s: zeroing the force-torque sensor: nothing may touch the arm or its tool now", sdk.where)
        before, after = sdk.zero_ft_sensor()
        log.info("%s: external wrench before zeroing %s, after %s (N, Nm)", sdk.where, np.round(before, 2), np.round(after, 2))
        self._enter_control_mode(sdk)
        if gripper is not None and self.config.gripper is not None:
            self._mover = _GripperMover(gripper, self.config.gripper, sdk.where)

    def _enter_control_mode(self, sdk: RizonSdk) -> None:
        if self.cartesian:
            sdk.switch_mode("NRT_CARTESIAN_MOTION_FORCE")
            sdk.set_pure_motion(self.config.max_contact_wrench)
        else:
            sdk.switch_mode("NRT_JOINT_POSITION")

    def _check_controller_limits(self, sdk: RizonSdk) -> None:
        """A controller configured narrower than the runtime's joint limits would fault mid-run: refuse early."""
        q_min, q_max = sdk.joint_limits()
        for spec, low, high in zip(JOINTS, q_min, q_max, strict=False):
            if low > spec.lower + 1e-3 or high < spec.upper - 1e-3:
                raise ArmError(
                    f"{sdk.where}: the controller limits {spec.name} to [{low:.3f}, {high:.3f}] rad, narrower than the "
                    f"runtime's [{spec.lower:.3f}, {spec.upper:.3f}]; restore the robot's default joint limits"
                )

    def _park(self, sdk: RizonSdk) -> tuple[bool, str]:
        sdk.switch_mode("NRT_JOINT_POSITION")
        sdk.send_joint_position(self.park_q, self.config.park_speed_rad_s, self.config.joint_max_acc_rad_s2)
        deadline = time.monotonic() + self.config.park_timeout_s
        while True:
            sdk.check_healthy()
            states = sdk.states()
            error = np.abs(states.q - self.park_q)
            if (error <= PARK_TOLERANCE_RAD).all():
                if self.cartesian:  # the park pose with this robot's tool, for the next start
                    self.park_position[:6] = np.concatenate([states.tcp_pose[:3], from_quat_wxyz(states.tcp_pose[3:])])
                return True, ""
            if time.monotonic() > deadline:
                worst = int(np.argmax(error))
                return False, (
                    f"{JOINTS[worst].name} still {error[worst]:.3f} rad from the park pose after "
                    f"{self.config.park_timeout_s:g} s; stopped there (IDLE), holding"
                )
            time.sleep(0.02)

    def _close_mover(self) -> None:
        mover, self._mover = self._mover, None
        if mover is not None:
            mover.close()


class _GripperMover:
    """Moves the gripper off the control tick (Gripper.Move blocks until delivered): the tick posts targets,
    this thread sends the latest one. Only a change larger than min_change_m is sent."""

    def __init__(self, gripper: RizonGripper, settings: GripperConfig, where: str) -> None:
        self._gripper = gripper
        self._settings = settings
        span = gripper.enable(settings.name)
        self._min_m, self._max_m = span.min_width_m, min(span.max_width_m, settings.max_width_m)
        if span.max_width_m < settings.max_width_m:
            log.info("%s: the gripper opens to %.3f m; wider targets go to that", where, span.max_width_m)
        self._velocity = min(max(settings.velocity_m_s, span.min_vel_m_s), span.max_vel_m_s)
        self._posted = gripper.width_m()
        self._pending: float | None = None
        self._failure: ArmError | None = None
        self._closed = False
        self._wake = threading.Condition()
        self.moves = 0
        self._thread = threading.Thread(target=self._run, name=f"flexiv-gripper-{where}", daemon=True)
        self._thread.start()

    def post(self, width_m: float) -> float:
        """Ask for `width_m` (latest wins); returns the width the gripper is headed to."""
        self.raise_failure()
        width_m = min(max(width_m, self._min_m), self._max_m)
        with self._wake:
            if abs(width_m - self._posted) > self._settings.min_change_m:
                self._posted = self._pending = width_m
                self._wake.notify()
            return self._posted

    def raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(GRIPPER_STOP_S)

    def _run(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._closed or self._pending is not None)
                if self._closed:
                    return
                width_m, self._pending = self._pending, None
            assert width_m is not None
            try:
                self._gripper.move(width_m, self._velocity, self._settings.force_n)
            except ArmError as exc:
                self._failure = exc
                return
            self.moves += 1


def _joints(config: FlexivArmConfig) -> tuple[JointSpec, ...]:
    if config.control == "cartesian":
        low, high = config.workspace.min_m, config.workspace.max_m
        arm = tuple(JointSpec(n, "m", lo, hi) for n, lo, hi in zip(TCP_NAMES[:3], low, high, strict=True))
        arm += tuple(JointSpec(n, "rad", -math.pi, math.pi) for n in TCP_NAMES[3:])
    else:
        arm = JOINTS
    if config.gripper is None:
        return arm
    return (*arm, JointSpec(GRIPPER_NAME, "m", 0.0, config.gripper.max_width_m))
