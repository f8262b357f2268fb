"""Bit packing: exact sizes, round trips for every width, the documented layout, bad input."""

import math

import numpy as np
import pytest
import torch

from slimkit.errors import ConfigError
from slimkit.quant.pack import pack_bits, packed_size, unpack_bits


@pytest.mark.parametrize("k", range(1, 9))
@pytest.mark.parametrize("n", [0, 1, 2, 7, 8, 9, 1001])
def test_round_trip_takes_exactly_ceil_nk_over_8_bytes(k, n):
    rng = np.random.default_rng(1000 * k + n)
    codes = rng.integers(0, 1 << k, size=n)
    packed = pack_bits(codes, k)
    assert packed.dtype == np.uint8 and packed.shape == (math.ceil(n * k / 8),)
    assert packed_size(n, k) == packed.size
    out = unpack_bits(packed, k, n)
    assert out.dtype == np.uint8 and np.array_equal(out, codes)


@pytest.mark.parametrize("k", range(1, 9))
def test_extreme_codes_and_unused_tail_bits_are_zero(k):
    n = 13  # 13·k is a multiple of 8 only for k = 8: the last byte has spare bits otherwise
    codes = np.tile([0, (1 << k) - 1], 7)[:n]
    packed = pack_bits(codes, k)
    assert np.array_equal(unpack_bits(packed, k, n), codes)
    spare = packed.size * 8 - n * k
    if spare:
        assert int(packed[-1]) >> (8 - spare) == 0


def test_layout_is_a_little_endian_bit_stream():
    # 3-bit codes 5 = 101b and 3 = 011b: stream bits 1,0,1, 1,1,0 → byte 0b00011101 = 29.
    assert pack_bits(np.array([5, 3]), 3).tolist() == [29]
    # 2-bit codes 1, 2, 3 → 01 | 10<<2 | 11<<4 = 57.
    assert pack_bits(np.array([1, 2, 3]), 2).tolist() == [57]
    # A 5-bit code straddles a byte: codes 31, 1 → bits 11111 10000 → 0x3F (first 8), then 0.
    assert pack_bits(np.array([31, 1]), 5).tolist() == [0b00111111, 0b00]
    assert unpack_bits(bytes([29]), 3, 2).tolist() == [5, 3]


def test_accepts_tensors_of_any_int_dtype_and_shape():
    codes = torch.tensor([[0, 1, 2], [3, 2, 1]], dtype=torch.int64)
    packed = pack_bits(codes, 2)
    assert unpack_bits(torch.from_numpy(packed), 2, 6).tolist() == [0, 1, 2, 3, 2, 1]
    assert pack_bits(torch.tensor([True, False, True]), 1).tolist() == [0b101]
    assert np.array_equal(pack_bits(codes.to(torch.uint8), 2), packed)


def test_large_arrays_are_vectorized():
    codes = np.random.default_rng(0).integers(0, 8, size=2_000_000)
    packed = pack_bits(codes, 3)  # a per-element Python loop would take many seconds here
    assert packed.size == 750_000
    assert np.array_equal(unpack_bits(packed, 3, codes.size), codes)


@pytest.mark.parametrize("k", [0, 9, -1, 2.0, True, None])
def test_bad_widths_are_rejected(k):
    with pytest.raises(ConfigError, match=r"k must be an int number of bits in 1\.\.8"):
        pack_bits(np.zeros(3, dtype=np.uint8), k)
    with pytest.raises(ConfigError, match="k must be"):
        unpack_bits(np.zeros(3, dtype=np.uint8), k, 3)


def test_codes_out_of_range_or_not_integers_are_rejected():
    with pytest.raises(ConfigError, match="code 8 does not fit in 3 bits"):
        pack_bits(np.array([1, 8, 2]), 3)
    with pytest.raises(ConfigError, match="code -1 does not fit"):
        pack_bits(np.array([0, -1]), 4)
    with pytest.raises(ConfigError, match="must be integers"):
        pack_bits(np.array([0.5, 1.0]), 4)


def test_short_or_long_buffers_are_rejected():
    packed = pack_bits(np.arange(7), 3)  # 21 bits → 3 bytes
    with pytest.raises(ConfigError, match="take 3 bytes, but the buffer holds 2"):
        unpack_bits(packed[:2], 3, 7)
    with pytest.raises(ConfigError, match="take 3 bytes, but the buffer holds 4"):
        unpack_bits(np.append(packed, 0).astype(np.uint8), 3, 7)
    with pytest.raises(ConfigError, match="uint8"):
        unpack_bits(packed.astype(np.int32), 3, 7)
    with pytest.raises(ConfigError, match="n must be an int count"):
        unpack_bits(packed, 3, -1)
