"""Group-wise weight quantization: integer, NF4 and scaled FP8 schemes, and QuantizedTensor.

A weight is [out_features, in_features] (a 1-D array is one row). Groups of `group_size`
consecutive values run along in_features; each group has one scale (and, asymmetric integer
schemes, one integer zero point). All arithmetic is float32; division is x / scale; rounding is
to nearest, ties to even (np.rint).

Schemes (b = bits):
    "int8", "int4", "int3", "int2"
        symmetric=True:  q = clamp(rint(x / scale), -qmax, qmax) with qmax = 2^(b-1) - 1 and
                         scale = absmax / qmax. Stored offset-binary, code = q + 2^(b-1), so every
                         packed code is unsigned; code 0 is unused (int2 has the 3 levels -1, 0,
                         1; int3 has 7). x ~= (code - 2^(b-1)) * scale.
        symmetric=False: the range [min(x), max(x)] is widened to hold 0 (so 0 is exact),
                         scale = (hi - lo) / (2^b - 1), zero = clamp(rint(-lo / scale), 0, 2^b - 1),
                         code = clamp(rint(x / scale) + zero, 0, 2^b - 1). x ~= (code - zero) * scale.
    "q4_0", "q4_1", "q8_0"
                 llama.cpp's GGUF block formats (blocks of 32, float16 d), quantized with
                 llama.cpp's own rounding through quantcore.gguf and bit-exact with it:
                 q4_0 x = (code - 8) * d, q8_0 x = (code - 128) * d (codes stored offset-binary),
                 q4_1 x = code * d + m with the float16 minimum m kept in `zeros`.
                 quantcore.gguf.blocks_from_quantized() gives back llama.cpp's block bytes.
    "nf4"        the NF4 code book of bitsandbytes (QLoRA), scale = absmax, code = index of the
                 nearest entry to x / scale (a tie goes to the lower entry, as in bitsandbytes).
                 x ~= nf4[code] * scale. Always absmax: `symmetric` is ignored (reported True).
    "fp8_e4m3fn", "fp8_e5m2"
                 scale = absmax / max_finite (448 / 57344), code = fp8.encode(x / scale,
                 saturate=True) (quantcore.fp8). Always absmax: `symmetric` is ignored.
                 Note: with float16 scales, a group whose absmax / max_finite is below 2^-14
                 (absmax < 0.0275 for e4m3fn, < 3.5 for e5m2) gets a subnormal float16 scale
                 with fewer significant bits; bfloat16 or float32 scales avoid that.

Scales are stored in `scale_dtype` (float16 by default, float32 or bfloat16), rounded
nearest-even, and the codes are computed with the ROUNDED scale, so |x - dequantized| <= scale/2
wherever no clamping occurs. An all-zero group gets scale 1; a constant group c != 0 gets scale
|c| (exact whenever |c| fits scale_dtype); a scale that rounds to 0 becomes the smallest positive
scale_dtype value; one that overflows scale_dtype raises ValueError. (The constant-group rule
is for the integer schemes and nf4; fp8 keeps quantcore.fp8's absmax / max_finite.)

Codes are packed per row with quantcore.pack_bits's bit order (quantcore.pack: code i of a row
occupies bits [i*b, (i+1)*b) of the row's little-endian, LSB-first bit stream), each row starting
on a byte boundary: codes has shape [out_features, ceil(in_features * b / 8)].

The package attribute quantcore.quantize is the function; import this module's other names
directly: `from quantcore.quantize import SCHEMES, NF4_CODEBOOK`.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass
from typing import Optional

import ml_dtypes
import numpy as np

from quantcore import _core, fp8
from quantcore._checks import as_array, check_out
from quantcore._io import replace_atomically
from quantcore.pack import unpack_bits

_F32 = np.dtype(np.float32)
_F16 = np.dtype(np.float16)
_BF16 = np.dtype(ml_dtypes.bfloat16)
_INPUT_DTYPES = (_F32, _F16, _BF16)
_SCALE_DTYPES = {"float32": _F32, "float16": _F16, "bfloat16": _BF16}
_SCALE_TYPE_CODE = {_F32: 0, _F16: 1, _BF16: 2}  # quantcore::ScaleType
_KIND_SYMMETRIC, _KIND_ASYMMETRIC, _KIND_NF4 = 0, 1, 2  # quantcore::IntqKind

# The NF4 code book as the kernels use it (bitsandbytes' float32 values), read-only.
NF4_CODEBOOK = np.array(_core.intq_nf4_codebook(), np.float32)
NF4_CODEBOOK.flags.writeable = False

_FILE_FORMAT = "quantcore.QuantizedTensor"
_FILE_VERSION = "1"


def _n_groups(cols: int, group_size: int) -> int:
    return 1 if group_size in (-1, 0) else cols // group_size


def _scale_shape(rows: int, cols: int, group_size: int) -> tuple[int, int]:
    return (1, 1) if group_size == 0 else (rows, _n_groups(cols, group_size))


def _kernel_group_size(cols: int, group_size: int) -> int:
    """The kernels' group size: 0 means one group over the whole tensor."""
    return cols if group_size == -1 else group_size


