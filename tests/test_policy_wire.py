"""The policy wire format decodes everything openpi-client's packer writes, exactly as openpi's own
decoder would, and refuses everything else with a WireError naming where and why: object, void,
complex and structured dtypes, shapes that do not account for their data, truncated or oversized
frames, deep nesting. Fuzzed with random and adversarial frames: it never raises anything else,
never hangs and allocates little more than the frame itself."""

from __future__ import annotations

import tracemalloc
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from openpi_client import msgpack_numpy

from robot_runtime.policy.wire import DEFAULT_MAX_MESSAGE_BYTES, MAX_DEPTH, WireError, WireLimits, decode, encode

LIMITS = WireLimits()
TEXT = WireLimits(text=True)

ALLOWED_DTYPES = st.sampled_from(["|b1", "|i1", "<i2", ">i4", "<i8", "|u1", ">u2", "<u4", "<u8", "<f2", ">f4", "<f8"])
REFUSED_DTYPES = st.sampled_from(
    ["|O", "O", "<O8", "|V8", "V16", "<c8", "<c16", "f8,O", "[('a', 'O')]", "<M8[s]", "<m8", "|S4", "<f16", "<i16", "b", "i", ""]
) | st.text(max_size=12)
"""What openpi's decoder would hand to np.dtype(); the last is anything at all."""


def array_map(dtype: Any, shape: Any, data: Any) -> dict:
    return {b"__ndarray__": True, b"data": data, b"dtype": dtype, b"shape": shape}


def allowed_arrays(text: bool = False) -> st.SearchStrategy[np.ndarray]:
    dtypes = ALLOWED_DTYPES.map(np.dtype) | (st.just(np.dtype("<U3")) if text else st.nothing())
    return dtypes.flatmap(lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)))


def messages(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[dict]:
    """Observation-like maps: string keys, nested maps and lists, arrays and plain values as leaves."""
    return st.dictionaries(
        st.text(max_size=12),
        st.recursive(leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)),
        max_size=4,
    )


INTEGERS = st.integers(-(2**63), 2**64 - 1)
"""Every integer msgpack can carry."""
PLAIN = st.none() | st.booleans() | INTEGERS | st.floats() | st.text(max_size=8) | st.binary(max_size=8)

HOSTILE_ARRAYS = st.one_of(
    st.builds(array_map, REFUSED_DTYPES, st.just([2, 2]), st.binary(max_size=64)),
    st.builds(
        array_map,
        ALLOWED_DTYPES,
        st.lists(INTEGERS | st.booleans() | st.floats() | st.text(max_size=2), max_size=40),
        st.binary(max_size=64),
    ),
    st.builds(array_map, ALLOWED_DTYPES, st.just([2**62, 2**62]), st.binary(max_size=64)),
    st.builds(array_map, INTEGERS | st.binary(max_size=4) | st.none(), st.just([1]), st.binary(max_size=8)),
    st.builds(array_map, ALLOWED_DTYPES, st.just([1]), st.text(max_size=8) | INTEGERS | st.lists(INTEGERS)),
    st.fixed_dictionaries(
        {b"__npgeneric__": st.just(True), b"data": PLAIN, b"dtype": ALLOWED_DTYPES | REFUSED_DTYPES | st.just("<U4")}
    ),
    st.dictionaries(
        st.sampled_from([b"__ndarray__", b"__npgeneric__", b"data", b"dtype", b"shape", b"extra"]), PLAIN, min_size=1
    ),
)
"""Array and scalar maps whose every field may lie."""


def hostile_frames() -> st.SearchStrategy[bytes]:
    """Frames as a hostile peer sends them: hostile array maps nested in messages, random bytes, truncated
    or extended valid frames, lists and maps nested deeply, top-level values that are not maps."""
    nested = st.integers(MAX_DEPTH, 2 * MAX_DEPTH).map(lambda depth: msgpack.packb({"a": _nest(depth)}))
    return st.one_of(
        messages(HOSTILE_ARRAYS | PLAIN).map(msgpack.packb),
        st.binary(max_size=200),
        st.tuples(messages(allowed_arrays() | PLAIN).map(encode), st.integers(0, 10_000)).map(lambda f: f[0][: f[1] % len(f[0])]),
        messages(allowed_arrays() | PLAIN).map(lambda frame: encode(frame) + b"\xc0"),
        nested,
        st.integers(2000, 6000).map(lambda depth: b"\x81\xa1a" + b"\x91" * depth + b"\x01"),  # deeper than msgpack unpacks
        (PLAIN | st.lists(PLAIN, max_size=3)).map(msgpack.packb),
    )


