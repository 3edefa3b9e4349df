"""Feetech STS3215 bus arms (SO-100, SO-101) on the vendor SDK, and their wire-level simulator."""

from __future__ import annotations

from drivers.feetech.config import FeetechArmConfig
from robot_runtime.family import ArmFamily
from robot_runtime.family_tools import FamilyTools


def _build(config, name):
    from drivers.feetech.arm import FeetechArm

    return FeetechArm(config, name)


def _simulate(arms, sim, stack):
    from drivers.feetech.sim_setup import simulate

    return simulate(arms, sim, stack)


def _role_of(config):
    return config.arm_model.role


def _describe(config):
    return config.port


def _calibrate(config, request, stack):
    from drivers.feetech.tools import calibrate

    return calibrate(config, request, stack)


def _setup_motors(config, request, stack):
    from drivers.feetech.tools import setup_motors

    return setup_motors(config, request, stack)


def _find_port(config, request, stack):
    from drivers.feetech.tools import find_port

    return find_port(config, request, stack)


FAMILY = ArmFamily(
    name="feetech",
    config_model=FeetechArmConfig,
    build=_build,
    simulate=_simulate,
    role_of=_role_of,
    describe=_describe,
    tools=FamilyTools(calibrate=_calibrate, setup_motors=_setup_motors, find_port=_find_port),
)
