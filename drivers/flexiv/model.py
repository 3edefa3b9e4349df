"""A kinematic Rizon 4: forward and inverse kinematics and the non-real-time motion generator that a Flexiv
controller runs behind SendCartesianMotionForce and SendJointPosition. It is what the simulated controller
integrates; no dynamics, contacts or forces, so every wrench it reports is zero.

Poses are [x, y, z, qw, qx, qy, qz] in the robot's WORLD frame (origin at the base, z up), metres, as the
RDK speaks them. Rotations go through scipy's Rotation (robot_runtime.rotations): a rotation vector is only
ever an angular velocity times a time step or a rotation's log, never a thing to add or clip element-wise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from robot_runtime.rotations import from_quat_wxyz

DOF = 7
HOME_Q_RAD = np.radians([0.0, -40.0, 0.0, 90.0, 0.0, 40.0, 0.0])
"""Flexiv's home pose: the flange above the table in front of the base, pointing down."""
Q_MIN_RAD = np.array([-2.7925, -2.2689, -2.9671, -1.8675, -2.9671, -1.3963, -2.9671])
Q_MAX_RAD = np.array([2.7925, 2.2689, 2.9671, 2.6878, 2.9671, 4.5379, 2.9671])
"""The software joint limits a Rizon 4 reports (RobotInfo q_min / q_max): the URDF's soft limits, 5 degrees inside
its hard ones."""
DQ_MAX_RAD_S = np.array([2.0944, 2.0944, 2.4435, 2.4435, 4.8869, 4.8869, 4.8869])
TAU_MAX_NM = np.array([123.0, 123.0, 64.0, 64.0, 39.0, 39.0, 39.0])

# Each joint's origin in its parent link (URDF xyz in metres, roll-pitch-yaw in radians) and its axis.
_JOINT_ORIGINS = (
    ((0.0, 0.0, 0.155), (0.0, 0.0, -math.pi)),
    ((0.0, 0.03, 0.21), (0.0, 0.0, 0.0)),
    ((0.0, 0.035, 0.205), (0.0, 0.0, 0.0)),
    ((-0.02, -0.03, 0.19), (0.0, 0.0, -math.pi)),
    ((-0.02, 0.025, 0.195), (0.0, 0.0, -math.pi)),
    ((0.0, 0.03, 0.19), (0.0, 0.0, 0.0)),
    ((-0.015, 0.073, 0.11), (0.0, -math.pi / 2, 0.0)),
)
_AXES = "zyzyzyz"
_JOINT_INDEX = np.arange(7)
_AXIS_COLUMN = np.array([2 if axis == "z" else 1 for axis in _AXES])
"""Which column of each joint's frame is its axis (z: 2, y: 1)."""
_LINK7_TO_FLANGE = ((0.0, 0.0, 0.081), (0.0, 0.0, -math.pi))


def _transform(xyz: tuple[float, ...], rpy: tuple[float, ...]) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = Rotation.from_euler("xyz", rpy).as_matrix()  # URDF: fixed-axis roll, pitch, yaw
    out[:3, 3] = xyz
    return out


def _skew(vector: np.ndarray) -> np.ndarray:
    x, y, z = vector
    return np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])


