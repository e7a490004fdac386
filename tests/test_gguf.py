"""GGUF block formats against the gguf package (gguf-py), bit for bit, on every ISA."""

from __future__ import annotations

import warnings

import ml_dtypes
import numpy as np
import pytest

import quantcore
from quantcore import gguf as qg

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as GT  # noqa: E402
from gguf import quants as gq  # noqa: E402

ISAS = quantcore.available_isas()
QUANT_TYPES = list(qg.QUANTIZE_TYPES)
# The types the installed gguf package can dequantize (newer packages know more types).
GGUF_DEQUANT_TYPES = [
    name
    for name, t in qg.TYPES.items()
    if name.upper() in GT.__members__ and (name in ("f32", "f16") or GT[name.upper()] in gq._type_traits)
]


def gguf_quantize(w: np.ndarray, name: str) -> np.ndarray:
    # gguf-py's numpy warns on the 1/d overflow of denormal blocks and fp16 overflow of d.
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return gq.quantize(w, GT[name.upper()])


def gguf_dequantize(data: np.ndarray, name: str, shape: tuple) -> np.ndarray:
    t = qg.TYPES[name]
    rows = data.reshape(-1, shape[-1] // t.block_size * t.type_size)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.asarray(gq.dequantize(rows, GT[name.upper()]), np.float32).reshape(shape)


def bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


# ---- data -------------------------------------------------------------------------------------


def make_data(kind: str, rows: int, cols: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (rows, cols)
    if kind == "normal":
        return rng.standard_normal(shape, dtype=np.float32)
    if kind == "student_t":  # heavy tails, as real weights have
        return rng.standard_t(2.5, size=shape).astype(np.float32) * np.float32(0.02)
    if kind == "outliers":  # normal with sparse large outliers
        w = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)
        mask = rng.random(shape) < 0.002
        w[mask] *= np.float32(300)
        return w
    if kind == "zeros":
        return np.zeros(shape, np.float32)
    if kind == "constant":  # each block constant, positive, negative or zero
        values = rng.choice(np.float32([1.5, -0.25, 0.0, 7.0, -1e-3]), size=(rows, cols // 32))
        return np.repeat(values, 32, axis=1).astype(np.float32)
    if kind == "ties":  # scales of exactly 1 and values on .5 after scaling
        halves = rng.integers(-16, 16, size=shape).astype(np.float32) + np.float32(0.5)
        w = np.clip(halves, -7.5, 7.5)
        blocks = w.reshape(rows, -1, 32)
        blocks[:, :, 0] = -8.0  # q4_0: max = -8 -> d = 1
        blocks[:, :, 1] = 7.5
        return w
    if kind == "ties_q8":  # amax 127 -> d = 1 and values k + 0.5
        w = rng.integers(-127, 127, size=shape).astype(np.float32) + np.float32(0.5)
        w.reshape(rows, -1, 32)[:, :, 3] = 127.0
        return w
    if kind == "ties_q4_1":  # min 0, max 15 -> d = 1, values k + 0.5
        w = rng.integers(0, 15, size=shape).astype(np.float32) + np.float32(0.5)
        blocks = w.reshape(rows, -1, 32)
        blocks[:, :, 5] = 0.0
        blocks[:, :, 9] = 15.0
        return w
    if kind == "ties_q8_neighbors":  # k + 0.5 and its float neighbours, with d = 1
        half = np.arange(-127, 127, dtype=np.float32) + np.float32(0.5)
        near = np.concatenate([half, np.nextafter(half, np.float32(np.inf)), np.nextafter(half, np.float32(-np.inf))])
        w = rng.choice(near, size=shape).astype(np.float32)
        w.reshape(rows, -1, 32)[:, :, 7] = -127.0
        return w
    if kind == "sign_ties":  # +a and -a both hold the largest |x|, in either order
        w = rng.uniform(-1, 1, size=shape).astype(np.float32)
        blocks = w.reshape(rows, -1, 32)
        first = rng.integers(0, 16, size=blocks.shape[:2])
        sign = np.where(rng.random(blocks.shape[:2]) < 0.5, np.float32(1), np.float32(-1))
        np.put_along_axis(blocks, first[..., None], (2 * sign)[..., None], axis=2)
        np.put_along_axis(blocks, (first + 16)[..., None], (-2 * sign)[..., None], axis=2)
        return w
    if kind == "signed_zeros":  # blocks of +0.0 and -0.0 only (the sign of max picks d's sign)
        return np.where(rng.random(shape) < 0.5, np.float32(0.0), np.float32(-0.0)).astype(np.float32)
    if kind == "range_overflow":  # max - min overflows float32 (q4_1: d = inf, 1 / d = 0)
        w = rng.uniform(-3e38, 3e38, size=shape).astype(np.float32)
        w.reshape(rows, -1, 32)[:, :, 0] = np.float32(3.4e38)
        w.reshape(rows, -1, 32)[:, :, 1] = np.float32(-3.4e38)
        return w
    if kind == "tiny":  # normal floats whose d underflows fp16 but 1/d stays finite
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(1e-36)
    if kind == "denormal":  # float32 subnormals: 1/d overflows, codes become 0
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(1e-40)
    if kind == "huge":  # d overflows fp16 to inf
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(1e7)
    if kind == "mixed_blocks":  # one block of each kind per row
        kinds = ["normal", "zeros", "constant", "tiny", "denormal", "outliers", "sign_ties",
                 "ties_q8_neighbors", "range_overflow"]  # fmt: skip
        parts = [make_data(k, rows, 32, seed + i) for i, k in enumerate(kinds)]
        w = np.concatenate(parts * (cols // (32 * len(kinds)) + 1), axis=1)
        return np.ascontiguousarray(w[:, :cols])
    raise ValueError(kind)


DATA_KINDS = [
    "normal",
    "student_t",
    "outliers",
    "zeros",
    "constant",
    "ties",
    "ties_q8",
    "ties_q4_1",
    "ties_q8_neighbors",
    "sign_ties",
    "range_overflow",
    "tiny",
    "denormal",
    "huge",
    "mixed_blocks",
]
SHAPES = [(1, 32), (3, 96), (64, 4096)]


# ---- quantization -----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("kind", DATA_KINDS)
@pytest.mark.parametrize("name", QUANT_TYPES)
def test_quantize_matches_gguf(name, kind, shape):
    w = make_data(kind, *shape)
    expected = gguf_quantize(w, name)
    got = qg.quantize_blocks(w, name)
    assert got.dtype == np.uint8 and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("isa", ISAS)
def test_quantize_q4_0_signed_zeros_match_gguf(isa):
    # All-zero blocks take the sign of their first value: d = -0.0 for +0.0 first, +0.0 for
    # -0.0 first (gguf-py's argmax rule; ggml's loop would give -0.0 for both).
    w = make_data("signed_zeros", 8, 256)
    with quantcore.using_isa(isa):
        np.testing.assert_array_equal(qg.quantize_blocks(w, "q4_0"), gguf_quantize(w, "q4_0"))
        np.testing.assert_array_equal(qg.quantize_blocks(w, "q8_0"), gguf_quantize(w, "q8_0"))


@pytest.mark.parametrize("isa", ISAS)
def test_quantize_q4_1_signed_zeros_follow_ggml(isa):
    # gguf-py's numpy min/max leave the sign of a zero min or max to the data order; we follow
    # ggml's loop: the first zero sets the sign of m, and d = (z - z) / 15 = +0.0.
    w = make_data("signed_zeros", 4, 512)
    w[:, :32] = 0.0  # one all +0.0 block per row
    w[:, 32:64] = np.float32(-0.0)  # one all -0.0 block per row
    with quantcore.using_isa(isa):
        blocks = qg.quantize_blocks(w, "q4_1").reshape(4, -1, 20)
    d = blocks[..., 0:2].copy().view(np.uint16)[..., 0]
    m = blocks[..., 2:4].copy().view(np.uint16)[..., 0]
    first_is_negative = np.signbit(w.reshape(4, -1, 32)[..., 0])
    np.testing.assert_array_equal(d, 0)
    np.testing.assert_array_equal(m, np.where(first_is_negative, 0x8000, 0))
    np.testing.assert_array_equal(blocks[..., 4:], 0)
    # Zero min or max next to non-zero values: min 0 from the first zero, max positive.
    v = np.float32([[-0.0, 0.0, 1.0] + [0.0] * 29, [0.0, -0.0, 2.0] + [-0.0] * 29])
    with quantcore.using_isa(isa):
        m = qg.quantize_blocks(v, "q4_1")[:, 2:4].copy().view(np.uint16)[:, 0]
    np.testing.assert_array_equal(m, [0x8000, 0])


@pytest.mark.parametrize("name", QUANT_TYPES)
def test_quantize_ties_hit_the_rounding_rule(name):
    # The tie data really exercises ties: with d = 1 the codes are known in closed form.
    kind = {"q4_0": "ties", "q4_1": "ties_q4_1", "q8_0": "ties_q8"}[name]
    w = make_data(kind, 2, 64)
    blocks = qg.quantize_blocks(w, name).reshape(-1, qg.TYPES[name].type_size)
    d = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    np.testing.assert_array_equal(d, np.float32(1.0))
    if name == "q8_0":
        q = blocks[:, 2:].view(np.int8).astype(np.float32)
        np.testing.assert_array_equal(q.reshape(w.shape), np.sign(w) * np.floor(np.abs(w) + 0.5))


@pytest.mark.parametrize("isa", ISAS)
def test_q8_0_rounding_over_float32_range(isa):
    # With d = 1 (amax 127) the codes are round-half-away(x) for x itself: every 97th float32
    # in [0, 127], and its negative, checked against gguf-py's np_roundf rule.
    v = np.arange(0, 0x42FE0000, 97, dtype=np.uint32).view(np.float32)  # 0x42FE0000 = 127.0
    v = v[: v.size // 31 * 31].reshape(-1, 31)
    v[1::2] *= -1
    w = np.concatenate([v, np.full((v.shape[0], 1), 127.0, np.float32)], axis=1)
    with quantcore.using_isa(isa):
        blocks = qg.quantize_blocks(w, "q8_0")  # one block per row
    assert np.all(blocks[:, :2].copy().view(np.float16) == 1.0)
    codes = blocks[:, 2:33].view(np.int8).astype(np.float32)
    np.testing.assert_array_equal(codes, gq.np_roundf(v))


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16, np.float64])
@pytest.mark.parametrize("name", QUANT_TYPES)
def test_quantize_other_float_inputs(name, dtype):
    w = make_data("student_t", 5, 256, seed=3).astype(dtype)
    np.testing.assert_array_equal(qg.quantize_blocks(w, name), gguf_quantize(w.astype(np.float32), name))


@pytest.mark.parametrize("name", QUANT_TYPES)
def test_quantize_shapes_and_views(name):
    w = make_data("normal", 6, 128, seed=4)
    full = qg.quantize_blocks(w, name)
    # 1-D is one row; leading dimensions are rows; strided input is copied.
    np.testing.assert_array_equal(qg.quantize_blocks(w[2], name), full[2])
    np.testing.assert_array_equal(qg.quantize_blocks(w.reshape(2, 3, 128), name), full.reshape(2, 3, -1))
    np.testing.assert_array_equal(qg.quantize_blocks(w[::2], name), full[::2])
    np.testing.assert_array_equal(qg.quantize_blocks(np.asfortranarray(w), name), full)
    np.testing.assert_array_equal(qg.quantize_blocks(w.astype(">f4"), name), full)
    assert qg.quantize_blocks(np.zeros((0, 64), np.float32), name).shape == (0, 2 * qg.TYPES[name].type_size)
    # The gguf enum is accepted, as are upper-case names.
    np.testing.assert_array_equal(qg.quantize_blocks(w, GT[name.upper()]), full)
    np.testing.assert_array_equal(qg.quantize_blocks(w, name.upper()), full)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("name", QUANT_TYPES)
def test_quantize_every_isa_matches_scalar(name, isa):
    # Odd block counts per row and per thread chunk; every data kind in one matrix.
    for shape in [(1, 32), (3, 224), (7, 4064), (129, 96)]:
        w = make_data("mixed_blocks", *shape, seed=shape[0])
        with quantcore.using_isa("scalar"):
            reference = qg.quantize_blocks(w, name)
        with quantcore.using_isa(isa):
            np.testing.assert_array_equal(qg.quantize_blocks(w, name), reference)


@pytest.mark.parametrize("name", QUANT_TYPES)
def test_quantize_thread_count_does_not_change_bytes(name):
    w = make_data("outliers", 300, 2048, seed=5)
    before = quantcore.get_num_threads()
    try:
        quantcore.set_num_threads(1)
        one = qg.quantize_blocks(w, name)
        quantcore.set_num_threads(3)
        three = qg.quantize_blocks(w, name)
    finally:
        quantcore.set_num_threads(before)
    np.testing.assert_array_equal(one, three)


# ---- dequantization ---------------------------------------------------------------------------

# Byte offsets of fp16 fields inside each block; tests clear bit 14 of these so they are finite.
FP16_FIELDS = {
    "q4_0": [0], "q4_1": [0, 2], "q5_0": [0], "q5_1": [0, 2], "q8_0": [0],
    "q2_k": [80, 82], "q3_k": [108], "q4_k": [0, 2], "q5_k": [0, 2], "q6_k": [208],
    "iq2_xxs": [0], "iq2_xs": [0], "iq2_s": [0], "iq3_xxs": [0], "iq3_s": [0], "iq1_s": [0],
    "iq4_nl": [0], "iq4_xs": [0], "tq1_0": [52], "tq2_0": [64],
    "mxfp4": [], "nvfp4": [],
}  # fmt: skip


def random_blocks(name: str, n_blocks: int, seed: int, finite: bool = True) -> np.ndarray:
    t = qg.TYPES[name]
    rng = np.random.default_rng(seed)
    b = rng.integers(0, 256, size=(n_blocks, t.type_size), dtype=np.uint8)
    if finite:
        if name in ("f16", "bf16"):
            b[:, 1] &= 0xBF  # exponent below all-ones
        elif name == "f32":
            b[:, 3] &= 0xBF
        elif name == "iq1_m":
            b[:, 55] &= 0xBF  # d's exponent is split over the top nibbles of bytes 49..55
        else:
            for off in FP16_FIELDS[name]:
                b[:, off + 1] &= 0xBF
    return b.reshape(-1)


def shape_for(name: str, n_blocks: int, rows: int) -> tuple[int, int]:
    return (rows, n_blocks * qg.TYPES[name].block_size // rows)


@pytest.mark.parametrize("name", GGUF_DEQUANT_TYPES)
def test_dequantize_matches_gguf_on_random_blocks(name):
    shape = shape_for(name, 96, 4)
    data = random_blocks(name, 96, seed=qg.TYPES[name].ggml_id)
    got = qg.dequantize_blocks(data, name, shape)
    expected = gguf_dequantize(data, name, shape)
    assert got.dtype == np.float32 and got.shape == shape
    np.testing.assert_array_equal(bits(got), bits(expected))


@pytest.mark.parametrize("name", [n for n in ("tq2_0", "iq4_nl", "bf16") if n in GGUF_DEQUANT_TYPES])
def test_dequantize_large_tensor_in_chunks(name):
    # More blocks than one numpy chunk / one thread task, and a block count that divides neither.
    t = qg.TYPES[name]
    n_blocks = qg._CHUNK_BLOCKS + 2049 if t.block_size > 1 else 3 * qg._CHUNK_BLOCKS + 7
    data = random_blocks(name, n_blocks, seed=13)
    shape = (n_blocks * t.block_size,)
    np.testing.assert_array_equal(bits(qg.dequantize_blocks(data, name, shape)), bits(gguf_dequantize(data, name, shape)))


@pytest.mark.parametrize("name", GGUF_DEQUANT_TYPES)
def test_dequantize_matches_gguf_with_nan_and_inf_scales(name):
    # Unsanitized bytes: inf and NaN scales decode to the same inf / NaN positions.
    shape = shape_for(name, 64, 2)
    data = random_blocks(name, 64, seed=100 + qg.TYPES[name].ggml_id, finite=False)
    np.testing.assert_array_equal(qg.dequantize_blocks(data, name, shape), gguf_dequantize(data, name, shape))


def _gguf_can_quantize(name: str) -> bool:
    cls = gq._type_traits.get(GT[name.upper()]) if name not in ("f32", "f16") else None
    return cls is not None and "quantize_blocks" in vars(cls)


QUANTIZABLE_BY_GGUF = [name for name in GGUF_DEQUANT_TYPES if _gguf_can_quantize(name)]


@pytest.mark.parametrize("name", [n for n in ("mxfp4", "nvfp4") if n in GGUF_DEQUANT_TYPES])
def test_dequantize_every_scale_byte(name):
    # Each of the 256 scale bytes (e8m0 / ue4m3, subnormal and NaN codes included) on every ISA.
    t = qg.TYPES[name]
    data = random_blocks(name, 256, seed=12).reshape(256, t.type_size)
    scale_bytes = 1 if name == "mxfp4" else 4
    data[:, :scale_bytes] = np.arange(256, dtype=np.uint8)[:, None]
    shape = shape_for(name, 256, 8)
    expected = gguf_dequantize(data.reshape(-1), name, shape)
    for isa in ISAS:
        with quantcore.using_isa(isa):
            np.testing.assert_array_equal(bits(qg.dequantize_blocks(data, name, shape)), bits(expected))


@pytest.mark.parametrize("name", QUANTIZABLE_BY_GGUF)
def test_dequantize_matches_gguf_on_gguf_quantized_blocks(name):
    w = make_data("mixed_blocks", 4, 1536, seed=7)
    data = gguf_quantize(w, name)
    got = qg.dequantize_blocks(data, name, w.shape)
    np.testing.assert_array_equal(bits(got), bits(gguf_dequantize(data, name, w.shape)))


@pytest.mark.parametrize("name", QUANT_TYPES)
def test_round_trip_matches_gguf(name):
    w = make_data("student_t", 16, 512, seed=8)
    got = qg.dequantize_blocks(qg.quantize_blocks(w, name), name, w.shape)
    expected = gguf_dequantize(gguf_quantize(w, name), name, w.shape)
    np.testing.assert_array_equal(bits(got), bits(expected))
    # Within half a step of the block's grid, plus the fp16 rounding of d (and m), where nothing
    # clamps (q4_1 and q8_0 never clamp; q4_0 clamps the side opposite its max).
    if name != "q4_0":
        t = qg.TYPES[name]
        blocks = qg.quantize_blocks(w, name).reshape(-1, t.type_size)
        d = np.abs(blocks[:, :2].copy().view(np.float16).astype(np.float64))
        m = np.abs(blocks[:, 2:4].copy().view(np.float16).astype(np.float64)) if name == "q4_1" else 0.0
        q_max = 15 if name == "q4_1" else 127
        fp16_eps = 2.0**-11
        bound = 0.5 * d * (1 + 1e-6) + (q_max * d + m) * fp16_eps
        err = np.abs(got.astype(np.float64) - w).reshape(-1, 32)
        assert np.all(err <= bound)


SIMD_DEQUANT_TYPES = [n for n, t in qg.TYPES.items() if t.implementation.startswith("c++")]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("name", SIMD_DEQUANT_TYPES)
def test_dequantize_every_isa_matches_scalar(name, isa):
    for n_blocks, rows in [(1, 1), (3, 3), (257, 1), (4099, 1)]:
        data = random_blocks(name, n_blocks, seed=n_blocks, finite=False)
        shape = shape_for(name, n_blocks, rows)
        with quantcore.using_isa("scalar"):
            reference = qg.dequantize_blocks(data, name, shape)
        with quantcore.using_isa(isa):
            np.testing.assert_array_equal(bits(qg.dequantize_blocks(data, name, shape)), bits(reference))


def test_dequantize_inputs_and_out():
    w = make_data("normal", 4, 256, seed=9)
    data = qg.quantize_blocks(w, "q4_0")
    expected = qg.dequantize_blocks(data, "q4_0", (4, 256))
    # data of any shape (rows of bytes, flat, bytes), the enum, and out= (contiguous or not).
    np.testing.assert_array_equal(qg.dequantize_blocks(data.reshape(-1), GT.Q4_0, (4, 256)), expected)
    np.testing.assert_array_equal(qg.dequantize_blocks(data.tobytes(), "Q4_0", [4, 256]), expected)
    np.testing.assert_array_equal(qg.dequantize_blocks(data, "q4_0", (2, 2, 256)), expected.reshape(2, 2, 256))
    out = np.full((4, 256), np.nan, np.float32)
    assert qg.dequantize_blocks(data, "q4_0", (4, 256), out=out) is out
    np.testing.assert_array_equal(out, expected)
    out_t = np.zeros((256, 4), np.float32).T
    assert qg.dequantize_blocks(data, "q4_0", (4, 256), out=out_t) is out_t
    np.testing.assert_array_equal(out_t, expected)
    # Float types take their natural dtype too.
    w16 = w.astype(np.float16)
    np.testing.assert_array_equal(qg.dequantize_blocks(w16, "f16", w.shape), w16.astype(np.float32))
    np.testing.assert_array_equal(qg.dequantize_blocks(w, "f32", w.shape), w)
    assert qg.dequantize_blocks(np.zeros(0, np.uint8), "q6_k", (0, 256)).shape == (0, 256)


def test_gguf_file_round_trip(tmp_path):
    # A GGUF file written by gguf-py with our q4_0 / q4_1 / q8_0 blocks and random blocks of every
    # other type; read back with GGUFReader, each tensor decodes as gguf-py decodes it.
    w = make_data("student_t", 8, 512, seed=11)
    writer = gguf.GGUFWriter(str(tmp_path / "model.gguf"), "llama")
    for name in QUANT_TYPES:
        writer.add_tensor(f"ours.{name}", qg.quantize_blocks(w, name), raw_dtype=GT[name.upper()])
    for name in GGUF_DEQUANT_TYPES:
        if name in ("f32", "f16", "bf16"):
            continue
        t = qg.TYPES[name]
        data = random_blocks(name, 8 * 512 // t.block_size, seed=t.ggml_id).reshape(8, -1)
        writer.add_tensor(f"random.{name}", data, raw_dtype=GT[name.upper()])
    n_random = len(GGUF_DEQUANT_TYPES) - 3
    writer.add_tensor("plain.f32", w)
    writer.add_tensor("plain.f16", w.astype(np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    reader = gguf.GGUFReader(str(tmp_path / "model.gguf"))
    assert len(reader.tensors) == len(QUANT_TYPES) + n_random + 2
    for tensor in reader.tensors:
        shape = tuple(int(n) for n in reversed(tensor.shape))  # GGUF lists ne innermost first
        got = qg.dequantize_blocks(tensor.data, tensor.tensor_type, shape)
        with np.errstate(all="ignore"):
            expected = np.asarray(gq.dequantize(tensor.data, tensor.tensor_type), np.float32)
        np.testing.assert_array_equal(bits(got), bits(expected.reshape(shape)), err_msg=tensor.name)
        if tensor.name.startswith("ours."):
            name = tensor.name[len("ours.") :]
            np.testing.assert_array_equal(got, qg.dequantize_blocks(qg.quantize_blocks(w, name), name, w.shape))


def test_grids_match_gguf():
    for name in qg.GRIDS:
        cls = gq._type_traits[GT[name.upper()]]
        cls.init_grid()
        np.testing.assert_array_equal(qg._grid(name), cls.grid.reshape(cls.grid_shape))
    np.testing.assert_array_equal(qg._KSIGNS, np.frombuffer(gq.IQ2_XXS.ksigns, np.uint8))


# ---- errors -----------------------------------------------------------------------------------


def test_quantize_errors():
    w = np.ones((2, 64), np.float32)
    with pytest.raises(ValueError, match=r"cols.*multiple of 32.*cols=100"):
        qg.quantize_blocks(np.ones((2, 100), np.float32), "q4_0")
    with pytest.raises(ValueError, match=r"type must be one of .*'q5_9'"):
        qg.quantize_blocks(w, "q5_9")
    with pytest.raises(ValueError, match=r"type must be one of \['q4_0', 'q4_1', 'q8_0'\].*'q6_k'"):
        qg.quantize_blocks(w, "q6_k")
    with pytest.raises(TypeError, match="type must be a type name"):
        qg.quantize_blocks(w, 2)
    with pytest.raises(TypeError, match="w must be float32.*int32"):
        qg.quantize_blocks(np.ones((2, 64), np.int32), "q8_0")
    with pytest.raises(ValueError, match="at least one dimension"):
        qg.quantize_blocks(np.float32(1), "q8_0")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("name", QUANT_TYPES)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_quantize_rejects_nan_and_inf(name, isa, bad):
    w = make_data("normal", 40, 4096, seed=10)
    w[37, 1000] = bad
    w[39, 5] = bad  # a later block: the message names the first one
    with quantcore.using_isa(isa), pytest.raises(ValueError, match=r"NaN or inf.*row 37, columns 992\.\.1023"):
        qg.quantize_blocks(w, name)
    with pytest.raises(ValueError, match="NaN or inf"):
        qg.quantize_blocks(w.astype(np.float16), name)


def test_dequantize_errors():
    data = np.zeros(18 * 4, np.uint8)
    with pytest.raises(ValueError, match=r"data for q4_0 of shape \(2, 64\) must be 72 bytes \(got 71 bytes\)"):
        qg.dequantize_blocks(data[:-1], "q4_0", (2, 64))
    with pytest.raises(ValueError, match=r"multiple of 256 for q6_k \(got shape=\(1, 128\)\)"):
        qg.dequantize_blocks(np.zeros(105, np.uint8), "q6_k", (1, 128))
    with pytest.raises(ValueError, match="type must be one of"):
        qg.dequantize_blocks(data, "q9_9", (2, 64))
    with pytest.raises(ValueError, match="Q8_K.*not a type this module reads"):
        qg.dequantize_blocks(data, GT.Q8_K, (2, 64))
    with pytest.raises(TypeError, match="data must be a uint8 array of q4_0 blocks.*float32"):
        qg.dequantize_blocks(np.zeros(18, np.float32), "q4_0", (1, 32))
    with pytest.raises(TypeError, match="data must be a uint8 numpy array"):
        qg.dequantize_blocks([0] * 18, "q4_0", (1, 32))
    with pytest.raises(TypeError, match="shape must be a tuple of ints"):
        qg.dequantize_blocks(data, "q4_0", (2.0, 64))
    with pytest.raises(ValueError, match="non-negative"):
        qg.dequantize_blocks(data, "q4_0", (-2, 64))
    with pytest.raises(ValueError, match=r"out must have shape \(2, 64\)"):
        qg.dequantize_blocks(data, "q4_0", (2, 64), out=np.empty((64, 2), np.float32))
    with pytest.raises(ValueError, match="out must have dtype float32"):
        qg.dequantize_blocks(data, "q4_0", (2, 64), out=np.empty((2, 64), np.float64))


# ---------------------------------------------------------------- q4_0 / q4_1 / q8_0 as quantize schemes


def heavy_tailed(shape, seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_t(3, size=shape).astype(np.float32) * 0.02
    w[rng.random(shape) < 0.002] *= 40  # sparse large outliers, as in LLM weights
    w[0, :32] = 0.0  # an all-zero block
    return w


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("name", ["q4_0", "q4_1", "q8_0"])
def test_quantize_scheme_round_trips_llama_cpp_bytes(isa, name):
    w = heavy_tailed((9, 4 * 32 * 3), seed=5)
    with quantcore.using_isa(isa):
        q = quantcore.quantize(w, name)
        blocks = qg.blocks_from_quantized(q)
        deq = q.dequantize()
    assert q.group_size == 32 and q.scales.dtype == np.float16
    assert q.symmetric == (name != "q4_1")
    expected = gguf_quantize(w, name)
    np.testing.assert_array_equal(blocks, expected)
    np.testing.assert_array_equal(deq.view(np.uint32), gguf_dequantize(expected, name, w.shape).view(np.uint32))
    assert q.bits_per_weight == {"q4_0": 4.5, "q4_1": 5.0, "q8_0": 8.5}[name]


@pytest.mark.parametrize("name", ["q4_0", "q4_1", "q8_0"])
def test_blocks_to_parts_inverts_blocks_from_quantized_on_arbitrary_blocks(name):
    t = qg.TYPES[name]
    rng = np.random.default_rng(9)
    rows, cols = 3, 64
    blocks = rng.integers(0, 256, (rows, cols // 32, t.type_size), dtype=np.uint8)
    # finite float16 d (and m): random exponent bits below the inf/NaN range
    for off in (0, 2) if name == "q4_1" else (0,):
        blocks[..., off:off + 2] = rng.uniform(-2, 2, (rows, cols // 32, 1)).astype(np.float16).view(np.uint8)
    blocks = blocks.reshape(rows, -1)
    codes, scales, zeros = qg.blocks_to_parts(blocks, name, (rows, cols))
    q = quantcore.QuantizedTensor(name, (rows, cols), 32, name != "q4_1", codes, scales, zeros)
    np.testing.assert_array_equal(qg.blocks_from_quantized(q), blocks)
    np.testing.assert_array_equal(q.dequantize(), gguf_dequantize(blocks, name, (rows, cols)))


@pytest.mark.parametrize("name", ["q4_0", "q4_1", "q8_0"])
def test_gguf_scheme_save_load_is_exact(tmp_path, name):
    w = heavy_tailed((4, 96), seed=2)
    q = quantcore.quantize(w, name)
    q.save(tmp_path / "w.safetensors")
    back = quantcore.load(tmp_path / "w.safetensors")
    np.testing.assert_array_equal(qg.blocks_from_quantized(back), qg.blocks_from_quantized(q))


def test_gguf_scheme_errors():
    w = np.ones((2, 64), np.float32)
    with pytest.raises(ValueError, match=r"scheme 'q4_0' uses blocks of 32 \(got group_size=64\)"):
        quantcore.quantize(w, "q4_0", group_size=64)
    with pytest.raises(ValueError, match=r"scheme 'q8_0' stores float16 scales \(got scale_dtype=float32\)"):
        quantcore.quantize(w, "q8_0", scale_dtype=np.float32)
    with pytest.raises(ValueError, match="group_size must divide in_features"):
        quantcore.quantize(np.ones((2, 48), np.float32), "q4_1")
    with pytest.raises(ValueError, match=r"blocks_from_quantized: q.scheme must be one of \['q4_0', 'q4_1', 'q8_0'\]"):
        qg.blocks_from_quantized(quantcore.quantize(w, "int4", group_size=32))
    with pytest.raises(TypeError, match="blocks_from_quantized: q must be a QuantizedTensor"):
        qg.blocks_from_quantized(w)
    q = quantcore.quantize(w, "q4_1")
    permuted = quantcore.QuantizedTensor("q4_1", q.shape, 32, False, q.codes, q.scales, q.zeros,
                                         perm=np.arange(64)[::-1].copy())
    with pytest.raises(ValueError, match="blocks_from_quantized: q has a column permutation"):
        qg.blocks_from_quantized(permuted)
    with pytest.raises(ValueError, match="always asymmetric"):
        quantcore.QuantizedTensor("q4_1", q.shape, 32, True, q.codes, q.scales, q.zeros)
