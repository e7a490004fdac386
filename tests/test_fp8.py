"""FP8 encode/decode/quantize, proven against ml_dtypes (the outside reference)."""

import ml_dtypes
import numpy as np
import pytest

import quantcore
from quantcore import fp8

ISAS = quantcore.available_isas()
FORMATS = {"e4m3fn": ml_dtypes.float8_e4m3fn, "e5m2": ml_dtypes.float8_e5m2}
MAX = {"e4m3fn": 448.0, "e5m2": 57344.0}
SOURCES = [np.float32, np.float64, np.float16, ml_dtypes.bfloat16]


def bits_of(a):
    return np.ascontiguousarray(a).view(np.dtype(f"u{a.dtype.itemsize}"))


def ml_encode(x, dtype):
    """ml_dtypes' conversion. For float64 its array astype rounds through float32 (a double
    rounding), while its scalar constructor rounds the double once; the latter is the correct
    reference for our single-rounding float64 path (see test_float64_astype_double_rounds)."""
    x = np.asarray(x)
    if x.dtype == np.float64:
        return np.array([dtype(v) for v in x.reshape(-1).tolist()], dtype=dtype).reshape(x.shape)
    with np.errstate(invalid="ignore", over="ignore"):
        return x.astype(dtype)


def ml_encode_saturated(x, fmt):
    """Saturating reference: ml_dtypes on inputs clipped to +-max (NaN passes through clip)."""
    with np.errstate(invalid="ignore"):
        x64 = np.asarray(x).astype(np.float64)
        clipped = np.clip(x64, -MAX[fmt], MAX[fmt]).astype(np.asarray(x).dtype)  # +-max is exact in every source type
    return ml_encode(clipped, FORMATS[fmt])


def special_values(dtype):
    """Zeros, subnormal boundaries, every tie between FP8 neighbours, max, max + half ulp, infs, NaNs."""
    vals = [0.0, -0.0, np.inf, -np.inf, np.nan, 448.0, 464.0, 464.0001, 465.0, 480.0, 57344.0,
            61439.0, 61440.0, 65535.0, 1e30, 2.0**-6, 2.0**-7, 2.0**-9, 2.0**-10, 1.5 * 2.0**-10,
            2.0**-14, 2.0**-16, 2.0**-17, 1.5 * 2.0**-17, 1e-45, 1e-300]
    out = np.array(vals, np.float64)
    for fmt, dt in FORMATS.items():
        grid = np.arange(256, dtype=np.uint8).view(dt).astype(np.float64)
        grid = np.unique(grid[np.isfinite(grid)])
        mids = (grid[:-1] + grid[1:]) / 2  # exact ties
        out = np.concatenate([out, grid, mids, np.nextafter(mids, 0), np.nextafter(mids, np.inf)])
    out = np.concatenate([out, -out])
    with np.errstate(over="ignore"):
        return out.astype(dtype)


def nan_payload_f32():
    bits = np.array([0x7F800001, 0xFF800001, 0x7FC00000, 0xFFC00000, 0x7FFFFFFF, 0x7FA00000], np.uint32)
    return bits.view(np.float32)


# ---------------------------------------------------------------- decode: all 256 codes


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("out_dtype", [np.float32, np.float16, ml_dtypes.bfloat16])
def test_decode_all_256_codes_matches_ml_dtypes(isa, fmt, out_dtype):
    codes = np.arange(256, dtype=np.uint8).view(FORMATS[fmt])
    expected = codes.astype(out_dtype)
    with quantcore.using_isa(isa):
        got = fp8.decode(codes, out_dtype)
        got_uint8 = fp8.decode(codes.view(np.uint8), out_dtype, fmt=fmt)
    assert got.dtype == np.dtype(out_dtype)
    np.testing.assert_array_equal(bits_of(got), bits_of(expected))
    np.testing.assert_array_equal(bits_of(got_uint8), bits_of(expected))


