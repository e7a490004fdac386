"""Quantized matmul on the CPU: y = x @ W.T straight from a QuantizedTensor's packed codes.

W is what the tensor holds (`qt.dequantize()`), [out_features, in_features]. The dequantized
weight is never materialized and the codes are not repacked: a call reads the packed bytes,
the scales (and zero points) and x, so `qt.nbytes` is the whole weight memory. What varies with
the batch size M (rows of x):

    M <= 8 (GEMV)   codes decoded in registers (AVX-512: 4-bit codes through a 16-entry table
                    of the group's exact weights, 8-bit codes converted in place; on CPUs with
                    VBMI, e.g. Zen 4, Ice Lake: 2- and 3-bit codes moved to 32-bit lanes by
                    vpermb and looked up in the same kind of table, fp8 codes through two
                    128-byte tables of their exact bfloat16 bytes, else through float16), rows
                    of W split over the threads in blocks of about 2^20 weights (a weight
                    under 2^20 elements runs on the calling thread). x is reordered once per
                    call to match the order in which the kernel unpacks the codes.
    M > 8 (GEMM)    tiles of 24 rows of W decoded to float32 (the same values as dequantize())
                    in a per-thread buffer, then a register-blocked fp32 microkernel over x,
                    packed once per call in panels of 32 rows; tiles split over the threads.

Float results differ from a float64 reference only by float32 rounding of products and sums
(summation order varies with the instruction set).

activations="int8" (integer schemes: int8/int4/int3/int2, q4_0, q4_1, q8_0): each row of x is
cut into blocks of B values (activation_block(qt)): B = group_size when it is a multiple of 32
up to 256 (int4 g128: 128; q4_0 / q8_0: 32, as llama.cpp's q8_0 activations), B = 32 for other
multiples of 32 and for a scale per row or tensor (group_size -1 or 0; the row's last block may
be shorter), else B = gcd(group_size, 32); a block never straddles two groups. A block of a
whole group lets the integer sums run over the group before any float work. A block is quantized as
    sx = absmax / 127 (float32),   q = clip(rint(x / sx), -127, 127)   (q = 0 when absmax = 0)
and the inner products are integer: per block and weight row, idot = sum((code - zero) * q) in
int32 (exact), then y += sx * (scale * idot + offset * sum(q)) in float32 (offset = m for q4_1,
else 0; q4_1 has zero = 0). This is llama.cpp's q8 activation scheme, with a float32 block scale.

With int8 activations and M <= 8, integer codes (int4 / int8 sym or asym, q4_0, q4_1, q8_0;
int2 / int3 on CPUs with VBMI, unpacked in registers) stream from the packed rows straight into
vpdpbusd (AVX-512 VNNI) with no decode step, whatever the group (a scale per row or tensor
included; 4-bit rows of 128k + 64 codes, e.g. 576, with blocks of 32 or 64); at M > 8 tiles of
4 weight rows are unpacked once and reused over the batch, for every integer scheme.

Speed (bench/bench_matmul.py, 2 cores of a Zen 4, 4096 -> 11008, weights from DRAM; each of our
calls right after a numpy float32 GEMV, median over rounds of numpy's time / ours; three runs on
a busy machine, 2026-11-27): the int8 path runs near the memory speed (GEMV int4 g128 7.1-7.2x
numpy, 90-94% of a 2-thread copy's bandwidth; q4_0 6.5-6.6x, 90-92%; q8_0 3.5-3.7x, 94-97%; in
five earlier runs that day, q4_0 5.2-6.7x, where numpy's GEMV ran at 4.5 ms against its usual
5-6 ms); the float-activation GEMV decodes 4-bit codes at about 13-25 G weights/s per core in
cache (a table lookup and a multiply-add per 16 weights), so it is compute-bound below the memory
speed (int4 g128 3.2-4.2x numpy, q4_0 3.7-4.1x, q8_0 1.9-2.2x). fp8 (float only): 3.3-3.8x numpy
(2.3-3.9x in the five earlier runs). GEMM, batch 128, int4 g128: 1.1-1.2x numpy float32 on the
dequantized weight, 2.5-2.7x with int8 activations. The other schemes, same runs: int8-path GEMV
int3 g128 5.6-8.4x, int2 g64 7.6-8.8x, int4 per-row 7.2x, int4 g32 5.7-6.1x, int4 g64 6.8-6.9x,
q4_1 5.8-5.9x, int8 per-row 3.9-4.2x; float GEMV 2.0-4.3x (nf4 3.5-3.7x, fp8_e5m2 3.7-3.8x, int3
2.7-3.4x, int2 3.5-4.3x, int4 g64 3.5-3.8x, int8 per-row 2.0-2.3x); GEMM float 1.1-1.2x for every
scheme, int8 int3 2.2-2.4x, int2 1.7-1.9x, q4_0 1.4-1.5x, q8_0 1.4-1.5x, int8 per-row 1.4-1.5x,
q4_1 1.2-1.3x.
On AVX2 without AVX-512 (QUANTCORE_ISA=avx2 on the same machine, two runs of the same bench):
float GEMV 1.5-3.2x (int4 g128 2.3-2.5x, q4_0 2.2-2.4x, q8_0 1.9-2.4x, fp8 2.0-2.7x, nf4
2.3-2.5x, int3 2.4x, int2 1.5-1.7x); int8-path GEMV int4 g128 4.9-6.8x, q4_0 4.4-5.3x, q8_0
3.7-3.8x, int4 per-row 6.1-6.2x, int4 g64 3.4x and 6.3x, q4_1 3.4-5.5x, int3 / int2 1.4-2.0x /
1.8x (a 4-row tile: no streaming loop for them); GEMM float 1.2-1.3x, int8 0.6-1.5x (int4 g128
1.5x; blocks of 32 0.6-0.7x).
A call right after other work that streamed a lot of memory (in the bench, numpy's GEMV reading
180 MB) finds its code and data evicted from the caches: an int8 GEMV of 8 x 4096 then takes
about 100 us instead of 14 us, which is part of every figure above.
If numpy's multi-threaded BLAS runs in the same process, its idle threads spin on the cores for
a while after each call (OpenBLAS's default) and slow a quantcore call that follows by up to 2x;
OPENBLAS_THREAD_TIMEOUT=4 in the environment before numpy loads makes them sleep at once.
Decoding in a model: activations="int8" where its rounding of x (a relative error of about
1/254 per block) is acceptable (quantcore.models.quantized.quantize_model(..., activations="int8")
or set_activations; SmolLM2-135M RTN int4 g64: perplexity 27.66 against 27.55, decode 2-8% faster).

If the tensor carries an input permutation `perm` (GPTQ act-order: it holds W[:, perm]), x is
gathered once per call as x[..., perm].

Memory: besides qt.nbytes (codes, scales, zero points; matmul keeps only views of them per
tensor, no copy), a call allocates only per-call buffers proportional to x (a float32 copy of x
unless it is a C-contiguous float32 2-D array, the GEMM's 32-row panels of x, the int8 copy of
x) and per-thread decode buffers of 24 rows of W (24 * in_features * 4 bytes per thread).
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np

from quantcore import _core
from quantcore._checks import as_array, check_out
from quantcore.quantize import _SCALE_TYPE_CODE, QuantizedTensor

_F32 = np.dtype(np.float32)
_X_DTYPES = (_F32, np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16))
_ACTIVATIONS = (None, "int8")
INT8_SCHEMES = ("int8", "int4", "int3", "int2", "q4_0", "q4_1", "q8_0")

# scheme -> (quantcore::QWeightFormat, quantcore::IntqKind or None for "from symmetric")
_FORMATS = {
    "int8": (0, None), "int4": (0, None), "int3": (0, None), "int2": (0, None),
    "nf4": (0, 2), "q4_0": (0, 0), "q8_0": (0, 0), "q4_1": (1, 0),
    "fp8_e4m3fn": (2, 0), "fp8_e5m2": (3, 0),
}


def _plan(qt: QuantizedTensor) -> tuple:
    """The arguments of _core.qmatmul that depend on the tensor alone: ((format, kind, bits, scale
    type, group, codes, scales, zeros), activation block), found once and kept on the tensor (a
    frozen dataclass, so set with object.__setattr__). Before, a WeakKeyDictionary lookup and an
    activation_block call per call took 2.3-2.9 us between 0.8 ms GEMVs (about 9 us when the caches
    were cold) against a decode step's GEMVs of 15-50 us (SmolLM2-135M)."""
    try:
        return qt._qmatmul_plan
    except AttributeError:
        pass
    fmt, kind = _FORMATS[qt.scheme]
    if kind is None:
        kind = 0 if qt.symmetric else 1
    zeros = qt.zeros
    if qt.scheme == "q4_1":
        zeros = zeros.view(np.uint16)
    group = qt.shape[-1] if qt.group_size == -1 else qt.group_size
    scales = qt.scales.view(np.uint16) if qt.scales.dtype.itemsize == 2 else qt.scales
    plan = ((fmt, kind, qt.bits, _SCALE_TYPE_CODE[qt.scales.dtype], group, qt.codes, scales, zeros),
            activation_block(qt))
    object.__setattr__(qt, "_qmatmul_plan", plan)
    return plan