def _smallest_positive(dtype: np.dtype) -> np.ndarray:
    return np.array(ml_dtypes.finfo(dtype).smallest_subnormal, dtype)


@dataclass(frozen=True)
class _IntScheme:
    """"int8" .. "int2", and "nf4" (kind _KIND_NF4): the C++ fused kernels."""

    bits: int
    nf4: bool = False
    fixed_group_size = None
    scale_dtypes = None

    @property
    def fixed_symmetric(self) -> bool | None:
        return True if self.nf4 else None

    def zeros_dtype(self, symmetric: bool) -> np.dtype | None:
        return None if (self.nf4 or symmetric) else np.dtype(np.uint8)

    def kind(self, symmetric: bool) -> int:
        if self.nf4:
            return _KIND_NF4
        return _KIND_SYMMETRIC if symmetric else _KIND_ASYMMETRIC

    def quantize(self, w: np.ndarray, group_size: int, symmetric: bool, scale_dtype: np.dtype):
        rows, cols = w.shape
        kind = self.kind(symmetric)
        codes = _line_empty((rows, (cols * self.bits + 7) // 8), np.uint8)
        scales = np.empty(_scale_shape(rows, cols, group_size), scale_dtype)  # written by the kernel
        zeros = np.empty(scales.shape, np.uint8) if kind == _KIND_ASYMMETRIC else None
        _core.intq_quantize(w, kind, self.bits, _kernel_group_size(cols, group_size),
                            _SCALE_TYPE_CODE[scale_dtype], codes, scales, zeros)
        return codes, scales, zeros

    def dequantize(self, q: "QuantizedTensor", out: np.ndarray) -> None:
        rows, cols = out.shape
        _core.intq_dequantize(q.codes, self.kind(q.symmetric), self.bits, _kernel_group_size(cols, q.group_size),
                              _SCALE_TYPE_CODE[q.scales.dtype], q.scales, q.zeros, out)


@dataclass(frozen=True)
class _Fp8Scheme:
    """Scaled FP8 through quantcore.fp8, with the scale rounded to scale_dtype first."""

    fmt: str
    bits: int = 8
    fixed_symmetric: bool | None = True
    fixed_group_size = None
    scale_dtypes = None

    def zeros_dtype(self, symmetric: bool) -> np.dtype | None:
        return None

    def quantize(self, w: np.ndarray, group_size: int, symmetric: bool, scale_dtype: np.dtype):
        rows, cols = w.shape
        if not np.isfinite(w).all():
            r, c = np.argwhere(~np.isfinite(w))[0]
            raise ValueError(f"quantize: w contains NaN or inf (first at row {r}, column {c})")
        granularity = {0: "tensor", -1: "row"}.get(group_size, group_size)
        q = fp8.quantize(w, self.fmt, granularity=granularity)
        exact = np.asarray(q.scales, np.float32).reshape(_scale_shape(rows, cols, group_size))
        if scale_dtype == _F32:
            return np.ascontiguousarray(q.codes).view(np.uint8), exact, None
        with np.errstate(over="ignore"):
            scales = exact.astype(scale_dtype)
        overflow = ~np.isfinite(scales.astype(np.float32))
        if overflow.any():
            r, g = np.argwhere(overflow)[0]
            width = cols // scales.shape[1]
            raise ValueError(
                f"quantize: the scale of the group at row {r}, columns {g * width}..{(g + 1) * width - 1} is not "
                f"finite in {scale_dtype.name} (the group's range is too large; use scale_dtype=np.float32)"
            )
        scales = np.where(scales == 0, _smallest_positive(scale_dtype), scales).astype(scale_dtype)
        codes = _line_empty(w.shape, fp8.dtype_of(self.fmt))
        codes = fp8.encode(_divide_by_groups(w, scales.astype(np.float32)), self.fmt, saturate=True, out=codes)
        return codes.view(np.uint8), scales, None

    def dequantize(self, q: "QuantizedTensor", out: np.ndarray) -> None:
        fp8.decode(q.codes, fmt=self.fmt, out=out)
        grouped = _by_group(out, q.scales)
        grouped *= q.scales.astype(np.float32)[..., None]


@dataclass(frozen=True)
class _GgufScheme:
    """llama.cpp's q4_0, q4_1 and q8_0 blocks (32 values, float16 d), held in QuantizedTensor's
    layout: q4_0 / q8_0 are symmetric with offset-binary codes (x = (code - 8) * d, resp.
    (code - 128) * d, code 0 included), q4_1 keeps its float16 minimum m in `zeros`
    (x = code * d + m). quantcore.gguf converts to and from the exact block bytes."""

    type: str
    bits: int
    fixed_symmetric: bool
    fixed_group_size = 32
    scale_dtypes = (_F16,)

    def zeros_dtype(self, symmetric: bool) -> np.dtype | None:
        return _F16 if self.type == "q4_1" else None

    def quantize(self, w: np.ndarray, group_size: int, symmetric: bool, scale_dtype: np.dtype):
        from quantcore import gguf

        return gguf.blocks_to_parts(gguf.quantize_blocks(w, self.type), self.type, w.shape)

    def dequantize(self, q: "QuantizedTensor", out: np.ndarray) -> None:
        if self.type == "q4_1":  # float32 code * d, then + m: gguf's two roundings, in its order
            rows, cols = out.shape
            codes = unpack_bits(q.codes.reshape(-1), self.bits, rows * cols).reshape(rows, -1, 32)
            grouped = out.reshape(rows, -1, 32)
            np.multiply(codes, q.scales.astype(np.float32)[..., None], out=grouped, dtype=np.float32)
            grouped += q.zeros.astype(np.float32)[..., None]
            return
        _core.intq_dequantize(q.codes, _KIND_SYMMETRIC, self.bits, 32, _SCALE_TYPE_CODE[_F16], q.scales, None, out)


def _by_group(a: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """A view of a [rows, cols] as [rows, n_groups, group] for scales [rows, n_groups] or [1, 1]."""
    return a.reshape(a.shape[0], scales.shape[1], -1)


def _divide_by_groups(w: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """w [rows, cols] / the scale of each element's group."""
    return (_by_group(w, scales) / scales[..., None]).reshape(w.shape)


# The schemes quantize() knows. Adding one means adding an entry with `bits` (per code),
# `fixed_symmetric` (None: the caller chooses; True / False: the scheme is always that, and
# `symmetric` is ignored), `fixed_group_size` (None, or the only group size the scheme has),
# `scale_dtypes` (None: any of float16/float32/bfloat16, else the allowed tuple),
# `zeros_dtype(symmetric)` (the dtype of the zero points, None without them), `quantize(w, group_size, symmetric,
# scale_dtype) -> (codes, scales, zeros)` for float32 w [rows, cols] and a validated group_size,
# and `dequantize(q, out)` writing float32 out [rows, cols].
_SCHEMES: dict[str, object] = {
    "int8": _IntScheme(8),
    "int4": _IntScheme(4),
    "int3": _IntScheme(3),
    "int2": _IntScheme(2),
    "nf4": _IntScheme(4, nf4=True),
    "fp8_e4m3fn": _Fp8Scheme("e4m3fn"),
    "fp8_e5m2": _Fp8Scheme("e5m2"),
    "q4_0": _GgufScheme("q4_0", 4, True),
    "q4_1": _GgufScheme("q4_1", 4, False),
    "q8_0": _GgufScheme("q8_0", 8, True),
}
SCHEMES = tuple(_SCHEMES)


def scheme_bits_per_weight(scheme: str, group_size: int | None = None, *, symmetric: bool = False,
                           scale_dtype: object = np.float16) -> float:
    """Storage bits per weight of a scheme: code bits + (scale + zero point bits) / group_size.

    The same accounting as QuantizedTensor.bits_per_weight, without a tensor. group_size 0 or -1
    (one scale per tensor / per row) counts no overhead: it depends on the shape and vanishes for
    large tensors. group_size None means the scheme's default (128; 32 for q4_0/q4_1/q8_0).

    Example:
        >>> scheme_bits_per_weight("int4", 128)                  # 4 + (16 + 8) / 128
        4.1875
    """
    name = _check_scheme(scheme, "scheme_bits_per_weight")
    impl = _SCHEMES[name]
    if group_size is None:
        group_size = _default_group_size(impl)
    if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)) or group_size < -1:
        raise ValueError(f"scheme_bits_per_weight: group_size must be a positive int, -1 or 0 (got {group_size!r})")
    if impl.fixed_group_size is not None and group_size != impl.fixed_group_size:
        raise ValueError(f"scheme_bits_per_weight: scheme {name!r} uses blocks of {impl.fixed_group_size} "
                         f"(got group_size={group_size})")
    dtype = _check_scale_dtype(scale_dtype, "scheme_bits_per_weight")
    sym = bool(symmetric) if impl.fixed_symmetric is None else impl.fixed_symmetric
    if group_size <= 0:
        return float(impl.bits)
    zeros = impl.zeros_dtype(sym)
    overhead = 8 * dtype.itemsize + (0 if zeros is None else 8 * zeros.itemsize)
    return impl.bits + overhead / group_size


def _check_scheme(scheme: object, fn: str) -> str:
    if not isinstance(scheme, str) or scheme not in _SCHEMES:
        raise ValueError(f"{fn}: scheme must be one of {list(_SCHEMES)} (got {scheme!r})")
    return scheme


def _check_group_size(group_size: object, cols: int, fn: str) -> int:
    if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)):
        raise TypeError(f"{fn}: group_size must be an int (got {type(group_size).__name__})")
    g = int(group_size)
    if g < -1:
        raise ValueError(
            f"{fn}: group_size must be a positive divisor of in_features, -1 (one group per row) "
            f"or 0 (the whole tensor) (got {g})"
        )
    if g > 0 and cols % g != 0:
        raise ValueError(f"{fn}: group_size must divide in_features (got in_features={cols}, group_size={g})")
    return g