@pytest.mark.parametrize("fmt", FORMATS)
def test_encode_decode_round_trip_every_non_nan_code(fmt):
    codes = np.arange(256, dtype=np.uint8).view(FORMATS[fmt])
    values = fp8.decode(codes)
    keep = ~np.isnan(values)
    for isa in ISAS:
        with quantcore.using_isa(isa):
            back = fp8.encode(values[keep], fmt)
        np.testing.assert_array_equal(back.view(np.uint8), codes.view(np.uint8)[keep])


# ---------------------------------------------------------------- encode: exhaustive 16-bit


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("src", [np.float16, ml_dtypes.bfloat16], ids=["float16", "bfloat16"])
def test_encode_all_16_bit_inputs(isa, fmt, src):
    x = np.arange(1 << 16, dtype=np.uint16).view(src)
    with quantcore.using_isa(isa):
        got = fp8.encode(x, fmt)
        got_sat = fp8.encode(x, fmt, saturate=True)
    np.testing.assert_array_equal(got.view(np.uint8), ml_encode(x, FORMATS[fmt]).view(np.uint8))
    np.testing.assert_array_equal(got_sat.view(np.uint8), ml_encode_saturated(x, fmt).view(np.uint8))


# ---------------------------------------------------------------- encode: float32 / float64


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("src", SOURCES, ids=lambda t: np.dtype(t).name)
def test_encode_special_values(isa, fmt, src):
    x = special_values(src)
    with quantcore.using_isa(isa):
        got = fp8.encode(x, fmt)
        got_sat = fp8.encode(x, fmt, saturate=True)
    np.testing.assert_array_equal(got.view(np.uint8), ml_encode(x, FORMATS[fmt]).view(np.uint8))
    np.testing.assert_array_equal(got_sat.view(np.uint8), ml_encode_saturated(x, fmt).view(np.uint8))


def test_documented_overflow_policy():
    x = np.array([464.0, 465.0, -465.0, np.inf, -np.inf, np.nan, 1e9], np.float32)
    e4 = fp8.encode(x, "e4m3fn").view(np.uint8)
    np.testing.assert_array_equal(e4, [0x7E, 0x7F, 0xFF, 0x7F, 0xFF, 0x7F, 0x7F])  # NaN on overflow
    e4s = fp8.encode(x, "e4m3fn", saturate=True).view(np.uint8)
    np.testing.assert_array_equal(e4s, [0x7E, 0x7E, 0xFE, 0x7E, 0xFE, 0x7F, 0x7E])  # +-448, NaN stays
    e5 = fp8.encode(x, "e5m2").view(np.uint8)
    np.testing.assert_array_equal(e5, [0x5F, 0x5F, 0xDF, 0x7C, 0xFC, 0x7E, 0x7C])  # inf on overflow
    e5s = fp8.encode(x, "e5m2", saturate=True).view(np.uint8)
    np.testing.assert_array_equal(e5s, [0x5F, 0x5F, 0xDF, 0x7B, 0xFB, 0x7E, 0x7B])


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_encode_float32_strided_bit_patterns(isa, fmt):
    # A strided subset of all 2^32 patterns (every 4099th, a prime stride hits every
    # exponent and mantissa residue) plus NaN payloads; the full sweep is the slow test below.
    bits = np.arange(0, 1 << 32, 4099, dtype=np.uint64).astype(np.uint32)
    x = np.concatenate([bits.view(np.float32), nan_payload_f32()])
    with quantcore.using_isa(isa):
        got = fp8.encode(x, fmt)
        got_sat = fp8.encode(x, fmt, saturate=True)
    np.testing.assert_array_equal(got.view(np.uint8), ml_encode(x, FORMATS[fmt]).view(np.uint8))
    np.testing.assert_array_equal(got_sat.view(np.uint8), ml_encode_saturated(x, fmt).view(np.uint8))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_encode_float64_rounds_once(isa, fmt):
    # Doubles just off an FP8 tie: rounding through float32 first would land on the tie and
    # then round to even, the wrong way. ml_dtypes rounds the double directly, as we must.
    rng = np.random.default_rng(7)
    codes = np.arange(256, dtype=np.uint8).view(FORMATS[fmt]).astype(np.float64)
    grid = np.unique(codes[np.isfinite(codes)])
    mids = (grid[:-1] + grid[1:]) / 2
    eps = np.abs(mids) * 2.0**-40
    near = np.concatenate([mids + eps, mids - eps])
    random_bits = rng.integers(0, 2**63, 200_000, dtype=np.uint64) | (rng.integers(0, 2, 200_000, dtype=np.uint64) << 63)
    x = np.concatenate([near, -near, random_bits.view(np.float64), rng.standard_normal(100_000) * 300])
    with np.errstate(over="ignore", invalid="ignore"):
        through_f32 = x.astype(np.float32).astype(FORMATS[fmt]).view(np.uint8)
    assert np.any(through_f32 != ml_encode(x, FORMATS[fmt]).view(np.uint8)), \
        "test data must contain cases where float32 double rounding differs"
    with quantcore.using_isa(isa):
        got = fp8.encode(x, fmt)
        got_sat = fp8.encode(x, fmt, saturate=True)
    np.testing.assert_array_equal(got.view(np.uint8), ml_encode(x, FORMATS[fmt]).view(np.uint8))
    np.testing.assert_array_equal(got_sat.view(np.uint8), ml_encode_saturated(x, fmt).view(np.uint8))


