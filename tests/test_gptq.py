"""quantcore.gptq against tests/gptq_reference.py (a numpy restatement of the paper's algorithm),
against quantcore.quantize (RTN) where no error feedback happens, against RTN's output error on
correlated and on real (SmolLM2) activations, and every ISA against the scalar kernel."""

import sys
import pathlib

import numpy as np
import pytest

import quantcore
from quantcore import gguf, gptq
from quantcore.pack import unpack_bits
from quantcore.quantize import QuantizedTensor, load

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from gptq_reference import Grid, gptq_reference  # noqa: E402


def correlated_inputs(rng, tokens, features, rank=None):
    """x [tokens, features] with strongly correlated channels of different scales."""
    rank = features if rank is None else rank
    mix = rng.standard_normal((rank, features)).astype(np.float32)
    scales = np.exp(rng.standard_normal(features)).astype(np.float32)
    return (rng.standard_normal((tokens, rank)).astype(np.float32) @ mix) * scales / np.sqrt(rank)


def hessian(x):
    h = gptq.Hessian(x.shape[1])
    h.add_batch(x)
    return np.array(h.H)


def unpacked_codes(q):
    rows, cols = q.codes.shape[0], q.shape[-1]
    return np.stack([unpack_bits(row, q.bits, cols) for row in q.codes]).astype(np.int64)


def output_error(W, Q, x):
    return float(np.sum(((W - Q) @ x.T).astype(np.float64) ** 2))


@pytest.fixture(scope="module")
def layer():
    rng = np.random.default_rng(5)
    x = correlated_inputs(rng, 768, 384)
    W = rng.standard_normal((40, 384)).astype(np.float32)
    return W, hessian(x), x


# ---------------------------------------------------------------------------------------
# The numpy reference: same codes, scales, zeros and permutation; losses to float rounding.
# What is compared: both run the same float32 operations in the same order (the per-column
# update as a product then a difference, no FMA; the block update with the same numpy matmul);
# they differ only in how H^-1's Cholesky factor is computed in float64 (reference: cholesky,
# inverse, cholesky; quantcore: one reversed cholesky and a triangular inverse) before both
# round it to float32.
# ---------------------------------------------------------------------------------------

REFERENCE_CASES = [
    ("int4", False, 128),
    ("int4", True, 64),
    ("int3", False, 96),  # groups start inside blocks and reach past them
    ("int3", True, -1),
    ("int4", False, -1),
    ("q4_0", True, 32),
]


@pytest.mark.parametrize("static_groups", [False, True])
@pytest.mark.parametrize("act_order", [False, True])
@pytest.mark.parametrize("scheme,symmetric,group_size", REFERENCE_CASES)
def test_matches_numpy_reference(layer, scheme, symmetric, group_size, act_order, static_groups):
    W, H, _ = layer
    result = gptq.quantize(W, H, scheme, group_size=group_size, symmetric=symmetric, act_order=act_order,
                           static_groups=static_groups)
    grid = Grid(scheme, symmetric=symmetric)
    codes, scales, zeros, perm, losses = gptq_reference(W, H, grid, group_size=group_size, act_order=act_order,
                                                        static_groups=static_groups)
    q = result.qtensor
    np.testing.assert_array_equal(unpacked_codes(q), codes)
    np.testing.assert_array_equal(q.scales.astype(np.float32), scales)
    if zeros is None:
        assert q.zeros is None
    else:
        np.testing.assert_array_equal(q.zeros.astype(np.float32), zeros.astype(np.float32))
    if perm is None:
        assert q.perm is None
    else:
        np.testing.assert_array_equal(q.perm, perm)
    np.testing.assert_allclose(result.losses, losses, rtol=1e-6)