def _joint_terms() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each joint's origin O and the terms of O @ rot(axis, q) = O + sin(q) O K + (1 - cos(q)) O K^2
    (Rodrigues, K the axis's cross-product matrix), so all seven transforms come from one array expression."""
    origins = np.array([_transform(xyz, rpy) for xyz, rpy in _JOINT_ORIGINS])
    skews = np.zeros((DOF, 4, 4))
    for i, axis in enumerate(_AXES):
        skews[i, :3, :3] = _skew(np.array([0.0, 0.0, 1.0]) if axis == "z" else np.array([0.0, 1.0, 0.0]))
    return origins, origins @ skews, origins @ skews @ skews


_ORIGINS, _ORIGINS_K, _ORIGINS_K2 = _joint_terms()
_FLANGE = _transform(*_LINK7_TO_FLANGE)


def _rotation_exp(rotvec: np.ndarray) -> np.ndarray:
    """The rotation matrix of a rotation vector (Rodrigues), without scipy's object round trip."""
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-12:
        return np.eye(3)
    skew = _skew(rotvec / angle)
    return np.eye(3) + math.sin(angle) * skew + (1.0 - math.cos(angle)) * (skew @ skew)


def _rotation_log(matrix: np.ndarray) -> np.ndarray:
    """The rotation vector of a rotation matrix (its log). Closed form on the control path, where scipy's
    object round trips would cost more than the whole step; scipy where the closed form is ill-conditioned."""
    cos_angle = min(1.0, max(-1.0, (float(matrix[0, 0] + matrix[1, 1] + matrix[2, 2]) - 1.0) / 2.0))
    angle = math.acos(cos_angle)
    if angle > 3.0:
        return Rotation.from_matrix(matrix).as_rotvec()
    skew = np.array([matrix[2, 1] - matrix[1, 2], matrix[0, 2] - matrix[2, 0], matrix[1, 0] - matrix[0, 1]])
    scale = 0.5 if angle < 1e-6 else angle / (2.0 * math.sin(angle))
    return skew * scale


def _solve_spd(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """x with matrix @ x = vector for a small symmetric positive definite matrix, by Cholesky in plain
    floats: LAPACK's solver wakes OpenBLAS's thread pool on every call, which costs more than the step."""
    a, b = matrix.tolist(), vector.tolist()
    n = len(b)
    low = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1):
            total = a[i][j] - sum(low[i][k] * low[j][k] for k in range(j))
            low[i][j] = math.sqrt(total) if i == j else total / low[j][j]
    y = [0.0] * n
    for i in range(n):
        y[i] = (b[i] - sum(low[i][k] * y[k] for k in range(i))) / low[i][i]
    x = [0.0] * n
    for i in reversed(range(n)):
        x[i] = (y[i] - sum(low[k][i] * x[k] for k in range(i + 1, n))) / low[i][i]
    return np.array(x)


def pose_from_matrix(matrix: np.ndarray) -> np.ndarray:
    """A 4x4 transform (its rotation orthonormal) as [x, y, z, qw, qx, qy, qz] with qw >= 0, by Shepperd's
    method in plain floats: the simulated controller converts two poses per state it pushes."""
    (m00, m01, m02, x), (m10, m11, m12, y), (m20, m21, m22, z) = matrix[:3].tolist()
    trace = m00 + m11 + m22
    if trace > 0:
        s = 2.0 * math.sqrt(trace + 1.0)
        quat = [0.25 * s, (m21 - m12) / s, (m02 - m20) / s, (m10 - m01) / s]
    elif m00 > m11 and m00 > m22:
        s = 2.0 * math.sqrt(1.0 + m00 - m11 - m22)
        quat = [(m21 - m12) / s, 0.25 * s, (m01 + m10) / s, (m02 + m20) / s]
    elif m11 > m22:
        s = 2.0 * math.sqrt(1.0 + m11 - m00 - m22)
        quat = [(m02 - m20) / s, (m01 + m10) / s, 0.25 * s, (m12 + m21) / s]
    else:
        s = 2.0 * math.sqrt(1.0 + m22 - m00 - m11)
        quat = [(m10 - m01) / s, (m02 + m20) / s, (m12 + m21) / s, 0.25 * s]
    norm = math.sqrt(sum(v * v for v in quat)) * (-1.0 if quat[0] < 0 else 1.0)
    return np.array([x, y, z, *(v / norm for v in quat)])


def matrix_from_pose(pose: np.ndarray) -> np.ndarray:
    """[x, y, z, qw, qx, qy, qz] (any quaternion norm but zero) as a 4x4 transform."""
    out = np.eye(4)
    out[:3, :3] = Rotation.from_rotvec(from_quat_wxyz(np.asarray(pose[3:7], dtype=np.float64))).as_matrix()
    out[:3, 3] = pose[:3]
    return out


@dataclass(frozen=True)
class RizonKinematics:
    """The Rizon 4 chain from the base to the TCP, which is `tcp_offset_m` from the flange in the flange's
    frame (0 for a bare flange; a gripper's fingertip centre is some 0.1-0.2 m out along z)."""

    tcp_offset_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    q_min_rad: np.ndarray = field(default_factory=Q_MIN_RAD.copy)
    q_max_rad: np.ndarray = field(default_factory=Q_MAX_RAD.copy)

    def frames(self, q_rad: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """Each joint's frame after its rotation, the flange and the TCP, as 4x4 transforms in WORLD."""
        q = np.asarray(q_rad, dtype=np.float64)[:, None, None]
        local = _ORIGINS + np.sin(q) * _ORIGINS_K + (1.0 - np.cos(q)) * _ORIGINS_K2
        current = local[0]
        joints = [current]
        for transform in local[1:]:
            current = current @ transform
            joints.append(current)
        flange = current @ _FLANGE
        tcp = flange.copy()
        tcp[:3, 3] = flange[:3, 3] + flange[:3, :3] @ np.asarray(self.tcp_offset_m)
        return joints, flange, tcp

    def tcp_pose(self, q_rad: np.ndarray) -> np.ndarray:
        return pose_from_matrix(self.frames(q_rad)[2])

    def flange_pose(self, q_rad: np.ndarray) -> np.ndarray:
        return pose_from_matrix(self.frames(q_rad)[1])

    def jacobian(self, q_rad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The geometric Jacobian at the TCP (6 x 7: linear rows, then angular, WORLD frame) and the TCP."""
        joints, _, tcp = self.frames(q_rad)
        stacked = np.array(joints)
        directions = stacked[_JOINT_INDEX, :3, _AXIS_COLUMN]
        arms = tcp[:3, 3] - stacked[:, :3, 3]
        out = np.empty((6, DOF))
        out[:3] = (directions[:, [1, 2, 0]] * arms[:, [2, 0, 1]] - directions[:, [2, 0, 1]] * arms[:, [1, 2, 0]]).T
        out[3:] = directions.T
        return out, tcp

    def inverse(self, pose: np.ndarray, seed_rad: np.ndarray, **options: Any) -> tuple[np.ndarray, bool]:
        """Joint positions within the limits that put the TCP at `pose` ([x, y, z, qw, qx, qy, qz]), by damped
        least squares from `seed_rad`, and whether they reach it within the tolerances (False: the nearest
        found); `options` as inverse_matrix takes them."""
        return self.inverse_matrix(matrix_from_pose(pose), seed_rad, **options)

    def inverse_matrix(
        self,
        target: np.ndarray,
        seed_rad: np.ndarray,
        *,
        iterations: int = 100,
        tolerance_m: float = 1e-6,
        tolerance_rad: float = 1e-5,
        damping: float = 0.02,
        max_step_rad: float = 0.2,
    ) -> tuple[np.ndarray, bool]:
        """Inverse kinematics to a 4x4 transform of the TCP: damped least squares, steps of at most `max_step_rad`."""
        q = np.clip(np.asarray(seed_rad, dtype=np.float64), self.q_min_rad, self.q_max_rad)
        for _ in range(iterations):
            jac, tcp = self.jacobian(q)
            error = np.empty(6)
            error[:3] = target[:3, 3] - tcp[:3, 3]
            error[3:] = _rotation_log(target[:3, :3] @ tcp[:3, :3].T)
            if np.linalg.norm(error[:3]) < tolerance_m and np.linalg.norm(error[3:]) < tolerance_rad:
                return q, True
            step = jac.T @ _solve_spd(jac @ jac.T + damping**2 * np.eye(6), error)
            largest = float(np.max(np.abs(step)))
            if largest > max_step_rad:
                step *= max_step_rad / largest
            q = np.clip(q + step, self.q_min_rad, self.q_max_rad)
        return q, False


@dataclass(frozen=True)
class CartesianTarget:
    """A SendCartesianMotionForce command: the TCP pose to reach and the limits of the way there."""

    pose: np.ndarray
    max_linear_vel: float = 0.5
    max_angular_vel: float = 1.0
    max_linear_acc: float = 2.0
    max_angular_acc: float = 5.0


@dataclass(frozen=True)
class JointTarget:
    """A SendJointPosition command: joint positions and per-joint velocity and acceleration limits. The
    controller's target velocities at arrival are taken as zero."""

    q_rad: np.ndarray
    max_vel_rad_s: np.ndarray
    max_acc_rad_s2: np.ndarray


def _approach(error: np.ndarray, velocity: np.ndarray, max_vel: float, max_acc: float, dt_s: float) -> np.ndarray:
    """The next velocity toward a target `error` away along a straight line: as fast as allowed, and slow
    enough to stop at the target within `max_acc`, changed by at most max_acc * dt_s."""
    distance = float(np.linalg.norm(error))
    desired = np.zeros_like(error)
    if distance > 0:
        desired = error / distance * min(max_vel, math.sqrt(2 * max_acc * distance))
    change = desired - velocity
    size = float(np.linalg.norm(change))
    if size > max_acc * dt_s:
        change *= max_acc * dt_s / size
    return velocity + change


class MotionGenerator:
    """The state of one arm and the target it tracks. Cartesian targets are tracked by a commanded TCP
    pose that moves within the command's velocity and acceleration limits and is followed by inverse
    kinematics (each joint also within its own speed limit); joint targets per joint."""

    def __init__(self, kinematics: RizonKinematics, q_rad: np.ndarray) -> None:
        self.kinematics = kinematics
        self.q_rad = np.clip(np.asarray(q_rad, dtype=np.float64), kinematics.q_min_rad, kinematics.q_max_rad)
        self.dq_rad_s = np.zeros(DOF)
        self.tcp_twist = np.zeros(6)
        self.target: CartesianTarget | JointTarget | None = None
        self._commanded = np.eye(4)
        _, self._flange, self._tcp = kinematics.frames(self.q_rad)
        self._goal = np.eye(4)
        self._settled = False
        self._linear_vel = np.zeros(3)
        self._angular_vel = np.zeros(3)

    @property
    def moving(self) -> bool:
        return bool(np.any(self.dq_rad_s != 0))

    def flange_and_tcp(self) -> tuple[np.ndarray, np.ndarray]:
        """The flange and the TCP as 4x4 transforms in WORLD at the current joint positions."""
        return self._flange, self._tcp

    @property
    def idle(self) -> bool:
        """No target, or the target reached and the arm at rest: a step would change nothing."""
        return self.target is None or (self._settled and not self.moving)

    def track(self, target: CartesianTarget | JointTarget) -> None:
        """Re-plan toward `target` from the current motion (a new command never jerks the arm)."""
        if isinstance(target, CartesianTarget) and not isinstance(self.target, CartesianTarget):
            self._commanded = self._tcp.copy()
            self._linear_vel = self.tcp_twist[:3].copy()
            self._angular_vel = self.tcp_twist[3:].copy()
        if isinstance(target, CartesianTarget):
            self._goal = matrix_from_pose(target.pose)
        self._settled = False
        self.target = target

    def stop(self) -> None:
        """Hold where the arm is, at once."""
        self.target = None
        self.dq_rad_s = np.zeros(DOF)
        self.tcp_twist = np.zeros(6)

    def step(self, dt_s: float) -> None:
        before = self._tcp
        if isinstance(self.target, CartesianTarget):
            q = self._cartesian_step(self.target, dt_s)
        elif isinstance(self.target, JointTarget):
            q = self._joint_step(self.target, dt_s)
        else:
            q = self.q_rad
        speed_limit = DQ_MAX_RAD_S * dt_s
        q = np.clip(q, self.q_rad - speed_limit, self.q_rad + speed_limit)
        q = np.clip(q, self.kinematics.q_min_rad, self.kinematics.q_max_rad)
        if isinstance(self.target, JointTarget):
            self._settled = bool(np.array_equal(q, self.target.q_rad))
        self.dq_rad_s = (q - self.q_rad) / dt_s
        self.q_rad = q
        _, self._flange, after = self.kinematics.frames(q)
        self._tcp = after
        self.tcp_twist[:3] = (after[:3, 3] - before[:3, 3]) / dt_s
        self.tcp_twist[3:] = _rotation_log(after[:3, :3] @ before[:3, :3].T) / dt_s

    def _cartesian_step(self, target: CartesianTarget, dt_s: float) -> np.ndarray:
        if self._settled:
            return self.q_rad
        goal = self._goal
        error = goal[:3, 3] - self._commanded[:3, 3]
        self._linear_vel = _approach(error, self._linear_vel, target.max_linear_vel, target.max_linear_acc, dt_s)
        if float(np.linalg.norm(error)) <= float(np.linalg.norm(self._linear_vel)) * dt_s:
            self._commanded[:3, 3] = goal[:3, 3]
            self._linear_vel = np.zeros(3)
        else:
            self._commanded[:3, 3] += self._linear_vel * dt_s
        current = self._commanded[:3, :3]
        turn = _rotation_log(goal[:3, :3] @ current.T)
        self._angular_vel = _approach(turn, self._angular_vel, target.max_angular_vel, target.max_angular_acc, dt_s)
        if float(np.linalg.norm(turn)) <= float(np.linalg.norm(self._angular_vel)) * dt_s:
            self._commanded[:3, :3] = goal[:3, :3]
            self._angular_vel = np.zeros(3)
        else:
            self._commanded[:3, :3] = _rotation_exp(self._angular_vel * dt_s) @ current
        q, reached = self.kinematics.inverse_matrix(self._commanded, self.q_rad, iterations=8)
        arrived = not np.any(self._linear_vel) and not np.any(self._angular_vel) and np.array_equal(self._commanded, goal)
        self._settled = reached and arrived
        return q

    def _joint_step(self, target: JointTarget, dt_s: float) -> np.ndarray:
        q = self.q_rad.copy()
        for i in range(DOF):
            error = np.array([target.q_rad[i] - q[i]])
            limit = min(float(target.max_vel_rad_s[i]), float(DQ_MAX_RAD_S[i]))
            velocity = _approach(error, self.dq_rad_s[i : i + 1], limit, float(target.max_acc_rad_s2[i]), dt_s)[0]
            if abs(error[0]) <= abs(velocity) * dt_s:
                q[i] = target.q_rad[i]
            else:
                q[i] += velocity * dt_s
        return q