@pytest.mark.parametrize("fmt", FORMATS)
def test_float64_astype_double_rounds(fmt):
    """Documents the one place we differ from ml_dtypes' astype: float64 arrays. Just below the
    tie 432 (between 416 and 448), the double rounds to 416; astype goes through float32, where
    it becomes exactly 432, and the tie then rounds to even, 448. We round once."""
    x = np.array([np.nextafter(432.0, 0.0), np.nextafter(-432.0, 0.0)])
    ours = fp8.decode(fp8.encode(x, "e4m3fn"))
    np.testing.assert_array_equal(ours, [416.0, -416.0])
    np.testing.assert_array_equal(x.astype(ml_dtypes.float8_e4m3fn).astype(np.float32), [448.0, -448.0])
    np.testing.assert_array_equal(ml_encode(x, ml_dtypes.float8_e4m3fn).astype(np.float32), [416.0, -416.0])


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_encode_all_float32_bit_patterns(fmt):
    """All 2^32 float32 inputs, in 2^24 chunks, both overflow policies, the default ISA."""
    dt = FORMATS[fmt]
    sat_code = {"e4m3fn": 0x7E, "e5m2": 0x7B}[fmt]
    limit = np.float32(MAX[fmt])
    chunk = 1 << 24
    base = np.arange(chunk, dtype=np.uint32)
    out = np.empty(chunk, dt)
    out_sat = np.empty(chunk, dt)
    for start in range(0, 1 << 32, chunk):
        x = (base + np.uint32(start)).view(np.float32)
        fp8.encode(x, fmt, out=out)
        fp8.encode(x, fmt, saturate=True, out=out_sat)
        expected = ml_encode(x, dt).view(np.uint8)
        if not np.array_equal(out.view(np.uint8), expected):
            bad = np.nonzero(out.view(np.uint8) != expected)[0][:5]
            pytest.fail(f"{fmt} mismatch at bit patterns {[hex(int(b) + start) for b in bad]}")
        # Saturating reference: ml_dtypes on clipped inputs; only |x| > max can differ.
        over = np.abs(x) > limit
        expected_sat = expected.copy()
        expected_sat[over] = ml_encode(np.clip(x[over], -limit, limit), dt).view(np.uint8)
        assert np.all(expected_sat[over] & 0x7F == sat_code)
        np.testing.assert_array_equal(out_sat.view(np.uint8), expected_sat)