def test_codes_saturate_when_updates_leave_a_tiny_group_range(layer):
    # static groups from the original W: a constant group of 1e-20 gets scale 1e-20 (float32
    # scales), and the error feedback then moves its weights by ~0.1, i.e. 1e19 steps: the codes
    # must saturate at the right end, as the reference's float clip does
    W, H, _ = layer
    W = W.copy()
    W[:, 32:64] = np.float32(1e-20)
    result = gptq.quantize(W, H, "int4", group_size=32, static_groups=True, scale_dtype=np.float32)
    codes, *_ = gptq_reference(W, H, Grid("int4", scale_dtype=np.float32), group_size=32, static_groups=True)
    got = unpacked_codes(result.qtensor)
    np.testing.assert_array_equal(got, codes)
    assert set(np.unique(got[:, 40:64])) <= {0, 15}


def test_matches_reference_with_small_blocks_and_dead_inputs(layer):
    W, H, _ = layer
    H = H.copy()
    H[[3, 100, 200], :] = 0
    H[:, [3, 100, 200]] = 0
    result = gptq.quantize(W, H, "int4", group_size=64, block_size=48, act_order=True)
    codes, scales, _, perm, _ = gptq_reference(W, H, Grid("int4"), group_size=64, block_size=48, act_order=True)
    np.testing.assert_array_equal(unpacked_codes(result.qtensor), codes)
    np.testing.assert_array_equal(result.qtensor.perm, perm)
    # dead inputs: their weights are zeroed and decode to exactly 0
    deq = result.qtensor.dequantize()
    assert np.all(deq[:, [3, 100, 200]] == 0) and np.isfinite(deq).all()


# ---------------------------------------------------------------------------------------
# No error feedback (H diagonal: Hinv is diagonal) -> exactly quantcore.quantize (RTN)
# ---------------------------------------------------------------------------------------

RTN_CASES = [(s, sym) for s in ("int8", "int4", "int3", "int2") for sym in (False, True)] + [
    ("q4_0", True), ("q4_1", False), ("q8_0", True)]


@pytest.mark.parametrize("scheme,symmetric", RTN_CASES)
def test_diagonal_hessian_reproduces_rtn(scheme, symmetric):
    rng = np.random.default_rng(1)
    W = rng.standard_normal((33, 256)).astype(np.float32) * np.float32(0.05)
    W[0, :64] = 0  # an all-zero group
    W[1, 64:96] = 0.25  # a constant group
    H = np.diag(rng.uniform(0.5, 2.0, 256))
    group_size = 32 if scheme.startswith("q") else 64
    rtn = quantcore.quantize(W, scheme, group_size=group_size, symmetric=symmetric)
    for act_order, static in ((False, False), (True, True)):
        q = gptq.quantize(W, H, scheme, group_size=group_size, symmetric=symmetric, act_order=act_order,
                          static_groups=static).qtensor
        assert q.perm is None
        np.testing.assert_array_equal(q.codes, rtn.codes)
        np.testing.assert_array_equal(q.scales.view(np.uint16), rtn.scales.view(np.uint16))
        if rtn.zeros is None:
            assert q.zeros is None
        else:
            np.testing.assert_array_equal(q.zeros, rtn.zeros)


@pytest.mark.parametrize("group_size", [-1, 20])
def test_diagonal_hessian_reproduces_rtn_unaligned_rows(group_size):
    W = np.random.default_rng(7).standard_normal((5, 100)).astype(np.float32)  # 300-bit int3 rows
    q = gptq.quantize(W, np.eye(100), "int3", group_size=group_size).qtensor
    rtn = quantcore.quantize(W, "int3", group_size=group_size)
    np.testing.assert_array_equal(q.codes, rtn.codes)
    np.testing.assert_array_equal(q.scales, rtn.scales)


