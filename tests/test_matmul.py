"""quantcore.matmul against outside references.

Float path: a float64 product with the float32 weight that QuantizedTensor.dequantize gives.
The tolerance is the classical bound for a length-K float32 dot product, |err| <= (K + 3) * u *
sum_k |x_k| |w_k| (u = 2^-24: K products and sums, plus at most a group-scale multiply and the
rounding of a scale into the weight), written as K * eps32 * (|x| @ |W|.T) with eps32 = 2u,
which also covers K < 3; the bias adds eps32 * |bias|.
int8 path: the activation quantization restated in numpy and the integer dot products computed
exactly in int64; only the float32 epilogue may differ: (n_blocks + 8) * eps32 times the sum of
|sx * q * (code - zero) * scale| + |sx * q * offset|, tight enough that one integer step in any
block fails the test (checked).
"""

import copy
import math
import pickle

import ml_dtypes
import numpy as np
import pytest

import quantcore
from quantcore.matmul import INT8_SCHEMES, activation_block

ISAS = quantcore.available_isas()
EPS32 = float(np.finfo(np.float32).eps)

# (scheme, group_size, symmetric, scale_dtype, in_features): in_features not a multiple of 64
# wherever the group allows it.
CONFIGS = [
    ("int4", 32, True, np.float16, 96),
    ("int4", 64, False, np.float16, 192),
    ("int4", 128, False, ml_dtypes.bfloat16, 256),
    ("int4", -1, True, np.float32, 100),
    ("int4", 0, False, np.float16, 96),
    ("int4", 4, True, np.float16, 20),
    ("int8", 32, True, np.float16, 96),
    ("int8", 48, False, np.float32, 144),
    ("int8", -1, True, np.float16, 100),
    ("int3", 32, False, np.float16, 96),
    ("int3", -1, True, np.float16, 100),
    ("int2", 16, True, np.float16, 80),
    ("int2", 0, False, np.float16, 96),
    ("nf4", 64, True, np.float16, 192),
    ("nf4", -1, True, np.float16, 100),
    ("fp8_e4m3fn", -1, True, np.float32, 100),
    ("fp8_e4m3fn", 32, True, np.float16, 96),
    ("fp8_e5m2", -1, True, np.float32, 96),
    ("fp8_e5m2", 0, True, np.float32, 100),
    ("q4_0", 32, True, np.float16, 96),
    ("q4_1", 32, False, np.float16, 96),
    ("q8_0", 32, True, np.float16, 96),
    # in_features a multiple of 64: the AVX-512 GEMV paths over 32-byte words of 4-bit codes
    ("q4_0", 32, True, np.float16, 256),
    ("int4", 32, False, ml_dtypes.bfloat16, 128),
    ("int4", 64, False, np.float16, 384),
    ("nf4", 32, True, np.float16, 256),
    ("nf4", 128, True, np.float32, 256),
    ("q4_1", 32, False, np.float16, 256),
    ("int4", 64, True, np.float16, 128),
    ("int4", 128, True, np.float16, 512),
    ("int4", 256, False, np.float32, 512),
    ("int4", 64, False, np.float16, 576),  # SmolLM2's d: 4.5 x 128
    ("q4_0", 32, True, np.float16, 320),
    # 2- and 3-bit codes with in_features a multiple of 64: the AVX-512 VBMI GEMV (a group of
    # 48 changes tables inside a step of 64 codes)
    ("int3", 64, False, np.float16, 256),
    ("int3", -1, True, ml_dtypes.bfloat16, 320),
    ("int3", 16, True, np.float16, 128),
    ("int2", 32, True, np.float32, 192),
    ("int2", 48, False, np.float16, 384),
    # fp8 with in_features a multiple of 64: the AVX-512 VBMI table GEMV
    ("fp8_e4m3fn", -1, True, np.float32, 256),
    ("fp8_e5m2", 64, True, np.float16, 192),
    ("fp8_e4m3fn", 128, True, ml_dtypes.bfloat16, 384),
]
# Float activations only (int8 activations would use blocks of 8, gcd(24, 32), where a block's
# integer step is below the test's float tolerance): the AVX2 GEMV's groups of 16 codes plus 8.
FLOAT_CONFIGS = CONFIGS + [("int8", 24, False, np.float16, 96)]
FLOAT_CONFIG_IDS = [f"{s}-g{g}-{'sym' if sym else 'asym'}-K{k}" for s, g, sym, _, k in FLOAT_CONFIGS]


