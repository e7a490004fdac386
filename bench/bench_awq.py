"""AWQ search on llama-7B-sized linears: q/k/v (three [4096, 4096] weights sharing x) with 2048
calibration tokens, int4, group 128, asymmetric, n_grid 20; and the clip search of one of them.

Reports seconds (median of 2 rounds) and, from the same rounds, the share of the time spent in
quantize + dequantize (quantcore's C++ kernels) and in the loss matmuls (numpy / OpenBLAS):

    python -m pytest bench/bench_awq.py --benchmark-only -s

The search does n_grid * n_weights quantize + dequantize passes over [4096, 4096] and as many
x @ E.T products (2 * 2048 * 4096 * 4096 = 68.7 GFLOP each); the matmuls are the floor.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import quantcore
from quantcore import awq

TOKENS, D, N_GRID, GROUP = 2048, 4096, 20, 128


@pytest.fixture(scope="module")
def qkv():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((TOKENS, D), dtype=np.float32)
    x[:, rng.choice(D, 40, replace=False)] *= 20  # salient channels, as LLM activations have
    weights = [0.02 * rng.standard_normal((D, D), dtype=np.float32) for _ in range(3)]
    return x, weights


class _Timers:
    """Wall time spent inside awq's quantize+dequantize step and its loss matmul."""

    def __init__(self, monkeypatch):
        self.seconds = {"_fake_quantize": 0.0, "_sum_sq_output_error": 0.0}
        for name in self.seconds:
            monkeypatch.setattr(awq, name, self._timed(name, getattr(awq, name)))

    def _timed(self, name, fn):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - t
        return wrapper


def test_search_scales_qkv(benchmark, qkv, monkeypatch):
    x, weights = qkv
    benchmark.group = "awq search_scales q/k/v 3x[4096,4096], 2048 tokens, int4 g128, n_grid 20"
    timers = _Timers(monkeypatch)
    t = time.perf_counter()
    r = benchmark.pedantic(awq.search_scales, args=(x, weights, "int4"),
                           kwargs=dict(group_size=GROUP, n_grid=N_GRID), rounds=2, iterations=1)
    total = time.perf_counter() - t
    quant, matmul = timers.seconds["_fake_quantize"], timers.seconds["_sum_sq_output_error"]
    benchmark.extra_info.update(seconds=benchmark.stats["median"], quantize_dequantize_share=quant / total,
                                matmul_share=matmul / total, other_share=1 - (quant + matmul) / total,
                                matmul_gflops=2 * 2 * TOKENS * D * D * len(weights) * N_GRID / matmul / 1e9)
    print(f"\nsearch_scales q/k/v: median {benchmark.stats['median']:.2f} s; quantize+dequantize "
          f"{100 * quant / total:.1f}%, loss matmuls {100 * matmul / total:.1f}% "
          f"({benchmark.extra_info['matmul_gflops']:.0f} GFLOP/s), rest {100 * (1 - (quant + matmul) / total):.1f}%")

    # a fast wrong answer fails: the alpha = 0 loss is RTN's, computed here independently
    monkeypatch.undo()
    rtn = sum(float(np.sum(np.square(x @ (w - quantcore.quantize(w, "int4", group_size=GROUP).dequantize()).T),
                           dtype=np.float64)) for w in weights) / (TOKENS * D * len(weights))
    assert r.rtn_loss == pytest.approx(rtn, rel=1e-4)
    assert r.alpha > 0 and r.loss < 0.8 * r.rtn_loss


def test_search_clip_one_linear(benchmark, qkv):
    x, weights = qkv
    benchmark.group = "awq search_clip [4096,4096], 512 of 2048 tokens, int4 g128"
    max_val = benchmark.pedantic(awq.search_clip, args=(x, weights[0], "int4"),
                                 kwargs=dict(group_size=GROUP), rounds=2, iterations=1)
    benchmark.extra_info["seconds"] = benchmark.stats["median"]
    absmax = np.abs(weights[0]).reshape(D, -1, GROUP).max(axis=2)
    ratio = max_val / absmax
    assert max_val.shape == (D, D // GROUP) and (ratio <= 1).all() and (ratio >= 0.5).all()
    assert ratio.mean() < 1  # Gaussian weights: clipping pays in most groups