def _nest(depth: int) -> Any:
    value: Any = 0
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=messages(allowed_arrays(text=True) | PLAIN))
def test_everything_openpis_packer_writes_decodes_as_openpis_decoder_does(message: dict) -> None:
    frame = msgpack_numpy.packb(message)
    ours, theirs = decode(frame, TEXT), msgpack_numpy.unpackb(frame)
    assert_same(ours, theirs)


def assert_same(ours: Any, theirs: Any) -> None:
    assert type(ours) is type(theirs)
    if isinstance(theirs, np.ndarray):
        assert ours.dtype == theirs.dtype.newbyteorder("=") and ours.shape == theirs.shape
        np.testing.assert_array_equal(ours, theirs)
        assert ours.flags.writeable and ours.dtype.isnative, "a writable native copy, not a view of the message"
    elif isinstance(theirs, dict):
        assert list(ours) == list(theirs)
        for key in theirs:
            assert_same(ours[key], theirs[key])
    elif isinstance(theirs, list):
        assert len(ours) == len(theirs)
        for mine, other in zip(ours, theirs, strict=True):
            assert_same(mine, other)
    elif isinstance(theirs, float) and np.isnan(theirs):
        assert np.isnan(ours)
    else:
        assert ours == theirs


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=hostile_frames())
def test_hostile_frames_decode_to_allowed_values_or_a_wire_error_and_nothing_else(frame: bytes) -> None:
    for limits in (LIMITS, TEXT):
        try:
            message = decode(frame, limits)
        except WireError as error:
            text = str(error)
            assert text and "\n" not in text and len(text) < 600
            continue
        assert isinstance(message, dict)
        assert_allowed(message, limits)


def assert_allowed(value: Any, limits: WireLimits) -> None:
    if isinstance(value, np.ndarray | np.generic):
        assert value.dtype.kind in ("biuf" + ("U" if limits.text else "")) and value.dtype.fields is None
    elif isinstance(value, dict):
        for item in value.values():
            assert_allowed(item, limits)
    elif isinstance(value, list):
        for item in value:
            assert_allowed(item, limits)


@pytest.mark.parametrize(
    ("array", "complaint"),
    [
        (array_map("|O", [1], b"\x00" * 8), "at ['obs']['x']: dtype '|O' is not allowed"),
        (array_map("|V8", [1], b"\x00" * 8), "dtype '|V8' is not allowed"),
        (array_map("[('a', '<f8'), ('b', '|O')]", [1], b"\x00" * 16), "is not allowed"),
        (array_map("<f8", [2**31, 2**31, 2**31], b""), "needs 79228162514264337593543950336 bytes of data, the message holds 0"),
        (array_map("<f8", [3], b"\x00" * 23), "shape (3,) of <f8 needs 24 bytes of data, the message holds 23"),
        (array_map("<f8", [3, True], b"\x00" * 24), "the shape [3, True] is not a list of at most 32 non-negative integers"),
        (array_map("<f8", [1] * 33, b"\x00" * 8), "is not a list of at most 32 non-negative integers"),
        (array_map("<f8", [1], "\x00" * 8), "the data is a msgpack string, not bytes"),
        (array_map("<U1", [1], "a".encode("utf-32-le")), "dtype '<U1' (text) is not allowed here"),
        ({**array_map("<f8", [1], b"\x00" * 8), b"extra": 1}, "an array must have exactly the keys"),
        ({**array_map("<f8", [1], b"\x00" * 8), b"__ndarray__": 1}, "with b'__ndarray__': True"),
        ({b"__npgeneric__": True, b"data": 256, b"dtype": "|u1"}, "at ['obs']['x']: 256 is not a value of |u1"),
        ({b"__npgeneric__": True, b"data": "1", b"dtype": "<f8"}, "'1' is not a value of <f8"),
        ({b"__npgeneric__": True, b"data": 0, b"dtype": "|O"}, "dtype '|O' is not allowed"),
    ],
)
def test_each_refusal_names_the_key_path_and_the_reason(array: dict, complaint: str) -> None:
    with pytest.raises(WireError) as error:
        decode(msgpack.packb({"obs": {"x": array}}), LIMITS)
    assert complaint in str(error.value)


