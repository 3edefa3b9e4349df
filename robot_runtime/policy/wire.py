"""The policy protocol's message format, msgpack-numpy as openpi-client writes it, decoded without trusting
the sender: received bytes never choose an object dtype, a size or a nesting depth.

openpi's own decoder builds `np.ndarray(buffer=data, dtype=...)` from whatever dtype string arrives, so a
frame declaring `|O` makes the receiver read object pointers from the wire. Here a frame is size-checked,
unpacked with msgpack's limits into plain values, checked for depth, and only then are arrays built, each
from an allow-listed dtype and a shape that accounts for its data byte for byte."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
from openpi_client import msgpack_numpy

MIB = 2**20
DEFAULT_MAX_MESSAGE_BYTES = 32 * MIB
"""Both directions. A 640x480 RGB image is 0.9 MiB, a 224x224 one 0.15 MiB: room for 30 raw camera
images or 200 letterboxed ones in one observation, while a 100 MB frame is refused."""
MAX_DEPTH = 16
"""Maps and lists inside each other: openpi observations nest 2 deep (images -> camera -> array)."""
MAX_ITEMS = 100_000
"""Map entries and list elements in one message, all containers together. Arrays travel as one bytes
value each, so an observation has a few dozen; numbers sent as lists instead of arrays count one each
(a 50 x 32 chunk of lists is 1,650). It bounds the Python objects, and the time to check them, that a
message of one or two bytes per element could otherwise make: 8 bytes and more each."""
MAX_DIMS = 32
"""numpy's own limit on array dimensions."""

ARRAY_KEYS = frozenset({b"__ndarray__", b"data", b"dtype", b"shape"})
SCALAR_KEYS = frozenset({b"__npgeneric__", b"data", b"dtype"})
_DTYPE = re.compile(r"[<>|](b1|[iu][1248]|f[248]|U[1-9][0-9]{0,5})")
"""What openpi's packer writes for the allowed kinds: `dtype.str` of bool, integers, floats and unicode."""
ALLOWED = "bool, signed and unsigned integers of 1-8 bytes, floats of 2-8 bytes"
MAX_CODE_POINT = 0x10FFFF


class WireError(ValueError):
    """A message that breaks the format or its limits; the text names where in the message and why,
    to follow "the reply" or "the observation"."""


@dataclass(frozen=True)
class WireLimits:
    """What one side accepts from the other."""

    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    text: bool = False
    """Unicode arrays and scalars: a prompt may come as numpy text in an observation; nothing else needs it."""
    max_depth: int = MAX_DEPTH
    max_items: int = MAX_ITEMS

    def __post_init__(self) -> None:
        if self.max_message_bytes < 1 or self.max_depth < 1 or self.max_items < 1:
            raise ValueError(f"wire limits must be positive: {self}")


def encode(message: Any) -> bytes:
    """msgpack-numpy exactly as openpi-client writes it (it refuses object, void and complex arrays)."""
    return msgpack_numpy.packb(message)


def decode(frame: bytes | str, limits: WireLimits) -> dict[str, Any]:
    """A message map with writable, native-order arrays, or WireError. Nothing is allocated beyond what
    the limits allow: the size is checked first, msgpack unpacks with per-container and total limits,
    the depth is checked before any array is built."""
    if isinstance(frame, str):
        raise WireError("is a text frame; the protocol sends msgpack in binary frames")
    if len(frame) > limits.max_message_bytes:
        raise WireError(f"is {len(frame)} bytes, over the limit of {limits.max_message_bytes} bytes")
    counter = _ItemCounter(limits.max_items)
    try:
        message = msgpack.unpackb(
            frame,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_str_len=limits.max_message_bytes,
            max_bin_len=limits.max_message_bytes,
            max_array_len=limits.max_items,
            max_map_len=limits.max_items,
            max_ext_len=0,
            list_hook=counter.list,
            object_pairs_hook=counter.map,
        )
    except WireError:
        raise
    except msgpack.StackError:
        raise WireError("is nested deeper than msgpack unpacks") from None
    except msgpack.ExtraData:
        raise WireError("has bytes after its end: more than one msgpack value") from None
    except ValueError as exc:  # FormatError, truncated input, limits; all say little beyond their own text
        raise WireError(f"is not valid msgpack ({str(exc) or type(exc).__name__})") from None
    if not isinstance(message, dict):
        raise WireError(f"is a msgpack {_kind(message)}, not a map")
    _check_depth(message, limits.max_depth)
    return _build(message, (), limits)


class _ItemCounter:
    """msgpack hooks that count container items as they are unpacked and stop at the limit."""

    def __init__(self, max_items: int) -> None:
        self.max_items = max_items
        self.left = max_items

    def _take(self, count: int) -> None:
        self.left -= count
        if self.left < 0:
            raise WireError(f"holds more than {self.max_items} map entries and list elements: send numbers as arrays")

    def list(self, items: list) -> list:
        self._take(len(items))
        return items

    def map(self, pairs: Sequence[tuple[Any, Any]]) -> dict:
        self._take(len(pairs))
        return dict(pairs)