@pytest.mark.parametrize("scale_dtype", [np.float32, "bfloat16"])
def test_diagonal_hessian_reproduces_rtn_scale_dtypes(scale_dtype):
    import ml_dtypes

    dtype = ml_dtypes.bfloat16 if scale_dtype == "bfloat16" else scale_dtype
    W = np.random.default_rng(2).standard_normal((8, 128)).astype(np.float32)
    rtn = quantcore.quantize(W, "int4", group_size=32, scale_dtype=dtype)
    q = gptq.quantize(W, np.eye(128), "int4", group_size=32, scale_dtype=dtype).qtensor
    assert q.scales.dtype == rtn.scales.dtype
    np.testing.assert_array_equal(q.codes, rtn.codes)
    np.testing.assert_array_equal(q.scales.astype(np.float32), rtn.scales.astype(np.float32))


def test_gguf_export_is_llama_cpp_bit_exact(layer):
    import gguf as gguf_py

    W, H, _ = layer
    for scheme in ("q4_0", "q4_1", "q8_0"):
        q = gptq.quantize(W, H, scheme, act_order=True, static_groups=True).qtensor
        blocks = gguf.blocks_from_quantized(q)
        # the gguf package (llama.cpp's formats in numpy) decodes the blocks to what we hold
        decoded = gguf_py.quants.dequantize(blocks, getattr(gguf_py.GGMLQuantizationType, scheme.upper()))
        np.testing.assert_array_equal(decoded.reshape(W.shape), q.dequantize())


# ---------------------------------------------------------------------------------------
# GPTQ beats RTN on the output error ||W X - Q X||^2
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme,group_size,act_order", [("int4", 128, False), ("int3", 64, True), ("q4_0", 32, False)])
def test_output_error_well_below_rtn_on_correlated_inputs(scheme, group_size, act_order):
    rng = np.random.default_rng(11)
    x = correlated_inputs(rng, 2048, 256, rank=64)
    W = rng.standard_normal((64, 256)).astype(np.float32)
    x_cal, x_test = x[:1024], x[1024:]  # the error is measured on held-out tokens
    q = gptq.quantize(W, hessian(x_cal), scheme, group_size=group_size, act_order=act_order).qtensor
    rtn = quantcore.quantize(W, scheme, group_size=group_size)
    ratio = output_error(W, q.dequantize(), x_test) / output_error(W, rtn.dequantize(), x_test)
    assert ratio < 0.7, ratio


@pytest.fixture(scope="module")
def smollm2_activations():
    from quantcore import assets, models

    model = models.load_model()
    ids = np.array(model.tokenizer.encode(assets.calibration_text()[:8000])[:640])
    captured = {}

    def capture(name, x):
        if name in ("blk.5.q", "blk.5.down"):
            captured[name] = x.copy()

    model.forward(ids, capture=capture)
    linears = dict(model.named_linears())
    return {name: (linears[name].weight, x) for name, x in captured.items()}


@pytest.mark.parametrize("name", ["blk.5.q", "blk.5.down"])
def test_output_error_below_rtn_on_smollm2_activations(smollm2_activations, name):
    W, x = smollm2_activations[name]
    x_cal, x_test = x[:384], x[384:]  # 384 calibration tokens, 256 held out
    q = gptq.quantize(W, hessian(x_cal), "int4", group_size=64, act_order=True).qtensor
    rtn = quantcore.quantize(W, "int4", group_size=64)
    # on the calibration tokens, the quantity GPTQ minimizes
    assert output_error(W, q.dequantize(), x_cal) < 0.3 * output_error(W, rtn.dequantize(), x_cal)
    if name == "blk.5.q":  # 384 tokens for 576 inputs generalize; for down's 1536 inputs they do not
        assert output_error(W, q.dequantize(), x_test) < 0.9 * output_error(W, rtn.dequantize(), x_test)


