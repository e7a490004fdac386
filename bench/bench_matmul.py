"""quantcore.matmul: GEMV and GEMM on a 4096 -> 11008 weight against numpy float32 (OpenBLAS).

Run (numpy's baseline without the machine's OpenBLAS overrides, which slow it down):
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m pytest bench/bench_matmul.py \
        --benchmark-only --benchmark-min-rounds=5
Each group holds its baselines, so one run gives the ratios (printed at the end). Outputs are
preallocated (out=). Results are checked after timing: a fast wrong answer fails.

GEMV: weights from DRAM, not cache. Each call of ours takes the next of enough copies of the
quantized weight (>= 512 MB in all) that no copy is cached when it comes round again; numpy's
float32 weight is 180 MB, so it streams from DRAM anyway. "GB/s" counts the bytes a call must
read (packed codes + scales + zero points + x + y), and the "copy" row (a 256 MB copy over 2
threads: read + write bytes) gives this machine's bandwidth for the share-of-copy figure.
GEMM: batch 128; "elements" counts floating-point operations, so "G el/s" reads as GFLOP/s.
Each GEMM round of ours also runs right after numpy's (alternating ratio as below), so both
meet the same state of the machine. The weight is not rotated: at batch 128 reading its 23 MB
from DRAM (under 1 ms) is about 1-3% of a call.

This machine's memory bandwidth drifts (numpy's GEMV: 3.7 to 6.1 ms in one hour), so a ratio of
medians taken seconds apart moves with it. Each GEMV round of ours therefore runs right after a
numpy float32 GEMV on the same x and the 256 MB copy, and the summary adds the medians over
rounds of numpy's time / ours ("x numpy (alternating)") and of our GB/s / the copy's. That
needs numpy's OpenBLAS threads to sleep when a call ends (by default they spin and take a core
from our call): conftest.py sets OPENBLAS_THREAD_TIMEOUT before numpy loads when this file runs
alone; otherwise the alternating ratio is left out.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import pytest

import quantcore
from quantcore.matmul import INT8_SCHEMES
from conftest import openblas_threads_sleep, parallel_copy

N, K = 11008, 4096
TOTAL_BYTES = 512 << 20
GEMV_SCHEMES = [("int4", 128), ("q4_0", 32), ("q8_0", 32), ("fp8_e4m3fn", -1)]


@pytest.fixture(scope="module")
def weight() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.standard_normal((N, K)) * 0.02).astype(np.float32)


@pytest.fixture(scope="module")
def copy_buffers() -> tuple:
    """(dst, src) of TOTAL_BYTES / 2 each: the copy baseline."""
    src = np.ones(TOTAL_BYTES // 2 // 4, np.float32)
    return np.empty_like(src), src


@pytest.fixture(scope="module")
def x1() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((1, K)).astype(np.float32)


@pytest.fixture(scope="module")
def x128() -> np.ndarray:
    return np.random.default_rng(2).standard_normal((128, K)).astype(np.float32)


def _copies(qt: quantcore.QuantizedTensor) -> list:
    """Distinct buffers holding the same tensor, >= TOTAL_BYTES in all."""
    n = -(-TOTAL_BYTES // qt.nbytes)
    copies = [qt]
    for _ in range(n - 1):
        zeros = None if qt.zeros is None else qt.zeros.copy()
        copies.append(quantcore.QuantizedTensor(qt.scheme, qt.shape, qt.group_size, qt.symmetric, qt.codes.copy(),
                                                qt.scales.copy(), zeros))
    return copies


def _alternating(benchmark, ours, baselines, rounds: int, warmup_rounds: int) -> list:
    """benchmark.pedantic(ours), each round right after every callable of `baselines`; returns
    [the baselines' times..., ours] of each timed round."""
    seen = []

    def baselines_first():
        times = []
        for f in baselines:
            t = time.perf_counter()
            f()
            times.append(time.perf_counter() - t)
        seen.append(times + [None])

    def call():
        t = time.perf_counter()
        y = ours()
        if seen and seen[-1][-1] is None:
            seen[-1][-1] = time.perf_counter() - t
        return y

    benchmark.pedantic(call, setup=baselines_first, rounds=rounds, iterations=1, warmup_rounds=warmup_rounds)
    return [r for r in seen if r[-1] is not None][-rounds:]


def _record_vs_numpy(benchmark, timed: list) -> None:
    """The numpy ratio of rounds whose first baseline was numpy (only where its threads sleep)."""
    if openblas_threads_sleep():
        benchmark.extra_info.update(numpy_alternating_ms=round(1e3 * statistics.median(r[0] for r in timed), 3),
                                    vs_numpy_alternating=round(statistics.median(r[0] / r[-1] for r in timed), 2))


def _check(y: np.ndarray, x: np.ndarray, qt: quantcore.QuantizedTensor) -> None:
    w = qt.dequantize().astype(np.float64)
    ref = x.astype(np.float64) @ w.T
    tol = K * np.finfo(np.float32).eps * (np.abs(x).astype(np.float64) @ np.abs(w).T)
    assert np.all(np.abs(y - ref) <= tol)


@pytest.mark.parametrize("scheme,group", GEMV_SCHEMES, ids=[s for s, _ in GEMV_SCHEMES])
def test_gemv_numpy_float32(benchmark, weight, x1, scheme, group):
    benchmark.group = f"gemv {scheme} 1x{K} @ [{N}x{K}]^T, weights from DRAM"
    out = np.empty((1, N), np.float32)
    benchmark(np.matmul, x1, weight.T, out=out)
    benchmark.extra_info.update(role="baseline", bytes=weight.nbytes)


@pytest.mark.parametrize("scheme,group", GEMV_SCHEMES, ids=[s for s, _ in GEMV_SCHEMES])
def test_gemv_copy(benchmark, copy_buffers, copy_pool, scheme, group):
    benchmark.group = f"gemv {scheme} 1x{K} @ [{N}x{K}]^T, weights from DRAM"
    dst, src = copy_buffers
    benchmark(parallel_copy, dst, src, copy_pool, 2)
    benchmark.extra_info.update(role="copy", bytes=2 * src.nbytes)


GEMV_CASES = [(s, g, None) for s, g in GEMV_SCHEMES] + [(s, g, "int8") for s, g in GEMV_SCHEMES if s != "fp8_e4m3fn"]


@pytest.mark.parametrize("scheme,group,activations", GEMV_CASES,
                         ids=[f"{s}-{a or 'float'}" for s, _, a in GEMV_CASES])
def test_gemv_quantcore(benchmark, weight, x1, copy_buffers, copy_pool, scheme, group, activations):
    benchmark.group = f"gemv {scheme} 1x{K} @ [{N}x{K}]^T, weights from DRAM"
    qt = quantcore.quantize(weight, scheme, group_size=group, symmetric=True)
    copies = _copies(qt)
    out, out_numpy = np.empty((1, N), np.float32), np.empty((1, N), np.float32)
    state = {"i": 0}
    dst, src = copy_buffers

    def call():
        state["i"] = (state["i"] + 1) % len(copies)
        return quantcore.matmul(x1, copies[state["i"]], out=out, activations=activations)

    timed = _alternating(benchmark, call, [lambda: np.matmul(x1, weight.T, out=out_numpy),
                                           lambda: parallel_copy(dst, src, copy_pool, 2)],
                         rounds=max(20, 2 * len(copies)), warmup_rounds=len(copies))
    nbytes = qt.nbytes + x1.nbytes + out.nbytes
    benchmark.extra_info.update(bytes=nbytes, copies=len(copies), MB_per_copy=round(qt.nbytes / 2**20, 1),
                                copy_share_alternating=round(statistics.median(
                                    nbytes * c / (2 * src.nbytes * b) for _, c, b in timed), 3))
    _record_vs_numpy(benchmark, timed)
    y = call()
    if activations is None:
        _check(y, x1, qt)
    else:  # int8 activations: close to the float product (quantization error, not a bound)
        ref = x1.astype(np.float64) @ qt.dequantize().astype(np.float64).T
        assert np.linalg.norm(y - ref) <= 0.02 * np.linalg.norm(ref)


def test_gemm_numpy_float32(benchmark, weight, x128):
    benchmark.group = f"gemm int4 g128 128x{K} @ [{N}x{K}]^T"
    out = np.empty((128, N), np.float32)
    benchmark(np.matmul, x128, weight.T, out=out)
    benchmark.extra_info.update(role="baseline", elements=2 * 128 * N * K)


@pytest.mark.parametrize("activations", [None, "int8"])
def test_gemm_quantcore(benchmark, weight, x128, activations):
    benchmark.group = f"gemm int4 g128 128x{K} @ [{N}x{K}]^T"
    qt = quantcore.quantize(weight, "int4", group_size=128, symmetric=True)
    out, out_numpy = np.empty((128, N), np.float32), np.empty((128, N), np.float32)
    wd = qt.dequantize()  # numpy's baseline runs on the dequantized weight
    timed = _alternating(benchmark, lambda: quantcore.matmul(x128, qt, out=out, activations=activations),
                         [lambda: np.matmul(x128, wd.T, out=out_numpy)], rounds=15, warmup_rounds=2)
    benchmark.extra_info.update(elements=2 * 128 * N * K)
    _record_vs_numpy(benchmark, timed)
    y = quantcore.matmul(x128[:8], qt, activations=activations)
    if activations is None:
        _check(y, x128[:8], qt)
    else:  # int8 activations: close to the float product (quantization error, not a bound)
        ref = x128[:8].astype(np.float64) @ qt.dequantize().astype(np.float64).T
        assert np.abs(y - ref).max() < 0.02 * np.abs(ref).max()


# Every other scheme, against the same numpy baselines (alternating rounds, fewer of them): the
# figures above cover the bars; these show that no scheme falls off a slow path.
SCHEME_GEMV = [("int3", 128, True), ("int2", 64, False), ("int8", -1, True), ("int4", -1, True),
               ("int4", 32, False), ("int4", 64, True), ("q4_1", 32, False), ("nf4", 64, True),
               ("fp8_e5m2", -1, True), ("fp8_e4m3fn", 128, True)]  # fp8 g128: quantize's default group
SCHEME_GEMV_CASES = [(s, g, sym, a) for s, g, sym in SCHEME_GEMV
                     for a in ([None, "int8"] if s in INT8_SCHEMES else [None])]


def _name(scheme: str, group: int, symmetric: bool) -> str:
    g = "per-row" if group == -1 else f"g{group}"
    return f"{scheme} {g}{'' if scheme in ('q4_1', 'nf4') or scheme.startswith('fp8') else ' sym' if symmetric else ' asym'}"


@pytest.mark.parametrize("scheme,group,symmetric,activations", SCHEME_GEMV_CASES,
                         ids=[f"{s}-g{g}-{a or 'float'}" for s, g, _, a in SCHEME_GEMV_CASES])
def test_gemv_scheme(benchmark, weight, x1, scheme, group, symmetric, activations):
    benchmark.group = f"gemv {_name(scheme, group, symmetric)} 1x{K} @ [{N}x{K}]^T, weights from DRAM"
    qt = quantcore.quantize(weight, scheme, group_size=group, symmetric=symmetric)
    copies = _copies(qt)
    out, out_numpy = np.empty((1, N), np.float32), np.empty((1, N), np.float32)
    state = {"i": 0}

    def call():
        state["i"] = (state["i"] + 1) % len(copies)
        return quantcore.matmul(x1, copies[state["i"]], out=out, activations=activations)

    timed = _alternating(benchmark, call, [lambda: np.matmul(x1, weight.T, out=out_numpy)],
                         rounds=max(12, len(copies)), warmup_rounds=len(copies))
    benchmark.extra_info.update(bytes=qt.nbytes + x1.nbytes + out.nbytes)
    _record_vs_numpy(benchmark, timed)
    y = call()
    ref = x1.astype(np.float64) @ qt.dequantize().astype(np.float64).T
    if activations is None:
        _check(y, x1, qt)
    else:
        assert np.linalg.norm(y - ref) <= 0.02 * np.linalg.norm(ref)


SCHEME_GEMM = [("int3", 128, True), ("int2", 64, False), ("q4_0", 32, True), ("q8_0", 32, True),
               ("q4_1", 32, False), ("int8", -1, True), ("nf4", 64, True), ("fp8_e4m3fn", -1, True)]
SCHEME_GEMM_CASES = [(s, g, sym, a) for s, g, sym in SCHEME_GEMM
                     for a in ([None, "int8"] if s in INT8_SCHEMES else [None])]


@pytest.mark.parametrize("scheme,group,symmetric,activations", SCHEME_GEMM_CASES,
                         ids=[f"{s}-g{g}-{a or 'float'}" for s, g, _, a in SCHEME_GEMM_CASES])
def test_gemm_scheme(benchmark, weight, x128, scheme, group, symmetric, activations):
    benchmark.group = f"gemm {_name(scheme, group, symmetric)} 128x{K} @ [{N}x{K}]^T"
    qt = quantcore.quantize(weight, scheme, group_size=group, symmetric=symmetric)
    out, out_numpy = np.empty((128, N), np.float32), np.empty((128, N), np.float32)
    wd = qt.dequantize()
    timed = _alternating(benchmark, lambda: quantcore.matmul(x128, qt, out=out, activations=activations),
                         [lambda: np.matmul(x128, wd.T, out=out_numpy)], rounds=7, warmup_rounds=1)
    benchmark.extra_info.update(elements=2 * 128 * N * K)
    _record_vs_numpy(benchmark, timed)
    y = quantcore.matmul(x128[:8], qt, activations=activations)
    ref = x128[:8].astype(np.float64) @ wd.astype(np.float64).T
    if activations is None:
        _check(y, x128[:8], qt)
    else:
        assert np.abs(y - ref).max() < 0.02 * np.abs(ref).max()
