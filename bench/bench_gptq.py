"""GPTQ on one 4096x4096 layer, int4 asymmetric, group 128, block 128: quantcore.gptq.quantize
against a torch-CPU restatement of the IST-DASLab reference loop (gptq.py `fasterquant` with
quant.py's Quantizer, float32, written here), both timed in this run on the same threads.

H is 2/N sum x x^T over 2048 correlated random tokens (rank 2048 < 4096: the 1% dampening makes
it positive-definite, as for a real layer with few calibration tokens). Each call starts from W
and H and returns the quantized weight; H's accumulation is not timed (both take H as input).

    python -m pytest bench/bench_gptq.py --benchmark-only -q

Threads: QUANTCORE_NUM_THREADS (default 2) for quantcore's pool and torch.set_num_threads; set
OPENBLAS_NUM_THREADS to the same number (numpy's BLAS and scipy's LAPACK run on it). On a
loaded machine, OpenBLAS threads that spin while waiting slow LAPACK calls down many-fold;
with 1 thread each the ratio is the most stable.

After timing, both results are checked: the proxy losses agree (within 5%) and both output
errors are well below RTN's.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import quantcore
from quantcore import gptq

ROWS = COLS = 4096
TOKENS = 2048
GROUP = 128
BLOCK = 128
THREADS = int(os.environ.get("QUANTCORE_NUM_THREADS", "2"))


@pytest.fixture(scope="module")
def layer():
    rng = np.random.default_rng(0)
    mix = rng.standard_normal((512, COLS)).astype(np.float32) / np.float32(np.sqrt(512))
    x = rng.standard_normal((TOKENS, 512)).astype(np.float32) @ mix
    x += np.float32(0.1) * rng.standard_normal((TOKENS, COLS)).astype(np.float32)
    x *= np.exp(rng.standard_normal(COLS)).astype(np.float32)  # channels of different scales
    W = (np.float32(0.02) * rng.standard_normal((ROWS, COLS))).astype(np.float32)
    h = gptq.Hessian(COLS)
    h.add_batch(x)
    return W, np.array(h.H), x[:512]


def torch_fasterquant(W, H, bits=4, group_size=GROUP, block_size=BLOCK, percdamp=0.01):
    """The reference loop in torch float32: returns (Q dequantized, total proxy loss)."""
    import torch

    W = W.clone()
    H = H.clone()
    rows, columns = W.shape
    maxq = 2 ** bits - 1

    def find_params(x):  # quant.py Quantizer.find_params, asymmetric, per row
        xmin = torch.minimum(x.min(1).values, torch.zeros(1))
        xmax = torch.maximum(x.max(1).values, torch.zeros(1))
        both_zero = (xmin == 0) & (xmax == 0)
        xmin[both_zero], xmax[both_zero] = -1, 1
        scale = (xmax - xmin) / maxq
        return scale, torch.round(-xmin / scale)

    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    Losses = torch.zeros_like(W)
    Q = torch.zeros_like(W)
    damp = percdamp * torch.mean(torch.diag(H))
    diag = torch.arange(columns)
    H[diag, diag] += damp
    H = torch.linalg.cholesky(H)
    H = torch.cholesky_inverse(H)
    Hinv = torch.linalg.cholesky(H, upper=True)
    scale = zero = None
    for i1 in range(0, columns, block_size):
        i2 = min(i1 + block_size, columns)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Losses1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(count):
            w = W1[:, i]
            d = Hinv1[i, i]
            if (i1 + i) % group_size == 0:
                scale, zero = find_params(W[:, i1 + i:i1 + i + group_size])
            q = torch.clamp(torch.round(w / scale) + zero, 0, maxq)
            q = scale * (q - zero)
            Q1[:, i] = q
            Losses1[:, i] = (w - q) ** 2 / d ** 2
            err1 = (w - q) / d
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1
        Q[:, i1:i2] = Q1
        Losses[:, i1:i2] = Losses1 / 2
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    return Q, float(Losses.sum())


def _output_error(W, Q, x):
    return float(np.sum(((W - Q) @ x.T).astype(np.float64) ** 2))


@pytest.mark.benchmark(group="gptq 4096x4096 int4 g128")
def test_gptq_quantize(benchmark, layer):
    W, H, x = layer
    quantcore.set_num_threads(THREADS)
    result = benchmark.pedantic(gptq.quantize, args=(W, H, "int4"),
                                kwargs=dict(group_size=GROUP, block_size=BLOCK), rounds=3, warmup_rounds=1)
    rtn = quantcore.quantize(W, "int4", group_size=GROUP)
    assert _output_error(W, result.qtensor.dequantize(), x) < 0.7 * _output_error(W, rtn.dequantize(), x)
    layer_losses["quantcore"] = result.loss


@pytest.mark.benchmark(group="gptq 4096x4096 int4 g128")
def test_torch_reference_loop(benchmark, layer):
    torch = pytest.importorskip("torch")
    W, H, x = layer
    torch.set_num_threads(THREADS)
    Wt, Ht = torch.from_numpy(W), torch.from_numpy(H.astype(np.float32))
    with torch.no_grad():
        Q, loss = benchmark.pedantic(torch_fasterquant, args=(Wt, Ht), rounds=3)  # seconds a call: no warm-up
    benchmark.extra_info["role"] = "baseline"
    rtn = quantcore.quantize(W, "int4", group_size=GROUP)
    assert _output_error(W, Q.numpy(), x) < 0.7 * _output_error(W, rtn.dequantize(), x)
    if "quantcore" in layer_losses:  # the same algorithm: the same proxy loss up to rounding
        assert abs(layer_losses["quantcore"] / loss - 1) < 0.05, (layer_losses["quantcore"], loss)


layer_losses: dict[str, float] = {}
