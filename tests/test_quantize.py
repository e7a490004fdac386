"""quantize / QuantizedTensor: codes against a numpy restatement of the math, every ISA bit-exact
against scalar, error bounds, special groups, save/load, and every validation."""

import ml_dtypes
import numpy as np
import pytest

import quantcore
from quantcore.quantize import NF4_CODEBOOK, QuantizedTensor

ISAS = quantcore.available_isas()
INT_SCHEMES = {"int8": 8, "int4": 4, "int3": 3, "int2": 2}
ALL_SCHEMES = [*INT_SCHEMES, "nf4", "fp8_e4m3fn", "fp8_e5m2"]
BF16 = np.dtype(ml_dtypes.bfloat16)

# The NF4 data type as published: QLoRA (Dettmers et al. 2023), Appendix E, and bitsandbytes'
# csrc/kernels.cu. Typed here, not taken from quantcore.
NF4_PUBLISHED = [
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]

# (rows, in_features, group_size): tails of the 8- and 16-lane loops, of the 32-code AVX2 step
# and of the 64-code pack step, groups that start mid-byte (int3, odd group sizes), -1 and 0.
SHAPES = [
    (3, 1, -1), (2, 15, 5), (4, 17, 17), (3, 33, 11), (2, 4100, 100), (2, 4100, -1),
    (5, 256, 128), (3, 96, 0), (1, 200, 40), (6, 130, 65),
]


