"""GGUF (llama.cpp / ggml) block formats: the exact bytes of llama.cpp's quantized blocks.

quantize_blocks writes q4_0, q4_1 and q8_0 blocks, bit-exact with ggml's reference quantizers
and with gguf.quants.quantize from the gguf Python package. dequantize_blocks reads every type
gguf.quants.dequantize reads, bit-exact with it (the same float32 operations in the same
order). Rows run along the last axis (GGUF's row convention: a weight [out_features,
in_features] is stored row by row, blocks along in_features).

Block layouts (little-endian; fp16 = IEEE binary16):
    q4_0  32 values, 18 bytes: d:fp16, 16 bytes of nibbles (value j low nibble of byte j,
          value j + 16 its high nibble). x = d * (q - 8).
    q4_1  32 values, 20 bytes: d:fp16, m:fp16, nibbles as q4_0. x = d * q + m.
    q8_0  32 values, 34 bytes: d:fp16, 32 x int8. x = d * q.
    Others: see llama.cpp's ggml-common.h; TYPES lists block sizes and byte sizes.

Quantization rounding (ggml's quantize_row_*_ref):
    q4_0  max = the first value of largest |x|; d = max / -8; q = min(15, trunc(x / d + 8.5)).
    q4_1  d = (max - min) / 15; q = min(15, trunc((x - min) / d + 0.5)); m = min.
    q8_0  d = amax / 127; q = round half away from zero (x / d).
    (x / d is computed as x * (1 / d); d and m are rounded to fp16 nearest-even.)

Differences from llama.cpp, by choice:
    NaN or inf in w raises ValueError naming the block. ggml's quantizers do not check (NaN
    and inf become garbage codes; llama.cpp's loader rejects such rows later, in
    ggml_validate_row_data).
    Signed zeros: q4_0 takes the first value of largest |x|, as gguf-py does (ggml's loop starts
    from +0.0, so an all-zero block whose first value is -0.0 gets d = -0.0 there and +0.0 here
    and in gguf-py). q4_1 takes the first value of the smallest / largest value, as ggml's loop
    does; gguf-py's numpy min/max leave the sign of a zero min or max to the data order, so a
    block whose min or max is a zero of both signs may differ from gguf-py in the sign bit of
    m or d (the decoded values are the same).
    Blocks whose scale d is so small that 1 / d overflows (blocks of denormals) get all codes 0,
    which is what gguf-py and ggml produce on x86.

Implementations: q4_0, q4_1, q8_0 quantize and dequantize, and q5_0, q5_1, q2_k .. q6_k,
iq4_nl, iq4_xs, mxfp4 dequantize run in C++ (a scalar reference plus AVX2 / AVX-512 kernels,
chosen at run time) over the thread pool with the GIL released. The remaining types (f32, f16,
bf16, tq1_0, tq2_0, nvfp4 and the grid i-quants iq1_s, iq1_m, iq2_xxs, iq2_xs, iq2_s, iq3_xxs,
iq3_s) dequantize in numpy, in this module, one thread.
"""

from __future__ import annotations

import base64
import enum
from dataclasses import dataclass

import ml_dtypes
import numpy as np

from quantcore import _core
from quantcore._checks import as_array, check_out
from quantcore._gguf_grids import GRIDS


@dataclass(frozen=True)
class BlockType:
    """A GGUF tensor type: its ggml id, values per block, bytes per block and where it runs."""

    name: str
    ggml_id: int
    block_size: int
    type_size: int
    implementation: str  # "c++ simd" (scalar reference + AVX2 + AVX-512) or "numpy"