def _default_group_size(impl) -> int:
    """quantize()'s group size when none is given: 128, or the scheme's fixed block."""
    return 128 if impl.fixed_group_size is None else impl.fixed_group_size


def check_grid(scheme: str, group_size: object, symmetric: object, scale_dtype: object, cols: int,
               fn: str) -> tuple[int, bool, np.dtype]:
    """quantize()'s checks of the grid arguments for a weight of `cols` in_features, with errors
    that name `fn` (callers that quantize on behalf of the user: awq, gptq).

    Returns:
        (group_size with None resolved, symmetric as a bool, the scale dtype).
    """
    impl = _SCHEMES[_check_scheme(scheme, fn)]
    if group_size is None:
        group_size = _default_group_size(impl)
    g = _check_group_size(group_size, cols, fn)
    if impl.fixed_group_size is not None and g != impl.fixed_group_size:
        raise ValueError(f"{fn}: scheme {scheme!r} uses blocks of {impl.fixed_group_size} (got group_size={g})")
    if not isinstance(symmetric, (bool, np.bool_)):
        raise TypeError(f"{fn}: symmetric must be a bool (got {type(symmetric).__name__})")
    dtype = _check_scale_dtype(scale_dtype, fn)
    if impl.scale_dtypes is not None and dtype not in impl.scale_dtypes:
        raise ValueError(f"{fn}: scheme {scheme!r} stores {' or '.join(d.name for d in impl.scale_dtypes)} "
                         f"scales (got scale_dtype={dtype.name})")
    return g, bool(symmetric), dtype