# ---------------------------------------------------------------------------------------
# Every ISA against the scalar kernel, bit for bit (rows not a multiple of 4, block columns
# not a multiple of the vector width, so the tails run)
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("isa", quantcore.available_isas())
@pytest.mark.parametrize("scheme", ["int4", "q4_1", "q8_0"])
def test_every_isa_matches_scalar(isa, scheme):
    rng = np.random.default_rng(3)
    x = correlated_inputs(rng, 300, 160)
    W = rng.standard_normal((23, 160)).astype(np.float32)
    H = hessian(x)
    kwargs = dict(group_size=32, block_size=40, act_order=True)
    with quantcore.using_isa("scalar"):
        ref = gptq.quantize(W, H, scheme, **kwargs)
    with quantcore.using_isa(isa):
        got = gptq.quantize(W, H, scheme, **kwargs)
    np.testing.assert_array_equal(got.qtensor.codes, ref.qtensor.codes)
    np.testing.assert_array_equal(got.qtensor.scales, ref.qtensor.scales)
    np.testing.assert_array_equal(got.losses, ref.losses)


# ---------------------------------------------------------------------------------------
# Damp escalation
# ---------------------------------------------------------------------------------------


def test_damp_rises_when_cholesky_fails():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((16, 64)).astype(np.float32)  # rank 16 < 64: H is singular
    W = rng.standard_normal((8, 64)).astype(np.float32)
    with pytest.warns(gptq.GPTQDampWarning, match="not positive-definite"):
        result = gptq.quantize(W, hessian(x), "int4", group_size=32, damp=0.0)
    assert 0 < result.damp <= 1.0
    assert np.isfinite(result.qtensor.dequantize()).all() and np.isfinite(result.losses).all()


def test_damp_past_the_cap_raises():
    H = -np.eye(32)  # negative definite: no damp up to 1.0 helps
    W = np.ones((2, 32), np.float32)
    with pytest.warns(gptq.GPTQDampWarning):
        with pytest.raises(ValueError, match="not positive-definite even with damp=1"):
            gptq.quantize(W, H, "int4", group_size=32)


# ---------------------------------------------------------------------------------------
# The permutation in QuantizedTensor
# ---------------------------------------------------------------------------------------


def test_one_group_per_row_needs_no_perm(layer):
    W, H, _ = layer
    q = gptq.quantize(W, H, "int4", group_size=-1, act_order=True).qtensor
    assert q.perm is None
    static = gptq.quantize(W, H, "int4", group_size=-1, act_order=True, static_groups=True).qtensor
    np.testing.assert_array_equal(q.codes, static.codes)


def test_perm_dequantize_save_load(layer, tmp_path):
    W, H, x = layer
    q = gptq.quantize(W, H, "int4", group_size=64, act_order=True).qtensor
    assert q.perm is not None and q.perm.dtype == np.int64
    assert not np.array_equal(q.perm, np.arange(W.shape[1]))
    # codes describe W[:, perm]: un-permuted by dequantize
    plain = QuantizedTensor(q.scheme, q.shape, q.group_size, q.symmetric, q.codes, q.scales, q.zeros)
    deq = q.dequantize()
    np.testing.assert_array_equal(deq[:, q.perm], plain.dequantize())
    assert np.abs(deq - W).max() < np.abs(plain.dequantize() - W).max()  # the right columns
    out = np.empty_like(W)
    assert q.dequantize(out=out) is out and np.array_equal(out, deq)
    assert q.nbytes == plain.nbytes + q.perm.nbytes
    assert "perm" in repr(q) and "perm" not in repr(plain)
    q.save(tmp_path / "w.safetensors")
    back = load(tmp_path / "w.safetensors")
    np.testing.assert_array_equal(back.perm, q.perm)
    np.testing.assert_array_equal(back.dequantize(), deq)


def test_perm_validation(layer):
    W, H, _ = layer
    q = gptq.quantize(W, H, "int4", group_size=64, act_order=True).qtensor
    args = (q.scheme, q.shape, q.group_size, q.symmetric, q.codes, q.scales, q.zeros)
    bad = q.perm.copy()
    bad[0] = bad[1]
    with pytest.raises(ValueError, match="perm must be a permutation"):
        QuantizedTensor(*args, bad)
    with pytest.raises(ValueError, match="perm must be a C-contiguous int64 array of shape"):
        QuantizedTensor(*args, q.perm[:-1].copy())
    with pytest.raises(ValueError, match="int64"):
        QuantizedTensor(*args, q.perm.astype(np.int32))
    with pytest.raises(TypeError, match="perm must be None or a numpy array"):
        QuantizedTensor(*args, list(q.perm))


