"""GGUF q4_0 / q4_1 / q8_0 quantize and dequantize against the gguf package and a numpy copy.

Run: python -m pytest bench/bench_gguf.py --benchmark-only --benchmark-min-rounds=3
Each group holds the baseline, so one run gives the ratios. Outputs are fresh arrays unless the
name says "out" (a preallocated output: no page faults on the 64 MB result). Results are checked
after timing: a fast wrong answer fails. "GB/s" counts bytes read plus bytes written; the numpy
copy rows (a 64 MB float32 copy into an existing array, one thread) give this machine's copy
bandwidth for comparison.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import quantcore
from quantcore import gguf as qg

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as GT  # noqa: E402

ROWS, COLS = 4096, 4096  # one 4096x4096 float32 weight: 64 MB in, 9.4 MB (q4_0) out
TYPES = ["q4_0", "q8_0", "q4_1"]
ISAS = quantcore.available_isas()


@pytest.fixture(scope="module")
def weight() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.standard_t(3.0, size=(ROWS, COLS)) * 0.02).astype(np.float32)


@pytest.fixture(scope="module")
def reference_blocks(weight):
    # gguf-py's bytes, computed once for the correctness checks.
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return {name: gguf.quants.quantize(weight, GT[name.upper()]) for name in TYPES}


def _info(benchmark, n_values: int, bytes_moved: int) -> None:
    median = benchmark.stats["median"]
    benchmark.extra_info["G values/s"] = round(n_values / median / 1e9, 3)
    benchmark.extra_info["GB/s"] = round(bytes_moved / median / 1e9, 2)


@pytest.mark.parametrize("name", TYPES)
def test_quantize_gguf_package(benchmark, weight, reference_blocks, name):
    benchmark.group = f"quantize {name} {ROWS}x{COLS} float32"
    out = benchmark.pedantic(gguf.quants.quantize, args=(weight, GT[name.upper()]), rounds=3, iterations=1)
    t = qg.TYPES[name]
    _info(benchmark, weight.size, weight.nbytes + weight.size // 32 * t.type_size)
    np.testing.assert_array_equal(out, reference_blocks[name])


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("name", TYPES)
def test_quantize_quantcore(benchmark, weight, reference_blocks, name, isa):
    benchmark.group = f"quantize {name} {ROWS}x{COLS} float32"
    with quantcore.using_isa(isa):
        out = benchmark(qg.quantize_blocks, weight, name)
    t = qg.TYPES[name]
    _info(benchmark, weight.size, weight.nbytes + weight.size // 32 * t.type_size)
    np.testing.assert_array_equal(out, reference_blocks[name])


@pytest.mark.parametrize("name", ["q4_0", "q8_0"])
def test_quantize_numpy_copy(benchmark, weight, name):
    # Copy bandwidth on this machine: the float32 matrix into an existing array (read + write).
    benchmark.group = f"quantize {name} {ROWS}x{COLS} float32"
    dst = np.empty_like(weight)
    benchmark(np.copyto, dst, weight)
    _info(benchmark, weight.size, 2 * weight.nbytes)


def _dequant_group(name: str) -> str:
    return f"dequantize {name} {ROWS}x{COLS} -> float32"


@pytest.mark.parametrize("name", ["q4_0", "q8_0"])
def test_dequantize_gguf_package(benchmark, weight, reference_blocks, name):
    benchmark.group = _dequant_group(name)
    data = reference_blocks[name]
    out = benchmark.pedantic(gguf.quants.dequantize, args=(data, GT[name.upper()]), rounds=3, iterations=1)
    _info(benchmark, weight.size, data.nbytes + weight.nbytes)
    np.testing.assert_array_equal(qg.dequantize_blocks(data, name, weight.shape).view(np.uint32), out.view(np.uint32))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("name", ["q4_0", "q8_0"])
def test_dequantize_quantcore(benchmark, weight, reference_blocks, name, isa):
    benchmark.group = _dequant_group(name)
    data = reference_blocks[name]
    with quantcore.using_isa(isa):
        out = benchmark(qg.dequantize_blocks, data, name, weight.shape)
    _info(benchmark, weight.size, data.nbytes + weight.nbytes)
    with quantcore.using_isa("scalar"):
        reference = qg.dequantize_blocks(data, name, weight.shape)
    np.testing.assert_array_equal(out.view(np.uint32), reference.view(np.uint32))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("name", ["q4_0", "q8_0"])
def test_dequantize_quantcore_out(benchmark, weight, reference_blocks, name, isa):
    benchmark.group = _dequant_group(name)
    data = reference_blocks[name]
    out = np.empty(weight.shape, np.float32)
    with quantcore.using_isa(isa):
        benchmark(qg.dequantize_blocks, data, name, weight.shape, out=out)
    _info(benchmark, weight.size, data.nbytes + weight.nbytes)
    np.testing.assert_array_equal(out.view(np.uint32), qg.dequantize_blocks(data, name, weight.shape).view(np.uint32))


@pytest.mark.parametrize("name", ["q4_0", "q8_0"])
def test_dequantize_numpy_copy(benchmark, weight, name):
    # Copy bandwidth on this machine: the float32 matrix into an existing array (read + write).
    benchmark.group = _dequant_group(name)
    dst = np.empty_like(weight)
    benchmark(np.copyto, dst, weight)
    _info(benchmark, weight.size, 2 * weight.nbytes)


def _kquant_blocks(name: str) -> np.ndarray:
    # Random k-quant blocks with finite fp16 fields (bit 14 clear: exponent below all-ones).
    t = qg.TYPES[name]
    data = np.random.default_rng(1).integers(0, 256, size=(ROWS, COLS // t.block_size, t.type_size), dtype=np.uint8)
    for offset in {"q4_k": (0, 2), "q6_k": (208,)}[name]:
        data[..., offset + 1] &= 0xBF
    return data.reshape(ROWS, -1)


@pytest.mark.parametrize("name", ["q4_k", "q6_k"])
def test_dequantize_kquant_gguf_package(benchmark, name):
    benchmark.group = _dequant_group(name)
    data = _kquant_blocks(name)
    out = benchmark.pedantic(gguf.quants.dequantize, args=(data, GT[name.upper()]), rounds=3, iterations=1)
    _info(benchmark, ROWS * COLS, data.nbytes + 4 * ROWS * COLS)
    np.testing.assert_array_equal(qg.dequantize_blocks(data, name, (ROWS, COLS)).view(np.uint32), out.view(np.uint32))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("name", ["q4_k", "q6_k"])
def test_dequantize_kquant_quantcore_out(benchmark, name, isa):
    benchmark.group = _dequant_group(name)
    data = _kquant_blocks(name)
    out = np.empty((ROWS, COLS), np.float32)
    with quantcore.using_isa(isa):
        benchmark(qg.dequantize_blocks, data, name, (ROWS, COLS), out=out)
    _info(benchmark, ROWS * COLS, data.nbytes + 4 * ROWS * COLS)
    with quantcore.using_isa("scalar"):
        reference = qg.dequantize_blocks(data, name, (ROWS, COLS))
    np.testing.assert_array_equal(out.view(np.uint32), reference.view(np.uint32))


@pytest.mark.parametrize("name", ["q4_k", "q6_k"])
def test_dequantize_kquant_numpy_copy(benchmark, name):
    benchmark.group = _dequant_group(name)
    src = np.ones((ROWS, COLS), np.float32)
    dst = np.empty_like(src)
    benchmark(np.copyto, dst, src)
    _info(benchmark, ROWS * COLS, 2 * src.nbytes)
