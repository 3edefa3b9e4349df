"""Trossen WidowX AI arms (IP controllers) on the vendor's trossen_arm driver, and their simulator."""

from __future__ import annotations

from drivers.trossen.config import TrossenArmConfig
from robot_runtime.family import ArmFamily


def _build(config, name):
    from drivers.trossen.arm import TrossenArm

    return TrossenArm(config, name)


def _simulate(arms, sim, stack):
    from drivers.trossen.sim_setup import simulate

    return simulate(arms, sim, stack)


def _role_of(config):
    return config.role


def _describe(config):
    return f"controller {config.ip}"


FAMILY = ArmFamily(
    name="trossen",
    config_model=TrossenArmConfig,
    build=_build,
    simulate=_simulate,
    role_of=_role_of,
    describe=_describe,
)
