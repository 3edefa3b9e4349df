"""Feetech STS3215 bus arms (SO-100, SO-101) on the vendor SDK, and their wire-level simulator."""

from __future__ import annotations

from drivers.feetech.config import FeetechArmConfig
from robot_runtime.family import ArmFamily


def _build(config, name):
    from drivers.feetech.arm import FeetechArm

    return FeetechArm(config, name)


def _simulate(arms, sim, stack):
    from drivers.feetech.sim_setup import simulate

    return simulate(arms, sim, stack)


FAMILY = ArmFamily(
    name="feetech",
    config_model=FeetechArmConfig,
    build=_build,
    simulate=_simulate,
    role_of=lambda config: config.arm_model.role,
)