# ---------------------------------------------------------------- every ISA against scalar


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 65, 4099])
@pytest.mark.parametrize("src", SOURCES, ids=lambda t: np.dtype(t).name)
def test_every_isa_matches_scalar_with_tails(isa, n, src):
    rng = np.random.default_rng(n)
    with np.errstate(over="ignore"):  # 1e5 * N(0,1) overflows float16 to inf: fine, inf is an input too
        x = (rng.standard_normal(n) * rng.choice([1e-4, 1.0, 300.0, 1e5], n)).astype(src)
    codes = rng.integers(0, 256, n, dtype=np.uint8)
    for fmt in FORMATS:
        with quantcore.using_isa("scalar"):
            ref = [fp8.encode(x, fmt, saturate=s).view(np.uint8) for s in (False, True)]
            ref_dec = [bits_of(fp8.decode(codes, t, fmt=fmt)) for t in (np.float32, np.float16, ml_dtypes.bfloat16)]
        with quantcore.using_isa(isa):
            got = [fp8.encode(x, fmt, saturate=s).view(np.uint8) for s in (False, True)]
            got_dec = [bits_of(fp8.decode(codes, t, fmt=fmt)) for t in (np.float32, np.float16, ml_dtypes.bfloat16)]
        for a, b in zip(ref + ref_dec, got + got_dec):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("isa", ISAS)
def test_unaligned_non_contiguous_and_0d_inputs(isa):
    rng = np.random.default_rng(3)
    buf = rng.standard_normal(1001).astype(np.float32)
    unaligned = np.frombuffer(buf.tobytes()[4:], np.float32)[:999]  # offset by one element...
    byte_offset = np.frombuffer(b"\0" + buf.tobytes(), np.uint8)[1:].view(np.float32)  # ...and by one byte
    strided = rng.standard_normal((64, 48)).astype(np.float32)[::3, ::2]
    transposed = rng.standard_normal((33, 17)).astype(np.float64).T
    zero_d = np.array(3.3, np.float32)
    with quantcore.using_isa(isa):
        for x in (unaligned, byte_offset, strided, transposed, zero_d):
            got = fp8.encode(x)
            assert got.shape == x.shape
            np.testing.assert_array_equal(got.view(np.uint8), ml_encode(x, ml_dtypes.float8_e4m3fn).view(np.uint8))
            dec = fp8.decode(got[::-1] if got.ndim else got)
            np.testing.assert_array_equal(dec, (got[::-1] if got.ndim else got).astype(np.float32))


def test_out_argument_contiguous_and_strided():
    x = np.linspace(-500, 500, 64, dtype=np.float32).reshape(8, 8)
    out = np.empty((8, 8), ml_dtypes.float8_e5m2)
    assert fp8.encode(x, "e5m2", out=out) is out
    np.testing.assert_array_equal(out.view(np.uint8), ml_encode(x, ml_dtypes.float8_e5m2).view(np.uint8))
    big = np.zeros((8, 16), ml_dtypes.float8_e5m2)
    view = big[:, ::2]
    assert fp8.encode(x, "e5m2", out=view) is view
    np.testing.assert_array_equal(view.view(np.uint8), out.view(np.uint8))
    assert not big[:, 1::2].view(np.uint8).any()
    dec_out = np.empty((8, 8), np.float32)
    assert fp8.decode(out, out=dec_out) is dec_out
    np.testing.assert_array_equal(dec_out, out.astype(np.float32))


def test_empty_arrays():
    for shape in [(0,), (3, 0), (0, 5)]:
        x = np.empty(shape, np.float32)
        codes = fp8.encode(x)
        assert codes.shape == shape and codes.dtype == ml_dtypes.float8_e4m3fn
        assert fp8.decode(codes).shape == shape
    q = fp8.quantize(np.empty((0, 4), np.float32), granularity="row")
    assert q.dequantize().shape == (0, 4)


def test_lists_and_python_floats_are_accepted():
    got = fp8.encode([0.1, -2.5, 1000.0])
    np.testing.assert_array_equal(got.view(np.uint8), ml_encode(np.array([0.1, -2.5, 1000.0]), ml_dtypes.float8_e4m3fn).view(np.uint8))


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("bad", [np.arange(4), np.array([True, False]), np.ones(3, np.complex64),
                                 np.array([1.0, "a"], dtype=object), np.ones(3, np.uint8)])
