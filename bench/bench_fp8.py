"""FP8 encode/decode/quantize against ml_dtypes, torch (when importable) and a numpy copy.

Run: python -m pytest bench/bench_fp8.py --benchmark-only
Outputs are preallocated (out=) for the encode/decode conversions, as for the baselines, so no
page faults are timed. quantize() returns fresh arrays by default: its first group compares it
with a copy into a fresh array (both pay page faults); the second times quantize(out=...) into
the arrays of an earlier result against a copy into a preallocated array.
"""

import ml_dtypes
import numpy as np
import pytest

import quantcore
from conftest import parallel_copy
from quantcore import fp8

N = 1 << 24
ROUNDS = dict(rounds=15, warmup_rounds=2, iterations=1)

try:
    import torch
except ImportError:  # the torch baseline is optional
    torch = None


@pytest.fixture(scope="module")
def data():
    x = np.random.default_rng(0).standard_normal(N, dtype=np.float32)
    codes = x.astype(ml_dtypes.float8_e4m3fn)
    return x, codes


# ---------------------------------------------------------------- encode float32 -> e4m3fn


@pytest.mark.benchmark(group="fp8-encode-f32-e4m3fn-16M")
@pytest.mark.parametrize("isa", quantcore.available_isas())
def test_encode(benchmark, data, isa):
    x, ref = data
    out = np.empty(N, ml_dtypes.float8_e4m3fn)
    with quantcore.using_isa(isa):
        benchmark.pedantic(fp8.encode, args=(x,), kwargs=dict(out=out), **ROUNDS)
    benchmark.extra_info.update(bytes=5 * N, elements=N, threads=quantcore.get_num_threads())
    np.testing.assert_array_equal(out.view(np.uint8), ref.view(np.uint8))


@pytest.mark.benchmark(group="fp8-encode-f32-e4m3fn-16M")
def test_encode_ml_dtypes(benchmark, data):
    x, ref = data
    out = np.empty(N, ml_dtypes.float8_e4m3fn)
    benchmark.pedantic(np.copyto, args=(out, x), kwargs=dict(casting="unsafe"), rounds=3, warmup_rounds=1)
    benchmark.extra_info.update(bytes=5 * N, elements=N, role="baseline")
    np.testing.assert_array_equal(out.view(np.uint8), ref.view(np.uint8))


@pytest.mark.benchmark(group="fp8-encode-f32-e4m3fn-16M")
@pytest.mark.skipif(torch is None, reason="torch not installed: optional baseline")
def test_encode_torch(benchmark, data):
    x, ref = data
    src = torch.from_numpy(x)
    out = torch.empty(N, dtype=torch.float8_e4m3fn)
    benchmark.pedantic(out.copy_, args=(src,), **ROUNDS)
    benchmark.extra_info.update(bytes=5 * N, elements=N, role="baseline", threads=torch.get_num_threads())
    np.testing.assert_array_equal(out.view(torch.uint8).numpy(), ref.view(np.uint8))


@pytest.mark.benchmark(group="fp8-encode-f32-e4m3fn-16M")
@pytest.mark.parametrize("threads", [1, 2])
def test_copy_f32(benchmark, data, copy_pool, threads):
    x, _ = data
    out = np.empty_like(x)
    benchmark.pedantic(parallel_copy, args=(out, x, copy_pool, threads), **ROUNDS)
    benchmark.extra_info.update(bytes=8 * N, role="copy")


# ---------------------------------------------------------------- decode e4m3fn -> float32


@pytest.mark.benchmark(group="fp8-decode-e4m3fn-f32-16M")
@pytest.mark.parametrize("isa", quantcore.available_isas())
def test_decode(benchmark, data, isa):
    x, codes = data
    out = np.empty(N, np.float32)
    with quantcore.using_isa(isa):
        benchmark.pedantic(fp8.decode, args=(codes,), kwargs=dict(out=out), **ROUNDS)
    benchmark.extra_info.update(bytes=5 * N, elements=N, threads=quantcore.get_num_threads())
    np.testing.assert_array_equal(out, codes.astype(np.float32))


