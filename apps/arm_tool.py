"""What the per-arm tool commands (calibrate, setup-motors, find-port) share: the arm picked by --arm and
its family's hook for the command, or a clear refusal when the family has no such step."""

from __future__ import annotations

from collections.abc import Callable

from apps.common import print_warning
from robot_runtime.config import ArmSpec, ConfigError, RobotConfig
from robot_runtime.family_tools import FamilyTools
from robot_runtime.run_evidence import arm_key, unsafe_ends


def tool_arm[Hook](
    config: RobotConfig, label: str | None, command: str, hook: Callable[[FamilyTools], Hook | None]
) -> tuple[ArmSpec, Hook]:
    """The arm named by --arm (default: the first follower) and its family's hook for `command`."""
    arms = config.followers + config.leaders
    chosen = next((a for a in arms if a.label == label), None) if label else config.followers[0]
    if chosen is None:
        raise ConfigError(f"{config.source}: no arm labelled {label!r} (arms: {', '.join(a.label for a in arms)})")
    tools = chosen.family.tools
    found = hook(tools)
    if found is None:
        family = chosen.family.name
        offered = ", ".join(tools.commands) or "none of calibrate, setup-motors, find-port"
        raise ConfigError(
            f"{config.source}: arm {chosen.label!r} is a {family} arm, and the {family} family has no {command} "
            f"(it offers {offered})"
        )
    return chosen, found


def tell_unsafe_arm_ends(spec: ArmSpec, *, simulated: bool) -> None:
    """Before a tool touches the arm: say so when the last control run driving it died without a safe stop
    (its motors may still hold torque, its log may say why)."""
    for message in unsafe_ends(arms=[arm_key(spec, simulated=simulated)]):
        print_warning(message)