# ---------------------------------------------------------------------------------------
# Hessian
# ---------------------------------------------------------------------------------------


def test_hessian_streaming_equals_one_pass():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 50, 24)).astype(np.float32)
    h = gptq.Hessian(24)
    h.add_batch(x[0])
    h.add_batch(x[1:])  # [..., in_features]: every leading axis is tokens
    flat = x.reshape(-1, 24).astype(np.float64)
    # float32 input: products summed in float32 (as the reference's float32 matmul)
    np.testing.assert_allclose(h.H, 2 / 150 * flat.T @ flat, rtol=1e-5, atol=1e-6)
    h64 = gptq.Hessian(24)
    h64.add_batch(x[0].astype(np.float64))
    h64.add_batch(x[1:].astype(np.float64))
    np.testing.assert_allclose(h64.H, 2 / 150 * flat.T @ flat, rtol=1e-12)  # float64 input: float64 sums
    assert h.n_tokens == 150 and h.H.dtype == np.float64
    with pytest.raises(ValueError):
        h.H[0, 0] = 1  # read-only view


def test_hessian_rejects_bad_input():
    h = gptq.Hessian(8)
    with pytest.raises(ValueError, match=r"Hessian.H: no calibration data"):
        h.H
    with pytest.raises(ValueError, match=r"Hessian.add_batch: x must have shape \[..., 8\]"):
        h.add_batch(np.zeros((4, 7), np.float32))
    x = np.zeros((4, 8), np.float32)
    x[2, 3] = np.nan
    with pytest.raises(ValueError, match="Hessian.add_batch: x contains NaN or inf"):
        h.add_batch(x)
    with pytest.raises(ValueError, match="no tokens"):
        h.add_batch(np.zeros((0, 8), np.float32))
    with pytest.raises(TypeError, match="Hessian.add_batch: x must be float32"):
        h.add_batch(np.zeros((4, 8), np.int32))
    with pytest.raises(ValueError, match="Hessian: in_features must be positive"):
        gptq.Hessian(0)


# ---------------------------------------------------------------------------------------
# quantize's argument checks
# ---------------------------------------------------------------------------------------


def test_quantize_rejects_bad_input():
    W = np.ones((4, 64), np.float32)
    H = np.eye(64)
    with pytest.raises(ValueError, match=r"gptq.quantize: H must have shape \(64, 64\)"):
        gptq.quantize(W, np.eye(32))
    Hn = H.copy()
    Hn[1, 2] = np.nan
    with pytest.raises(ValueError, match="gptq.quantize: H contains NaN or inf"):
        gptq.quantize(W, Hn, group_size=32)
    Wn = W.copy()
    Wn[0, 5] = np.inf
    with pytest.raises(ValueError, match="gptq.quantize: W contains NaN or inf"):
        gptq.quantize(Wn, H, group_size=32)
    with pytest.raises(ValueError, match="group_size must divide in_features"):
        gptq.quantize(W, H, group_size=48)
    with pytest.raises(ValueError, match="group_size must be a positive divisor"):
        gptq.quantize(W, H, group_size=0)
    for scheme in ("nf4", "fp8_e4m3fn", "int5"):
        with pytest.raises(ValueError, match=f"gptq.quantize: scheme must be one of .* \\(an integer grid; got '{scheme}'\\)"):
            gptq.quantize(W, H, scheme)
    with pytest.raises(ValueError, match="scheme 'q4_0' uses blocks of 32"):
        gptq.quantize(W, H, "q4_0", group_size=64)
    with pytest.raises(ValueError, match="stores float16 scales"):
        gptq.quantize(W, H, "q8_0", scale_dtype=np.float32)
    with pytest.raises(ValueError, match="block_size must be positive"):
        gptq.quantize(W, H, group_size=32, block_size=0)
    with pytest.raises(ValueError, match="damp must be in"):
        gptq.quantize(W, H, group_size=32, damp=-0.1)
    with pytest.raises(ValueError, match="W must be 2-D"):
        gptq.quantize(W[0], H)
    with pytest.raises(TypeError, match="W must be float32"):
        gptq.quantize(W.astype(np.int8), H, group_size=32)
    with pytest.raises(TypeError, match="act_order must be a bool"):
        gptq.quantize(W, H, group_size=32, act_order=1)
    with pytest.raises(ValueError, match=r"scale of group 0 \(from column 0\) of row 0 is not finite in the scale dtype"):
        gptq.quantize(W * np.float32(1e6), H, group_size=32)  # |w| / 15 past float16's 65504
    with pytest.raises(ValueError, match="is not finite in the scale dtype"):
        gptq.quantize(W * np.float32(1e6), H, "q4_0")  # d = max / -8 past float16