TYPES: dict[str, BlockType] = {
    t.name: t
    for t in (
        BlockType("f32", 0, 1, 4, "numpy"),
        BlockType("f16", 1, 1, 2, "numpy"),
        BlockType("q4_0", 2, 32, 18, "c++ simd"),
        BlockType("q4_1", 3, 32, 20, "c++ simd"),
        BlockType("q5_0", 6, 32, 22, "c++ simd"),
        BlockType("q5_1", 7, 32, 24, "c++ simd"),
        BlockType("q8_0", 8, 32, 34, "c++ simd"),
        BlockType("q2_k", 10, 256, 84, "c++ simd"),
        BlockType("q3_k", 11, 256, 110, "c++ simd"),
        BlockType("q4_k", 12, 256, 144, "c++ simd"),
        BlockType("q5_k", 13, 256, 176, "c++ simd"),
        BlockType("q6_k", 14, 256, 210, "c++ simd"),
        BlockType("iq2_xxs", 16, 256, 66, "numpy"),
        BlockType("iq2_xs", 17, 256, 74, "numpy"),
        BlockType("iq3_xxs", 18, 256, 98, "numpy"),
        BlockType("iq1_s", 19, 256, 50, "numpy"),
        BlockType("iq4_nl", 20, 32, 18, "c++ simd"),
        BlockType("iq3_s", 21, 256, 110, "numpy"),
        BlockType("iq2_s", 22, 256, 82, "numpy"),
        BlockType("iq4_xs", 23, 256, 136, "c++ simd"),
        BlockType("iq1_m", 29, 256, 56, "numpy"),
        BlockType("bf16", 30, 1, 2, "numpy"),
        BlockType("tq1_0", 34, 256, 54, "numpy"),
        BlockType("tq2_0", 35, 256, 66, "numpy"),
        BlockType("mxfp4", 39, 32, 17, "c++ simd"),
        BlockType("nvfp4", 40, 64, 36, "numpy"),
    )
}
QUANTIZE_TYPES = ("q4_0", "q4_1", "q8_0")


def _block_type(type: object, fn: str) -> BlockType:
    """A type name ("q4_0", case-insensitive) or a gguf.GGMLQuantizationType member."""
    if isinstance(type, enum.Enum):
        # gguf.GGMLQuantizationType (an IntEnum); matched by name and id, without importing gguf.
        t = TYPES.get(str(type.name).lower())
        if t is None or type.value != t.ggml_id:
            raise ValueError(f"{fn}: type {type!r} is not a type this module reads (expected one of {sorted(TYPES)})")
        return t
    if isinstance(type, str):
        t = TYPES.get(type.lower())
        if t is None:
            raise ValueError(f"{fn}: type must be one of {sorted(TYPES)} (got {type!r})")
        return t
    raise TypeError(
        f"{fn}: type must be a type name such as 'q4_0' or a gguf.GGMLQuantizationType "
        f"(got {type.__class__.__name__})"
    )


_FLOAT_INPUTS = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16))