def make(config, out_features=37, seed=0):
    scheme, g, sym, scale_dtype, k = config
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((out_features, k)).astype(np.float32)
    return quantcore.quantize(w, scheme, group_size=g, symmetric=sym, scale_dtype=scale_dtype)


def reference(x, qt, bias=None):
    """float64 x @ W.T (+ bias) and the float32 tolerance (module docstring)."""
    w = qt.dequantize().astype(np.float64).reshape(-1, qt.shape[-1])
    x64 = np.asarray(x, np.float64)
    ref = x64 @ w.T
    tol = qt.shape[-1] * EPS32 * (np.abs(x64) @ np.abs(w).T)
    if bias is not None:
        ref = ref + bias
        tol = tol + EPS32 * np.abs(bias)
    return ref, tol + 1e-30


def assert_close(y, ref, tol):
    assert y.dtype == np.float32 and y.shape == ref.shape
    err = np.abs(y.astype(np.float64) - ref)
    assert np.all(err <= tol), f"max err {err.max():.3g}, at tolerance {tol.reshape(-1)[np.argmax(err)]:.3g}"


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("config", FLOAT_CONFIGS, ids=FLOAT_CONFIG_IDS)
@pytest.mark.parametrize("batch", [1, 2, 7, 64])
def test_matches_float64_reference(isa, config, batch):
    qt = make(config)
    x = np.random.default_rng(batch).standard_normal((batch, qt.shape[1])).astype(np.float32)
    with quantcore.using_isa(isa):
        y = quantcore.matmul(x, qt)
    assert_close(y, *reference(x, qt))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("config", [CONFIGS[0], CONFIGS[4], CONFIGS[10], CONFIGS[15], CONFIGS[21]],
                         ids=lambda c: f"{c[0]}-g{c[1]}")
def test_batch_513_and_many_rows(isa, config):
    """Batch 513 (a GEMM panel tail of 1) and 600 rows (several GEMV tasks and GEMM tiles)."""
    qt = make(config, out_features=600)
    rng = np.random.default_rng(1)
    with quantcore.using_isa(isa):
        for batch in (1, 513):
            x = rng.standard_normal((batch, qt.shape[1])).astype(np.float32)
            assert_close(quantcore.matmul(x, qt), *reference(x, qt))


@pytest.mark.parametrize("isa", ISAS)
def test_layouts_out_bias_dtypes(isa):
    """Non-contiguous and 3-D x, out=, bias=, float16 / bfloat16 x, 1-D x and a 1-D weight."""
    qt = make(CONFIGS[1], out_features=31)
    rng = np.random.default_rng(2)
    bias = rng.standard_normal(31).astype(np.float32)
    with quantcore.using_isa(isa):
        for batch in (3, 20):
            big = rng.standard_normal((2, batch, 2 * qt.shape[1])).astype(np.float32)
            x = big[:, :, ::2]  # 3-D, non-contiguous
            out = np.full((2, batch, 31), np.nan, np.float32)
            y = quantcore.matmul(x, qt, bias=bias, out=out)
            assert y is out
            assert_close(y, *reference(x, qt, bias))
            out_t = np.full((31, 2 * batch), np.nan, np.float32).T  # out not C-contiguous
            y = quantcore.matmul(x.reshape(-1, qt.shape[1]), qt, out=out_t)
            assert y is out_t
            assert_close(y, *reference(x.reshape(-1, qt.shape[1]), qt))
        for dtype in (np.float16, ml_dtypes.bfloat16):
            x = rng.standard_normal((5, qt.shape[1])).astype(dtype)
            assert_close(quantcore.matmul(x, qt), *reference(x.astype(np.float32), qt))
        x1 = rng.standard_normal(qt.shape[1]).astype(np.float32)
        assert_close(quantcore.matmul(x1, qt), *reference(x1, qt))
        row = quantcore.quantize(rng.standard_normal(96).astype(np.float32), "int4", group_size=32)
        x = rng.standard_normal((4, 96)).astype(np.float32)
        y = quantcore.matmul(x, row)
        assert y.shape == (4,)
        ref, tol = reference(x, row)
        assert_close(y, ref[:, 0], tol[:, 0])
        out_row = np.full((2, 2), np.nan, np.float32)  # a 2-D out for a 1-D weight: x [2, 2, 96]
        assert quantcore.matmul(x.reshape(2, 2, 96), row, out=out_row) is out_row
        assert_close(out_row.reshape(-1), ref[:, 0], tol[:, 0])
        x2 = rng.standard_normal((6, qt.shape[1])).astype(np.float32)
        out2 = np.full((6, 31), np.nan, np.float32)  # 2-D x and out, both C-contiguous: written in place
        assert quantcore.matmul(x2, qt, out=out2) is out2
        assert_close(out2, *reference(x2, qt))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("k", [96, 128])
