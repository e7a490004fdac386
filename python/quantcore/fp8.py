"""FP8 e4m3fn and e5m2: bit-exact encode/decode and scaled quantization.

Formats (ml_dtypes' names, OCP FP8 spec):
    e4m3fn  S.EEEE.MMM, bias 7, no inf, NaN = S.1111.111, max finite 448.
    e5m2    S.EEEEE.MM, bias 15, IEEE inf/NaN, max finite 57344.

Rounding is to nearest, ties to even, directly from the source type. Overflow policy:
    saturate=False  bit-exact with ml_dtypes' astype: finite overflow and inf become NaN for
                    e4m3fn and +-inf for e5m2. 464 -> 448 (a tie, rounds to even); 465 -> NaN.
    saturate=True   finite overflow and +-inf clamp to +-max finite (hardware "satfinite").
    NaN stays NaN in both (sign | 0x7F for e4m3fn, sign | 0x7E for e5m2).

float64 input is rounded once, straight from the double. ml_dtypes' scalar constructor does the
same, but its array astype from float64 goes through float32 and can round twice: just below
the tie 432, float64(431.99999999999994) encodes to 416 here and to 448 with astype. For
float32, float16 and bfloat16 input, encode() is bit-exact with astype for every value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import ml_dtypes
import numpy as np

from quantcore import _core
from quantcore._checks import as_array, check_out, contiguous

FORMATS = ("e4m3fn", "e5m2")
_DTYPES = {"e4m3fn": np.dtype(ml_dtypes.float8_e4m3fn), "e5m2": np.dtype(ml_dtypes.float8_e5m2)}
_CODES = {"e4m3fn": 0, "e5m2": 1}
MAX_FINITE = {"e4m3fn": 448.0, "e5m2": 57344.0}

_F16 = np.dtype(np.float16)
_BF16 = np.dtype(ml_dtypes.bfloat16)
_ENCODERS = {
    np.dtype(np.float32): _core.fp8_encode_f32,
    np.dtype(np.float64): _core.fp8_encode_f64,
    _F16: _core.fp8_encode_f16,
    _BF16: _core.fp8_encode_bf16,
}
_DECODERS = {
    np.dtype(np.float32): _core.fp8_decode_f32,
    _F16: _core.fp8_decode_f16,
    _BF16: _core.fp8_decode_bf16,
}


def _format_name(fmt: object, fn: str) -> str:
    if isinstance(fmt, str) and fmt in _CODES:
        return fmt
    for name, dtype in _DTYPES.items():
        try:
            if np.dtype(fmt) == dtype:  # ml_dtypes scalar types and dtypes are accepted too
                return name
        except TypeError:
            break
    raise ValueError(f"{fn}: fmt must be one of {list(FORMATS)} (got {fmt!r})")


def dtype_of(fmt: str) -> np.dtype:
    """The ml_dtypes dtype of an FP8 format name."""
    return _DTYPES[_format_name(fmt, "dtype_of")]


def _float_source(x: object, fn: str) -> np.ndarray:
    a = as_array(x, fn, "x")
    if a.dtype not in _ENCODERS:
        raise TypeError(
            f"{fn}: x must be float32, float64, float16 or bfloat16 (got dtype {a.dtype.name})"
        )
    return contiguous(a)


def encode(
    x: np.ndarray, fmt: str = "e4m3fn", *, saturate: bool = False, out: np.ndarray | None = None
) -> np.ndarray:
    """Round floats to FP8 codes, nearest-even, in one step from the source type.

    Args:
        x: float32, float64, float16 or ml_dtypes.bfloat16 array, any shape and strides.
        fmt: "e4m3fn" or "e5m2" (or the ml_dtypes type).
        saturate: False matches ml_dtypes (overflow -> NaN for e4m3fn, inf for e5m2);
            True clamps overflow and +-inf to +-max finite. NaN stays NaN either way.
        out: optional array of the FP8 dtype and x's shape to write into.

    Returns:
        An array of dtype ml_dtypes.float8_e4m3fn or float8_e5m2, x's shape.

    Raises:
        TypeError: x is not a float array (integer, bool, complex, object).
        ValueError: unknown fmt, or out of the wrong shape or dtype, or read-only.

    Example:
        >>> quantcore.fp8.encode(np.array([0.1, 464.0, 465.0], np.float32))
        array([0.1015625, 448, nan], dtype=float8_e4m3fn)
    """
    name = _format_name(fmt, "encode")
    src = _float_source(x, "encode")
    dtype = _DTYPES[name]
    if out is not None:
        check_out(out, "encode", src.shape, dtype)
    target = out if out is not None and out.flags.c_contiguous else np.empty(src.shape, dtype)
    src_bits = src.view(np.uint16) if src.dtype in (_F16, _BF16) else src
    _ENCODERS[src.dtype](src_bits.reshape(-1), target.reshape(-1).view(np.uint8), _CODES[name], bool(saturate))
    if out is not None and target is not out:
        out[...] = target
        return out
    return target


def decode(
    codes: np.ndarray,
    dtype: object = np.float32,
    *,
    fmt: str | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Exact FP8 -> float conversion.

    Args:
        codes: an array of dtype ml_dtypes.float8_e4m3fn / float8_e5m2, or uint8 with `fmt`.
        dtype: np.float32, np.float16 or ml_dtypes.bfloat16 (each holds every FP8 value exactly).
        fmt: required with uint8 codes; must agree with an FP8 dtype when given with one.
        out: optional array of `dtype` and codes' shape to write into.

    Returns:
        Floats of `dtype`, codes' shape. NaN codes give the canonical quiet NaN with their sign.

    Raises:
        TypeError: codes is neither an FP8 nor a uint8 array.
        ValueError: unknown or conflicting fmt, unsupported dtype, bad out.
    """
    a = as_array(codes, "decode", "codes")
    if a.dtype in _DTYPES.values():
        name = next(k for k, v in _DTYPES.items() if v == a.dtype)
        if fmt is not None and _format_name(fmt, "decode") != name:
            raise ValueError(f"decode: fmt={fmt!r} conflicts with codes of dtype {a.dtype.name}")
    elif a.dtype == np.uint8:
        if fmt is None:
            raise ValueError("decode: fmt is required when codes are uint8 (e.g. fmt='e4m3fn')")
        name = _format_name(fmt, "decode")
    else:
        raise TypeError(
            f"decode: codes must be float8_e4m3fn, float8_e5m2 or uint8 (got dtype {a.dtype.name})"
        )
    try:
        out_dtype = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"decode: dtype must be float32, float16 or bfloat16 (got {dtype!r})") from None
    if out_dtype not in _DECODERS:
        raise ValueError(f"decode: dtype must be float32, float16 or bfloat16 (got {out_dtype.name})")
    src = contiguous(a).view(np.uint8)
    if out is not None:
        check_out(out, "decode", a.shape, out_dtype)
    target = out if out is not None and out.flags.c_contiguous else np.empty(a.shape, out_dtype)
    dst = target.view(np.uint16) if out_dtype in (_F16, _BF16) else target
    _DECODERS[out_dtype](src.reshape(-1), dst.reshape(-1), _CODES[name])
    if out is not None and target is not out:
        out[...] = target
        return out
    return target