def quantize_blocks(w: np.ndarray, type: object) -> np.ndarray:
    """Quantize rows of floats to GGUF q4_0, q4_1 or q8_0 blocks.

    Args:
        w: float32 array [rows, cols] (a 1-D array is one row; more dimensions are rows of the
            last axis). float16, bfloat16 and float64 are converted to float32 first (exact for
            the 16-bit types; float64 is rounded, as gguf-py does). cols must be a multiple of 32.
        type: "q4_0", "q4_1" or "q8_0", or the gguf.GGMLQuantizationType member.

    Returns:
        uint8 array of shape w.shape[:-1] + (cols // 32 * type_size,) holding llama.cpp's blocks
        (type_size 18, 20, 34), bit-exact with gguf.quants.quantize(w, type).

    Raises:
        TypeError: w is not a float array, or type is neither a name nor a GGML type.
        ValueError: unknown type or one without a quantizer, a 0-d w, cols not a multiple of 32,
            or NaN / inf in w (the message names the row and columns of the first such block).

    Example:
        >>> blocks = quantcore.gguf.quantize_blocks(np.ones((2, 64), np.float32), "q8_0")
        >>> blocks.shape
        (2, 68)
    """
    t = _block_type(type, "quantize_blocks")
    if t.name not in QUANTIZE_TYPES:
        raise ValueError(f"quantize_blocks: type must be one of {list(QUANTIZE_TYPES)} (got {t.name!r})")
    a = as_array(w, "quantize_blocks", "w")
    if a.dtype.newbyteorder("=") not in _FLOAT_INPUTS:
        raise TypeError(
            f"quantize_blocks: w must be float32, float16, bfloat16 or float64 (got dtype {a.dtype.name})"
        )
    if a.ndim == 0:
        raise ValueError("quantize_blocks: w must have at least one dimension (got a 0-d array)")
    cols = a.shape[-1]
    if cols % t.block_size != 0:
        raise ValueError(
            f"quantize_blocks: cols (the last dimension of w) must be a multiple of {t.block_size} "
            f"for {t.name} (got cols={cols})"
        )
    rows = a.size // cols if cols else 0
    out = np.empty(a.shape[:-1] + (cols // t.block_size * t.type_size,), np.uint8)
    if a.size == 0:
        return out
    w32 = np.ascontiguousarray(a, dtype=np.float32).reshape(rows, cols)
    _core.gguf_quantize(w32, t.ggml_id, out.reshape(-1))
    return out


def _as_shape(shape: object) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        dims = tuple(shape)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"dequantize_blocks: shape must be a tuple of ints (got {shape!r})") from None
    if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in dims):
        raise TypeError(f"dequantize_blocks: shape must be a tuple of ints (got {shape!r})")
    dims = tuple(int(d) for d in dims)
    if len(dims) == 0 or any(d < 0 for d in dims):
        raise ValueError(f"dequantize_blocks: shape must have at least one non-negative dimension (got {dims})")
    return dims


