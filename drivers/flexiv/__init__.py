"""Flexiv Rizon arms on Flexiv's RDK (flexivrdk 1.9.4.x or 2.0.0), and their simulator: a kinematic Rizon 4
behind a stand-in with exactly the RDK's API (drivers.flexiv.standin, drivers.flexiv.sim_controller)."""

from __future__ import annotations

from drivers.flexiv.config import FlexivArmConfig
from robot_runtime.family import ArmFamily


def _build(config, name):
    from drivers.flexiv.arm import FlexivArm

    return FlexivArm(config, name)


def _simulate(arms, sim, stack):
    from drivers.flexiv.sim_setup import simulate

    return simulate(arms, sim, stack)


def _role_of(config):
    return config.role


def _describe(config):
    where = f" (simulated at {config.standin_address})" if config.sdk == "standin" else ""
    return f"Rizon {config.serial_number}{where}"


FAMILY = ArmFamily(
    name="flexiv",
    config_model=FlexivArmConfig,
    build=_build,
    simulate=_simulate,
    role_of=_role_of,
    describe=_describe,
)
