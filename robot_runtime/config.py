"""Robot setup files (configs/robots/*.yaml): strict validation, errors that name the file, the key and the reason."""

from __future__ import annotations

import importlib
import importlib.resources
import pkgutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError, field_validator

import drivers
from cameras.config import CameraConfig
from recorders.layout import validation_problems
from robot_runtime.family import ArmFamily
from robot_runtime.policy.config import PolicyConfig

MAX_RATE_HZ = 1000.0
"""The fastest control rate a setup may ask for."""


class ConfigError(ValueError):
    """A robot config could not be used; the message says which file, which key and why."""


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo must never be silently ignored on a robot."""

    model_config = ConfigDict(extra="forbid", frozen=True)


UNITS = ("deg", "rad", "percent", "m")


def _per_unit(value: Any) -> float | dict[str, float]:
    """One positive number, or a mapping of unit to positive number."""
    def positive(number: Any, expected: str) -> float:
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not number > 0:
            raise ValueError(f"{expected}; got {number!r}")
        return float(number)

    if isinstance(value, dict):
        unknown = sorted(str(unit) for unit in set(value) - set(UNITS))
        if unknown:
            raise ValueError(f"unknown unit {', '.join(unknown)} (units: {', '.join(UNITS)})")
        return {unit: positive(number, f"{unit}: expected a number greater than 0") for unit, number in value.items()}
    return positive(value, "expected a number greater than 0, or one per unit like {rad: 0.1, m: 0.005}")


PerUnit = Annotated[float | dict[str, float], PlainValidator(_per_unit)]
"""A safety setting in the units of the values it bounds: one number for every unit, or one per unit
(`{rad: 0.1, m: 0.005}`); a robot with metres beside angles must give it per unit. For a Cartesian pose,
`m` bounds the distance of its position and `rad` the geodesic angle of its rotation."""


class SafetyConfig(StrictModel):
    max_start_gap: PerUnit = 20.0
    """Refuse to start when leader and follower differ by more than this on any joint or pose."""
    max_step: PerUnit = 5.0
    """Largest change of a target in one tick."""
    ramp_s: float = Field(1.0, ge=0)
    """Soft start: blend from the follower's pose to the leader's (or the first action) over at least this long."""
    max_velocity: PerUnit | None = None
    """Fastest a target may move, per second; with the rate it tightens max_step."""
    limits: dict[str, tuple[float, float]] = {}
    """Per joint feature (`wrist_flex.pos`): a [lower, upper] range narrower than the calibrated one."""
    approach_speed: PerUnit = 30.0
    """Per second, the smooth move to a policy's first action before it takes control."""
    watchdog_s: float = Field(1.0, gt=0)
    """Hold the arm when no fresh policy action comes; stop the run after this many seconds of holding."""


class DemoConfig(StrictModel):
    """The scripted demonstration a simulated leader plays: waypoints in joint units, looped."""

    hold_s: float = Field(1.0, ge=0)
    segment_s: float = Field(1.5, gt=0)
    waypoints: list[dict[str, float]] = Field(min_length=1)


class SimConfig(StrictModel):
    start_pose: dict[str, float]
    """Where simulated arms rest when the simulator starts (joint units, per joint name)."""
    demo: DemoConfig | None = None
    """What simulated leaders play; a setup without leaders has none."""


class ArmEntry(StrictModel):
    """The family-independent part of an arm entry; the rest is validated by the family's own model."""

    model_config = ConfigDict(extra="allow", frozen=True)
    family: str
    prefix: str = ""

    @field_validator("prefix")
    @classmethod
    def _prefix_is_identifier(cls, value: str) -> str:
        if value and not value.isidentifier():
            raise ValueError(f"prefix {value!r} must be empty or an identifier like 'left'")
        return value


class RobotFile(StrictModel):
    name: str
    robot_type: str
    """Written into datasets; LeRobot's robot type string for this setup."""
    fps: float = Field(30.0, gt=0, le=MAX_RATE_HZ)
    followers: list[ArmEntry] = Field(min_length=1)
    leaders: list[ArmEntry] = []
    safety: SafetyConfig = SafetyConfig()
    cameras: dict[str, CameraConfig] = {}
    """Camera name (as in `observation.images.<name>`) -> camera settings."""
    camera_selection: Literal["newest", "nearest"] = "newest"
    """Which frame a tick takes from each camera: the newest, or the one captured nearest the arm read."""
    policy: PolicyConfig = PolicyConfig()
    sim: SimConfig | None = None

    @field_validator("cameras")
    @classmethod
    def _camera_names_are_identifiers(cls, value: dict[str, CameraConfig]) -> dict[str, CameraConfig]:
        for name in value:
            if not name.isidentifier():
                raise ValueError(f"camera name {name!r} must be an identifier like 'front' or 'cam_high'")
        return value


@dataclass(frozen=True)
class ArmSpec:
    """One arm of a setup, validated: its role, its prefix in the rig and its family's config."""

    role: str
    prefix: str
    family: ArmFamily
    config: BaseModel

    @property
    def label(self) -> str:
        return f"{self.prefix}_{self.role}" if self.prefix else self.role


@dataclass(frozen=True)
class RobotConfig:
    source: Path
    name: str
    robot_type: str
    fps: float
    safety: SafetyConfig
    sim: SimConfig | None
    followers: tuple[ArmSpec, ...]
    leaders: tuple[ArmSpec, ...]
    cameras: Mapping[str, CameraConfig] = field(default_factory=dict)
    camera_selection: Literal["newest", "nearest"] = "newest"
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    resolved: Mapping[str, Any] = field(default_factory=dict)
    """The validated file with overrides applied and defaults filled in, as recorded in run manifests."""