def _as_bytes(data: object, t: BlockType) -> np.ndarray:
    """The block bytes of `data`: a uint8 array, or for f32/f16/bf16 an array of that dtype."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, np.uint8)
    if not isinstance(data, np.ndarray):
        raise TypeError(f"dequantize_blocks: data must be a uint8 numpy array (got {type(data).__name__})")
    natural = {"f32": np.float32, "f16": np.float16, "bf16": ml_dtypes.bfloat16}.get(t.name)
    if data.dtype != np.uint8 and not (natural is not None and data.dtype == natural):
        raise TypeError(
            f"dequantize_blocks: data must be a uint8 array of {t.name} blocks (got dtype {data.dtype.name})"
        )
    return np.ascontiguousarray(data).reshape(-1).view(np.uint8)


def dequantize_blocks(data: np.ndarray, type: object, shape: object, *, out: np.ndarray | None = None) -> np.ndarray:
    """Decode GGUF blocks to float32.

    Args:
        data: uint8 array (any shape; its bytes in order are the blocks), or bytes. For f32,
            f16 and bf16 an array of that dtype is accepted too.
        type: a name from TYPES ("q4_0", "q6_k", "iq2_xs", ...), or a gguf.GGMLQuantizationType.
        shape: the tensor's shape, rows along the last axis (numpy order, i.e. GGUF's ne reversed);
            the last dimension must be a multiple of the type's block size.
        out: optional float32 array of `shape` to write into.

    Returns:
        float32 array of `shape`, bit-exact with gguf.quants.dequantize.

    Raises:
        TypeError: data is not a uint8 array, or shape / type of the wrong kind.
        ValueError: unknown type, a last dimension that is not a multiple of the block size,
            data whose length does not match the shape, or a bad out.

    Example:
        >>> w = quantcore.gguf.dequantize_blocks(blocks, "q8_0", (2, 64))
    """
    t = _block_type(type, "dequantize_blocks")
    dims = _as_shape(shape)
    if dims[-1] % t.block_size != 0:
        raise ValueError(
            f"dequantize_blocks: the last dimension of shape must be a multiple of {t.block_size} "
            f"for {t.name} (got shape={dims})"
        )
    raw = _as_bytes(data, t)
    n = int(np.prod(dims))
    expected = n // t.block_size * t.type_size
    if raw.size != expected:
        raise ValueError(
            f"dequantize_blocks: data for {t.name} of shape {dims} must be {expected} bytes "
            f"(got {raw.size} bytes)"
        )
    if out is not None:
        check_out(out, "dequantize_blocks", dims, np.dtype(np.float32))
    target = out if out is not None and out.flags.c_contiguous else np.empty(dims, np.float32)
    if n:
        flat = target.reshape(-1)
        if t.implementation == "numpy":
            _dequantize_numpy(raw, t, flat)
        else:
            _core.gguf_dequantize(raw, t.ggml_id, flat)
    if out is not None and target is not out:
        out[...] = target
        return out
    return target


# ---- numpy implementations of the rarer types -------------------------------------------------
# Each takes blocks [n, type_size] uint8 and returns [n, block_size] float32, evaluating the
# float32 expressions of gguf-py in the same order (products and sums left to right).

_CHUNK_BLOCKS = 8192  # bounds the temporaries (a few MB per chunk)


def _dequantize_numpy(raw: np.ndarray, t: BlockType, flat_out: np.ndarray) -> None:
    if t.name == "f32":
        flat_out[...] = raw.view(np.float32)
        return
    if t.name == "f16":
        flat_out[...] = raw.view(np.float16)
        return
    if t.name == "bf16":
        flat_out.view(np.uint32)[...] = raw.view(np.uint16).astype(np.uint32) << np.uint32(16)
        return
    fn = _NUMPY_DEQUANTIZERS[t.name]
    blocks = raw.reshape(-1, t.type_size)
    out_blocks = flat_out.reshape(-1, t.block_size)
    # inf or NaN scales decode to inf / NaN values, silently, as in the C++ kernels.
    with np.errstate(invalid="ignore", over="ignore"):
        for start in range(0, blocks.shape[0], _CHUNK_BLOCKS):
            stop = start + _CHUNK_BLOCKS
            out_blocks[start:stop] = fn(blocks[start:stop])


def _fp16(blocks: np.ndarray, offset: int) -> np.ndarray:
    """The fp16 field at byte `offset` of each block as float32, shape [n, 1]."""
    return np.ascontiguousarray(blocks[:, offset : offset + 2]).view(np.float16).astype(np.float32)


def _u16(blocks: np.ndarray, start: int, count: int) -> np.ndarray:
    return np.ascontiguousarray(blocks[:, start : start + 2 * count]).view("<u2")


def _u32(blocks: np.ndarray, start: int, count: int) -> np.ndarray:
    return np.ascontiguousarray(blocks[:, start : start + 4 * count]).view("<u4")


def _bits(a: np.ndarray, width: int, count: int) -> np.ndarray:
    """Split each element of a [n, m] into `count` fields of `width` bits, low bits first:
    [n, m, count]."""
    shifts = np.arange(0, width * count, width, dtype=a.dtype)
    return (a[..., None] >> shifts) & a.dtype.type((1 << width) - 1)


def _ksigns() -> np.ndarray:
    # ggml's ksigns_iq2xs: 7 stored sign bits plus an eighth that makes the parity even.
    i = np.arange(128, dtype=np.uint8)
    parity = np.unpackbits(i[:, None], axis=1).sum(axis=1) & 1
    return (i | (parity.astype(np.uint8) << 7)).astype(np.uint8)


_KSIGNS = _ksigns()
# [byte, bit]: -1.0 where the bit is set, else 1.0
_SIGN_TABLE = np.where(
    np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder="little"), np.float32(-1), np.float32(1)
)


def _grid(name: str) -> np.ndarray:
    rows, per_row, values, bits, packed = GRIDS[name]
    codes = np.frombuffer(base64.b64decode("".join(packed)), np.uint8)
    idx = _bits(codes[None, :], bits, 8 // bits).reshape(-1)
    return np.array(values, np.float32)[idx].reshape(rows, per_row)


_GRIDS: dict[str, np.ndarray] = {}


def _grid_cached(name: str) -> np.ndarray:
    if name not in _GRIDS:
        _GRIDS[name] = _grid(name)
    return _GRIDS[name]


def _dequantize_tq1_0(b: np.ndarray) -> np.ndarray:
    # 48 bytes of base-3 digits (5 per byte, 32 + 16 bytes), 4 bytes of 4 digits, d:fp16. Each
    # digit is recovered as the top of (byte * 3^k mod 256) * 3 / 256.
    n = b.shape[0]
    pow5 = np.array([1, 3, 9, 27, 81], np.uint8)
    part0 = (b[:, None, 0:32] * pow5[None, :, None]).reshape(n, 160)
    part1 = (b[:, None, 32:48] * pow5[None, :, None]).reshape(n, 80)
    part2 = (b[:, None, 48:52] * pow5[None, :4, None]).reshape(n, 16)
    digits = np.concatenate([part0, part1, part2], axis=1)
    q = ((digits.astype(np.uint16) * np.uint16(3)) >> np.uint16(8)).astype(np.float32) - np.float32(1)
    return _fp16(b, 52) * q


def _dequantize_tq2_0(b: np.ndarray) -> np.ndarray:
    # 64 bytes of 2-bit codes (value h*128 + s*32 + l at bits 2s of byte h*32 + l), d:fp16.
    n = b.shape[0]
    q = _bits(b[:, 0:64].reshape(n, 2, 32), 2, 4).transpose(0, 1, 3, 2).reshape(n, 256)
    return _fp16(b, 64) * (q.astype(np.float32) - np.float32(1))


# nvfp4's code book: the e2m1 values doubled (as mxfp4's in C++), so scales are taken at half.
_E2M1_DOUBLED = np.array([0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12], np.float32)


def _ue4m3_half_table() -> np.ndarray:
    # Half of each unsigned e4m3 scale byte (the code book is doubled); 0x7F (NaN) reads as 0,
    # as in gguf-py. The sign bit is ignored. Every value is exact in float32.
    x = np.arange(256)
    exp, man = (x >> 3) & 0xF, x & 7
    value = np.where(exp == 0, np.ldexp(man, -9), np.ldexp(8 + man, exp - 10))
    value = np.where((x == 0) | (x == 0x7F), 0.0, value * 0.5)
    return value.astype(np.float32)


_UE4M3_HALF = _ue4m3_half_table()


def _dequantize_nvfp4(b: np.ndarray) -> np.ndarray:
    # 4 ue4m3 scales (one per 16 values), then 4 x 8 bytes of e2m1 nibbles: in each group of
    # 16, values 0..7 are the low nibbles, 8..15 the high ones.
    n = b.shape[0]
    d = _UE4M3_HALF[b[:, 0:4]].reshape(n, 4, 1)
    q = _bits(b[:, 4:36].reshape(n, 4, 8), 4, 2).transpose(0, 1, 3, 2).reshape(n, 4, 16)
    return (d * _E2M1_DOUBLED[q]).reshape(n, 64)


def _signs_from_ksigns(index7: np.ndarray) -> np.ndarray:
    """[..] 7-bit sign indices -> [.., 8] of +-1."""
    return _SIGN_TABLE[_KSIGNS[index7]]


def _dequantize_iq2_xxs(b: np.ndarray) -> np.ndarray:
    # d:fp16, then 8 sub-blocks of 32 as two uint32: 4 grid indices (bytes), and 4 x 7 sign
    # bits + a 4-bit scale on top. db = d * (0.5 + scale) * 0.25.
    n = b.shape[0]
    d = _fp16(b, 0)
    words = _u32(b, 2, 16).reshape(n, 8, 2)
    aux = words[..., 1]
    db = (d * (np.float32(0.5) + (aux >> np.uint32(28)).astype(np.float32)) * np.float32(0.25)).reshape(n, 8, 1, 1)
    signs = _signs_from_ksigns(_bits(aux, 7, 4))  # [n, 8, 4, 8]
    grid_idx = np.ascontiguousarray(words[..., 0]).view(np.uint8).reshape(n, 8, 4)
    grid = _grid_cached("iq2_xxs")[grid_idx]  # [n, 8, 4, 8]
    return (db * grid * signs).reshape(n, 256)


def _nibble_scales(s: np.ndarray) -> np.ndarray:
    """[n, m] bytes -> [n, 2m] 4-bit scales, low nibble first."""
    return _bits(s, 4, 2).reshape(s.shape[0], -1)


def _dequantize_iq2_xs(b: np.ndarray) -> np.ndarray:
    # d:fp16, 32 uint16 (9-bit grid index | 7-bit sign index << 9), 8 bytes of 4-bit scales
    # (one per 16 values).
    n = b.shape[0]
    d = _fp16(b, 0)
    qs = _u16(b, 2, 32)
    scales = _nibble_scales(b[:, 66:74])
    db = (d * (np.float32(0.5) + scales.astype(np.float32)) * np.float32(0.25)).reshape(n, 16, 1, 1)
    signs = _signs_from_ksigns(qs >> np.uint16(9)).reshape(n, 16, 2, 8)
    grid = _grid_cached("iq2_xs")[qs & np.uint16(511)].reshape(n, 16, 2, 8)
    return (db * grid * signs).reshape(n, 256)


def _dequantize_iq2_s(b: np.ndarray) -> np.ndarray:
    # d:fp16, 32 low bytes of grid indices, 32 sign bytes, 8 bytes of 2-bit index highs, 8 bytes
    # of 4-bit scales.
    n = b.shape[0]
    d = _fp16(b, 0)
    low = b[:, 2:34].astype(np.uint16)
    high = _bits(b[:, 66:74], 2, 4).reshape(n, 32).astype(np.uint16)
    scales = _nibble_scales(b[:, 74:82])
    db = (d * (np.float32(0.5) + scales.astype(np.float32)) * np.float32(0.25)).reshape(n, 16, 1, 1)
    signs = _SIGN_TABLE[b[:, 34:66]].reshape(n, 16, 2, 8)
    grid = _grid_cached("iq2_s")[low | (high << np.uint16(8))].reshape(n, 16, 2, 8)
    return (db * grid * signs).reshape(n, 256)


def _dequantize_iq3_xxs(b: np.ndarray) -> np.ndarray:
    # d:fp16, 64 grid indices (4 values each), 8 uint32: 4 x 7 sign bits + 4-bit scale on top.
    n = b.shape[0]
    d = _fp16(b, 0)
    aux = _u32(b, 66, 8)
    db = (d * (np.float32(0.5) + (aux >> np.uint32(28)).astype(np.float32)) * np.float32(0.5)).reshape(n, 8, 1, 1)
    signs = _signs_from_ksigns(_bits(aux, 7, 4))  # [n, 8, 4, 8]
    grid = _grid_cached("iq3_xxs")[b[:, 2:66]].reshape(n, 8, 4, 8)
    return (db * grid * signs).reshape(n, 256)


def _dequantize_iq3_s(b: np.ndarray) -> np.ndarray:
    # d:fp16, 64 low bytes of grid indices, 8 bytes of index high bits, 32 sign bytes, 4 bytes
    # of 4-bit scales (one per 32 values). db = d * (1 + 2 * scale).
    n = b.shape[0]
    d = _fp16(b, 0)
    low = b[:, 2:66].astype(np.uint16)
    high = _bits(b[:, 66:74], 1, 8).reshape(n, 64).astype(np.uint16)
    scales = _nibble_scales(b[:, 106:110])
    db = (d * (np.uint8(1) + np.uint8(2) * scales)).reshape(n, 8, 1, 1)
    signs = _SIGN_TABLE[b[:, 74:106]].reshape(n, 8, 4, 8)
    grid = _grid_cached("iq3_s")[low | (high << np.uint16(8))].reshape(n, 8, 4, 8)
    return (db * grid * signs).reshape(n, 256)


_IQ1_DELTA = np.float32(0.125)


def _dequantize_iq1_s(b: np.ndarray) -> np.ndarray:
    # d:fp16, 32 low bytes of grid indices, 8 uint16: 4 x 3 index high bits, a 3-bit scale and
    # the delta's sign on top. x = d * (2 * scale + 1) * (grid + delta).
    n = b.shape[0]
    d = _fp16(b, 0)
    qh = _u16(b, 34, 8)
    dl = (d * (np.uint16(2) * ((qh >> np.uint16(12)) & np.uint16(7)) + np.uint16(1))).reshape(n, 8, 1, 1)
    delta = np.where((qh & np.uint16(0x8000)) == 0, _IQ1_DELTA, -_IQ1_DELTA).reshape(n, 8, 1, 1)
    idx = b[:, 2:34].astype(np.uint16) | (_bits(qh, 3, 4).reshape(n, 32) << np.uint16(8))
    grid = _grid_cached("iq1_s")[idx].reshape(n, 8, 4, 8)
    return (dl * (grid + delta)).reshape(n, 256)


def _dequantize_iq1_m(b: np.ndarray) -> np.ndarray:
    # 32 low bytes of grid indices, 16 bytes of (3 index high bits + delta sign) nibbles, 4 uint16
    # of 3-bit scales (one per 16 values) whose top nibbles together are d:fp16.
    n = b.shape[0]
    sc = _u16(b, 48, 4)
    d_bits = (sc[:, 0] >> 12) | ((sc[:, 1] >> 12) << 4) | ((sc[:, 2] >> 12) << 8) | ((sc[:, 3] >> 12) << 12)
    d = d_bits.astype(np.uint16).view(np.float16).astype(np.float32).reshape(n, 1)
    scales = _bits(sc, 3, 4).reshape(n, 16)
    dl = (d * (np.uint16(2) * scales + np.uint16(1))).reshape(n, 8, 2, 1, 1)
    qh = _bits(b[:, 32:48], 4, 2).reshape(n, 32)
    idx = b[:, 0:32].astype(np.uint16) | ((qh & np.uint8(7)).astype(np.uint16) << np.uint16(8))
    delta = np.where((qh & np.uint8(8)) == 0, _IQ1_DELTA, -_IQ1_DELTA).reshape(n, 8, 2, 2, 1)
    grid = _grid_cached("iq1_s")[idx].reshape(n, 8, 2, 2, 8)
    return (dl * (grid + delta)).reshape(n, 256)


_NUMPY_DEQUANTIZERS = {
    "tq1_0": _dequantize_tq1_0,
    "tq2_0": _dequantize_tq2_0,
    "nvfp4": _dequantize_nvfp4,
    "iq2_xxs": _dequantize_iq2_xxs,
    "iq2_xs": _dequantize_iq2_xs,
    "iq2_s": _dequantize_iq2_s,
    "iq3_xxs": _dequantize_iq3_xxs,
    "iq3_s": _dequantize_iq3_s,
    "iq1_s": _dequantize_iq1_s,
    "iq1_m": _dequantize_iq1_m,
}


# ---------------------------------------------------------------- QuantizedTensor <-> blocks
# q4_0, q4_1 and q8_0 are also quantcore.quantize schemes. QuantizedTensor keeps their codes in
# its own packed layout (code i of a row at bits [4i, 4i + 4), resp. byte i), d as float16
# scales and q4_1's m as float16 zeros; these two functions convert from and to the blocks.
_PART_TYPES = ("q4_0", "q4_1", "q8_0")


def _part_type(type: object, fn: str, arg: str = "type") -> BlockType:
    name = type if isinstance(type, str) else _block_type(type, fn).name
    if name not in _PART_TYPES:
        raise ValueError(f"{fn}: {arg} must be one of {list(_PART_TYPES)} (got {name!r})")
    return TYPES[name]


def blocks_to_parts(blocks: np.ndarray, type: object, shape: tuple) -> tuple:
    """Split q4_0 / q4_1 / q8_0 blocks of a [rows, cols] tensor into QuantizedTensor's parts.

    Returns:
        (codes, scales, zeros): codes uint8 [rows, cols * bits / 8] in quantcore.pack's order
        (q8_0 codes offset-binary: q + 128), scales float16 [rows, cols / 32] (d), zeros float16
        [rows, cols / 32] (m) for q4_1, else None.
    """
    t = _part_type(type, "blocks_to_parts")
    rows, cols = shape
    raw = _as_bytes(blocks, t).reshape(rows, cols // 32, t.type_size)
    d = np.ascontiguousarray(raw[..., 0:2]).view(np.float16)[..., 0]
    zeros = None
    if t.name == "q8_0":
        codes = (raw[..., 2:] ^ np.uint8(0x80)).reshape(rows, cols)  # int8 q -> q + 128
        return np.ascontiguousarray(codes), d, None
    if t.name == "q4_1":
        zeros = np.ascontiguousarray(raw[..., 2:4]).view(np.float16)[..., 0]
    qs = raw[..., t.type_size - 16:]
    # a block holds value j in the low nibble of qs[j] and value j + 16 in the high nibble;
    # our layout wants values 2k and 2k + 1 in the low and high nibble of one byte
    values = np.concatenate([qs & np.uint8(15), qs >> 4], axis=-1)
    codes = values[..., 0::2] | (values[..., 1::2] << 4)
    return np.ascontiguousarray(codes.reshape(rows, cols // 2)), d, zeros


def blocks_from_quantized(q) -> np.ndarray:
    """llama.cpp's block bytes of a QuantizedTensor with scheme q4_0, q4_1 or q8_0.

    Returns:
        uint8 [rows, cols / 32 * block bytes] (1-D for a 1-D tensor), bit-exact with what
        quantize_blocks gives for the original weight.

    Raises:
        TypeError: q is not a QuantizedTensor. ValueError: its scheme is not a GGUF block format,
            or it has a column permutation (perm).
    """
    from quantcore.quantize import QuantizedTensor

    if not isinstance(q, QuantizedTensor):
        raise TypeError(f"blocks_from_quantized: q must be a QuantizedTensor (got {type(q).__name__})")
    t = _part_type(q.scheme, "blocks_from_quantized", "q.scheme")
    if q.perm is not None and not np.array_equal(q.perm, np.arange(q.shape[-1])):
        raise ValueError("blocks_from_quantized: q has a column permutation (perm, from GPTQ act_order "
                         "without static groups), which llama.cpp's blocks cannot express; quantize with "
                         "static_groups=True")
    cols = q.shape[-1]
    rows = q.codes.shape[0]
    nb = cols // 32
    out = np.empty((rows, nb, t.type_size), np.uint8)
    out[..., 0:2] = q.scales.reshape(rows, nb, 1).view(np.uint8)
    if t.name == "q8_0":
        out[..., 2:] = q.codes.reshape(rows, nb, 32) ^ np.uint8(0x80)
    else:
        if t.name == "q4_1":
            out[..., 2:4] = q.zeros.reshape(rows, nb, 1).view(np.uint8)
        packed = q.codes.reshape(rows, nb, 16)
        values = np.empty((rows, nb, 32), np.uint8)
        values[..., 0::2] = packed & np.uint8(15)
        values[..., 1::2] = packed >> 4
        out[..., t.type_size - 16:] = values[..., :16] | (values[..., 16:] << 4)
    return out.reshape(q.shape[:-1] + (nb * t.type_size,))
