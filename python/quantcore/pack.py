"""Dense bit packing of unsigned codes, 1 to 8 bits each.

Bit order (the one definition; the C++ kernels and quantcore.quantize, which packs each row of
a weight's codes separately so that every row starts on a byte boundary, follow it):
    code i occupies bits [i*b, (i+1)*b) of a little-endian, LSB-first bit stream, i.e. bit j
    of the stream is bit (j % 8) of byte j // 8. n codes take ceil(n*b / 8) bytes and the unused
    high bits of the last byte are zero. 8 codes fill exactly b bytes (3-bit: 3 bytes per 8).
    4-bit: byte k = code[2k] | code[2k+1] << 4.  2-bit: byte k = code[4k] | code[4k+1] << 2 |
    code[4k+2] << 4 | code[4k+3] << 6.  1-bit: np.packbits(bits, bitorder="little").
"""

from __future__ import annotations

import numpy as np

from quantcore import _core
from quantcore._checks import as_array


def _check_bits(bits: object, fn: str) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise TypeError(f"{fn}: bits must be an int (got {type(bits).__name__})")
    if not 1 <= bits <= 8:
        raise ValueError(f"{fn}: bits must be in 1..8 (got {bits})")
    return int(bits)


def pack_bits(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack codes of `bits` bits each into a dense byte stream (order in the module docstring).

    Args:
        codes: integer array of any shape, read in C order; every value in 0 .. 2**bits - 1.
        bits: 1..8.

    Returns:
        uint8 array of shape (ceil(codes.size * bits / 8),).

    Raises:
        TypeError: codes is not an integer array, or bits is not an int.
        ValueError: bits outside 1..8, or a code outside 0 .. 2**bits - 1.

    Example:
        >>> quantcore.pack_bits(np.array([1, 2, 3], np.uint8), 4)
        array([33,  3], dtype=uint8)
    """
    bits = _check_bits(bits, "pack_bits")
    a = as_array(codes, "pack_bits", "codes")
    if a.dtype.kind not in "ui":
        raise TypeError(f"pack_bits: codes must be an integer array (got dtype {a.dtype.name})")
    flat = a.reshape(-1)
    if a.dtype != np.uint8:
        if flat.size and (flat.min() < 0 or flat.max() > (1 << bits) - 1):
            raise ValueError(
                f"pack_bits: codes must be in 0..{(1 << bits) - 1} for bits={bits} "
                f"(got values in {flat.min()}..{flat.max()})"
            )
        flat = flat.astype(np.uint8)
    flat = np.ascontiguousarray(flat)
    out = np.empty((flat.size * bits + 7) // 8, np.uint8)
    try:
        _core.pack_bits(flat, bits, out)
    except ValueError:
        raise ValueError(
            f"pack_bits: codes must be in 0..{(1 << bits) - 1} for bits={bits} (got a maximum of {flat.max()})"
        ) from None
    return out


def unpack_bits(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """The first `count` codes of a stream written by pack_bits.

    Args:
        packed: uint8 array (read flat, in C order) of at least ceil(count * bits / 8) bytes.
        bits: 1..8.
        count: number of codes to read, >= 0.

    Returns:
        uint8 array of shape (count,).

    Raises:
        TypeError: packed is not a uint8 array, or bits / count is not an int.
        ValueError: bits outside 1..8, count < 0, or packed too short.

    Example:
        >>> quantcore.unpack_bits(np.array([33, 3], np.uint8), 4, 3)
        array([1, 2, 3], dtype=uint8)
    """
    bits = _check_bits(bits, "unpack_bits")
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)):
        raise TypeError(f"unpack_bits: count must be an int (got {type(count).__name__})")
    count = int(count)
    if count < 0:
        raise ValueError(f"unpack_bits: count must be >= 0 (got {count})")
    a = as_array(packed, "unpack_bits", "packed")
    if a.dtype != np.uint8:
        raise TypeError(f"unpack_bits: packed must be a uint8 array (got dtype {a.dtype.name})")
    flat = np.ascontiguousarray(a.reshape(-1))
    need = (count * bits + 7) // 8
    if flat.size < need:
        raise ValueError(
            f"unpack_bits: packed is too short: {count} codes of {bits} bits need {need} bytes (got {flat.size})"
        )
    out = np.empty(count, np.uint8)
    _core.unpack_bits(flat, bits, count, out)
    return out