def builtin_robot_names() -> list[str]:
    files = importlib.resources.files("configs.robots").iterdir()
    return sorted(f.name.removesuffix(".yaml") for f in files if f.name.endswith(".yaml"))


def resolve_robot_path(robot: str) -> Path:
    """`--robot` takes a built-in name (so100) or a path to a YAML file."""
    if robot.endswith((".yaml", ".yml")) or "/" in robot:
        path = Path(robot)
        if path.is_dir():
            raise ConfigError(f"robot config {path} is a directory: pass a robot YAML file or a built-in robot name")
        if not path.is_file():
            raise ConfigError(f"robot config {path} does not exist")
        return path
    if robot not in builtin_robot_names():
        raise ConfigError(
            f"unknown robot {robot!r}: built-in robots are {', '.join(builtin_robot_names())}, or pass a path to a YAML file"
        )
    return Path(str(importlib.resources.files("configs.robots") / f"{robot}.yaml"))


def load_robot_config(robot: str, overrides: Sequence[str] = ()) -> RobotConfig:
    """Load a robot config; `overrides` are `key.path=value` strings (`followers.0.port=/dev/ttyACM0`)
    applied before validation, values parsed as YAML."""
    path = resolve_robot_path(robot)
    try:
        raw = yaml.safe_load(path.read_bytes().decode())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text file (byte {exc.start} is not UTF-8): pass a robot YAML") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: {_yaml_problem(exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    for override in overrides:
        _apply_override(path, raw, override)
    try:
        parsed = RobotFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(path, exc)) from None
    if parsed.sim is not None and parsed.leaders and parsed.sim.demo is None:
        raise ConfigError(f"{path}: key 'sim.demo': required when the setup has leaders (what the simulated leaders play)")
    followers = tuple(_arm_spec(path, "followers", i, "follower", e) for i, e in enumerate(parsed.followers))
    leaders = tuple(_arm_spec(path, "leaders", i, "leader", e) for i, e in enumerate(parsed.leaders))
    for key, arms in (("followers", followers), ("leaders", leaders)):
        prefixes = [a.prefix for a in arms]
        if len(set(prefixes)) != len(prefixes):
            raise ConfigError(f"{path}: key '{key}': prefixes must be unique, got {prefixes}")
    return RobotConfig(
        path,
        parsed.name,
        parsed.robot_type,
        parsed.fps,
        parsed.safety,
        parsed.sim,
        followers,
        leaders,
        parsed.cameras,
        parsed.camera_selection,
        parsed.policy,
        parsed.model_dump(mode="json"),
    )


def _apply_override(path: Path, raw: dict[str, Any], override: str) -> None:
    key, sep, text = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {override!r}: expected KEY=VALUE, e.g. followers.0.port=/dev/ttyACM0")
    *parents, leaf = key.split(".")
    node: Any = raw
    for part in parents:
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError, TypeError):
            raise ConfigError(f"{path}: --set {key}: there is no '{part}' here") from None
    if isinstance(node, list):
        raise ConfigError(f"{path}: --set {key}: cannot replace a list item; set one of its keys")
    if not isinstance(node, dict):
        raise ConfigError(f"{path}: --set {key}: '{'.'.join(parents)}' is not a mapping")
    try:
        node[leaf] = yaml.safe_load(text) if text else ""
    except yaml.YAMLError as exc:
        problem = f"the value {text!r} is {_yaml_problem(exc)}"
        raise ConfigError(f"{path}: --set {key}: {problem}; to pass it as text, quote it: --set '{key}=\"{text}\"'") from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line for a YAML syntax error: where (line, column) and what."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"not valid YAML at line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    if isinstance(exc, yaml.reader.ReaderError):
        return f"not valid YAML at character {exc.position}: {exc.reason} (#x{exc.character:04x})"
    return f"not valid YAML: {' '.join(str(exc).split())}"


def family_names() -> list[str]:
    """The arm families: the packages under drivers/."""
    return sorted(m.name for m in pkgutil.iter_modules(drivers.__path__) if m.ispkg)


def load_family(name: str) -> ArmFamily:
    """Import `drivers.<name>` and return its FAMILY: a new arm family is a new folder, nothing else."""
    known = family_names()
    if name not in known:
        raise ValueError(f"unknown arm family {name!r} (known: {', '.join(known)})")
    family = getattr(importlib.import_module(f"drivers.{name}"), "FAMILY", None)
    if not isinstance(family, ArmFamily):
        raise ValueError(f"drivers.{name} does not define FAMILY")
    return family


def _arm_spec(path: Path, key: str, index: int, role: str, entry: ArmEntry) -> ArmSpec:
    where = f"{key}[{index}]"
    try:
        family = load_family(entry.family)
    except ValueError as exc:
        raise ConfigError(f"{path}: key '{where}.family': {exc}") from None
    settings: dict[str, Any] = dict(entry.model_extra or {})
    try:
        config = family.config_model.model_validate(settings)
    except ValidationError as exc:
        raise ConfigError(_describe(path, exc, where)) from None
    try:
        family.check_role(config, role)
    except ValueError as exc:
        raise ConfigError(f"{path}: key '{where}': {exc}") from None
    return ArmSpec(role=role, prefix=entry.prefix, family=family, config=config)


def _describe(path: Path, exc: ValidationError, prefix: str = "") -> str:
    return "\n".join(validation_problems(path, exc, prefix))