def _check_scale_dtype(scale_dtype: object, fn: str) -> np.dtype:
    try:
        dtype = np.dtype(scale_dtype)
    except TypeError:
        dtype = None
    if dtype not in _SCALE_TYPE_CODE:
        raise ValueError(f"{fn}: scale_dtype must be float16, float32 or bfloat16 (got {scale_dtype!r})")
    return dtype


def _line_empty(shape: tuple, dtype: object) -> np.ndarray:
    """np.empty whose data starts on a 64-byte boundary (a cache line)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    buf = np.empty(nbytes + 63, np.uint8)
    start = -buf.ctypes.data % 64
    return buf[start:start + nbytes].view(dtype).reshape(shape)


def _line_aligned(a: np.ndarray) -> np.ndarray:
    """a itself if its data starts on a 64-byte boundary, else a copy that does."""
    if a.ctypes.data % 64 == 0:
        return a
    out = _line_empty(a.shape, a.dtype)
    out[...] = a
    return out


@dataclass(frozen=True, repr=False, eq=False)
class QuantizedTensor:
    """A quantized weight: packed codes plus per-group scales (and zero points).

    Attributes:
        scheme: one of SCHEMES, e.g. "int4".
        shape: the original shape, (out_features, in_features) or (in_features,).
        group_size: as passed to quantize(): a divisor of in_features, -1 (one group per row)
            or 0 (one group for the whole tensor).
        symmetric: True for symmetric integer schemes and for the absmax schemes (nf4, fp8).
        codes: uint8 [out_features, ceil(in_features * bits / 8)], each row a packed bit stream
            (quantcore.pack's order); symmetric integer codes are offset-binary (q + 2^(b-1));
            fp8 codes are the FP8 bytes. Kept starting on a 64-byte boundary, where the matmul
            kernels' loads want it: an array passed that does not is copied once, at creation.
        scales: [out_features, n_groups] (n_groups = in_features // group_size, 1 for -1), or
            [1, 1] for group_size 0; dtype float16, float32 or bfloat16.
        zeros: uint8 like scales for asymmetric integer schemes, float16 m for q4_1, else None.
        perm: None, or an int64 permutation of range(in_features) (GPTQ with act-order): then
            codes, scales and zeros describe W[:, perm], the columns in that order (groups run
            along the permuted columns), and dequantize() returns W itself
            (out[:, perm] = the decoded values). A matmul with such a weight multiplies
            x[..., perm]. GGUF blocks cannot express it (gguf.blocks_from_quantized needs None).
    """

    scheme: str
    shape: tuple
    group_size: int
    symmetric: bool
    codes: np.ndarray
    scales: np.ndarray
    zeros: Optional[np.ndarray]
    perm: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        _validate(self, "QuantizedTensor")
        # the matmul kernels load codes 64 bytes at a time: a load that straddles two cache
        # lines costs two (fp8 GEMV in cache: 18.6 -> 22.1 G weights/s per core aligned)
        object.__setattr__(self, "codes", _line_aligned(self.codes))

    def __getstate__(self) -> dict:
        # what quantcore.matmul keeps on the tensor (_qmatmul_plan, views of these arrays) is not
        # part of its state: a pickle or deep copy holds the fields alone
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __setstate__(self, state: dict) -> None:
        # unpickling skips __post_init__, and an unpickled array may start anywhere (48 bytes past a
        # line every other time, measured)
        self.__dict__.update(state)
        object.__setattr__(self, "codes", _line_aligned(self.codes))

    @property
    def bits(self) -> int:
        """Bits per code."""
        return _SCHEMES[self.scheme].bits

    @property
    def scale_dtype(self) -> np.dtype:
        return self.scales.dtype

    @property
    def nbytes(self) -> int:
        """Bytes stored: codes + scales + zeros + perm (what save() writes, less the file header)."""
        extra = sum(0 if a is None else a.nbytes for a in (self.zeros, self.perm))
        return int(self.codes.nbytes + self.scales.nbytes + extra)

    @property
    def bits_per_weight(self) -> float:
        """8 * nbytes / number of weights: codes plus scale and zero-point overhead."""
        return 8.0 * self.nbytes / int(np.prod(self.shape))

    def dequantize(self, dtype: object = np.float32, *, out: np.ndarray | None = None) -> np.ndarray:
        """The float reconstruction, in the original shape.

        Args:
            dtype: np.float32, np.float16 or ml_dtypes.bfloat16. Values are computed in float32
                ((code - zero) * scale, nf4[code] * scale, decode(code) * scale) and rounded
                once to a narrower dtype.
            out: optional C-contiguous array of `dtype` and the original shape to write into (no
                fresh allocation: float32 output is written by the kernel directly).

        Returns:
            An array of `dtype`, shape self.shape.

        Raises:
            ValueError: unsupported dtype, or out of the wrong shape or dtype, or read-only.

        Example:
            >>> q = quantcore.quantize(w, "int4", group_size=128)
            >>> np.abs(q.dequantize() - w).max()
        """
        try:
            out_dtype = np.dtype(dtype)
        except TypeError:
            out_dtype = None
        if out_dtype not in _INPUT_DTYPES:
            raise ValueError(f"dequantize: dtype must be float32, float16 or bfloat16 (got {dtype!r})")
        if out is not None:
            check_out(out, "dequantize", self.shape, out_dtype)
        rows, cols = self.codes.shape[0], self.shape[-1]
        if out is not None and out_dtype == _F32 and out.flags.c_contiguous and self.perm is None:
            _SCHEMES[self.scheme].dequantize(self, out.reshape(rows, cols))
            return out
        values = np.empty((rows, cols), np.float32)
        _SCHEMES[self.scheme].dequantize(self, values)
        if self.perm is not None:  # values hold W[:, perm]: put the columns back
            permuted, values = values, np.empty_like(values)
            values[:, self.perm] = permuted
        result = values.reshape(self.shape)
        if out_dtype != _F32:
            result = result.astype(out_dtype)
        if out is not None:
            out[...] = result
            return out
        return result

    def save(self, path: str | os.PathLike) -> None:
        """Write a safetensors file: tensors "codes", "scales" (bfloat16 as its uint16 bits),
        "zeros" (asymmetric only) and "perm" (int64, when set); scheme, shape, group_size, symmetric, scale_dtype and a CRC-32
        of each tensor in the metadata. The file is written under a temporary name in the same
        directory and renamed into place, so a failure never leaves a partial file at `path`.

        Raises:
            OSError: the directory is not writable.
        """
        from safetensors.numpy import save_file

        tensors = {"codes": self.codes, "scales": self.scales.view(np.uint16) if self.scales.dtype == _BF16 else self.scales}
        if self.zeros is not None:
            tensors["zeros"] = self.zeros
        if self.perm is not None:
            tensors["perm"] = self.perm
        tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
        metadata = {
            "format": _FILE_FORMAT,
            "format_version": _FILE_VERSION,
            "scheme": self.scheme,
            "shape": json.dumps(list(self.shape)),
            "group_size": str(self.group_size),
            "symmetric": json.dumps(bool(self.symmetric)),
            "scale_dtype": self.scales.dtype.name,
            "crc32": json.dumps({k: zlib.crc32(v.data) for k, v in tensors.items()}),
        }
        replace_atomically(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))

    def __repr__(self) -> str:
        return (
            f"QuantizedTensor(scheme={self.scheme!r}, shape={tuple(self.shape)}, group_size={self.group_size}, "
            f"symmetric={self.symmetric}, scale_dtype={self.scales.dtype.name}, "
            f"bits_per_weight={self.bits_per_weight:.4g}, nbytes={self.nbytes}"
            f"{'' if self.perm is None else ', perm=act-order permutation of the input columns'})"
        )


def _validate(q: QuantizedTensor, fn: str, values: bool = False) -> None:
    """Every field consistent with the others, so the kernels only ever see valid buffers; with
    `values`, also every scale positive and finite and every zero point in range (for data read
    from a file)."""
    _check_scheme(q.scheme, fn)
    scheme = _SCHEMES[q.scheme]
    shape = q.shape
    if (not isinstance(shape, tuple) or len(shape) not in (1, 2)
            or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)):
        raise ValueError(f"{fn}: shape must be a tuple of 1 or 2 positive ints (got {shape!r})")
    rows, cols = (1, shape[0]) if len(shape) == 1 else shape
    group_size = _check_group_size(q.group_size, cols, fn)
    if not isinstance(q.symmetric, (bool, np.bool_)):
        raise TypeError(f"{fn}: symmetric must be a bool (got {type(q.symmetric).__name__})")
    fixed = scheme.fixed_symmetric
    if fixed is not None and bool(q.symmetric) != fixed:
        raise ValueError(f"{fn}: scheme {q.scheme!r} is always {'symmetric' if fixed else 'asymmetric'} "
                         f"(got symmetric={q.symmetric})")
    if scheme.fixed_group_size is not None and group_size != scheme.fixed_group_size:
        raise ValueError(f"{fn}: scheme {q.scheme!r} uses blocks of {scheme.fixed_group_size} "
                         f"(got group_size={group_size})")
    row_bytes = (cols * scheme.bits + 7) // 8
    for name, arr in (("codes", q.codes), ("scales", q.scales)):
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"{fn}: {name} must be a numpy array (got {type(arr).__name__})")
    if q.codes.dtype != np.uint8 or q.codes.shape != (rows, row_bytes):
        raise ValueError(f"{fn}: codes must be uint8 of shape {(rows, row_bytes)} (got {q.codes.dtype.name} {q.codes.shape})")
    if q.scales.dtype not in _SCALE_TYPE_CODE or q.scales.shape != _scale_shape(rows, cols, group_size):
        raise ValueError(
            f"{fn}: scales must be float16, float32 or bfloat16 of shape {_scale_shape(rows, cols, group_size)} "
            f"(got {q.scales.dtype.name} {q.scales.shape})"
        )
    zeros_dtype = scheme.zeros_dtype(bool(q.symmetric))
    if zeros_dtype is not None:
        if not isinstance(q.zeros, np.ndarray) or q.zeros.dtype != zeros_dtype or q.zeros.shape != q.scales.shape:
            raise ValueError(f"{fn}: zeros must be {zeros_dtype.name} of shape {q.scales.shape} for scheme "
                             f"{q.scheme!r} with symmetric={q.symmetric}")
    elif q.zeros is not None:
        raise ValueError(f"{fn}: zeros must be None for scheme {q.scheme!r} with symmetric={q.symmetric}")
    for arr in (q.codes, q.scales, q.zeros):
        if arr is not None and not arr.flags.c_contiguous:
            raise ValueError(f"{fn}: codes, scales and zeros must be C-contiguous")
    if q.perm is not None:
        perm = q.perm
        if not isinstance(perm, np.ndarray):
            raise TypeError(f"{fn}: perm must be None or a numpy array (got {type(perm).__name__})")
        if perm.dtype != np.int64 or perm.shape != (cols,) or not perm.flags.c_contiguous:
            raise ValueError(f"{fn}: perm must be a C-contiguous int64 array of shape {(cols,)} "
                             f"(got {perm.dtype.name} {perm.shape})")
        if perm.min() < 0 or perm.max() >= cols or np.bincount(perm, minlength=cols).max() != 1:
            raise ValueError(f"{fn}: perm must be a permutation of 0..{cols - 1} (each column exactly once)")
    if values:
        scales32 = q.scales.astype(np.float32)
        # llama.cpp's d is signed (q4_0: max / -8) and 0 for an all-zero block
        signed = isinstance(scheme, _GgufScheme)
        if not (np.isfinite(scales32).all() and (signed or (scales32 > 0).all())):
            raise ValueError(f"{fn}: scales must be {'' if signed else 'positive and '}finite")
        if zeros_dtype is not None and zeros_dtype.kind == "f" and not np.isfinite(q.zeros.astype(np.float32)).all():
            raise ValueError(f"{fn}: zeros must be finite")
        if zeros_dtype == np.uint8 and q.zeros.max() > (1 << scheme.bits) - 1:
            raise ValueError(f"{fn}: zeros must be in 0..{(1 << scheme.bits) - 1} (got {q.zeros.max()})")


def quantize(
    w: np.ndarray,
    scheme: str,
    *,
    group_size: int | None = None,
    symmetric: bool = False,
    scale_dtype: object = np.float16,
) -> QuantizedTensor:
    """Quantize a weight group-wise along in_features (schemes and rounding in the module docstring).

    Args:
        w: float32, float16 or ml_dtypes.bfloat16 array [out_features, in_features]; a 1-D array
            is one row. Any strides. Computed in float32 (float16 / bfloat16 convert exactly).
        scheme: "int8", "int4", "int3", "int2", "nf4", "fp8_e4m3fn", "fp8_e5m2", or the GGUF
            block formats "q4_0", "q4_1", "q8_0" (llama.cpp's rounding, bit-exact).
        group_size: a positive divisor of in_features, -1 for one group per row (per output
            channel) or 0 for one group over the whole tensor. Default 128; the GGUF block
            formats q4_0, q4_1 and q8_0 have blocks of 32 and accept only 32 (their default).
        symmetric: integer schemes only: signed codes and a scale per group (True) or unsigned
            codes with a scale and a zero point (False). nf4 and fp8 are always absmax-scaled.
        scale_dtype: np.float16, np.float32 or ml_dtypes.bfloat16, the stored scale type.

    Returns:
        QuantizedTensor.

    Raises:
        TypeError: w is not a float32 / float16 / bfloat16 array, or an argument has the wrong type.
        ValueError: unknown scheme; w not 1-D or 2-D, or empty; group_size not dividing
            in_features; unsupported scale_dtype; NaN or inf in w; a scale overflowing
            scale_dtype (e.g. |w| > 65504 * qmax with float16 scales).

    Example:
        >>> q = quantcore.quantize(w, "int4", group_size=128)
        >>> q.codes.shape, q.scales.shape
        ((4096, 5504), (4096, 86))
    """
    name = _check_scheme(scheme, "quantize")
    a = as_array(w, "quantize", "w")
    if a.dtype not in _INPUT_DTYPES:
        raise TypeError(f"quantize: w must be float32, float16 or bfloat16 (got dtype {a.dtype.name})")
    if a.ndim not in (1, 2):
        raise ValueError(f"quantize: w must be 1-D or 2-D [out_features, in_features] (got shape {a.shape})")
    if a.size == 0:
        raise ValueError(f"quantize: w must not be empty (got shape {a.shape})")
    shape = tuple(int(d) for d in a.shape)
    w2 = np.ascontiguousarray(a.reshape(1, -1) if a.ndim == 1 else a, dtype=np.float32)
    g, symmetric, dtype = check_grid(name, group_size, symmetric, scale_dtype, w2.shape[1], "quantize")
    impl = _SCHEMES[name]
    symmetric = symmetric if impl.fixed_symmetric is None else impl.fixed_symmetric
    codes, scales, zeros = impl.quantize(w2, g, symmetric, dtype)
    return QuantizedTensor(name, shape, g, symmetric, codes, scales, zeros)


def load(path: str | os.PathLike) -> QuantizedTensor:
    """Read a file written by QuantizedTensor.save.

    Raises:
        FileNotFoundError: no file at `path` (other I/O failures raise OSError too).
        ValueError: the file is truncated or corrupted (not valid safetensors, or a checksum
            mismatch), or is a safetensors file that QuantizedTensor.save did not write, or its
            contents are inconsistent.
    """
    from safetensors import SafetensorError, safe_open

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load: no such file: {path!r}")
    try:
        with safe_open(path, framework="numpy") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, KeyError, ValueError, TypeError) as exc:  # I/O errors stay OSError
        raise ValueError(f"load: {path!r} is not a readable safetensors file (truncated or corrupted?): {exc}") from None
    if metadata.get("format") != _FILE_FORMAT:
        raise ValueError(f"load: {path!r} is not a quantcore QuantizedTensor file (metadata format is "
                         f"{metadata.get('format')!r}, expected {_FILE_FORMAT!r})")
    if metadata.get("format_version") != _FILE_VERSION:
        raise ValueError(f"load: {path!r} has format_version {metadata.get('format_version')!r}; "
                         f"this quantcore reads {_FILE_VERSION!r}")
    try:
        expected_crc = json.loads(metadata["crc32"])
        shape = tuple(json.loads(metadata["shape"]))
        symmetric = json.loads(metadata["symmetric"])
        group_size = int(metadata["group_size"])
        scheme = metadata["scheme"]
        scale_dtype = _SCALE_DTYPES[metadata["scale_dtype"]]
    except (KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"load: {path!r} has corrupted metadata ({type(exc).__name__}: {exc})") from None
    if not isinstance(expected_crc, dict) or set(expected_crc) != set(tensors):
        raise ValueError(f"load: {path!r} is corrupted: its tensors {sorted(tensors)} do not match the metadata")
    for k, v in tensors.items():
        if zlib.crc32(np.ascontiguousarray(v).data) != expected_crc[k]:
            raise ValueError(f"load: {path!r} is corrupted: the checksum of {k!r} does not match")
    scales = tensors.get("scales")
    if scales is not None and scale_dtype == _BF16:
        if scales.dtype != np.uint16:
            raise ValueError(f"load: {path!r} is corrupted: bfloat16 scales must be stored as uint16")
        scales = scales.view(_BF16)
    if scales is None or "codes" not in tensors:
        raise ValueError(f"load: {path!r} is corrupted: it lacks 'codes' or 'scales'")
    try:
        q = QuantizedTensor(scheme, shape, group_size, symmetric, tensors["codes"], scales, tensors.get("zeros"),
                            tensors.get("perm"))
        _validate(q, "QuantizedTensor", values=True)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"load: {path!r} has inconsistent contents: {exc}") from None
    return q
