"""Quantized models: linears that hold a QuantizedTensor, and quantize_model().

quantize_model(model, method, scheme, ...) returns a new LlamaModel whose block linears are
QuantizedLinear. Norms stay float32. The embedding / output matrix is quantized separately
(`embedding_scheme`, 8 bits by default) because it is the most sensitive matrix of a small
model: with tied embeddings the input embedding uses the same quantized matrix.

Methods:
    "rtn"   round to nearest: quantcore.quantize on each weight.
    "fp8"   scaled FP8 (scheme "fp8_e4m3fn" or "fp8_e5m2"; the scheme argument picks which).
Layers are processed in execution order, so calibration-driven methods see the inputs of the
already-quantized layers before them (as the GPTQ paper does).
"""

from __future__ import annotations

import copy
from typing import Iterable

import numpy as np

from quantcore.models.llama import LINEAR_NAMES, Linear, LlamaBlock, LlamaModel
from quantcore.quantize import SCHEMES, QuantizedTensor, quantize

METHODS = ("rtn", "fp8")


class QuantizedLinear:
    """y = x @ W.T for the weight W a QuantizedTensor holds.

    Args:
        qt: QuantizedTensor of shape [out_features, in_features].

    Attributes:
        qt: the QuantizedTensor; nbytes counts its codes, scales and zero points.
    """

    def __init__(self, qt: QuantizedTensor):
        if not isinstance(qt, QuantizedTensor):
            raise TypeError(f"QuantizedLinear: qt must be a QuantizedTensor (got {type(qt).__name__})")
        if len(qt.shape) != 2:
            raise ValueError(f"QuantizedLinear: qt must be 2-D [out_features, in_features] (got shape {qt.shape})")
        self.qt = qt

    @property
    def in_features(self) -> int:
        return self.qt.shape[1]

    @property
    def out_features(self) -> int:
        return self.qt.shape[0]

    @property
    def nbytes(self) -> int:
        return self.qt.nbytes

    @property
    def weight(self) -> np.ndarray:
        """The dequantized weight, float32 [out_features, in_features] (computed on each access)."""
        return self.qt.dequantize()

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x: float32 [..., in_features] -> float32 [..., out_features]."""
        return x @ self.qt.dequantize().T

    __call__ = forward

    def __repr__(self) -> str:
        return f"QuantizedLinear({self.qt!r})"


def _check_method(method: object, scheme: object) -> None:
    if method not in METHODS:
        raise ValueError(f"quantize_model: method must be one of {list(METHODS)} (got {method!r})")
    if scheme not in SCHEMES:
        raise ValueError(f"quantize_model: scheme must be one of {list(SCHEMES)} (got {scheme!r})")
    if method == "fp8" and not str(scheme).startswith("fp8_"):
        raise ValueError(f"quantize_model: method 'fp8' needs scheme 'fp8_e4m3fn' or 'fp8_e5m2' (got {scheme!r})")


def _quantize_embedding(model: LlamaModel, embedding_scheme: str | None) -> tuple[np.ndarray, object]:
    """The (input embedding, output linear) of the quantized model."""
    if embedding_scheme is None:
        return model.token_embd, model.output
    out_w = model.output.weight if not model.config.tied_embeddings else model.token_embd
    q_out = QuantizedLinear(quantize(out_w, embedding_scheme))
    if model.config.tied_embeddings:
        # tied: the input embedding is the same quantized matrix, looked up row by row
        return q_out.qt.dequantize(), q_out
    return model.token_embd, q_out


def quantize_model(model: LlamaModel, method: str = "rtn", scheme: str = "int4", *, group_size: int | None = 64,
                   symmetric: bool = False, embedding_scheme: str | None = "q8_0",
                   layers: Iterable[int] | None = None, progress: bool = True) -> LlamaModel:
    """A copy of `model` with its block linears quantized.

    Args:
        model: a float LlamaModel (not modified).
        method: "rtn" or "fp8" (see the module docstring).
        scheme: a quantcore.quantize scheme ("int4", "int3", "q4_0", "fp8_e4m3fn", ...).
        group_size, symmetric: as for quantcore.quantize (None: the scheme's default).
        embedding_scheme: scheme of the embedding / output matrix (default "q8_0", 8.5 bits);
            None keeps it float32.
        layers: block indices to quantize (default: all).
        progress: show a progress bar (tqdm) over the layers.

    Returns:
        A new LlamaModel sharing the tokenizer, config and norms with `model`.

    Raises:
        ValueError: unknown method or scheme, or a scheme that does not fit the method.
    """
    _check_method(method, scheme)
    if embedding_scheme is not None and embedding_scheme not in SCHEMES:
        raise ValueError(f"quantize_model: embedding_scheme must be one of {list(SCHEMES)} or None "
                         f"(got {embedding_scheme!r})")
    selected = set(range(model.config.n_layer)) if layers is None else {int(i) for i in layers}
    token_embd, output = _quantize_embedding(model, embedding_scheme)
    from tqdm.auto import tqdm

    blocks = []
    for block in tqdm(model.blocks, desc=f"quantize {method} {scheme}", disable=not progress, leave=False):
        linears = dict(block.linears)
        if block.index in selected:
            for name in LINEAR_NAMES:
                w = _float_weight(linears[name])
                linears[name] = QuantizedLinear(quantize(w, scheme, group_size=group_size, symmetric=symmetric))
        blocks.append(LlamaBlock(block.config, block.index, block.attn_norm, block.ffn_norm, linears))
    quantized = copy.copy(model)
    quantized.blocks = blocks
    quantized.token_embd = token_embd
    quantized.output = output
    quantized.quantization = {"method": method, "scheme": scheme, "group_size": group_size,
                              "symmetric": bool(symmetric), "embedding_scheme": embedding_scheme}
    return quantized


def _float_weight(linear: object) -> np.ndarray:
    if isinstance(linear, Linear):
        return linear.weight
    raise ValueError(f"quantize_model: expected float Linear layers (got {type(linear).__name__}); "
                     "quantize the float model, not an already quantized one")