Granularity = Union[str, int, tuple]


@dataclass(frozen=True)
class Fp8Tensor:
    """Scaled FP8 data: x ~= decode(codes) * scale of each element's unit.

    Attributes:
        codes: FP8 array (ml_dtypes dtype), the original shape.
        scales: float32, one per unit: shape () for "tensor"; (rows,) for "row";
            (rows, cols // G) for group size G; (rows // bh, cols // bw) for blocks, where rows
            is the product of all leading dimensions and cols the last one.
        fmt: "e4m3fn" or "e5m2".
        granularity: as passed to quantize().
        shape: the original shape.
    """

    codes: np.ndarray
    scales: np.ndarray
    fmt: str
    granularity: Granularity
    shape: tuple

    def dequantize(self) -> np.ndarray:
        """float32 reconstruction; see quantcore.fp8.dequantize."""
        return dequantize(self)

    def __repr__(self) -> str:
        return (
            f"Fp8Tensor(fmt={self.fmt!r}, shape={self.shape}, granularity={self.granularity!r}, "
            f"scales={self.scales.shape})"
        )


def _block_shape(granularity: Granularity, shape: tuple, fn: str) -> tuple[int, int] | None:
    """The (bh, bw) block of the 2-D view [rows, cols]; None for one scale over the tensor."""
    cols = shape[-1] if shape else 1
    rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    if isinstance(granularity, str):
        if granularity == "tensor":
            return None
        if granularity == "row":
            return (1, cols)
        raise ValueError(f"{fn}: granularity must be 'tensor', 'row', an int or a (bh, bw) tuple (got {granularity!r})")
    if isinstance(granularity, (int, np.integer)) and not isinstance(granularity, bool):
        g = int(granularity)
        if g <= 0 or cols % g != 0:
            raise ValueError(f"{fn}: group size must be a positive divisor of the last dimension (got group size {g}, last dimension {cols})")
        return (1, g)
    if isinstance(granularity, tuple) and len(granularity) == 2 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in granularity
    ):
        if len(shape) != 2:
            raise ValueError(f"{fn}: block granularity needs a 2-D array (got shape {shape})")
        bh, bw = (int(v) for v in granularity)
        if bh <= 0 or bw <= 0 or rows % bh or cols % bw:
            raise ValueError(f"{fn}: block {(bh, bw)} must divide the shape {shape}")
        return (bh, bw)
    raise ValueError(f"{fn}: granularity must be 'tensor', 'row', an int or a (bh, bw) tuple (got {granularity!r})")


