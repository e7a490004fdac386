"""INT4 group-128 quantize+pack and unpack+dequantize of a 4096 x 11008 float32 weight.

Each group holds quantcore, a hand-written vectorized numpy version of the same math (checked to
give the same codes after timing), and a copy of the same bytes at the same thread count, so one
run gives both ratios. Outputs of quantize are fresh (as the API returns them); dequantize writes
into a preallocated array (out=), and so does the copy.

    python -m pytest bench/bench_quantize.py --benchmark-only --benchmark-min-rounds=5

extra_info["GB/s"] counts the bytes each call moves: quantize reads 4 bytes per weight and writes
the packed codes, scales and zeros; dequantize the reverse; the copy reads and writes its array.
"% of copy bandwidth" is quantcore's GB/s over the copy's GB/s in the same group (add
--benchmark-json=FILE to keep extra_info). The kernels use every core (quantcore.get_num_threads())
and the numpy baseline one, so a core busy with other work lowers the ratio to numpy.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import quantcore

ROWS, COLS, GROUP = 4096, 11008, 128
SIMD_ISAS = [isa for isa in quantcore.available_isas() if isa != "scalar"] or ["scalar"]


@pytest.fixture(scope="module")
def weight():
    rng = np.random.default_rng(0)
    return (rng.standard_normal((ROWS, COLS), dtype=np.float32) * np.float32(0.02))


def numpy_quantize_int4(w: np.ndarray, symmetric: bool):
    """The quantize() math for int4 written as vectorized numpy: codes packed two per byte."""
    g = w.reshape(w.shape[0], -1, GROUP)  # [out, n_groups, group]
    lo, hi = g.min(axis=-1), g.max(axis=-1)
    absmax = np.maximum(-lo, hi)
    constant = (lo == hi) & (lo != 0)
    if symmetric:
        exact = np.where(constant, absmax, absmax / np.float32(7))
    else:
        span = np.maximum(hi, np.float32(0)) - np.minimum(lo, np.float32(0))
        exact = np.where(constant, absmax, span / np.float32(15))
    with np.errstate(over="ignore"):
        scale = exact.astype(np.float16).astype(np.float32)
    scale = np.where(scale == 0, np.float32(2.0 ** -24), scale)
    scale = np.where(absmax == 0, np.float32(1), scale)
    q = np.rint(g / scale[..., None])
    if symmetric:
        zeros = None
        codes = (np.clip(q, -7, 7) + 8).astype(np.uint8)
    else:
        zeros = np.minimum(np.rint(-np.minimum(lo, np.float32(0)) / scale), 15)
        codes = np.clip(q + zeros[..., None], 0, 15).astype(np.uint8)
        zeros = zeros.astype(np.uint8)
    codes = codes.reshape(w.shape[0], -1)
    return codes[:, 0::2] | (codes[:, 1::2] << 4), scale.astype(np.float16), zeros


def threaded_copy(dst: np.ndarray, src: np.ndarray, pool: ThreadPoolExecutor, n_threads: int) -> None:
    """np.copyto split by rows over n_threads (numpy releases the GIL while copying)."""
    bounds = np.linspace(0, src.shape[0], n_threads + 1).astype(int)
    list(pool.map(lambda i: np.copyto(dst[bounds[i]:bounds[i + 1]], src[bounds[i]:bounds[i + 1]]), range(n_threads)))


def quantize_bytes(symmetric: bool) -> int:
    n_groups = ROWS * COLS // GROUP
    return 4 * ROWS * COLS + ROWS * COLS // 2 + 2 * n_groups + (0 if symmetric else n_groups)


def record(benchmark, n_bytes: int) -> None:
    benchmark.extra_info["GB/s"] = round(n_bytes / benchmark.stats["median"] / 1e9, 2)
    benchmark.extra_info["threads"] = quantcore.get_num_threads()


@pytest.mark.parametrize("symmetric", [False, True], ids=["asym", "sym"])
@pytest.mark.parametrize("isa", SIMD_ISAS)
def test_quantize_int4_quantcore(benchmark, weight, isa, symmetric):
    benchmark.group = f"int4 g128 quantize+pack {'sym' if symmetric else 'asym'}"
    with quantcore.using_isa(isa):
        q = benchmark(quantcore.quantize, weight, "int4", group_size=GROUP, symmetric=symmetric)
    record(benchmark, quantize_bytes(symmetric))
    codes, scales, zeros = numpy_quantize_int4(weight[:256], symmetric)  # spot check
    np.testing.assert_array_equal(q.codes[:256], codes)
    np.testing.assert_array_equal(q.scales[:256], scales)


@pytest.mark.parametrize("symmetric", [False, True], ids=["asym", "sym"])
def test_quantize_int4_numpy(benchmark, weight, symmetric):
    benchmark.group = f"int4 g128 quantize+pack {'sym' if symmetric else 'asym'}"
    codes, scales, zeros = benchmark.pedantic(numpy_quantize_int4, args=(weight, symmetric), rounds=3, iterations=1)
    record(benchmark, quantize_bytes(symmetric))
    q = quantcore.quantize(weight, "int4", group_size=GROUP, symmetric=symmetric)
    np.testing.assert_array_equal(q.codes, codes)
    np.testing.assert_array_equal(q.scales, scales)
    if zeros is not None:
        np.testing.assert_array_equal(q.zeros, zeros)


@pytest.mark.parametrize("group", ["int4 g128 quantize+pack asym", "int4 g128 quantize+pack sym",
                                   "int4 g128 unpack+dequantize"])
def test_copy_same_bytes(benchmark, weight, group):
    """The float32 weight copied into a preallocated array, at the kernels' thread count."""
    benchmark.group = group
    dst = np.empty_like(weight)
    n = quantcore.get_num_threads()
    with ThreadPoolExecutor(n) as pool:
        threaded_copy(dst, weight, pool, n)  # fault the pages in before timing
        benchmark(threaded_copy, dst, weight, pool, n)
    record(benchmark, 2 * weight.nbytes)
    np.testing.assert_array_equal(dst, weight)


@pytest.mark.parametrize("isa", SIMD_ISAS)
def test_dequantize_int4_quantcore(benchmark, weight, isa):
    benchmark.group = "int4 g128 unpack+dequantize"
    q = quantcore.quantize(weight, "int4", group_size=GROUP)
    out = np.empty_like(weight)
    with quantcore.using_isa(isa):
        q.dequantize(out=out)
        benchmark(q.dequantize, out=out)
    record(benchmark, quantize_bytes(False))
    with quantcore.using_isa("scalar"):
        expected = q.dequantize()
    np.testing.assert_array_equal(out, expected)


def test_dequantize_int4_numpy(benchmark, weight):
    benchmark.group = "int4 g128 unpack+dequantize"
    q = quantcore.quantize(weight, "int4", group_size=GROUP)

    def numpy_dequantize():
        codes = np.empty((ROWS, COLS), np.uint8)
        codes[:, 0::2] = q.codes & 15
        codes[:, 1::2] = q.codes >> 4
        g = codes.reshape(ROWS, -1, GROUP).astype(np.int32) - q.zeros[..., None]
        return (g.astype(np.float32) * q.scales.astype(np.float32)[..., None]).reshape(ROWS, COLS)

    out = benchmark.pedantic(numpy_dequantize, rounds=3, iterations=1)
    record(benchmark, quantize_bytes(False))
    np.testing.assert_array_equal(out, q.dequantize())
