"""Robot configs: the built-in ones load, and every mistake is named by file, key and reason."""

import pytest

from drivers.feetech.config import FeetechArmConfig
from robot_runtime.config import ArmSpec, ConfigError, builtin_robot_names, load_robot_config


def feetech(arm: ArmSpec) -> FeetechArmConfig:
    assert isinstance(arm.config, FeetechArmConfig), f"{arm.label} is a {type(arm.config).__name__}"
    return arm.config


@pytest.mark.parametrize("robot", ["so100", "so101"])
def test_builtin_configs_load_with_follower_leader_pairs(robot):
    config = load_robot_config(robot)
    assert config.name == robot
    assert [feetech(a).model for a in config.followers] == [f"{robot}_follower"]
    assert [feetech(a).model for a in config.leaders] == [f"{robot}_leader"]
    assert config.fps == 30
    assert config.robot_type == f"{robot}_follower"


def test_builtin_names_are_listed():
    assert {"so100", "so101"} <= set(builtin_robot_names())


def test_a_path_to_a_yaml_is_accepted(so100_yaml, write_robot):
    so100_yaml["name"] = "bench_arm"
    assert load_robot_config(str(write_robot(so100_yaml))).name == "bench_arm"


def error_for(config: dict, write_robot) -> str:
    path = write_robot(config)
    with pytest.raises(ConfigError) as info:
        load_robot_config(str(path))
    message = str(info.value)
    assert str(path) in message
    return message


def test_a_typo_in_a_key_is_an_error_not_ignored(so100_yaml, write_robot):
    so100_yaml["followers"][0]["retires"] = 3
    assert "key 'followers[0].retires': unknown key" in error_for(so100_yaml, write_robot)


def test_a_missing_port_names_the_arm(so100_yaml, write_robot):
    del so100_yaml["leaders"][0]["port"]
    assert "key 'leaders[0].port': Field required" in error_for(so100_yaml, write_robot)


def test_an_unsupported_baud_rate_lists_the_supported_ones(so100_yaml, write_robot):
    so100_yaml["followers"][0]["baudrate"] = 123456
    message = error_for(so100_yaml, write_robot)
    assert "key 'followers[0].baudrate'" in message and "1000000" in message


def test_negative_safety_limits_are_rejected(so100_yaml, write_robot):
    so100_yaml["safety"]["max_step"] = -1
    assert "key 'safety.max_step': expected a number greater than 0" in error_for(so100_yaml, write_robot)


def test_unknown_family_lists_the_known_ones(so100_yaml, write_robot):
    so100_yaml["followers"][0]["family"] = "kuka"
    assert "key 'followers[0].family': unknown arm family 'kuka' (known: feetech" in error_for(so100_yaml, write_robot)


def test_a_leader_model_cannot_be_a_follower(so100_yaml, write_robot):
    so100_yaml["followers"][0]["model"] = "so100_leader"
    assert "key 'followers[0]': a leader arm cannot be listed as a follower" in error_for(so100_yaml, write_robot)


def test_unknown_model_lists_the_known_ones(so100_yaml, write_robot):
    so100_yaml["followers"][0]["model"] = "so200_follower"
    assert "unknown Feetech arm model 'so200_follower'" in error_for(so100_yaml, write_robot)


def test_duplicate_prefixes_are_rejected(so100_yaml, write_robot):
    so100_yaml["followers"].append(dict(so100_yaml["followers"][0]))
    assert "key 'followers': prefixes must be unique" in error_for(so100_yaml, write_robot)


def test_bad_prefix_is_rejected(so100_yaml, write_robot):
    so100_yaml["followers"][0]["prefix"] = "left arm"
    assert "key 'followers[0].prefix'" in error_for(so100_yaml, write_robot)


def test_invalid_yaml_names_the_file(write_robot, tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed")
    with pytest.raises(ConfigError, match=r"broken\.yaml: not valid YAML"):
        load_robot_config(str(path))


def test_unknown_robot_name_lists_builtins():
    with pytest.raises(ConfigError, match=r"unknown robot 'so999'.*so100"):
        load_robot_config("so999")


def test_missing_file_is_named():
    with pytest.raises(ConfigError, match="does not exist"):
        load_robot_config("/nonexistent/robot.yaml")


def test_overrides_set_nested_values_before_validation():
    config = load_robot_config("so101", ["followers.0.port=/dev/ttyUSB3", "followers.0.id=bench", "fps=50"])
    follower = feetech(config.followers[0])
    assert (follower.port, follower.id, config.fps) == ("/dev/ttyUSB3", "bench", 50)


def test_overrides_are_validated_like_the_file():
    with pytest.raises(ConfigError, match=r"key 'followers\[0\].retries': Input should be less than or equal to 5"):
        load_robot_config("so100", ["followers.0.retries=9"])


@pytest.mark.parametrize(
    ("override", "reason"),
    [("fps", "expected KEY=VALUE"), ("followers.7.port=x", "there is no '7' here"), ("name.x=1", "'name' is not a mapping")],
)
def test_malformed_overrides_say_why(override, reason):
    with pytest.raises(ConfigError, match=reason):
        load_robot_config("so100", [override])
