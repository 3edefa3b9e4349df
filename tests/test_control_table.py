"""Feetech sign-magnitude encoding and the checksum, as the servos and LeRobot define them."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.feetech.control_table import REGISTERS, checksum, decode_sign_magnitude, encode_sign_magnitude, from_wire, to_wire


@given(st.integers(min_value=-2047, max_value=2047))
def test_homing_offset_round_trips_through_bit_11(offset):
    assert decode_sign_magnitude(encode_sign_magnitude(offset, 11), 11) == offset


def test_negative_values_set_the_sign_bit():
    assert encode_sign_magnitude(-1024, 11) == 0x800 | 1024
    assert encode_sign_magnitude(-5, 15) == 0x8005


def test_homing_offset_beyond_2047_is_refused_with_the_magnitude():
    with pytest.raises(ValueError, match="magnitude 2114 exceeds 2047"):
        to_wire(REGISTERS["Homing_Offset"], -2114)


@given(st.integers(min_value=-32767, max_value=32767))
def test_goal_position_round_trips(value):
    reg = REGISTERS["Goal_Position"]
    assert from_wire(reg, to_wire(reg, value)) == value


def test_unsigned_registers_refuse_values_that_do_not_fit():
    with pytest.raises(ValueError, match="does not fit"):
        to_wire(REGISTERS["Acceleration"], 256)


def test_checksum_matches_a_known_ping_packet():
    # FF FF 01 02 01 FB is the ping of id 1 in the Feetech manual.
    assert checksum([0x01, 0x02, 0x01]) == 0xFB
