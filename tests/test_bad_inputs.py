"""Every malformed input a user can hand the runtime (a robot YAML, a `--set`, a dataset's files, a number
out of range, a policy URL) is refused with one error line that names the file or option, the key and the
reason, and the documented exit code: 2 for a bad input, before anything moves; never a traceback."""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from cli import WIDE, robot_cli
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.common import RATE_HZ, SECONDS, number
from recorders.check import check_dataset
from recorders.layout import DatasetFileError, parse_info
from recorders.reader import DatasetReader
from robot_runtime.config import ConfigError, load_robot_config, resolve_robot_path
from robot_runtime.run_evidence import STATE_DIR_ENV

USAGE = 2
PROBLEMS_FOUND = 1
"""`dataset check`'s verdict when it lists problems."""


def cli(*args: str, state: Path, timeout_s: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(
        robot_cli(*args),
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
        env={**WIDE, STATE_DIR_ENV: str(state)},
    )


def the_error(result: subprocess.CompletedProcess, code: int) -> str:
    """The one error line of a command that failed with `code`, with no traceback anywhere."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode == code, output
    errors = [line for line in output.splitlines() if "error:" in line]
    assert len(errors) == 1, output
    return errors[0]


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


# ---- robot YAML ---------------------------------------------------------------------------------

BAD_YAML: dict[str, tuple[Callable[[Path], Path], str]] = {
    "binary garbage": (lambda d: _write(d / "robot.yaml", bytes(range(128, 256)) * 4), "not a text file"),
    "NUL bytes in text": (lambda d: _write(d / "robot.yaml", b"name: so\x00100\n"), "special characters are not allowed"),
    "a directory": (lambda d: d, "is a directory"),
    "a missing file": (lambda d: d / "nowhere.yaml", "does not exist"),
    "broken YAML": (lambda d: _write(d / "robot.yaml", b"name: [so100\n"), "not valid YAML at line 2, column 1"),
    "a list at the top": (lambda d: _write(d / "robot.yaml", b"- name: so100\n"), "expected a mapping"),
    "a word for a number": (lambda d: _so100(d, fps="fast"), "key 'fps': Input should be a valid number"),
    "a misspelt key": (lambda d: _so100(d, fsp=30), "key 'fsp': unknown key"),
}


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def _so100(directory: Path, **changes: object) -> Path:
    config = {**yaml.safe_load(resolve_robot_path("so100").read_text()), **changes}
    return _write(directory / "robot.yaml", yaml.safe_dump(config).encode())


@pytest.mark.parametrize("kind", BAD_YAML)
def test_a_bad_robot_yaml_names_the_file_and_the_reason(kind: str, tmp_path: Path, state: Path) -> None:
    make, reason = BAD_YAML[kind]
    path = make(tmp_path)
    error = the_error(cli("teleop", "--robot", str(path), "--sim", state=state), USAGE)
    assert str(path) in error and reason in error


COMMANDS_WITH_ROBOT = {
    "teleop": ("teleop",),
    "record": ("record", "--dataset", "{tmp}/ds", "--task", "stack"),
    "replay": ("replay", "--dataset", "{tmp}/ds", "--episode", "0"),
    "run": ("run", "--mode", "test", "--task_prompt", "stack", "--policy", "ws://127.0.0.1:9"),
    "eval-offline": ("eval-offline", "--dataset", "{tmp}/ds", "--policy", "ws://127.0.0.1:9"),
    "calibrate": ("calibrate",),
    "setup-motors": ("setup-motors",),
    "find-port": ("find-port",),
    "sim": ("sim", "feetech"),
}


@pytest.mark.parametrize("command", COMMANDS_WITH_ROBOT)
def test_every_command_taking_a_robot_refuses_a_bad_one_the_same_way(command: str, tmp_path: Path, state: Path) -> None:
    garbage = _write(tmp_path / "robot.yaml", bytes(range(128, 256)))
    args = [a.format(tmp=tmp_path) for a in COMMANDS_WITH_ROBOT[command]]
    error = the_error(cli(*args, "--robot", str(garbage), state=state), USAGE)
    assert f"{garbage}: not a text file" in error


# ---- --set --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "key", "reason"),
    [
        ("followers.0.id=@my_arm", "followers.0.id", "found character '@' that cannot start any token"),
        ("followers.0.id=`arm", "followers.0.id", "found character '`' that cannot start any token"),
        ("fps={a: [1", "fps", "not valid YAML at line 1, column 7"),
    ],
)
def test_a_bad_set_value_names_the_key_and_the_reason(override: str, key: str, reason: str, state: Path) -> None:
    error = the_error(cli("teleop", "--robot", "so100", "--sim", "--set", override, state=state), USAGE)
    assert key in error and reason in error


def test_a_set_value_that_is_not_yaml_says_how_to_quote_it(state: Path) -> None:
    error = the_error(cli("teleop", "--robot", "so100", "--set", "followers.0.id=@my_arm", state=state), USAGE)
    assert """--set 'followers.0.id="@my_arm"'""" in error


@given(st.text(max_size=30))
def test_any_set_value_gives_a_config_or_a_config_error(text: str) -> None:
    for key in ("name", "fps", "followers.0.id", "safety"):
        error = ""
        try:
            load_robot_config("so100", [f"{key}={text}"])
        except ConfigError as exc:
            error = str(exc)
        assert not error or ("so100.yaml" in error and key.split(".")[0] in error), error


@given(st.binary(max_size=200))
def test_any_bytes_as_a_robot_yaml_give_a_config_or_a_config_error(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("yaml") / "robot.yaml"
    path.write_bytes(data)
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        load_robot_config(str(path))


# ---- numbers and URLs on the command line -------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("teleop", "--fps", "0"),
        ("teleop", "--fps", "nan"),
        ("teleop", "--duration", "-1"),
        ("run", "--fps", "0"),
        ("run", "--actions-per-chunk", "0"),
        ("replay", "--episode", "-1"),
    ],
    ids=" ".join,
)
def test_a_number_out_of_range_is_refused_naming_the_option(args: tuple[str, ...], tmp_path: Path, state: Path) -> None:
    command, option, value = args
    required = {
        "teleop": (),
        "run": ("--mode", "test", "--task_prompt", "stack"),
        "replay": ("--dataset", str(tmp_path)),
    }[command]
    error = the_error(cli(command, "--robot", "so100", "--sim", *required, option, value, state=state), USAGE)
    assert f"argument {option}: expected" in error and repr(value) in error


@pytest.mark.parametrize(
    ("option", "text", "wanted"),
    [
        (RATE_HZ, "-30", "a number more than 0 and at most 1000"),
        (RATE_HZ, "inf", "a number more than 0 and at most 1000"),
        (RATE_HZ, "5000", "a number more than 0 and at most 1000"),
        (RATE_HZ, "fast", "a number more than 0 and at most 1000"),
        (SECONDS, "0", "a number more than 0"),
        (number(int, at_least=1), "2.5", "a whole number at least 1"),
        (number(float, at_least=0), "-0.1", "a number at least 0"),
    ],
)
def test_an_option_number_out_of_range_says_what_is_expected(option: Callable[[str], float], text: str, wanted: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(f"expected {wanted}, got {text!r}")):
        option(text)


def test_an_option_number_in_range_is_taken() -> None:
    assert (RATE_HZ("1000"), SECONDS("0.5"), number(int, at_least=0)("0")) == (1000.0, 0.5, 0)


def test_a_sim_fault_at_a_negative_time_is_refused(state: Path) -> None:
    args = ("teleop", "--robot", "so100", "--sim", "--sim-fault", "follower:gripper:no_reply@-1")
    error = the_error(cli(*args, state=state), USAGE)
    assert "--sim-fault" in error and "'-1' is not a number of seconds" in error


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://gpu-box:8000", "the scheme must be ws or wss"),
        ("ws://gpu-box:99999", "Port out of range"),
        ("ws://user@gpu-box:8000", "is not a usable address"),
    ],
)
def test_a_malformed_policy_url_is_refused_before_anything_connects(url: str, reason: str, state: Path) -> None:
    args = ("run", "--robot", "so100", "--sim", "--mode", "test", "--task_prompt", "stack", "--policy", url)
    error = the_error(cli(*args, state=state), USAGE)
    assert "argument --policy" in error and url in error and reason in error


# ---- datasets -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dataset = tmp_path_factory.mktemp("recorded") / "demo"
    result = cli(
        "record", "--robot", "so100", "--sim", "--dataset", str(dataset), "--task", "stack",
        "--episodes", "1", "--episode-time", "0.5", "--reset-time", "0", "--video-codec", "h264",
        state=tmp_path_factory.mktemp("state"), timeout_s=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return dataset


@pytest.fixture
def dataset(recorded: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(recorded, copy)
    return copy


def _info(change: Callable[[dict], object]) -> Callable[[Path], str]:
    def damage(root: Path) -> str:
        path = root / "meta/info.json"
        info = json.loads(path.read_text())
        path.write_text(json.dumps(change(info)))
        return str(path)

    return damage


def _set(info: dict, key: str, value: object) -> dict:
    *parents, leaf = key.split(".")
    node = info
    for part in parents:
        node = node[part]
    node[leaf] = value
    return info


def _drop(info: dict, key: str) -> dict:
    del info[key]
    return info


def _garbage(relative: str) -> Callable[[Path], str]:
    def damage(root: Path) -> str:
        path = root / relative
        path.write_bytes(b"\x00garbage" * 8)
        return str(path)

    return damage


def _episodes_column(column: str, values: pa.Array) -> Callable[[Path], str]:
    def damage(root: Path) -> str:
        path = root / "meta/episodes/chunk-000/file-000.parquet"
        table = pq.read_table(path)
        pq.write_table(table.set_column(table.schema.get_field_index(column), column, values), path)
        return str(path)

    return damage


INFO = "meta/info.json"
DAMAGE: dict[str, tuple[Callable[[Path], str], str]] = {
    "info.json is a list": (_info(lambda i: []), "key '(top level)': expected a mapping of keys to values, got a list of 0"),
    "features is a list": (_info(lambda i: _set(i, "features", [])), "key 'features': expected a mapping"),
    "fps is 0": (_info(lambda i: _set(i, "fps", 0)), "key 'fps': Input should be greater than 0, got 0"),
    "fps is text": (_info(lambda i: _set(i, "fps", "30")), "key 'fps': Input should be a valid integer, got '30'"),
    "fps is missing": (_info(lambda i: _drop(i, "fps")), "key 'fps': Field required"),
    "a shape of text": (_info(lambda i: _set(i, "features.action.shape", ["6"])), "key 'features.action.shape[0]'"),
    "names and shape disagree": (_info(lambda i: _set(i, "features.action.shape", [7])), "6 names for shape [7]"),
    "no action feature": (_info(lambda i: _set(i, "features", {})), "features lack 'action'"),
    "info.json is not JSON": (_garbage(INFO), "not valid JSON"),
    "episodes parquet is garbage": (_garbage("meta/episodes/chunk-000/file-000.parquet"), "not a Parquet file"),
    "data parquet is garbage": (_garbage("data/chunk-000/file-000.parquet"), "not a Parquet file"),
    "an episode length of text": (_episodes_column("length", pa.array(["13"])), "row 0: key 'length'"),
    "an episode without tasks": (_episodes_column("tasks", pa.array([[]], pa.list_(pa.string()))), "key 'tasks'"),
    "a video span of text": (
        _episodes_column("videos/observation.images.front/from_timestamp", pa.array(["0"])),
        "key 'videos/observation.images.front/from_timestamp'",
    ),
}
"""Damage to a dataset's files that every command reading them must name: (damage -> file, what is said)."""


@pytest.mark.parametrize("kind", DAMAGE)
def test_the_reader_names_every_damage(kind: str, dataset: Path) -> None:
    damage, reason = DAMAGE[kind]
    path = damage(dataset)
    with pytest.raises(DatasetFileError) as raised:
        DatasetReader(dataset).episode(0).actions  # noqa: B018 - reading is what is tested
    assert any(path in problem and reason in problem for problem in raised.value.problems), raised.value.problems


@pytest.mark.parametrize("kind", DAMAGE)
def test_dataset_check_lists_every_damage_as_a_problem(kind: str, dataset: Path) -> None:
    damage, reason = DAMAGE[kind]
    path = damage(dataset)
    problems = check_dataset(dataset, decode=False).problems
    assert any(path in problem and reason in problem for problem in problems), problems


@pytest.mark.parametrize("kind", ["info.json is a list", "an episode length of text"])
def test_the_dataset_check_command_prints_the_damage(kind: str, dataset: Path, state: Path) -> None:
    damage, reason = DAMAGE[kind]
    path = damage(dataset)
    result = cli("dataset", "check", str(dataset), "--no-decode", state=state)
    assert "Traceback" not in result.stderr and result.returncode == PROBLEMS_FOUND, result.stderr
    assert any(path in line and reason in line for line in result.stderr.splitlines() if "problem:" in line), result.stderr


@pytest.mark.parametrize("kind", ["info.json is a list", "fps is 0", "features is a list", "episodes parquet is garbage"])
def test_replay_names_the_damage_before_anything_moves(kind: str, dataset: Path, state: Path) -> None:
    damage, reason = DAMAGE[kind]
    path = damage(dataset)
    # no --sim: were the damage missed, the command would go on to look for an arm on /dev/ttyACM0 and fail otherwise
    error = the_error(cli("replay", "--robot", "so100", "--dataset", str(dataset), "--episode", "0", state=state), USAGE)
    assert path in error and reason in error


@pytest.mark.parametrize("kind", ["info.json is a list", "an episode length of text"])
def test_serve_policy_names_the_damage_of_the_dataset_it_replays(kind: str, dataset: Path, state: Path) -> None:
    damage, reason = DAMAGE[kind]
    path = damage(dataset)
    error = the_error(cli("serve-policy", "--host", "127.0.0.1", "--port", "0", "--replay", str(dataset), state=state), USAGE)
    assert path in error and reason in error


RESUME_DAMAGE = {
    "fps is 0": DAMAGE["fps is 0"],
    "tasks parquet is garbage": (_garbage("meta/tasks.parquet"), "not a Parquet file"),
    "data parquet is garbage": DAMAGE["data parquet is garbage"],
    "a video is garbage": (_garbage("videos/observation.images.front/chunk-000/file-000.mp4"), "cannot read"),
}


@pytest.mark.parametrize("kind", RESUME_DAMAGE)
def test_run_record_names_the_damage_of_the_dataset_it_would_resume(kind: str, dataset: Path, state: Path) -> None:
    damage, reason = RESUME_DAMAGE[kind]
    path = damage(dataset)
    args = ("run", "--robot", "so100", "--mode", "test", "--task_prompt", "stack", "--policy", "ws://127.0.0.1:9")
    error = the_error(cli(*args, "--record", str(dataset), state=state), USAGE)
    assert path in error and reason in error


@pytest.mark.parametrize("kind", ["fps is 0", "tasks parquet is garbage"])
def test_record_resume_names_the_damage(kind: str, dataset: Path, state: Path) -> None:
    damage, reason = RESUME_DAMAGE[kind]
    path = damage(dataset)
    args = ("record", "--robot", "so100", "--sim", "--no-cameras", "--dataset", str(dataset), "--task", "stack", "--resume")
    error = the_error(cli(*args, state=state), USAGE)
    assert path in error and reason in error


def test_dataset_check_names_a_stats_file_of_the_wrong_shape(dataset: Path) -> None:
    (dataset / "meta/stats.json").write_text(json.dumps({"action": {"mean": "high"}, "observation.state": [1, 2]}))
    problems = check_dataset(dataset, decode=False).problems
    assert "meta/stats.json: key 'action.mean': not an array of numbers" in problems
    assert "meta/stats.json: key 'observation.state': expected a mapping of statistic -> values" in problems


def test_dataset_check_names_a_stats_file_that_is_not_json(dataset: Path) -> None:
    (dataset / "meta/stats.json").write_text('{"action": ')
    problems = check_dataset(dataset, decode=False).problems
    assert any(p.startswith(f"{dataset}/meta/stats.json: not valid JSON (") for p in problems), problems


def test_dataset_check_names_a_corrupt_video(dataset: Path, state: Path) -> None:
    video = dataset / "videos/observation.images.front/chunk-000/file-000.mp4"
    video.write_bytes(b"\x00garbage" * 64)
    result = cli("dataset", "check", str(dataset), state=state)
    assert "Traceback" not in result.stderr and result.returncode == PROBLEMS_FOUND, result.stderr
    assert "problem: videos/observation.images.front/chunk-000/file-000.mp4: cannot be decoded" in result.stderr


def test_the_reader_names_a_video_it_cannot_decode(dataset: Path) -> None:
    video = dataset / "videos/observation.images.front/chunk-000/file-000.mp4"
    video.write_bytes(video.read_bytes()[:2000])  # cut short, as by a full disk
    with pytest.raises(DatasetFileError, match=re.escape(f"cannot read {video}")):
        list(DatasetReader(dataset).frames(0, "observation.images.front"))


def test_the_reader_names_a_data_file_with_an_action_column_of_another_width(dataset: Path) -> None:
    path = dataset / "data/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    short = pa.array([[1.0, 2.0]] * len(table), pa.list_(pa.float32()))
    pq.write_table(table.set_column(table.schema.get_field_index("action"), "action", short), path)
    with pytest.raises(DatasetFileError, match=r"column 'action' of episode 0 holds \(2,\) values per row, info.json says 6"):
        DatasetReader(dataset).episode(0).actions  # noqa: B018 - reading is what is tested


def test_replay_of_an_episode_the_dataset_lacks_is_a_usage_error(dataset: Path, state: Path) -> None:
    error = the_error(cli("replay", "--robot", "so100", "--dataset", str(dataset), "--episode", "5", state=state), USAGE)
    assert f"{dataset} has episodes 0..0, not 5" in error


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 50) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
PATHS = ("fps", "features", "features.action", "features.action.shape", "features.action.names", "total_frames", "splits")


@settings(max_examples=200)
@given(st.data())
def test_any_info_json_is_valid_or_named_as_wrong(recorded: Path, data: st.DataObject) -> None:
    info = json.loads((recorded / INFO).read_text())
    if data.draw(st.booleans()):
        info = data.draw(JSON)
    else:
        for key in data.draw(st.lists(st.sampled_from(PATHS), min_size=1, max_size=3)):
            with contextlib.suppress(KeyError, TypeError):  # an earlier change removed the parent
                _set(info, key, data.draw(JSON))
    problems: list[str] = []
    try:
        parsed = parse_info(info, "meta/info.json")
    except DatasetFileError as exc:
        problems = exc.problems
    if problems:
        assert all(p.startswith("meta/info.json: key '") for p in problems), problems
    else:
        assert parsed.fps > 0 and "action" in parsed.features


@settings(max_examples=25)
@given(info=JSON)
def test_dataset_check_never_crashes_on_any_info_json(
    recorded: Path, tmp_path_factory: pytest.TempPathFactory, info: object
) -> None:
    copy = tmp_path_factory.mktemp("check") / "copy"
    shutil.copytree(recorded, copy)
    (copy / INFO).write_text(json.dumps(info))
    assert not check_dataset(copy, decode=False).ok