# ---------------------------------------------------------------------------------------------
# The math restated in numpy (float32 throughout, np.rint = nearest-even), independent of the
# C++ code: unpacked codes, float32 scales and zeros for [rows, cols] float32 w.
def reference(w, scheme, group_size, symmetric, scale_dtype=np.float16):
    rows, cols = w.shape
    g = cols if group_size == -1 else (w.size if group_size == 0 else group_size)
    wg = w.reshape(-1, g)  # [groups, g], row-major over (row, group)
    lo, hi = wg.min(axis=1), wg.max(axis=1)
    absmax = np.maximum(-lo, hi)
    constant = (lo == hi) & (lo != 0)
    if scheme == "nf4":
        exact = absmax
    elif symmetric:
        qmax = 2 ** (INT_SCHEMES[scheme] - 1) - 1
        exact = np.where(constant, absmax, absmax / np.float32(qmax))
    else:
        levels = 2 ** INT_SCHEMES[scheme] - 1
        span = np.maximum(hi, np.float32(0)) - np.minimum(lo, np.float32(0))
        exact = np.where(constant, absmax, span / np.float32(levels))
    dtype = np.dtype(scale_dtype)
    with np.errstate(over="ignore"):
        scale = exact.astype(dtype).astype(np.float32)
    scale = np.where(scale == 0, np.float32(ml_dtypes.finfo(dtype).smallest_subnormal), scale)
    scale = np.where(absmax == 0, np.float32(1), scale).astype(np.float32)
    y = wg / scale[:, None]
    zeros = None
    if scheme == "nf4":
        book = np.array(NF4_PUBLISHED, np.float64)
        codes = np.abs(y.astype(np.float64)[..., None] - book).argmin(axis=-1)
        unclamped = np.ones_like(y, bool)
    elif symmetric:
        bits = INT_SCHEMES[scheme]
        q = np.rint(y)
        unclamped = np.abs(q) <= qmax
        codes = np.clip(q, -qmax, qmax) + 2 ** (bits - 1)
    else:
        zero = np.minimum(np.rint(-np.minimum(lo, np.float32(0)) / scale), levels)
        q = np.rint(y) + zero[:, None]
        unclamped = (q >= 0) & (q <= levels)
        codes = np.clip(q, 0, levels)
        zeros = zero.astype(np.uint8)
    shape = (1, 1) if group_size == 0 else (rows, cols // g)
    return (codes.reshape(rows, cols).astype(np.uint8), scale.reshape(shape),
            None if zeros is None else zeros.reshape(shape), unclamped.reshape(rows, cols))


def pack_rows(codes, bits):
    """Each row packed on its own (the layout of QuantizedTensor.codes), via np.packbits."""
    rows, cols = codes.shape
    stream = (codes.astype(np.uint16)[..., None] >> np.arange(bits)) & 1
    return np.packbits(stream.astype(np.uint8).reshape(rows, cols * bits), axis=1, bitorder="little")


def sample(shape, seed=0):
    """Heavy-tailed weights with a few outliers, the way real layers look."""
    rng = np.random.default_rng(seed)
    w = rng.standard_t(4, size=shape).astype(np.float32) * np.float32(0.02)
    w.reshape(-1)[rng.integers(0, w.size, max(1, w.size // 500))] *= 8
    return w


@pytest.fixture(params=ISAS)
def isa(request):
    with quantcore.using_isa(request.param):
        yield request.param


# ---------------------------------------------------------------------------------------------
# nf4 ignores `symmetric`: one entry for it.
INT_AND_NF4 = [(s, sym) for s in INT_SCHEMES for sym in (False, True)] + [("nf4", True)]


@pytest.mark.parametrize("scheme,symmetric", INT_AND_NF4)
@pytest.mark.parametrize("rows,cols,group_size", SHAPES)
def test_codes_match_numpy_restatement(isa, scheme, symmetric, rows, cols, group_size):
    w = sample((rows, cols), seed=rows * cols)
    q = quantcore.quantize(w, scheme, group_size=group_size, symmetric=symmetric)
    codes, scales, zeros, _ = reference(w, scheme, group_size, symmetric)
    bits = 4 if scheme == "nf4" else INT_SCHEMES[scheme]
    np.testing.assert_array_equal(q.scales, scales.astype(np.float16))
    np.testing.assert_array_equal(q.codes, pack_rows(codes, bits))
    if zeros is None:
        assert q.zeros is None
    else:
        np.testing.assert_array_equal(q.zeros, zeros)


def special_groups(rows=3, group=32, n_groups=37):
    """Rows of 37 groups (two blocks of 16 for the AVX-512 parameter kernel, then 5 more) with
    all-zero, constant, tiny-range and subnormal groups inside the blocks."""
    w = sample((rows, group * n_groups), seed=21)
    g = lambda row, k: (row, slice(k * group, (k + 1) * group))  # noqa: E731
    w[g(0, 1)] = 0.0
    w[g(0, 5)] = 0.75
    w[g(1, 6)] = -3.25
    w[g(1, 17)] = np.linspace(-1e-9, 2e-9, group, dtype=np.float32)  # float16 scale rounds to 0
    w[g(2, 3)] = np.linspace(-1e-40, 3e-40, group, dtype=np.float32)  # float32 subnormals
    w[g(2, 20)] = 0.0
    w[g(2, 36)] = 1.5
    return w


@pytest.mark.parametrize("scale_dtype", [np.float16, np.float32, BF16])
@pytest.mark.parametrize("scheme,symmetric", INT_AND_NF4)
def test_blocks_of_groups_with_special_groups(isa, scheme, symmetric, scale_dtype):
    w = special_groups()
    q = quantcore.quantize(w, scheme, group_size=32, symmetric=symmetric, scale_dtype=scale_dtype)
    codes, scales, zeros, _ = reference(w, scheme, 32, symmetric, scale_dtype)
    np.testing.assert_array_equal(q.scales.astype(np.float32), scales)
    np.testing.assert_array_equal(q.codes, pack_rows(codes, q.bits))
    if zeros is not None:
        np.testing.assert_array_equal(q.zeros, zeros)
    with quantcore.using_isa("scalar"):
        expected = q.dequantize()
    np.testing.assert_array_equal(q.dequantize().view(np.uint32), expected.view(np.uint32))


@pytest.mark.parametrize("column", [5, 16 * 32 + 7, 36 * 32 + 31])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_inside_blocks_of_groups(isa, column, bad):
    w = special_groups()
    w[1, column] = bad
    with pytest.raises(ValueError, match=rf"NaN or inf \(first at row 1, column {column}\)"):
        quantcore.quantize(w, "int4", group_size=32)


def test_scale_overflow_inside_a_block_of_groups(isa):
    w = special_groups()
    w[2, 9 * 32 + 4] = 1e6
    with pytest.raises(ValueError, match=r"row 2, columns 288\.\.319 is not finite in float16"):
        quantcore.quantize(w, "int4", group_size=32, symmetric=True)


@pytest.mark.parametrize("scale_dtype", [np.float32, BF16, np.float16])
@pytest.mark.parametrize("scheme,symmetric", [("int4", False), ("int8", True), ("int3", False), ("nf4", True)])
def test_scale_dtypes_match_restatement(isa, scheme, symmetric, scale_dtype):
    w = sample((8, 384), seed=3)
    q = quantcore.quantize(w, scheme, group_size=64, symmetric=symmetric, scale_dtype=scale_dtype)
    codes, scales, zeros, _ = reference(w, scheme, 64, symmetric, scale_dtype)
    assert q.scales.dtype == np.dtype(scale_dtype)
    np.testing.assert_array_equal(q.scales.astype(np.float32), scales)
    np.testing.assert_array_equal(q.codes, pack_rows(codes, q.bits))


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
@pytest.mark.parametrize("symmetric", [False, True])
def test_every_isa_bit_exact_with_scalar(scheme, symmetric):
    w = sample((7, 4100), seed=11)
    w[2, 100:200] = 0.0  # an all-zero group
    w[3, 300:400] = -0.75  # a constant group
    results = {}
    for name in ISAS:
        with quantcore.using_isa(name):
            q = quantcore.quantize(w, scheme, group_size=100, symmetric=symmetric)
            results[name] = (q, q.dequantize())
    q0, d0 = results["scalar"]
    for name, (q, d) in results.items():
        np.testing.assert_array_equal(q.codes, q0.codes, err_msg=name)
        np.testing.assert_array_equal(q.scales, q0.scales, err_msg=name)
        if q0.zeros is not None:
            np.testing.assert_array_equal(q.zeros, q0.zeros, err_msg=name)
        np.testing.assert_array_equal(d.view(np.uint32), d0.view(np.uint32), err_msg=name)
        # Dequantize data written under one ISA with every other.
        for other in ISAS:
            with quantcore.using_isa(other):
                np.testing.assert_array_equal(q.dequantize().view(np.uint32), d0.view(np.uint32))


@pytest.mark.parametrize("scheme", list(INT_SCHEMES))
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("scale_dtype", [np.float16, np.float32, BF16])
def test_error_at_most_half_a_step_where_not_clamped(isa, scheme, symmetric, scale_dtype):
    w = sample((16, 640), seed=5)
    q = quantcore.quantize(w, scheme, group_size=128, symmetric=symmetric, scale_dtype=scale_dtype)
    _, _, _, unclamped = reference(w, scheme, 128, symmetric, scale_dtype)
    deq = q.dequantize()
    step = np.repeat(q.scales.astype(np.float32), 128, axis=1)
    # x / scale and (code - zero) * scale each round once (relative 2^-24).
    eps = np.float32(2.0 ** -23) * (np.abs(w) + np.abs(deq))
    err = np.abs(w - deq)
    assert unclamped.mean() > 0.99
    assert np.all(err[unclamped] <= step[unclamped] / 2 + eps[unclamped])
    # A code is clamped only because the scale was rounded down (relative error up to 2^-9 for
    # bfloat16, times up to 255 levels) and the zero point rounded: the miss stays under 2 steps.
    assert np.all(err <= 2 * step + eps)


def test_nf4_codebook_is_the_published_table():
    np.testing.assert_array_equal(NF4_CODEBOOK, np.array(NF4_PUBLISHED, np.float32))
    assert NF4_CODEBOOK.dtype == np.float32 and not NF4_CODEBOOK.flags.writeable


def test_nf4_code_book_entries_map_to_their_own_codes(isa):
    # One group per row holding +-1 (so the scale is exactly 1) and every entry.
    book = np.array(NF4_PUBLISHED, np.float32)
    w = np.concatenate([book, book[::-1]]).reshape(1, 32)
    q = quantcore.quantize(w, "nf4", group_size=-1)
    assert q.scales[0, 0] == 1
    codes = quantcore.unpack_bits(q.codes, 4, 32)
    np.testing.assert_array_equal(codes, np.concatenate([np.arange(16), np.arange(16)[::-1]]))
    np.testing.assert_array_equal(q.dequantize(), w)


def test_nf4_ties_go_to_the_lower_entry(isa):
    # y exactly on a float32 midpoint between entries 8 and 9 goes to 8, as bitsandbytes' '>'.
    mid = np.float32((np.float64(NF4_PUBLISHED[8]) + np.float64(NF4_PUBLISHED[9])) / 2)
    w = np.array([[1.0, mid, np.nextafter(mid, np.float32(1))]], np.float32)
    codes = quantcore.unpack_bits(quantcore.quantize(w, "nf4", group_size=-1).codes, 4, 3)
    np.testing.assert_array_equal(codes, [15, 8, 9])


@pytest.mark.parametrize("scheme", list(INT_SCHEMES))
@pytest.mark.parametrize("symmetric", [False, True])
def test_values_on_the_grid_come_back_exactly(isa, scheme, symmetric):
    bits = INT_SCHEMES[scheme]
    rng = np.random.default_rng(bits)
    scale = np.float32(np.float16(0.0123))  # representable in the float16 scale
    rows, group = 6, 64
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        k = rng.integers(-qmax, qmax + 1, (rows, group))
        k[:, 0], k[:, 1] = qmax, -qmax  # pin absmax to qmax * scale
        w = k.astype(np.float32) * scale
    else:
        levels = 2 ** bits - 1
        zero = rng.integers(1, levels, (rows, 1))
        k = rng.integers(0, levels + 1, (rows, group))
        k[:, 0], k[:, 1] = 0, levels  # pin the range to levels * scale
        w = (k - zero).astype(np.float32) * scale
    q = quantcore.quantize(w, scheme, group_size=group, symmetric=symmetric)
    np.testing.assert_array_equal(q.scales.astype(np.float32), scale)
    np.testing.assert_array_equal(q.dequantize(), w)


def constant_groups():
    w = np.zeros((4, 96), np.float32)
    w[1, 32:64] = 0.375  # constant, representable in float16
    w[2, :32] = -1.5
    w[3] = 2.0 ** -20  # tiny constant, still a float16 value
    return w


@pytest.mark.parametrize("scheme,symmetric", INT_AND_NF4)
def test_all_zero_and_constant_groups_are_exact(isa, scheme, symmetric):
    w = constant_groups()
    q = quantcore.quantize(w, scheme, group_size=32, symmetric=symmetric)
    np.testing.assert_array_equal(q.dequantize(), w)
    assert q.scales[0, 0] == 1  # all-zero group: scale 1, not 0


@pytest.mark.parametrize("scheme", ["fp8_e4m3fn", "fp8_e5m2"])
def test_fp8_all_zero_exact_and_constant_groups_close(scheme):
    # FP8 keeps quantcore.fp8's scale (absmax / max_finite): zero groups are exact, constant
    # groups come back within the float16 scale's rounding: half an ulp (2^-11 relative), or,
    # where absmax / max_finite is a float16 subnormal, half of 2^-24 times max_finite.
    w = constant_groups()
    deq = quantcore.quantize(w, scheme, group_size=32).dequantize()
    np.testing.assert_array_equal(deq[w == 0], 0)
    max_finite = quantcore.fp8.MAX_FINITE[scheme[4:]]
    np.testing.assert_allclose(deq, w, rtol=2.0 ** -10, atol=max_finite * 2.0 ** -25)


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_raise(isa, scheme, bad):
    w = sample((3, 64))
    w[2, 37] = bad
    with pytest.raises(ValueError, match=r"NaN or inf \(first at row 2, column 37\)"):
        quantcore.quantize(w, scheme, group_size=32)
    with pytest.raises(ValueError, match="NaN or inf"):
        quantcore.quantize(w, scheme, group_size=0)


@pytest.mark.parametrize("scheme,symmetric", INT_AND_NF4)
@pytest.mark.parametrize("scale_dtype", [np.float16, np.float32, BF16])
def test_denormal_weights(isa, scheme, symmetric, scale_dtype):
    rng = np.random.default_rng(1)
    w = (rng.standard_normal((4, 64)) * 1e-39).astype(np.float32)  # float32 subnormals
    w[0, :32] = np.float32(1.4e-45)  # the smallest subnormal, constant group
    q = quantcore.quantize(w, scheme, group_size=32, symmetric=symmetric, scale_dtype=scale_dtype)
    codes, scales, zeros, unclamped = reference(w, scheme, 32, symmetric, scale_dtype)
    np.testing.assert_array_equal(q.scales.astype(np.float32), scales)
    np.testing.assert_array_equal(q.codes, pack_rows(codes, q.bits))
    deq = q.dequantize()
    assert np.all(np.isfinite(deq))
    if scheme != "nf4":
        step = np.repeat(scales, 32, axis=1)
        assert np.all(np.abs(w - deq)[unclamped] <= step[unclamped] / 2)


def test_scale_rounding_matches_numpy_astype(isa):
    # nf4's scale is absmax itself, so a group [x, 0, ..., 0] stores x rounded to the scale type:
    # values over float16's whole range, its subnormals, and exact ties between neighbours.
    rng = np.random.default_rng(3)
    x = np.exp2(rng.uniform(-30, 15.99, 40_000)).astype(np.float32)
    on_grid = np.arange(1, 0x7BFF, 7, dtype=np.uint16).view(np.float16).astype(np.float32)
    neighbours = np.arange(1, 0x7BFF, 7, dtype=np.uint16) + 1
    halfway = ((on_grid.astype(np.float64) + neighbours.view(np.float16).astype(np.float64)) / 2).astype(np.float32)
    x = np.concatenate([x, on_grid, halfway, np.float32([65504, 65519.996, 2.0 ** -24, 2.0 ** -25, 2.0 ** -26])])
    x = x[: x.size // 16 * 16]  # whole blocks of 16 groups, so AVX-512 rounds them in vectors
    w = np.zeros((x.size, 16), np.float32)
    w[:, 3] = x
    for dtype in (np.float16, BF16):
        q = quantcore.quantize(w, "nf4", group_size=16, scale_dtype=dtype)
        with np.errstate(over="ignore"):
            expected = x.astype(dtype)
        expected = np.where(expected == 0, np.array(ml_dtypes.finfo(dtype).smallest_subnormal, dtype), expected)
        np.testing.assert_array_equal(q.scales[:, 0].view(np.uint16), expected.view(np.uint16))


def test_tiny_range_gets_the_smallest_float16_scale(isa):
    w = np.full((1, 8), 1e-9, np.float32)
    w[0, 0] = -1e-9
    q = quantcore.quantize(w, "int4", symmetric=True, group_size=8)
    assert q.scales[0, 0] == np.finfo(np.float16).smallest_subnormal
    assert np.abs(q.dequantize() - w).max() <= 1e-9


@pytest.mark.parametrize("scheme", ["int4", "int8", "nf4", "fp8_e4m3fn"])
def test_scale_overflowing_float16_raises(isa, scheme):
    w = np.full((2, 32), 1.0, np.float32)
    w[1, 5] = 3e9
    with pytest.raises(ValueError, match=r"row 1, columns 0\.\.31 is not finite in float16 .*scale_dtype=np.float32"):
        quantcore.quantize(w, scheme, group_size=32, symmetric=True)
    q = quantcore.quantize(w, scheme, group_size=32, symmetric=True, scale_dtype=np.float32)
    assert np.isfinite(q.dequantize()).all()


@pytest.mark.parametrize("group_size", [-1, 0])
@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_group_size_row_and_tensor(isa, scheme, group_size):
    w = sample((5, 48), seed=9)
    q = quantcore.quantize(w, scheme, group_size=group_size)
    assert q.group_size == group_size
    assert q.scales.shape == ((5, 1) if group_size == -1 else (1, 1))
    if scheme in ("fp8_e4m3fn", "fp8_e5m2"):
        fmt = scheme[4:]
        ref = quantcore.fp8.quantize(w, fmt, granularity="row" if group_size == -1 else "tensor")
        scales = np.asarray(ref.scales, np.float32).reshape(q.scales.shape).astype(np.float16)
        np.testing.assert_array_equal(q.scales, scales)
        y = w / np.repeat(scales.astype(np.float32), 48 // scales.shape[1], axis=1)
        np.testing.assert_array_equal(q.codes, quantcore.fp8.encode(y, fmt, saturate=True).view(np.uint8))
    else:
        codes, scales, _, _ = reference(w, scheme, group_size, False)
        np.testing.assert_array_equal(q.scales.astype(np.float32), scales)
        np.testing.assert_array_equal(q.codes, pack_rows(codes, q.bits))


@pytest.mark.parametrize("scheme", ["fp8_e4m3fn", "fp8_e5m2"])
def test_fp8_uses_the_rounded_scale(scheme):
    fmt = scheme[4:]
    w = sample((4, 256), seed=2)
    q = quantcore.quantize(w, scheme, group_size=64)
    ref32 = quantcore.fp8.quantize(w, fmt, granularity=64)
    scales = np.asarray(ref32.scales, np.float32).astype(np.float16)
    np.testing.assert_array_equal(q.scales, scales)
    y = w / np.repeat(scales.astype(np.float32), 64, axis=1)
    np.testing.assert_array_equal(q.codes, quantcore.fp8.encode(y, fmt, saturate=True).view(np.uint8))
    expected = quantcore.fp8.decode(q.codes, fmt=fmt) * np.repeat(scales.astype(np.float32), 64, axis=1)
    np.testing.assert_array_equal(q.dequantize(), expected)
    # With float32 scales it is exactly quantcore.fp8.quantize.
    q32 = quantcore.quantize(w, scheme, group_size=64, scale_dtype=np.float32)
    np.testing.assert_array_equal(q32.codes, ref32.codes.view(np.uint8))


def test_one_dimensional_input_is_one_row():
    w = sample((1, 256))
    q1 = quantcore.quantize(w[0], "int4", group_size=64)
    q2 = quantcore.quantize(w, "int4", group_size=64)
    assert q1.shape == (256,) and q1.codes.shape == (1, 128)
    np.testing.assert_array_equal(q1.codes, q2.codes)
    assert q1.dequantize().shape == (256,)
    np.testing.assert_array_equal(q1.dequantize(), q2.dequantize()[0])


@pytest.mark.parametrize("dtype", [np.float16, BF16])
@pytest.mark.parametrize("scheme", ["int4", "nf4", "fp8_e4m3fn"])
def test_float16_and_bfloat16_input(dtype, scheme):
    w = sample((4, 128)).astype(dtype)
    q = quantcore.quantize(w, scheme, group_size=32)
    ref = quantcore.quantize(w.astype(np.float32), scheme, group_size=32)
    np.testing.assert_array_equal(q.codes, ref.codes)
    np.testing.assert_array_equal(q.scales, ref.scales)


def test_non_contiguous_input():
    w = sample((64, 64))
    np.testing.assert_array_equal(quantcore.quantize(w.T, "int4", group_size=32).codes,
                                  quantcore.quantize(np.ascontiguousarray(w.T), "int4", group_size=32).codes)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, BF16])
def test_dequantize_dtypes_and_out(dtype):
    w = sample((8, 64))
    q = quantcore.quantize(w, "int4", group_size=32)
    full = q.dequantize()
    got = q.dequantize(dtype)
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, full.astype(dtype))
    out = np.empty(w.shape, dtype)
    assert q.dequantize(dtype, out=out) is out
    np.testing.assert_array_equal(out, full.astype(dtype))


def test_sizes_and_repr():
    w = sample((32, 1024))
    q = quantcore.quantize(w, "int4", group_size=128)
    assert q.codes.shape == (32, 512) and q.scales.shape == (32, 8) and q.zeros.shape == (32, 8)
    assert q.nbytes == 32 * 512 + 32 * 8 * 2 + 32 * 8
    assert q.bits_per_weight == pytest.approx(4 + 16 / 128 + 8 / 128)
    qs = quantcore.quantize(w, "int3", group_size=128, symmetric=True, scale_dtype=np.float32)
    assert qs.codes.shape == (32, 384) and qs.zeros is None
    assert qs.bits_per_weight == pytest.approx(3 + 32 / 128)
    text = repr(q)
    assert text.startswith("QuantizedTensor(scheme='int4', shape=(32, 1024), group_size=128, symmetric=False")
    assert "bits_per_weight=4.188" in text and "float16" in text


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_codes_start_on_a_cache_line(tmp_path, scheme):
    # quantize allocates them so; a QuantizedTensor built from codes that do not start on a
    # 64-byte boundary keeps an aligned copy with the same bytes; a loaded one is aligned too
    q = quantcore.quantize(sample((5, 64), seed=3), scheme, group_size=32)
    assert q.codes.ctypes.data % 64 == 0
    buf = np.empty(q.codes.nbytes + 64, np.uint8)
    start = (16 - buf.ctypes.data) % 64
    off = buf[start:start + q.codes.nbytes].reshape(q.codes.shape)
    off[...] = q.codes
    assert off.ctypes.data % 64 == 16
    r = quantcore.QuantizedTensor(q.scheme, q.shape, q.group_size, q.symmetric, off, q.scales, q.zeros)
    assert r.codes.ctypes.data % 64 == 0 and r.codes.shape == off.shape and np.array_equal(r.codes, off)
    assert r.nbytes == q.nbytes
    np.testing.assert_array_equal(r.dequantize(), q.dequantize())
    q.save(tmp_path / "q.qc")
    assert quantcore.load(tmp_path / "q.qc").codes.ctypes.data % 64 == 0


# ---------------------------------------------------------------------------------------------
# save / load


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("scale_dtype", [np.float16, np.float32, BF16])
def test_save_load_round_trip(tmp_path, scheme, symmetric, scale_dtype):
    w = sample((6, 96), seed=4)
    q = quantcore.quantize(w, scheme, group_size=32, symmetric=symmetric, scale_dtype=scale_dtype)
    path = tmp_path / "w.safetensors"
    q.save(path)
    r = quantcore.load(path)
    assert (r.scheme, r.shape, r.group_size, r.symmetric) == (q.scheme, q.shape, q.group_size, q.symmetric)
    assert r.scales.dtype == q.scales.dtype
    np.testing.assert_array_equal(r.codes, q.codes)
    np.testing.assert_array_equal(r.scales.view(np.uint8), q.scales.view(np.uint8))
    if q.zeros is None:
        assert r.zeros is None
    else:
        np.testing.assert_array_equal(r.zeros, q.zeros)
    np.testing.assert_array_equal(r.dequantize(), q.dequantize())
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temporary left behind


@pytest.mark.parametrize("group_size", [-1, 0])
def test_save_load_row_and_tensor_groups_and_1d(tmp_path, group_size):
    q = quantcore.quantize(sample((100,)), "int4", group_size=group_size)
    q.save(str(tmp_path / "v.safetensors"))
    r = quantcore.load(str(tmp_path / "v.safetensors"))
    assert r.shape == (100,) and r.group_size == group_size
    np.testing.assert_array_equal(r.dequantize(), q.dequantize())


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "q.safetensors"
    quantcore.quantize(sample((8, 256)), "int4", group_size=64).save(path)
    return path


def test_load_truncated_file(saved):
    data = saved.read_bytes()
    for keep in (4, 20, len(data) // 2, len(data) - 1):
        saved.write_bytes(data[:keep])
        with pytest.raises(ValueError, match="not a readable safetensors file"):
            quantcore.load(saved)


def test_load_corrupted_payload(saved):
    data = bytearray(saved.read_bytes())
    data[-100] ^= 0x10  # a flipped bit in the tensor data
    saved.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupted: the checksum of 'codes' does not match"):
        quantcore.load(saved)


def test_load_corrupted_header(saved):
    data = bytearray(saved.read_bytes())
    data[9] = ord("#")  # break the JSON header
    saved.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        quantcore.load(saved)


def test_load_foreign_safetensors_file(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "model.safetensors"
    save_file({"weight": np.ones((4, 4), np.float32)}, str(path))
    with pytest.raises(ValueError, match="not a quantcore QuantizedTensor file"):
        quantcore.load(path)
    save_file({"weight": np.ones((4, 4), np.float32)}, str(path), metadata={"format": "pt"})
    with pytest.raises(ValueError, match="not a quantcore QuantizedTensor file"):
        quantcore.load(path)


def test_load_inconsistent_metadata(tmp_path):
    from safetensors.numpy import save_file
    import json
    import zlib

    q = quantcore.quantize(sample((4, 64)), "int4", group_size=32)
    tensors = {"codes": q.codes, "scales": q.scales, "zeros": q.zeros}
    meta = {"format": "quantcore.QuantizedTensor", "format_version": "1", "scheme": "int4",
            "shape": "[4, 128]", "group_size": "32", "symmetric": "false", "scale_dtype": "float16",
            "crc32": json.dumps({k: zlib.crc32(v.data) for k, v in tensors.items()})}
    path = tmp_path / "bad.safetensors"
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(ValueError, match="inconsistent contents: .*codes must be uint8 of shape"):
        quantcore.load(path)
    save_file(tensors, str(path), metadata={**meta, "shape": "[4, 64]", "format_version": "7"})
    with pytest.raises(ValueError, match="format_version '7'"):
        quantcore.load(path)
    save_file(tensors, str(path), metadata={**meta, "shape": "[4, 64", "crc32": meta["crc32"]})
    with pytest.raises(ValueError, match="corrupted metadata"):
        quantcore.load(path)


@pytest.mark.parametrize("field,value,message", [
    ("scales", np.zeros((4, 2), np.float16), "scales must be positive and finite"),
    ("scales", np.full((4, 2), np.inf, np.float16), "scales must be positive and finite"),
    ("zeros", np.full((4, 2), 16, np.uint8), r"zeros must be in 0\.\.15"),
])
def test_load_out_of_range_values(tmp_path, field, value, message):
    from safetensors.numpy import save_file
    import json
    import zlib

    q = quantcore.quantize(sample((4, 64)), "int4", group_size=32)
    tensors = {"codes": q.codes, "scales": q.scales, "zeros": q.zeros, field: value}
    meta = {"format": "quantcore.QuantizedTensor", "format_version": "1", "scheme": "int4",
            "shape": "[4, 64]", "group_size": "32", "symmetric": "false", "scale_dtype": "float16",
            "crc32": json.dumps({k: zlib.crc32(v.data) for k, v in tensors.items()})}
    path = tmp_path / "bad.safetensors"
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(ValueError, match=message):
        quantcore.load(path)


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        quantcore.load(tmp_path / "absent.safetensors")


def test_failed_save_leaves_no_file(tmp_path, monkeypatch):
    import safetensors.numpy

    q = quantcore.quantize(sample((4, 64)), "int4", group_size=32)
    target = tmp_path / "q.safetensors"
    target.write_bytes(b"previous contents")

    def failing_save(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half a fi")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.numpy, "save_file", failing_save)
    with pytest.raises(OSError, match="disk full"):
        q.save(target)
    assert target.read_bytes() == b"previous contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.safetensors"]


# ---------------------------------------------------------------------------------------------
# argument validation


def test_unknown_scheme_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"scheme must be one of \['int8', 'int4', 'int3', 'int2', 'nf4'.*got 'q5_k'"):
        quantcore.quantize(sample((2, 32)), "q5_k")


def test_group_size_must_divide_in_features():
    with pytest.raises(ValueError, match=r"^quantize: group_size must divide in_features \(got in_features=4100, group_size=128\)$"):
        quantcore.quantize(np.zeros((2, 4100), np.float32), "int4", group_size=128)


def test_group_size_values_and_types():
    w = sample((2, 32))
    with pytest.raises(ValueError, match=r"group_size must be a positive divisor of in_features, -1 .* \(got -2\)"):
        quantcore.quantize(w, "int4", group_size=-2)
    with pytest.raises(TypeError, match="group_size must be an int"):
        quantcore.quantize(w, "int4", group_size=32.0)
    with pytest.raises(TypeError, match="group_size must be an int"):
        quantcore.quantize(w, "int4", group_size=True)


def test_w_type_shape_and_size():
    with pytest.raises(TypeError, match="w must be float32, float16 or bfloat16 .*int64"):
        quantcore.quantize(np.zeros((2, 32), np.int64), "int4")
    with pytest.raises(TypeError, match="w must be float32, float16 or bfloat16 .*float64"):
        quantcore.quantize(np.zeros((2, 32)), "int4")
    with pytest.raises(TypeError, match="w must be an array"):
        quantcore.quantize("weights", "int4")
    with pytest.raises(ValueError, match=r"w must be 1-D or 2-D .*\(2, 2, 32\)"):
        quantcore.quantize(np.zeros((2, 2, 32), np.float32), "int4")
    with pytest.raises(ValueError, match="w must not be empty"):
        quantcore.quantize(np.zeros((0, 32), np.float32), "int4")


def test_symmetric_and_scale_dtype():
    w = sample((2, 32))
    with pytest.raises(TypeError, match="symmetric must be a bool"):
        quantcore.quantize(w, "int4", group_size=32, symmetric="yes")
    with pytest.raises(ValueError, match="scale_dtype must be float16, float32 or bfloat16"):
        quantcore.quantize(w, "int4", group_size=32, scale_dtype=np.float64)
    with pytest.raises(ValueError, match="scale_dtype must be float16, float32 or bfloat16"):
        quantcore.quantize(w, "int4", group_size=32, scale_dtype="float8")


def test_dequantize_arguments():
    q = quantcore.quantize(sample((2, 32)), "int4", group_size=32)
    with pytest.raises(ValueError, match="dtype must be float32, float16 or bfloat16"):
        q.dequantize(np.int32)
    with pytest.raises(ValueError, match=r"out must have shape \(2, 32\)"):
        q.dequantize(out=np.empty((2, 31), np.float32))
    with pytest.raises(ValueError, match="out must have dtype float16"):
        q.dequantize(np.float16, out=np.empty((2, 32), np.float32))


def test_inconsistent_quantized_tensor_is_refused():
    q = quantcore.quantize(sample((2, 32)), "int4", group_size=16)
    fields = dict(scheme=q.scheme, shape=q.shape, group_size=q.group_size, symmetric=q.symmetric,
                  codes=q.codes, scales=q.scales, zeros=q.zeros)
    with pytest.raises(ValueError, match="codes must be uint8 of shape"):
        QuantizedTensor(**{**fields, "codes": q.codes[:, :-1].copy()})
    with pytest.raises(ValueError, match="scales must be"):
        QuantizedTensor(**{**fields, "scales": q.scales[:, :1].copy()})
    with pytest.raises(ValueError, match="zeros must be uint8 of shape"):
        QuantizedTensor(**{**fields, "zeros": None})
    with pytest.raises(ValueError, match="zeros must be None for scheme 'int4' with symmetric=True"):
        QuantizedTensor(**{**fields, "symmetric": True})
    with pytest.raises(ValueError, match="always symmetric"):
        QuantizedTensor(**{**fields, "scheme": "nf4", "zeros": None})
    with pytest.raises(ValueError, match="shape must be a tuple"):
        QuantizedTensor(**{**fields, "shape": (2, 2, 8)})
    with pytest.raises(ValueError, match="group_size must divide"):
        QuantizedTensor(**{**fields, "group_size": 5})


def test_random_configurations_every_isa_matches_scalar():
    rng = np.random.default_rng(2024)
    schemes = [*INT_SCHEMES, "nf4"]
    for _ in range(40):
        rows = int(rng.integers(1, 9))
        group = int(rng.choice([1, 3, 8, 16, 24, 32, 48, 64, 100, 128]))
        n_groups = int(rng.integers(1, 40))
        cols = group * n_groups
        w = sample((rows, cols), seed=int(rng.integers(1 << 30)))
        w *= np.float32(10.0 ** rng.uniform(-6, 3))
        w[rng.random(w.shape) < 0.05] = 0.0
        group_size = int(rng.choice([group, -1, 0]))
        scheme = str(rng.choice(schemes))
        symmetric = bool(rng.integers(2))
        scale_dtype = [np.float16, np.float32, BF16][int(rng.integers(3))]
        results = []
        for name in ISAS:
            with quantcore.using_isa(name):
                try:
                    q = quantcore.quantize(w, scheme, group_size=group_size, symmetric=symmetric, scale_dtype=scale_dtype)
                    results.append((q.codes, q.scales.view(np.uint8), q.zeros, q.dequantize().view(np.uint32)))
                except ValueError as exc:  # float16 scale overflow on the large draws
                    results.append(str(exc))
        for got in results[1:]:
            if isinstance(results[0], str):
                assert got == results[0]
                continue
            for a, b in zip(got, results[0]):
                np.testing.assert_array_equal(a, b)