def test_hessian_object_and_array_give_the_same_result(layer):
    W, H, x = layer
    h = gptq.Hessian(x.shape[1])
    h.add_batch(x)
    a = gptq.quantize(W, h, "int4", group_size=64)
    b = gptq.quantize(W, np.array(h.H), "int4", group_size=64)
    np.testing.assert_array_equal(a.qtensor.codes, b.qtensor.codes)
    np.testing.assert_array_equal(a.losses, b.losses)
    assert a.loss == pytest.approx(a.losses.sum()) and a.damp == 0.01


# ---------------------------------------------------------------------------------------
# clip_search: the reference quantizer's clipping search, weighted by diag(H)
# ---------------------------------------------------------------------------------------

CLIP_CASES = [("int4", False, 64), ("int3", False, 96), ("int3", True, 64), ("q4_1", False, 32), ("q4_0", True, 32)]


@pytest.mark.parametrize("act_order,static_groups", [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("scheme,symmetric,group_size", CLIP_CASES)
def test_clip_search_matches_numpy_reference(layer, scheme, symmetric, group_size, act_order, static_groups):
    W, H, _ = layer
    result = gptq.quantize(W, H, scheme, group_size=group_size, symmetric=symmetric, act_order=act_order,
                           static_groups=static_groups, clip_search=True)
    codes, scales, zeros, perm, losses = gptq_reference(
        W, H, Grid(scheme, symmetric=symmetric), group_size=group_size, act_order=act_order,
        static_groups=static_groups, clip_shrinks=gptq.CLIP_SHRINKS)
    q = result.qtensor
    np.testing.assert_array_equal(unpacked_codes(q), codes)
    np.testing.assert_array_equal(q.scales.astype(np.float32), scales)
    if zeros is not None:
        np.testing.assert_array_equal(q.zeros.astype(np.float32), zeros.astype(np.float32))
    np.testing.assert_allclose(result.losses, losses, rtol=1e-6)


def test_clip_search_lowers_the_weighted_rounding_error_and_checks_its_type(layer):
    W, H, _ = layer
    d = np.diag(H)[None, :]
    # H diagonal: no error feedback, so only the group parameters differ
    plain = gptq.quantize(W, np.diag(np.diag(H)), "int3", group_size=64).qtensor.dequantize()
    clipped = gptq.quantize(W, np.diag(np.diag(H)), "int3", group_size=64, clip_search=True).qtensor.dequantize()
    assert np.sum(d * (W - clipped) ** 2) < np.sum(d * (W - plain) ** 2)
    with pytest.raises(TypeError, match="clip_search must be a bool"):
        gptq.quantize(W, H, "int4", group_size=64, clip_search=1)
