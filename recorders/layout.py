"""Where a LeRobot v3.0 dataset keeps its files, and what it records (its features)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000
"""Files per chunk directory."""
DATA_FILES_SIZE_MB = 100
VIDEO_FILES_SIZE_MB = 200
"""A data or video file takes further episodes until it reaches this size, then a new file starts."""
VIDEO_FILE_MAX_S = 1000.0
"""A video file also ends before 1024 s: LeRobot compares timestamps as float32, whose step beyond
1024 s exceeds its 1e-4 s tolerance, so frames later in a file would be rejected."""
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"

STATE = "observation.state"
ACTION = "action"
TICK_S = "timing.tick_s"
"""When the tick of each row really started, in seconds from the episode's first deadline; `timestamp` is
the nominal frame_index / fps. The `timing.` prefix keeps these out of policy inputs (LeRobot turns
`observation.*` features into state inputs)."""
STATE_S = "timing.state_s"
"""When the follower's joints were read, on the same scale."""


VIDEO_DTYPES = ("video", "image")
"""Feature dtypes held as pictures (height, width, channels), not as numbers in the data files."""


class DatasetFileError(ValueError):
    """A dataset file is missing, unreadable or of the wrong shape; each problem names the file, the key
    and the reason."""

    def __init__(self, problems: str | list[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else problems
        super().__init__("\n".join(self.problems))


def validation_problems(source: object, exc: ValidationError, prefix: str = "") -> list[str]:
    """One `SOURCE: key 'a.b[0]': reason` line per error pydantic found; `prefix` leads every key."""
    lines = []
    for error in exc.errors():
        key = prefix
        for loc in error["loc"]:
            key += f"[{loc}]" if isinstance(loc, int) else f".{loc}" if key and not key.endswith("/") else str(loc)
        lines.append(f"{source}: key '{key or '(top level)'}': {_reason(error)}")
    return lines


def _reason(error: Any) -> str:
    kind, value = error["type"], error.get("input")
    if kind == "extra_forbidden":
        return "unknown key (check the spelling)"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"expected a mapping of keys to values, got {_kind(value)}"
    reason = error["msg"].removeprefix("Value error, ")
    if error["msg"].startswith("Input should") and not isinstance(value, (dict, list)):
        reason += f", got {_kind(value)}"
    return reason


def _kind(value: object) -> str:
    """A value as a reader of a JSON or YAML file would name it."""
    if isinstance(value, (dict, list)):
        return f"a {'mapping' if isinstance(value, dict) else 'list'} of {len(value)}"
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


Count = Annotated[int, Field(ge=0)]
"""An index, a length or a total."""


class _Checked(BaseModel):
    """Numbers must be numbers (no "30" for 30, no true for 1); keys LeRobot or other tools add are kept."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)


class Feature(_Checked):
    """One entry of info.json's `features`: a column of the data files, or a camera's video."""

    dtype: str = Field(min_length=1)
    shape: list[Count] = Field(min_length=1)
    names: list[str] | dict[str, Any] | None = None
    info: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _shape_fits(self) -> Feature:
        if self.dtype in VIDEO_DTYPES and len(self.shape) != 3:
            raise ValueError(f"a {self.dtype} feature has shape [height, width, channels], not {self.shape}")
        vector = self.dtype not in VIDEO_DTYPES and len(self.shape) == 1
        if vector and isinstance(self.names, list) and len(self.names) != self.shape[0]:
            raise ValueError(f"{len(self.names)} names for shape {self.shape}")
        return self


class DatasetInfo(_Checked):
    """meta/info.json: what every reader of the dataset relies on before it opens another file."""

    codebase_version: str
    robot_type: str | None
    fps: int = Field(gt=0)
    total_episodes: Count
    total_frames: Count
    total_tasks: Count
    splits: dict[str, str]
    data_path: str
    video_path: str | None = None
    features: dict[str, Feature]

    @model_validator(mode="after")
    def _usable(self) -> DatasetInfo:
        if ACTION not in self.features:
            raise ValueError(f"features lack {ACTION!r}: a dataset records the actions sent to the robot")
        if self.video_path is None and any(f.dtype == "video" for f in self.features.values()):
            raise ValueError("video features need a 'video_path'")
        return self

    @property
    def video_keys(self) -> list[str]:
        return [key for key, feature in self.features.items() if feature.dtype == "video"]


def parse_info(value: object, source: object) -> DatasetInfo:
    """Validate the parsed content of an info.json; `source` names the file in errors."""
    try:
        return DatasetInfo.model_validate(value)
    except ValidationError as exc:
        raise DatasetFileError(validation_problems(source, exc)) from None


class EpisodeMeta(_Checked):
    """A row of meta/episodes/*.parquet, as far as readers of the data and videos rely on it."""

    episode_index: Count
    tasks: list[str] = Field(min_length=1)
    length: Count
    data_chunk_index: Count = Field(alias="data/chunk_index")
    data_file_index: Count = Field(alias="data/file_index")
    dataset_from_index: Count
    dataset_to_index: Count


class VideoSpan(_Checked):
    """Where an episode's frames of one camera are: `videos/<key>/...` columns of its episodes row."""

    chunk_index: Count
    file_index: Count
    from_timestamp: float = Field(ge=0)
    to_timestamp: float = Field(ge=0)


def check_episode_row(row: Mapping[str, Any], video_keys: list[str], source: object) -> None:
    """Raise a DatasetFileError naming the row's keys that readers cannot use; `source` names the file and row."""
    problems = []
    try:
        EpisodeMeta.model_validate(row)
    except ValidationError as exc:
        problems += validation_problems(source, exc)
    for key in video_keys:
        prefix = f"videos/{key}/"
        span = {name.removeprefix(prefix): value for name, value in row.items() if name.startswith(prefix)}
        try:
            VideoSpan.model_validate(span)
        except ValidationError as exc:
            problems += validation_problems(source, exc, prefix)
    if problems:
        raise DatasetFileError(problems)


def image_key(camera: str) -> str:
    return f"observation.images.{camera}"


def capture_key(camera: str) -> str:
    """When the camera captured the frame stored in a row, on the tick_s scale: skew lives in the data."""
    return f"timing.{camera}.capture_s"


def frame_number_key(camera: str) -> str:
    """The camera's own frame number of the stored frame: a repeated number means a reused frame."""
    return f"timing.{camera}.frame_number"


@dataclass(frozen=True, order=True)
class FileIndex:
    chunk: int = 0
    file: int = 0

    def next(self) -> FileIndex:
        return FileIndex(self.chunk + 1, 0) if self.file + 1 >= CHUNKS_SIZE else FileIndex(self.chunk, self.file + 1)

    def format(self, template: str, **extra: str) -> str:
        return template.format(chunk_index=self.chunk, file_index=self.file, **extra)


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def info(self) -> Path:
        return self.root / "meta" / "info.json"

    @property
    def stats(self) -> Path:
        return self.root / "meta" / "stats.json"

    @property
    def tasks(self) -> Path:
        return self.root / "meta" / "tasks.parquet"

    @property
    def staging(self) -> Path:
        """Episodes recorded but not yet committed; hidden so no loader or upload mistakes them for data."""
        return self.root / ".staging"

    @property
    def runs(self) -> Path:
        """One manifest per recording run."""
        return self.root / "meta" / "runs"

    def data(self, index: FileIndex) -> Path:
        return self.root / index.format(DATA_PATH)

    def video(self, key: str, index: FileIndex) -> Path:
        return self.root / index.format(VIDEO_PATH, video_key=key)

    def episodes(self, index: FileIndex) -> Path:
        return self.root / index.format(EPISODES_PATH)


def _scalar(dtype: str) -> dict[str, Any]:
    return {"dtype": dtype, "shape": [1], "names": None}


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset records. Resuming a dataset requires the same spec."""

    robot_type: str
    fps: int
    joints: tuple[str, ...]
    """Feature names of the joint vector, e.g. `shoulder_pan.pos`."""
    cameras: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    """Camera name -> (height, width) of its images."""
    video_info: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Camera name -> the `info` block of its video feature (codec, pixel format, fps, ...)."""

    @property
    def features(self) -> dict[str, dict[str, Any]]:
        """The `features` of info.json, in LeRobot's order: robot features, then the bookkeeping ones."""
        vector = {"dtype": "float32", "shape": [len(self.joints)], "names": list(self.joints)}
        features: dict[str, dict[str, Any]] = {ACTION: vector, STATE: dict(vector)}
        for camera, (height, width) in self.cameras.items():
            features[image_key(camera)] = {
                "dtype": "video",
                "shape": [height, width, 3],
                "names": ["height", "width", "channels"],
                "info": dict(self.video_info.get(camera, {})),
            }
        features[TICK_S] = _scalar("float64")
        features[STATE_S] = _scalar("float64")
        for camera in self.cameras:
            features[capture_key(camera)] = _scalar("float64")
            features[frame_number_key(camera)] = _scalar("int64")
        for name, dtype in (
            ("timestamp", "float32"),
            ("frame_index", "int64"),
            ("episode_index", "int64"),
            ("index", "int64"),
            ("task_index", "int64"),
        ):
            features[name] = _scalar(dtype)
        return features

    @property
    def video_keys(self) -> list[str]:
        return [image_key(c) for c in self.cameras]

    def mismatches(self, info: Mapping[str, Any]) -> list[str]:
        """How an existing dataset's info.json differs from this spec, one line per difference."""
        problems = []
        if info.get("codebase_version") != CODEBASE_VERSION:
            problems.append(f"codebase_version is {info.get('codebase_version')!r}, this recorder writes {CODEBASE_VERSION!r}")
        if info.get("robot_type") != self.robot_type:
            problems.append(f"robot_type is {info.get('robot_type')!r}, this run records {self.robot_type!r}")
        if info.get("fps") != self.fps:
            problems.append(f"fps is {info.get('fps')}, this run records at {self.fps}")
        theirs, ours = info.get("features", {}), self.features
        for key in sorted(set(theirs) | set(ours)):
            if key not in ours:
                problems.append(f"feature {key!r} is in the dataset but not recorded by this run")
            elif key not in theirs:
                problems.append(f"feature {key!r} is recorded by this run but not in the dataset")
            elif theirs[key] != ours[key]:
                problems.append(f"feature {key!r} differs: dataset {_brief(theirs[key])}, this run {_brief(ours[key])}")
        return problems


def _brief(feature: Mapping[str, Any]) -> str:
    info = feature.get("info") or {}
    codec = f" {info['video.codec']}" if "video.codec" in info else ""
    names = feature.get("names")
    return f"{feature.get('dtype')} {feature.get('shape')}{codec}" + (
        f" {names}" if names and feature.get("dtype") != "video" else ""
    )