def activation_block(qt: QuantizedTensor) -> int:
    """The block B of the int8 activation quantization for this tensor (module docstring)."""
    g = qt.group_size
    if g > 0 and g % 32 == 0 and g <= 256:
        return g
    if g in (-1, 0) or g % 32 == 0:
        return 32
    return math.gcd(g, 32)


def matmul(x: np.ndarray, qt: QuantizedTensor, *, bias: np.ndarray | None = None,
           out: np.ndarray | None = None, activations: str | None = None) -> np.ndarray:
    """x @ W.T for the weight W that `qt` holds, without dequantizing it.

    Args:
        x: float32, float16 or ml_dtypes.bfloat16 array [..., in_features], any strides
            (converted to contiguous float32 once per call).
        qt: QuantizedTensor of any scheme, shape (out_features, in_features), or (in_features,)
            for one output row (then the result has shape x.shape[:-1], as with numpy's x @ w).
        bias: optional float array [out_features] ([1] for a 1-D qt), added to every row.
        out: optional writable float32 array of the result's shape to write into.
        activations: None (float32 activations) or "int8" (x quantized per block to int8 and
            integer dot products; schemes in INT8_SCHEMES; see the module docstring).

    Returns:
        float32 array [..., out_features] (`out` itself when given).

    Raises:
        TypeError: qt is not a QuantizedTensor; x, bias or out is not an array of a float dtype.
        ValueError: x's last dimension is not in_features, x is 0-d; bias of the wrong shape;
            out of the wrong shape or dtype, or read-only; unknown `activations`, or "int8" for a
            scheme without integer codes, or non-finite x with "int8".

    Example:
        >>> qt = quantcore.quantize(w, "int4", group_size=128)       # w [11008, 4096]
        >>> y = quantcore.matmul(x, qt)                               # x [batch, 4096]
        >>> np.allclose(y, x @ qt.dequantize().T, rtol=1e-4, atol=1e-4)
    """
    if not isinstance(qt, QuantizedTensor):
        raise TypeError(f"matmul: qt must be a QuantizedTensor (got {type(qt).__name__})")
    int8 = activations is not None
    if int8 and not (isinstance(activations, str) and activations in _ACTIVATIONS):
        raise ValueError(f"matmul: activations must be None or 'int8' (got {activations!r})")
    if int8 and qt.scheme not in INT8_SCHEMES:
        raise ValueError(f"matmul: activations='int8' needs integer codes: schemes {list(INT8_SCHEMES)} "
                         f"(got scheme {qt.scheme!r})")
    a = x if isinstance(x, np.ndarray) else as_array(x, "matmul", "x")
    x_dtype = a.dtype
    if x_dtype is not _F32 and x_dtype not in _X_DTYPES:
        raise TypeError(f"matmul: x must be float32, float16 or bfloat16 (got dtype {x_dtype.name})")
    in_features = qt.shape[-1]
    x_shape = a.shape
    if not x_shape or x_shape[-1] != in_features:
        raise ValueError(f"matmul: x must have shape [..., {in_features}] (in_features of qt) (got {x_shape})")
    rows = 1 if len(qt.shape) == 1 else qt.shape[0]
    lead = x_shape[:-1]
    shape = lead if len(qt.shape) == 1 else lead + (rows,)
    b = None
    if bias is not None:
        b = as_array(bias, "matmul", "bias")
        if b.dtype.kind != "f" and b.dtype != _X_DTYPES[2]:
            raise TypeError(f"matmul: bias must be a float array (got dtype {b.dtype.name})")
        if b.shape != (rows,):
            raise ValueError(f"matmul: bias must have shape ({rows},) (out_features of qt) (got {b.shape})")
        b = np.ascontiguousarray(b, dtype=np.float32)
    direct = False
    if out is not None:
        if not (isinstance(out, np.ndarray) and out.shape == shape and out.dtype is _F32
                and (flags := out.flags).writeable):
            check_out(out, "matmul", shape, _F32)  # raises, naming what is wrong (or accepts an equal dtype)
            flags = out.flags
        direct = flags.c_contiguous
    perm = qt.perm  # checked when the tensor was made: an int64 permutation of the input columns
    if perm is None and x_dtype is _F32 and len(x_shape) == 2 and a.flags.c_contiguous:
        x2 = a  # the common case, with nothing to convert (each numpy call costs ~10-60 us when its
        # code has been evicted from the caches, e.g. by the previous layer's GEMV)
    else:
        x2 = a.reshape(-1, in_features)
        if perm is not None:
            x2 = np.take(x2, perm, axis=1)  # one gather per call
        x2 = np.ascontiguousarray(x2, dtype=np.float32)
    if direct:
        y = out if len(qt.shape) == 2 and out.ndim == 2 else out.reshape(-1, rows)
    else:
        y = np.empty((x2.shape[0], rows), np.float32)
    args, block = _plan(qt)
    _core.qmatmul(x2, *args, b, y, int8, block)
    if direct:
        return out
    if out is not None:
        out[...] = y.reshape(shape)
        return out
    return y.reshape(shape)
