"""Bit packing: the layout against an np.packbits restatement, round trips, every ISA, errors."""

import numpy as np
import pytest

import quantcore

ISAS = quantcore.available_isas()
# 0, 1, around the 8-code and 64-code SIMD steps, and a few thousand (several thread chunks
# need far more; 200_003 crosses the 2^16-element task grain).
LENGTHS = [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 127, 129, 1000, 4103, 200_003]


def packbits_reference(codes: np.ndarray, bits: int) -> np.ndarray:
    """The layout restated: each code's bits LSB first, concatenated, 8 to a byte LSB first."""
    stream = (codes.astype(np.uint16)[:, None] >> np.arange(bits)) & 1
    return np.packbits(stream.astype(np.uint8).reshape(-1), bitorder="little")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("bits", range(1, 9))
def test_pack_matches_packbits_reference_and_round_trips(isa, bits):
    rng = np.random.default_rng(bits)
    with quantcore.using_isa(isa):
        for n in LENGTHS:
            codes = rng.integers(0, 1 << bits, n, dtype=np.uint8)
            packed = quantcore.pack_bits(codes, bits)
            assert packed.shape == ((n * bits + 7) // 8,)
            np.testing.assert_array_equal(packed, packbits_reference(codes, bits), err_msg=f"n={n}")
            np.testing.assert_array_equal(quantcore.unpack_bits(packed, bits, n), codes, err_msg=f"n={n}")


@pytest.mark.parametrize("bits", range(1, 9))
def test_pack_with_one_isa_unpack_with_another(bits):
    rng = np.random.default_rng(100 + bits)
    n = 4099
    codes = rng.integers(0, 1 << bits, n, dtype=np.uint8)
    packed = {}
    for isa in ISAS:
        with quantcore.using_isa(isa):
            packed[isa] = quantcore.pack_bits(codes, bits)
    for isa in ISAS:
        np.testing.assert_array_equal(packed[isa], packed["scalar"])
        for other in ISAS:
            with quantcore.using_isa(other):
                np.testing.assert_array_equal(quantcore.unpack_bits(packed[isa], bits, n), codes)


def test_random_lengths_round_trip():
    rng = np.random.default_rng(7)
    for _ in range(50):
        bits = int(rng.integers(1, 9))
        n = int(rng.integers(0, 3000))
        codes = rng.integers(0, 1 << bits, n, dtype=np.uint8)
        np.testing.assert_array_equal(quantcore.unpack_bits(quantcore.pack_bits(codes, bits), bits, n), codes)


def test_documented_examples():
    np.testing.assert_array_equal(quantcore.pack_bits(np.array([1, 2, 3], np.uint8), 4), [0x21, 0x03])
    # 3 bits: 8 codes fill exactly 3 bytes; code i at bits [3i, 3i + 3).
    codes = np.arange(8, dtype=np.uint8)
    value = sum(int(c) << (3 * i) for i, c in enumerate(codes))
    np.testing.assert_array_equal(quantcore.pack_bits(codes, 3), list(value.to_bytes(3, "little")))
    np.testing.assert_array_equal(quantcore.pack_bits(np.array([3, 0, 1, 2, 1], np.uint8), 2),
                                  [0b10_01_00_11, 0b01])


def test_unpack_reads_a_prefix_of_a_longer_buffer():
    codes = np.arange(16, dtype=np.uint8)
    packed = quantcore.pack_bits(codes, 4)
    np.testing.assert_array_equal(quantcore.unpack_bits(packed, 4, 5), codes[:5])


def test_other_integer_dtypes_and_shapes():
    codes = np.arange(12, dtype=np.int64).reshape(3, 4) % 8
    np.testing.assert_array_equal(quantcore.pack_bits(codes, 3), quantcore.pack_bits(codes.astype(np.uint8).ravel(), 3))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("bits", range(1, 8))
def test_out_of_range_codes_raise(isa, bits):
    codes = np.zeros(300, np.uint8)
    for at in (0, 70, 299):  # SIMD body and scalar tail
        bad = codes.copy()
        bad[at] = 1 << bits
        with quantcore.using_isa(isa), pytest.raises(ValueError, match=rf"codes must be in 0\.\.{(1 << bits) - 1}"):
            quantcore.pack_bits(bad, bits)


def test_argument_errors():
    codes = np.zeros(8, np.uint8)
    with pytest.raises(ValueError, match="bits must be in 1..8"):
        quantcore.pack_bits(codes, 0)
    with pytest.raises(ValueError, match="bits must be in 1..8"):
        quantcore.unpack_bits(codes, 9, 1)
    with pytest.raises(TypeError, match="bits must be an int"):
        quantcore.pack_bits(codes, 4.0)
    with pytest.raises(TypeError, match="integer array"):
        quantcore.pack_bits(codes.astype(np.float32), 4)
    with pytest.raises(ValueError, match=r"codes must be in 0\.\.15 .*-1\.\.0"):
        quantcore.pack_bits(np.array([0, -1]), 4)
    with pytest.raises(ValueError, match="too short"):
        quantcore.unpack_bits(np.zeros(2, np.uint8), 4, 5)
    with pytest.raises(ValueError, match="count must be >= 0"):
        quantcore.unpack_bits(codes, 4, -1)
    with pytest.raises(TypeError, match="count must be an int"):
        quantcore.unpack_bits(codes, 4, 2.0)
    with pytest.raises(TypeError, match="packed must be a uint8 array"):
        quantcore.unpack_bits(codes.astype(np.int8), 4, 2)