def test_text_is_allowed_where_the_limits_say_and_must_be_unicode() -> None:
    prompt = np.array(["wave", "fold"])
    np.testing.assert_array_equal(decode(encode({"prompt": prompt}), TEXT)["prompt"], prompt)
    with pytest.raises(WireError, match="not unicode code points"):
        decode(msgpack.packb({"prompt": array_map("<U1", [1], b"\xff\xff\xff\xff")}), TEXT)


@pytest.mark.parametrize(
    ("frame", "complaint"),
    [
        (b"\xc1", "is not valid msgpack (FormatError)"),
        (msgpack.packb({"a": [1, 2, 3]})[:-1], "is not valid msgpack (Unpack failed: incomplete input)"),
        (msgpack.packb({"a": 1}) + b"\x00", "has bytes after its end"),
        (msgpack.packb([1, 2]), "is a msgpack list, not a map"),
        (msgpack.packb({1: 2}), "int is not allowed for map key"),
        (msgpack.packb({"t": msgpack.Timestamp(0)}), "exceeds max_ext_len(0)"),
        (msgpack.packb({"a": _nest(MAX_DEPTH)}), f"nests maps and lists more than {MAX_DEPTH} deep"),
        (b"\x81\xa1a" + b"\x91" * 5000 + b"\x01", "is nested deeper than msgpack unpacks"),
        ("{}", "is a text frame"),
    ],
)
def test_frames_that_are_not_one_msgpack_map_are_refused(frame: bytes, complaint: str) -> None:
    with pytest.raises(WireError) as error:
        decode(frame, LIMITS)
    assert complaint in str(error.value)


def test_the_default_limit_holds_several_raw_camera_images_and_refuses_a_100_mb_frame() -> None:
    images = {f"cam{i}": np.zeros((480, 640, 3), np.uint8) for i in range(8)}
    assert decode(encode({"images": images}), LIMITS)["images"]["cam7"].shape == (480, 640, 3)
    with pytest.raises(WireError, match=f"is 100000000 bytes, over the limit of {DEFAULT_MAX_MESSAGE_BYTES} bytes"):
        decode(bytes(100_000_000), LIMITS)


@pytest.mark.parametrize(
    "frame",
    [
        msgpack.packb({"a": [[0] * 60_000] * 20}),  # 1.2 million elements in 1.2 MB: 10 MB of pointers
        msgpack.packb({"a": [0] * 2_000_000}),
        msgpack.packb({"a": {str(i): 0 for i in range(110_000)}}),
    ],
    ids=["lists", "one long list", "one wide map"],
)
def test_few_bytes_per_element_cannot_make_unbounded_python_objects(frame: bytes) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(WireError, match=r"holds more than 100000 map entries and list elements|exceeds max_(array|map)_len"):
            decode(frame, LIMITS)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_bytes < 16 * 2**20, f"decoding a {len(frame)}-byte frame peaked at {peak_bytes / 2**20:.0f} MiB"


def test_a_huge_declared_shape_allocates_nothing_before_it_is_refused() -> None:
    frame = msgpack.packb({"actions": array_map("<f8", [2**20, 2**20], b"\x00" * 8)})
    tracemalloc.start()
    try:
        with pytest.raises(WireError, match="needs 8796093022208 bytes of data, the message holds 8"):
            decode(frame, LIMITS)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_bytes < 2**20


def test_big_endian_arrays_come_back_in_native_order_with_their_values() -> None:
    sent = np.arange(6, dtype=">f4").reshape(2, 3)
    received = decode(encode({"a": sent}), LIMITS)["a"]
    assert received.dtype == np.dtype("float32") and received.dtype.isnative
    np.testing.assert_array_equal(received, sent)


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="wire limits must be positive"):
        WireLimits(max_message_bytes=0)