def quantize(x: np.ndarray, fmt: str = "e4m3fn", *, granularity: Granularity = "tensor",
             out: Fp8Tensor | None = None) -> Fp8Tensor:
    """Scaled FP8 quantization as deployed: scale = amax / max_finite per unit.

    codes = encode(x / scale, saturate=True), computed in float32; an all-zero unit gets
    scale 1. With "row" or group granularity each row is read from memory once.

    Args:
        x: float array (float32, float64, float16, bfloat16), at least 1-D; computed in float32.
        fmt: "e4m3fn" or "e5m2".
        granularity: "tensor"; "row" (one scale per row of the 2-D view [prod(shape[:-1]),
            shape[-1]], i.e. per output channel of a weight); an int G (groups of G along the last
            axis); or (bh, bw) blocks of a 2-D array, e.g. (128, 128).

    Returns:
        Fp8Tensor.

    Raises:
        TypeError: x is not a float array.
        ValueError: unknown fmt or granularity, a granularity that does not divide the shape,
            or x containing NaN or inf.
    """
    name = _format_name(fmt, "quantize")
    src = _float_source(x, "quantize")
    if src.ndim == 0:
        raise ValueError("quantize: x must have at least one dimension (got a 0-d array)")
    shape = src.shape
    block = _block_shape(granularity, shape, "quantize")
    x32 = np.ascontiguousarray(src, dtype=np.float32)
    if out is not None:
        _check_quantize_out(out, name, granularity, shape)
    codes = out.codes if out is not None else np.empty(shape, _DTYPES[name])
    flat = x32.reshape(-1)
    if x32.size == 0:
        if out is not None:
            return out
        scales = np.ones(() if block is None else (0,), np.float32)
        return Fp8Tensor(codes, scales, name, granularity, shape)
    if block is None:
        amax = _core.amax_f32(flat)
        if not np.isfinite(amax):
            raise ValueError("quantize: x contains NaN or inf")
        scale = np.float32(amax) / np.float32(MAX_FINITE[name]) if amax > 0 else np.float32(1)
        if not (scale > 0 and np.isfinite(scale)):
            scale = np.float32(1)
        _core.fp8_encode_scaled_f32(flat, codes.reshape(-1).view(np.uint8), float(scale), _CODES[name])
        if out is not None:
            out.scales[...] = scale
            return out
        return Fp8Tensor(codes, np.array(scale, np.float32), name, granularity, shape)
    cols = shape[-1]
    rows = x32.size // cols
    bh, bw = block
    scales = out.scales.reshape(rows // bh, cols // bw) if out is not None else np.empty((rows // bh, cols // bw), np.float32)
    _core.fp8_quantize_blocks(x32.reshape(rows, cols), bh, bw, _CODES[name], codes.reshape(-1).view(np.uint8), scales)
    if out is not None:
        return out
    if granularity == "row":
        scales = scales.reshape(rows)
    return Fp8Tensor(codes, scales, name, granularity, shape)


def _check_quantize_out(out: object, fmt: str, granularity: Granularity, shape: tuple) -> None:
    if not isinstance(out, Fp8Tensor):
        raise TypeError(f"quantize: out must be an Fp8Tensor (got {type(out).__name__})")
    if (out.fmt, out.granularity, out.shape) != (fmt, granularity, shape):
        raise ValueError(
            f"quantize: out must match fmt, granularity and shape (got out with {(out.fmt, out.granularity, out.shape)}, "
            f"expected {(fmt, granularity, shape)})"
        )
    for name in ("codes", "scales"):
        a = getattr(out, name)
        if not (isinstance(a, np.ndarray) and a.flags.c_contiguous and a.flags.writeable):
            raise ValueError(f"quantize: out.{name} must be a writable C-contiguous array")


def dequantize(q: Fp8Tensor) -> np.ndarray:
    """float32 x ~= decode(codes) * scale, in the original shape."""
    if not isinstance(q, Fp8Tensor):
        raise TypeError(f"dequantize: q must be an Fp8Tensor (got {type(q).__name__})")
    codes = contiguous(q.codes).view(np.uint8)
    out = np.empty(q.shape, np.float32)
    if out.size == 0:
        return out
    block = _block_shape(q.granularity, q.shape, "dequantize")
    if block is None:
        decode(codes, fmt=q.fmt, out=out)
        out *= np.float32(q.scales)
        return out
    cols = q.shape[-1]
    rows = out.size // cols
    scales = np.ascontiguousarray(q.scales, dtype=np.float32)
    _core.fp8_dequantize_blocks(codes.reshape(-1), scales.reshape(-1), block[0], block[1], _CODES[q.fmt], out.reshape(rows, cols))
    return out
