"""Writing and reading SmolLM2-135M at RTN q4_0 (q8_0 embedding): export_gguf, save_quantized,
load_quantized and LlamaModel.from_gguf of the exported file, against numpy writing / reading the
same number of bytes (tofile / fromfile, the "copy" row of each group; the files stay in the page
cache, so these are CPU costs, not disk speed).

Run: python -m pytest bench/bench_export.py --benchmark-only --benchmark-min-rounds=3
Results are checked after timing: the written files load back to the same tensors.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from quantcore import models
from quantcore.models.quantized import quantize_model

gguf = pytest.importorskip("gguf")


@pytest.fixture(scope="module")
def quantized():
    return quantize_model(models.load_model(), "rtn", "q4_0", group_size=32, progress=False)


@pytest.fixture(scope="module")
def files(quantized, tmp_path_factory):
    d = tmp_path_factory.mktemp("bench_export")
    models.export_gguf(quantized, d / "m.gguf")
    models.save_quantized(quantized, d / "m.safetensors")
    blob = np.random.default_rng(0).integers(0, 256, os.path.getsize(d / "m.gguf"), dtype=np.uint8)
    blob.tofile(d / "raw.bin")
    return d, blob


@pytest.mark.benchmark(group="write SmolLM2 q4_0")
def test_write_numpy_tofile(benchmark, files):
    d, blob = files
    benchmark.extra_info.update(role="copy", bytes=blob.nbytes)
    benchmark(blob.tofile, d / "raw_out.bin")


@pytest.mark.benchmark(group="write SmolLM2 q4_0")
def test_export_gguf(benchmark, quantized, files):
    d, _ = files
    benchmark(models.export_gguf, quantized, d / "out.gguf")
    benchmark.extra_info["bytes"] = os.path.getsize(d / "out.gguf")
    assert (d / "out.gguf").read_bytes() == (d / "m.gguf").read_bytes()


@pytest.mark.benchmark(group="write SmolLM2 q4_0")
def test_save_quantized(benchmark, quantized, files):
    d, _ = files
    benchmark(models.save_quantized, quantized, d / "out.safetensors")
    benchmark.extra_info["bytes"] = os.path.getsize(d / "out.safetensors")
    back = models.load_quantized(d / "out.safetensors", load_tokenizer=False)
    np.testing.assert_array_equal(back.blocks[-1].linears["down"].qt.codes, quantized.blocks[-1].linears["down"].qt.codes)


@pytest.mark.benchmark(group="read SmolLM2 q4_0")
def test_read_numpy_fromfile(benchmark, files):
    d, blob = files
    benchmark.extra_info.update(role="copy", bytes=blob.nbytes)
    benchmark(np.fromfile, d / "raw.bin", np.uint8)


@pytest.mark.benchmark(group="read SmolLM2 q4_0")
def test_load_quantized(benchmark, quantized, files):
    d, _ = files
    back = benchmark(models.load_quantized, d / "m.safetensors")
    benchmark.extra_info["bytes"] = os.path.getsize(d / "m.safetensors")
    np.testing.assert_array_equal(back.output.qt.codes, quantized.output.qt.codes)


@pytest.mark.benchmark(group="read SmolLM2 q4_0")
def test_from_gguf_of_export(benchmark, quantized, files):
    """Parses the file with gguf.GGUFReader (Python, per key) and dequantizes every tensor to float32."""
    d, _ = files
    back = benchmark.pedantic(models.LlamaModel.from_gguf, (d / "m.gguf",), rounds=3, iterations=1)
    benchmark.extra_info["bytes"] = os.path.getsize(d / "m.gguf")
    np.testing.assert_array_equal(back.blocks[0].linears["q"].weight, quantized.blocks[0].linears["q"].qt.dequantize())