def _check_depth(message: dict, max_depth: int) -> None:
    """Iteratively, so no recursion limit is reached on the way; array maps count as one level."""
    stack: list[tuple[Any, int]] = [(message, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > max_depth:
            raise WireError(f"nests maps and lists more than {max_depth} deep")
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def _build(container: dict | list, path: tuple[Any, ...], limits: WireLimits) -> Any:
    """Arrays and numpy scalars from their maps, the rest as unpacked; plain values are not visited one by one."""
    if isinstance(container, list):
        return [
            _build(item, (*path, index), limits) if isinstance(item, dict | list) else item
            for index, item in enumerate(container)
        ]
    if b"__ndarray__" in container:
        return _array(container, path, limits)
    if b"__npgeneric__" in container:
        return _scalar(container, path, limits)
    return {key: _build(item, (*path, key), limits) if isinstance(item, dict | list) else item for key, item in container.items()}


def _array(fields: dict, path: tuple[Any, ...], limits: WireLimits) -> np.ndarray:
    _check_keys(fields, ARRAY_KEYS, path, "an array")
    dtype = _dtype(fields[b"dtype"], path, limits)
    shape, data = fields[b"shape"], fields[b"data"]
    if not isinstance(shape, list) or len(shape) > MAX_DIMS or not all(_is_int(n) and n >= 0 for n in shape):
        raise WireError(f"{_at(path)}: the shape {shape!r} is not a list of at most {MAX_DIMS} non-negative integers")
    if not isinstance(data, bytes):
        raise WireError(f"{_at(path)}: the data is a msgpack {_kind(data)}, not bytes")
    expected = math.prod(shape) * dtype.itemsize
    if expected != len(data):
        raise WireError(
            f"{_at(path)}: shape {tuple(shape)} of {dtype.str} needs {expected} bytes of data, the message holds {len(data)}"
        )
    array = np.frombuffer(data, dtype=dtype).reshape(shape)
    if dtype.kind == "U" and data and int(np.frombuffer(data, dtype.str[0] + "u4").max()) > MAX_CODE_POINT:
        raise WireError(f"{_at(path)}: the text holds values that are not unicode code points")
    return array.astype(dtype.newbyteorder("="))  # a writable copy in this machine's byte order


def _scalar(fields: dict, path: tuple[Any, ...], limits: WireLimits) -> np.generic:
    _check_keys(fields, SCALAR_KEYS, path, "a numpy scalar")
    dtype = _dtype(fields[b"dtype"], path, limits)
    data = fields[b"data"]
    if dtype.kind in "iu":
        fits = _is_int(data) and int(np.iinfo(dtype).min) <= data <= int(np.iinfo(dtype).max)
    else:
        fits = isinstance(data, {"b": bool, "f": float | int, "U": str}[dtype.kind]) and (
            dtype.kind == "b" or not isinstance(data, bool)
        )
    if not fits:
        raise WireError(f"{_at(path)}: {data!r} is not a value of {dtype.str}")
    with np.errstate(over="ignore"):  # a float too large for float16 or float32 becomes inf, as numpy casts it
        return dtype.type(data)


def _dtype(text: Any, path: tuple[Any, ...], limits: WireLimits) -> np.dtype:
    if not isinstance(text, str) or _DTYPE.fullmatch(text) is None:
        shown = repr(text) if isinstance(text, str | bytes) else f"a msgpack {_kind(text)}"
        raise WireError(f"{_at(path)}: dtype {shown[:60]} is not allowed (allowed: {ALLOWED})")
    dtype = np.dtype(text)
    if dtype.kind == "U" and not limits.text:
        raise WireError(f"{_at(path)}: dtype {text!r} (text) is not allowed here (allowed: {ALLOWED})")
    return dtype


def _check_keys(fields: dict, expected: frozenset[bytes], path: tuple[Any, ...], what: str) -> None:
    marker = next(key for key in expected if key.startswith(b"__"))
    if set(fields) != expected or fields[marker] is not True:
        keys = ", ".join(sorted(map(repr, fields)))[:200]
        wanted = ", ".join(sorted(map(repr, expected)))
        raise WireError(f"{_at(path)}: {what} must have exactly the keys {wanted} with {marker!r}: True, not {keys}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    kinds = {dict: "map", list: "list", str: "string", bytes: "binary", bool: "boolean", int: "integer", float: "float"}
    return "nil" if value is None else kinds.get(type(value), type(value).__name__)


def _at(path: tuple[Any, ...]) -> str:
    """`at ['images']['cam_high']`: where in the message, as one would index it."""
    return "at " + "".join(f"[{key!r}]" for key in path) if path else "at its top level"
