"""SmolLM2-135M decode: one-token steps through the KV cache, the float32 numpy forward against
the same model with its linears quantized (RTN int4 group 64 asymmetric, the demo's int4 row;
embedding / output at q8_0) running through quantcore.matmul, with float32 activations and with
int8 activations (quantize_model's activations="int8").

    python -m pytest bench/bench_model.py --benchmark-only -q

numpy's float forward runs on OpenBLAS's threads (all cores by default, as a user would run
it); on a loaded machine those threads spin waiting for a core and the float decode slows
down many-fold, so compare runs on a quiet machine (OPENBLAS_NUM_THREADS=1 gives the float
model's single-core speed). quantcore's kernels use their own pool (QUANTCORE_NUM_THREADS).

Each round prefills a 64-token prompt (not timed), then times DECODE greedy steps; the
summary's ratio is the float model's median over the quantized one's (decode tokens/s of the
quantized model in units of the float model's). Needs the default model in the asset cache
(quantcore.assets fetches it from the package registry on first use).
"""

from __future__ import annotations

import numpy as np
import pytest

from quantcore.models import evaluate, llama, quantized

PROMPT = 64
DECODE = 16


@pytest.fixture(scope="module")
def float_model():
    return llama.load_model()


@pytest.fixture(scope="module")
def prompt(float_model):
    return evaluate.evaluation_windows(float_model.tokenizer, 1)[0][:PROMPT]


def _prefilled(model, prompt):
    cache = model.new_cache(PROMPT + DECODE)
    logits = model.forward(prompt, cache)
    return (model, cache, int(np.argmax(logits[-1]))), {}


def _decode(model, cache, nxt):
    for _ in range(DECODE):
        nxt = int(np.argmax(model.forward(np.array([nxt]), cache)[-1]))
    return nxt


def _bench(benchmark, model, prompt):
    benchmark.group = f"SmolLM2-135M decode, {DECODE} tokens after a {PROMPT}-token prompt"
    benchmark.pedantic(_decode, setup=lambda: _prefilled(model, prompt), rounds=15, warmup_rounds=2)


def test_decode_float32_numpy(benchmark, float_model, prompt):
    _bench(benchmark, float_model, prompt)
    benchmark.extra_info.update(role="baseline", tokens_per_s=DECODE / benchmark.stats.stats.median)


@pytest.mark.parametrize("activations", [None, "int8"], ids=["float", "int8"])
def test_decode_int4_g64(benchmark, float_model, prompt, activations):
    model = quantized.quantize_model(float_model, "rtn", "int4", group_size=64, activations=activations,
                                     progress=False)
    _bench(benchmark, model, prompt)
    benchmark.extra_info.update(tokens_per_s=DECODE / benchmark.stats.stats.median,
                                weight_MB=round(model.weight_nbytes() / 2**20, 1))
    # the quantized model's next-token distribution stays close to the float model's
    p, q = (np.exp(m.forward(prompt)[-1].astype(np.float64)) for m in (float_model, model))
    p, q = p / p.sum(), q / q.sum()
    assert 0.5 * np.abs(p - q).sum() < 0.5  # total variation