def test_encode_rejects_non_float_arrays(bad):
    with pytest.raises(TypeError, match="encode: x must be float32, float64, float16 or bfloat16"):
        fp8.encode(bad)


def test_encode_rejects_strings_and_none():
    for bad in ("1.0", None):
        with pytest.raises(TypeError, match="encode: x"):
            fp8.encode(bad)


def test_encode_rejects_unknown_format():
    with pytest.raises(ValueError, match=r"encode: fmt must be one of \['e4m3fn', 'e5m2'\] \(got 'e4m3'\)"):
        fp8.encode(np.ones(3, np.float32), "e4m3")


def test_encode_accepts_ml_dtypes_types_as_format():
    x = np.ones(3, np.float32)
    np.testing.assert_array_equal(fp8.encode(x, ml_dtypes.float8_e5m2).view(np.uint8), fp8.encode(x, "e5m2").view(np.uint8))


def test_out_errors():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"encode: out must have shape \(2, 3\)"):
        fp8.encode(x, out=np.empty((3, 2), ml_dtypes.float8_e4m3fn))
    with pytest.raises(ValueError, match="encode: out must have dtype float8_e4m3fn"):
        fp8.encode(x, out=np.empty((2, 3), ml_dtypes.float8_e5m2))
    ro = np.empty((2, 3), ml_dtypes.float8_e4m3fn)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="encode: out must be writable"):
        fp8.encode(x, out=ro)
    with pytest.raises(TypeError, match="encode: out must be a numpy array"):
        fp8.encode(x, out=[0] * 6)
    codes = fp8.encode(x)
    with pytest.raises(ValueError, match="decode: out must have dtype float32"):
        fp8.decode(codes, out=np.empty((2, 3), np.float64))


def test_decode_errors():
    with pytest.raises(ValueError, match="decode: fmt is required when codes are uint8"):
        fp8.decode(np.zeros(3, np.uint8))
    with pytest.raises(TypeError, match="decode: codes must be float8_e4m3fn, float8_e5m2 or uint8"):
        fp8.decode(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="decode: fmt='e5m2' conflicts"):
        fp8.decode(np.zeros(3, ml_dtypes.float8_e4m3fn), fmt="e5m2")
    with pytest.raises(ValueError, match="decode: dtype must be float32, float16 or bfloat16"):
        fp8.decode(np.zeros(3, ml_dtypes.float8_e4m3fn), np.int32)


# ---------------------------------------------------------------- scaled quantization