@pytest.mark.benchmark(group="fp8-decode-e4m3fn-f32-16M")
def test_decode_ml_dtypes(benchmark, data):
    _, codes = data
    out = np.empty(N, np.float32)
    benchmark.pedantic(np.copyto, args=(out, codes), kwargs=dict(casting="unsafe"), rounds=3, warmup_rounds=1)
    benchmark.extra_info.update(bytes=5 * N, elements=N, role="baseline")


@pytest.mark.benchmark(group="fp8-decode-e4m3fn-f32-16M")
@pytest.mark.skipif(torch is None, reason="torch not installed: optional baseline")
def test_decode_torch(benchmark, data):
    _, codes = data
    src = torch.from_numpy(codes.view(np.uint8)).view(torch.float8_e4m3fn)
    out = torch.empty(N, dtype=torch.float32)
    benchmark.pedantic(out.copy_, args=(src,), **ROUNDS)
    benchmark.extra_info.update(bytes=5 * N, elements=N, role="baseline", threads=torch.get_num_threads())
    np.testing.assert_array_equal(out.numpy(), codes.astype(np.float32))


@pytest.mark.benchmark(group="fp8-decode-e4m3fn-f32-16M")
@pytest.mark.parametrize("threads", [1, 2])
def test_copy_f32_decode(benchmark, data, copy_pool, threads):
    x, _ = data
    out = np.empty_like(x)
    benchmark.pedantic(parallel_copy, args=(out, x, copy_pool, threads), **ROUNDS)
    benchmark.extra_info.update(bytes=8 * N, role="copy")


# ---------------------------------------------------------------- scaled quantize 4096 x 11008


@pytest.fixture(scope="module")
def weight():
    return np.random.default_rng(1).standard_normal((4096, 11008), dtype=np.float32)


@pytest.mark.benchmark(group="fp8-quantize-4096x11008")
@pytest.mark.parametrize("granularity", ["row", 128, "tensor", (128, 128)], ids=str)
def test_quantize(benchmark, weight, granularity):
    q = benchmark.pedantic(fp8.quantize, args=(weight,), kwargs=dict(granularity=granularity), rounds=7, warmup_rounds=1)
    benchmark.extra_info.update(bytes=5 * weight.size, elements=weight.size)
    # check after timing: dequantized values within the e4m3fn half-ulp of the scaled input
    rows = weight[:64]
    err = np.abs(q.dequantize()[:64] - rows)
    assert np.all(err <= np.abs(rows) * 2.0**-4 + np.max(np.abs(weight)) / 448 * 2.0**-9)


@pytest.mark.benchmark(group="fp8-quantize-4096x11008")
def test_copy_weight_fresh(benchmark, weight):
    """quantize() returns fresh arrays, so its copy reference is a copy into a fresh array
    (np.copy): both pay the page faults of new memory. See the preallocated copies for the
    bandwidth of memory alone."""
    benchmark.pedantic(np.copy, args=(weight,), rounds=7, warmup_rounds=1)
    benchmark.extra_info.update(bytes=8 * weight.size, role="copy")


@pytest.mark.benchmark(group="fp8-quantize-4096x11008-vs-preallocated-copy")
@pytest.mark.parametrize("granularity", ["row", 128], ids=str)
def test_quantize_into_out(benchmark, weight, granularity):
    out = fp8.quantize(weight, granularity=granularity)
    benchmark.pedantic(fp8.quantize, args=(weight,), kwargs=dict(granularity=granularity, out=out), rounds=7, warmup_rounds=1)
    benchmark.extra_info.update(bytes=5 * weight.size, elements=weight.size)
    np.testing.assert_array_equal(out.codes.view(np.uint8), fp8.quantize(weight, granularity=granularity).codes.view(np.uint8))


@pytest.mark.benchmark(group="fp8-quantize-4096x11008-vs-preallocated-copy")
@pytest.mark.parametrize("threads", [1, 2])
def test_copy_weight(benchmark, weight, copy_pool, threads):
    out = np.empty_like(weight)
    benchmark.pedantic(parallel_copy, args=(out, weight, copy_pool, threads), rounds=7, warmup_rounds=1)
    benchmark.extra_info.update(bytes=8 * weight.size, role="copy")
