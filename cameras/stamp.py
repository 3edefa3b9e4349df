"""A machine-readable stamp in the image: frame number and capture time as black and white cells
along the top edge, with a checksum. Cells are large enough to survive lossy video encoding, so a
test can decode a recorded video and check that each stored frame is the one a tick selected."""

from __future__ import annotations

import binascii
from dataclasses import dataclass

import numpy as np

COLUMNS = 48
ROWS = 2
_BITS = COLUMNS * ROWS  # 32 frame number + 48 capture time in microseconds + 16 checksum
MIN_CELL_PX = 2


class StampError(ValueError):
    """The image carries no readable stamp (wrong image, or damaged beyond the checksum)."""


@dataclass(frozen=True)
class Stamp:
    number: int
    capture_us: int
    """Capture time in whole microseconds of the host's monotonic clock."""

    @property
    def capture_s(self) -> float:
        return self.capture_us / 1e6


def cell_px(width: int) -> int:
    cell = width // COLUMNS
    if cell < MIN_CELL_PX:
        raise ValueError(f"images narrower than {COLUMNS * MIN_CELL_PX} px cannot carry a stamp (got {width} px)")
    return cell


def stamp_height_px(width: int) -> int:
    """Rows at the top of the image the stamp occupies."""
    return ROWS * cell_px(width)


def _payload(stamp: Stamp) -> bytes:
    if not 0 <= stamp.number < 2**32 or not 0 <= stamp.capture_us < 2**48:
        raise ValueError(f"stamp out of range: {stamp}")
    body = stamp.number.to_bytes(4, "big") + stamp.capture_us.to_bytes(6, "big")
    return body + binascii.crc_hqx(body, 0xFFFF).to_bytes(2, "big")


def write_stamp(image: np.ndarray, stamp: Stamp) -> None:
    """Overwrite the top rows of `image` (H x W x C uint8, in place) with the stamp."""
    cell = cell_px(image.shape[1])
    bits = np.unpackbits(np.frombuffer(_payload(stamp), dtype=np.uint8)).reshape(ROWS, COLUMNS)
    cells = np.repeat(np.repeat(bits * np.uint8(255), cell, axis=0), cell, axis=1)
    band = image[: ROWS * cell, : COLUMNS * cell]
    band[...] = cells[..., None] if image.ndim == 3 else cells


def read_stamp(image: np.ndarray) -> Stamp:
    """Decode the stamp from an RGB or grey image as written (not rotated); StampError if unreadable."""
    cell = cell_px(image.shape[1])
    grey = image.mean(axis=2) if image.ndim == 3 else image.astype(np.float64)
    margin = cell // 4
    band = grey[: ROWS * cell, : COLUMNS * cell].reshape(ROWS, cell, COLUMNS, cell)
    centres = band[:, margin : cell - margin, :, margin : cell - margin].mean(axis=(1, 3))
    data = np.packbits((centres > 127).astype(np.uint8).ravel()).tobytes()
    body, checksum = data[:10], data[10:]
    if binascii.crc_hqx(body, 0xFFFF).to_bytes(2, "big") != checksum:
        raise StampError("no valid stamp in this image (checksum mismatch)")
    return Stamp(number=int.from_bytes(body[:4], "big"), capture_us=int.from_bytes(body[4:], "big"))