def reference_quantize(x2d, fmt, bh, bw):
    """Straight numpy restatement: scale = amax / max per block, codes = ml_dtypes(x / scale) saturated."""
    rows, cols = x2d.shape
    blocks = x2d.reshape(rows // bh, bh, cols // bw, bw)
    amax = np.abs(blocks).max(axis=(1, 3)).astype(np.float32)
    scale = np.where(amax > 0, amax / np.float32(MAX[fmt]), np.float32(1)).astype(np.float32)
    scaled = (blocks / scale[:, None, :, None]).astype(np.float32)
    codes = ml_encode(np.clip(scaled, -MAX[fmt], MAX[fmt]), FORMATS[fmt]).reshape(rows, cols)
    return codes, scale


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("granularity, block", [("tensor", None), ("row", "row"), (16, (1, 16)), (48, (1, 48)), ((4, 16), (4, 16))])
def test_quantize_matches_reference_and_bounds_error(isa, fmt, granularity, block):
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((12, 96)) * rng.choice([0.01, 1, 50], (12, 1))).astype(np.float32)
    x[3] = 0.0  # an all-zero row gets scale 1
    with quantcore.using_isa(isa):
        q = fp8.quantize(x, fmt, granularity=granularity)
        deq = q.dequantize()
    bh, bw = {None: x.shape, "row": (1, 96)}.get(block, block) if not isinstance(block, tuple) else block
    codes, scale = reference_quantize(x, fmt, bh, bw)
    np.testing.assert_array_equal(q.codes.view(np.uint8), codes.view(np.uint8))
    np.testing.assert_array_equal(np.asarray(q.scales).reshape(-1), scale.reshape(-1))
    expected = (codes.astype(np.float32).reshape(x.shape[0] // bh, bh, -1, bw) * scale[:, None, :, None]).reshape(x.shape)
    np.testing.assert_array_equal(deq, expected)
    # relative error bounded by the format's precision (half ulp = 2^-(m+1)) wherever x / scale
    # lies in the normal range (below it the subnormal step is coarser)
    m = {"e4m3fn": 3, "e5m2": 2}[fmt]
    full_scale = np.broadcast_to(scale[:, None, :, None], (x.shape[0] // bh, bh, x.shape[1] // bw, bw)).reshape(x.shape)
    normal = np.abs(x / full_scale) >= {"e4m3fn": 2.0**-6, "e5m2": 2.0**-14}[fmt]
    rel = np.abs(deq - x)[normal] / np.abs(x)[normal]
    assert rel.max() <= 2.0 ** -(m + 1) * (1 + 1e-6)


def test_quantize_scale_shapes_and_nd_input():
    x = np.random.default_rng(2).standard_normal((2, 3, 64)).astype(np.float32)
    assert fp8.quantize(x).scales.shape == ()
    assert fp8.quantize(x, granularity="row").scales.shape == (6,)
    assert fp8.quantize(x, granularity=32).scales.shape == (6, 2)
    q = fp8.quantize(x, granularity=32)
    assert q.dequantize().shape == x.shape
    assert "Fp8Tensor" in repr(q) and "e4m3fn" in repr(q)


def test_quantize_errors():
    x = np.ones((4, 100), np.float32)
    with pytest.raises(ValueError, match=r"group size must be a positive divisor of the last dimension \(got group size 128, last dimension 100\)"):
        fp8.quantize(x, granularity=128)
    with pytest.raises(ValueError, match=r"block \(3, 100\) must divide the shape \(4, 100\)"):
        fp8.quantize(x, granularity=(3, 100))
    with pytest.raises(ValueError, match="granularity must be"):
        fp8.quantize(x, granularity="column")
    with pytest.raises(ValueError, match="block granularity needs a 2-D array"):
        fp8.quantize(np.ones((2, 2, 4), np.float32), granularity=(1, 2))
    bad = x.copy()
    bad[2, 7] = np.nan
    for g in ("tensor", "row", 10, (2, 50)):
        with pytest.raises(ValueError, match="x contains NaN or inf"):
            fp8.quantize(bad, granularity=g)
    with pytest.raises(TypeError, match="quantize: x must be float32"):
        fp8.quantize(np.ones((2, 2), np.int32))
    with pytest.raises(ValueError, match="fmt must be one of"):
        fp8.quantize(x, "fp8")


@pytest.mark.parametrize("granularity", ["tensor", "row", 32, (2, 32)], ids=str)
def test_quantize_into_out_reuses_memory(granularity):
    rng = np.random.default_rng(5)
    a, b = (rng.standard_normal((4, 64)).astype(np.float32) * k for k in (1.0, 30.0))
    q = fp8.quantize(a, granularity=granularity)
    codes, scales = q.codes, q.scales
    again = fp8.quantize(b, granularity=granularity, out=q)
    assert again is q and q.codes is codes and q.scales is scales
    fresh = fp8.quantize(b, granularity=granularity)
    np.testing.assert_array_equal(q.codes.view(np.uint8), fresh.codes.view(np.uint8))
    np.testing.assert_array_equal(q.scales, fresh.scales)


def test_quantize_out_errors():
    x = np.ones((4, 64), np.float32)
    q = fp8.quantize(x, granularity="row")
    with pytest.raises(ValueError, match="out must match fmt, granularity and shape"):
        fp8.quantize(x, granularity=32, out=q)
    with pytest.raises(ValueError, match="out must match"):
        fp8.quantize(x, "e5m2", granularity="row", out=q)
    with pytest.raises(TypeError, match="out must be an Fp8Tensor"):
        fp8.quantize(x, granularity="row", out=np.empty((4, 64)))
