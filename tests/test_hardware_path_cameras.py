"""A station's cameras on the hardware path: `record` without --sim reads its cameras through the `opencv`
and `realsense` camera types from real sources, two paced MJPEG streams served by their own processes
(as network or UVC cameras) and a recording the RealSense SDK made (played by the SDK in a camera's
place), while the SO-100 arms are served by `robot-runtime sim feetech`."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import yaml
from hardware_path import (
    SO100,
    SimulatedRobot,
    assert_dataset_check_passes,
    assert_demonstration_recorded,
    record_with_demo,
    simulated_robot,
)
from mjpeg_source import MjpegSource, mjpeg_source

from cameras.realsense_software import SoftwareRealSense, SoftwareRealSenseSpec
from cameras.stamp import Stamp, read_stamp, write_stamp
from recorders.check import check_dataset
from recorders.layout import image_key
from recorders.reader import DatasetReader
from robot_runtime.config import resolve_robot_path

WIDTH, HEIGHT, FPS = 320, 240, 30
FRONT_BGR, WRIST_BGR = (255, 0, 0), (0, 255, 0)
TOP_RGB = (160, 40, 200)
COLOUR_TOLERANCE = 24
"""JPEG and the dataset's video encoding move a solid colour by a few levels."""
MAX_AGE_MS = 1000
"""The sources share two cores with the recording command (and, in CI, with whatever else runs): a
frame may come late without the camera having stalled."""
REALSENSE_RECORDING_S = 20
"""Long enough to outlast the recording command's start-up, episode and stop on a loaded machine: a
playback that ends stops the command, as a camera that died would."""


def render_top(number: int, capture_s: float) -> tuple[np.ndarray, None]:
    image = np.full((HEIGHT, WIDTH, 3), TOP_RGB, np.uint8)
    write_stamp(image, Stamp(number, round(capture_s * 1e6)))
    return image, None


@pytest.fixture(scope="module")
def realsense_recording(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Future[Path]]:
    """Recorded by the SDK from its software device in real time: started at once, waited for when needed."""
    path = tmp_path_factory.mktemp("realsense") / "top.db3"
    spec = SoftwareRealSenseSpec(width=WIDTH, height=HEIGHT, fps=FPS)

    def record() -> Path:
        SoftwareRealSense(spec, render_top).record(path, REALSENSE_RECORDING_S * FPS)
        return path

    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool.submit(record)


@pytest.fixture(scope="module")
def streams() -> Iterator[tuple[MjpegSource, MjpegSource]]:
    with mjpeg_source(FPS, WIDTH, HEIGHT, FRONT_BGR) as front, mjpeg_source(FPS, WIDTH, HEIGHT, WRIST_BGR) as wrist:
        yield front, wrist


@pytest.fixture(scope="module")
def so100() -> Iterator[SimulatedRobot]:
    with simulated_robot(SO100.family, SO100.robot) as sim:
        yield sim


def station_config(front: MjpegSource, wrist: MjpegSource, top: Path) -> dict:
    """so100.yaml with its cameras pointed at the sources, as a station's own config names its devices."""
    config = yaml.safe_load(resolve_robot_path("so100").read_text())
    size = {"width": WIDTH, "height": HEIGHT, "fps": FPS, "max_age_ms": MAX_AGE_MS}
    config["cameras"] = {
        "front": {"type": "opencv", "source": front.url, **size},
        "wrist": {"type": "opencv", "source": wrist.url, "rotation": 180, **size},
        "top": {"type": "realsense", "playback": str(top), **size},
    }
    return config


def test_record_stores_every_camera_from_its_source_and_the_dataset_passes_the_check(
    so100: SimulatedRobot,
    streams: tuple[MjpegSource, MjpegSource],
    realsense_recording: Future[Path],
    tmp_path: Path,
    write_robot,
) -> None:
    front, wrist = streams
    station = write_robot(
        station_config(front, wrist, realsense_recording.result(timeout=REALSENSE_RECORDING_S * 4 + 30)), "station.yaml"
    )
    dataset = tmp_path / "demo"
    recorded = record_with_demo(so100, dataclasses.replace(SO100, robot=str(station)), dataset, tmp_path, episode_time_s=3.0)
    recorded.result.assert_clean()
    recorded.result.assert_stopped_safely(SO100.followers, SO100.leaders)
    assert_demonstration_recorded(dataset, SO100)
    assert_dataset_check_passes(dataset)
    reader = DatasetReader(dataset)
    frames = reader.info["total_frames"]
    assert frames >= 80
    assert check_dataset(dataset).frames_decoded == 3 * frames
    for camera, rgb in (("front", FRONT_BGR[::-1]), ("wrist", WRIST_BGR[::-1]), ("top", TOP_RGB)):
        assert reader.info["features"][image_key(camera)]["shape"] == [HEIGHT, WIDTH, 3]
        images = [np.rot90(image, 2) if camera == "wrist" else image for _, image in reader.frames(0, image_key(camera))]
        assert len(images) == frames
        numbers = [read_stamp(image).number for image in images]  # raises unless each frame carries its source's stamp
        assert numbers == sorted(numbers) and numbers[-1] - numbers[0] >= frames // 2, (
            f"{camera}: frames do not come from a running source: {numbers}"
        )
        centre = np.array([image[HEIGHT * 3 // 4, WIDTH // 2] for image in images], dtype=int)
        assert np.abs(centre - rgb).max() <= COLOUR_TOLERANCE, (
            f"{camera}: expected RGB {rgb}, got {centre.min(axis=0)}..{centre.max(axis=0)}"
        )
    assert {c["name"] for c in recorded.result.stats["cameras"]["cameras"]} == {"front", "wrist", "top"}