def test_e4m3fn_nan_code_propagates(isa, k):
    qt = make(("fp8_e4m3fn", -1, True, np.float32, k), out_features=5)
    codes = qt.codes.copy()
    codes[2, 17] = 0x7F  # S.1111.111: NaN
    nan_qt = quantcore.QuantizedTensor(qt.scheme, qt.shape, qt.group_size, qt.symmetric, codes, qt.scales, None)
    x = np.ones((1, k), np.float32)
    with quantcore.using_isa(isa):
        y = quantcore.matmul(x, nan_qt)
    assert np.isnan(y[0, 2]) and np.isfinite(np.delete(y[0], 2)).all()


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("scheme", ["fp8_e4m3fn", "fp8_e5m2"])
@pytest.mark.parametrize("k", [96, 256])
def test_fp8_every_finite_code(isa, scheme, k):
    """Every finite code (subnormals, zeros of both signs, the largest) in every position of a
    row, values from ml_dtypes, against the float64 reference."""
    dtype = ml_dtypes.float8_e4m3fn if scheme == "fp8_e4m3fn" else ml_dtypes.float8_e5m2
    all_codes = np.arange(256, dtype=np.uint8)
    finite = all_codes[np.isfinite(all_codes.view(dtype).astype(np.float32))]
    rows = -(-finite.size * 3 // k)  # each code three times, at shifting positions
    codes = np.resize(np.concatenate([finite, np.roll(finite, 7), np.roll(finite, 101)]), (rows, k))
    qt = make((scheme, -1, True, np.float32, k), out_features=rows)
    qt = quantcore.QuantizedTensor(qt.scheme, qt.shape, qt.group_size, qt.symmetric, codes, qt.scales, None)
    w = codes.view(dtype).astype(np.float64) * qt.scales.astype(np.float64).reshape(rows, -1)[:, :1]
    np.testing.assert_array_equal(qt.dequantize(), w.astype(np.float32))
    x = np.random.default_rng(4).standard_normal((3, k)).astype(np.float32)
    with quantcore.using_isa(isa):
        y = quantcore.matmul(x, qt)
    assert_close(y, *reference(x, qt))


def _int_parts(qt):
    """Per element: unpacked code, zero point, scale and offset, W = (code - zero) * scale + offset."""
    rows, cols = qt.codes.shape[0], qt.shape[-1]
    codes = np.stack([quantcore.unpack_bits(r, qt.bits, cols) for r in qt.codes]).astype(np.int64)
    width = cols if qt.group_size in (-1, 0) else qt.group_size

    def per_element(a):
        a = np.broadcast_to(np.asarray(a), (rows, cols // width) if np.ndim(a) else (rows, 1))
        return np.repeat(np.broadcast_to(a, (rows, a.shape[1])), width, axis=1)

    scale = per_element(qt.scales.astype(np.float64))
    offset = np.zeros((rows, cols))
    if qt.scheme == "q4_1":
        zero = np.zeros((rows, cols), np.int64)
        offset = per_element(qt.zeros.astype(np.float64))
    elif qt.zeros is not None:
        zero = per_element(qt.zeros.astype(np.int64))
    else:
        zero = np.full((rows, cols), 1 << (qt.bits - 1), np.int64)
    return codes, zero, scale, offset


def _quantize_activations(x, block):
    """The documented int8 activation quantization, restated: per block sx = absmax / 127 in
    float32, q = clip(rint(x / sx), -127, 127), q = 0 for an all-zero block."""
    m, cols = x.shape
    q = np.zeros((m, cols), np.int64)
    sx = np.zeros((m, cols), np.float32)  # per element, the scale of its block
    for k0 in range(0, cols, block):
        xb = x[:, k0:k0 + block]
        s = (np.abs(xb).max(axis=1) / np.float32(127)).astype(np.float32)
        safe = np.where(s == 0, np.float32(1), s)
        qb = np.clip(np.rint(xb / safe[:, None]), -127, 127)
        q[:, k0:k0 + block] = np.where(s[:, None] == 0, 0, qb)
        sx[:, k0:k0 + block] = s[:, None]
    return q, sx


INT8_CONFIGS = [c for c in CONFIGS if c[0] in INT8_SCHEMES] + [
    ("int4", 128, True, np.float16, 4096),  # blocks of 128: the integer sums span the group
    ("int4", 256, False, np.float16, 2048),  # blocks of 256, eight at a time (AVX2 streaming)
    ("int8", 64, False, np.float32, 192),
    ("int8", 256, True, np.float16, 512),
    ("q4_0", 32, True, np.float16, 640),  # blocks of 32 over 5 chunks of 128: four folded, one not
    ("q8_0", 32, True, np.float16, 640),  # 10 chunks of 64 bytes: eight folded, two not
    # every chunk folded, float16 scales (and uint8 zeros) read straight from the tensor
    ("q4_0", 32, True, np.float16, 1024),
    ("int4", 32, False, np.float16, 512),
    ("q8_0", 32, True, np.float16, 512),
    ("int8", 32, False, np.float16, 1024),
    ("int4", 32, False, ml_dtypes.bfloat16, 512),
    # 2- and 3-bit codes unpacked in registers (AVX-512 VBMI): blocks of one chunk of 64 codes,
    # of two and four chunks, of 32 (folded, float16 scales and uint8 zeros read in place; and
    # 10 chunks: eight folded, two not), other scale types
    ("int3", 64, False, np.float16, 256),
    ("int3", 128, True, np.float16, 512),
    ("int3", 256, True, ml_dtypes.bfloat16, 768),
    ("int3", 32, False, np.float16, 1024),
    ("int2", 32, True, np.float16, 640),
    ("int2", 64, False, np.float32, 192),
    ("int2", 128, False, np.float16, 384),
    # blocks of 32 under a scale per row, per tensor, or per group of 12 blocks
    ("int8", -1, True, np.float16, 256),
    ("int4", 0, False, np.float16, 512),
    ("int3", -1, False, np.float16, 320),
    ("int4", 384, True, np.float32, 768),
    ("int8", -1, False, np.float16, 1024),
    ("int4", -1, True, ml_dtypes.bfloat16, 1024),
    ("int4", 512, False, np.float16, 1024),
    # q4_1's offsets in the streaming GEMV: float16 m read in place (1024), 20 blocks (640)
    ("q4_1", 32, False, np.float16, 1024),
    ("q4_1", 32, False, np.float16, 640),
    # two blocks per chunk (4-bit in blocks of 64, 8-bit and 2- / 3-bit in blocks of 32): eight
    # chunks folded at a time, then a last four (its 8 blocks masked), then chunks one by one;
    # float16 scales and uint8 zeros read in place where every chunk is folded
    ("int4", 64, True, np.float16, 1024),
    ("int4", 64, False, np.float16, 1536),
    ("int4", 64, False, np.float32, 512),
    ("int4", 64, True, ml_dtypes.bfloat16, 1280),
    ("q8_0", 32, True, np.float16, 768),
    ("int8", 32, False, np.float16, 768),
    ("int3", 32, True, np.float16, 768),
    # 4-bit rows ending in half a chunk of 128 codes (the VNNI streaming GEMV's masked last
    # step): folded chunks before it, a scale per row or per tensor, q4_1's offsets, blocks of 64
    ("int4", 64, True, np.float16, 576),
    ("int4", 64, False, np.float16, 1088),
    ("q4_0", 32, True, np.float16, 576),
    ("int4", -1, True, np.float16, 576),
    ("int4", 0, False, np.float16, 448),
    ("q4_1", 32, False, np.float16, 704),
]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("config", INT8_CONFIGS, ids=lambda c: f"{c[0]}-g{c[1]}-{'sym' if c[2] else 'asym'}-K{c[4]}")
def test_int8_activations_exact_integer_reference(isa, config):
    qt = make(config, out_features=23)
    cols = qt.shape[1]
    block = activation_block(qt)
    codes, zero, scale, offset = _int_parts(qt)
    rng = np.random.default_rng(3)
    for batch in (1, 7, 64):
        x = rng.standard_normal((batch, cols)).astype(np.float32)
        x[0, :block] = 0  # an all-zero block
        q, sx = _quantize_activations(x, block)
        w_int = codes - zero  # [rows, cols] exact integers
        ref = np.zeros((batch, qt.codes.shape[0]))
        bound = np.zeros_like(ref)
        for k0 in range(0, cols, block):
            sl = slice(k0, k0 + block)
            idot = q[:, sl] @ w_int[:, sl].T  # int64: exact
            qsum = q[:, sl].sum(axis=1)
            s_x = sx[:, k0].astype(np.float64)[:, None]
            ref += s_x * (scale[:, k0][None, :] * idot + offset[:, k0][None, :] * qsum[:, None])
            bound += s_x * (np.abs(q[:, sl]) @ (np.abs(w_int[:, sl] * scale[:, sl]) + np.abs(offset[:, sl])).T)
        # integer dots exact: the float epilogue sums n_blocks block terms (SIMD: 8 int32 lanes
        # per block, each converted and scaled, 2 accumulators, a final 16-lane sum), each term
        # with at most 3 roundings: depth <= n_blocks + 8.
        n_blocks = -(-cols // block)
        tol = (n_blocks + 8) * EPS32 * bound + 1e-30
        with quantcore.using_isa(isa):
            y = quantcore.matmul(x, qt, activations="int8")
        assert_close(y, ref, tol)
        # for small K one integer step in a block would show: the tolerance is below the size of
        # a typical step (sx * |scale|); the K=4096 case runs the long loops, not this check
        if cols <= 256:
            step = np.median(sx[sx > 0]) * np.median(np.abs(scale))
            assert tol.max() < step


def test_pickle_and_deepcopy_hold_the_fields_alone_codes_aligned():
    # matmul keeps its per-tensor arguments on the tensor; they are not part of its state
    qt = quantcore.quantize(np.random.default_rng(0).standard_normal((64, 4096)).astype(np.float32), "q4_0",
                            group_size=32)
    x = np.ones((1, 4096), np.float32)
    before = len(pickle.dumps(qt))
    y = quantcore.matmul(x, qt)
    assert len(pickle.dumps(qt)) == before
    for copied in [pickle.loads(pickle.dumps(qt)) for _ in range(4)] + [copy.deepcopy(qt)]:
        assert not any(k.startswith("_") for k in vars(copied))
        assert copied.codes.ctypes.data % 64 == 0  # as __post_init__ keeps them
        np.testing.assert_array_equal(copied.codes, qt.codes)
        np.testing.assert_array_equal(quantcore.matmul(x, copied), y)


def test_perm_gathers_x():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((19, 96)).astype(np.float32)
    perm = rng.permutation(96)
    inner = quantcore.quantize(w[:, perm], "int4", group_size=32)
    qt = quantcore.QuantizedTensor(inner.scheme, inner.shape, inner.group_size, inner.symmetric, inner.codes,
                                   inner.scales, inner.zeros, perm=perm)
    x = rng.standard_normal((3, 96)).astype(np.float32)
    w_orig = np.empty((19, 96), np.float32)
    w_orig[:, perm] = inner.dequantize()
    np.testing.assert_array_equal(qt.dequantize(), w_orig)  # the field's contract, as matmul reads it
    for isa in ISAS:
        with quantcore.using_isa(isa):
            assert_close(quantcore.matmul(x, qt), *reference(x, qt))
            # the int8 path sees x[..., perm] against the permuted codes
            np.testing.assert_array_equal(quantcore.matmul(x, qt, activations="int8"),
                                          quantcore.matmul(np.ascontiguousarray(x[:, perm]), inner, activations="int8"))


def test_errors():
    qt = make(CONFIGS[0], out_features=5)
    x = np.ones((2, 96), np.float32)
    with pytest.raises(TypeError, match="matmul: qt must be a QuantizedTensor"):
        quantcore.matmul(x, np.ones((5, 96), np.float32))
    with pytest.raises(ValueError, match=r"matmul: x must have shape \[\.\.\., 96\].*\(2, 95\)"):
        quantcore.matmul(np.ones((2, 95), np.float32), qt)
    with pytest.raises(ValueError, match="matmul: x must have shape"):
        quantcore.matmul(np.float32(1), qt)
    with pytest.raises(TypeError, match="matmul: x must be float32, float16 or bfloat16 .*int64"):
        quantcore.matmul(np.ones((2, 96), np.int64), qt)
    with pytest.raises(TypeError, match="matmul: x must be"):
        quantcore.matmul("abc", qt)
    with pytest.raises(ValueError, match=r"matmul: bias must have shape \(5,\).*\(4,\)"):
        quantcore.matmul(x, qt, bias=np.ones(4, np.float32))
    with pytest.raises(TypeError, match="matmul: bias must be a float array"):
        quantcore.matmul(x, qt, bias=np.ones(5, np.int32))
    with pytest.raises(ValueError, match=r"matmul: out must have shape \(2, 5\)"):
        quantcore.matmul(x, qt, out=np.empty((2, 4), np.float32))
    with pytest.raises(ValueError, match="matmul: out must have dtype float32"):
        quantcore.matmul(x, qt, out=np.empty((2, 5), np.float64))
    read_only = np.empty((2, 5), np.float32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="matmul: out must be writable"):
        quantcore.matmul(x, qt, out=read_only)
    with pytest.raises(TypeError, match="matmul: out must be a numpy array"):
        quantcore.matmul(x, qt, out=[[0.0] * 5] * 2)
    with pytest.raises(ValueError, match="matmul: activations must be None or 'int8'.*'int4'"):
        quantcore.matmul(x, qt, activations="int4")
    for scheme in ("nf4", "fp8_e4m3fn"):
        other = quantcore.quantize(np.ones((5, 96), np.float32), scheme, group_size=32)
        with pytest.raises(ValueError, match=f"matmul: activations='int8' needs integer codes.*{scheme}"):
            quantcore.matmul(x, other, activations="int8")
    for value in (np.nan, np.inf, -np.inf):
        bad = x.copy()
        bad[1, 3] = value
        with pytest.raises(ValueError, match="matmul: x must be finite with activations='int8'"):
            quantcore.matmul(bad, qt, activations="int8")


@pytest.mark.parametrize("at", [0, 255, 256, 700, 1023, 1299])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_int8_nonfinite_x_anywhere(at, bad):
    """The int8 path's finite check scans whole blocks of 256 floats, then the tail: a NaN or inf
    in the first or last float of a block, inside one, or in the tail is found (x: 1300 floats)."""
    qt = quantcore.quantize(np.ones((3, 100), np.float32), "int8", group_size=-1)
    x = np.ones((13, 100), np.float32)
    x.reshape(-1)[at] = bad
    with pytest.raises(ValueError, match="matmul: x must be finite with activations='int8'"):
        quantcore.matmul(x, qt, activations="int8")
    x.reshape(-1)[at] = 1e30  # a large finite value passes
    assert np.isfinite(quantcore.matmul(x, qt, activations="int8")).all()


def test_empty_batch():
    qt = make(CONFIGS[0], out_features=5)
    assert quantcore.matmul(np.ones((0, 96), np.float32), qt).shape == (0, 5)
