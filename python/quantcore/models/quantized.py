"""Quantized models: linears that hold a QuantizedTensor, and quantize_model().

quantize_model(model, method, scheme, ...) returns a new LlamaModel whose block linears are
QuantizedLinear. Norms stay float32. The embedding / output matrix is quantized separately
(`embedding_scheme`, 8 bits by default) because it is the most sensitive matrix of a small
model: with tied embeddings the input embedding uses the same quantized matrix.

Methods:
    "rtn"   round to nearest: quantcore.quantize on each weight.
    "fp8"   scaled FP8 (scheme "fp8_e4m3fn" or "fp8_e5m2"; the scheme argument picks which).
    "gptq"  quantcore.gptq on each linear, with the Hessian of its calibration inputs (q/k/v
            share one, gate/up share one); by default act-order with static groups, the
            clipping search for group parameters, and true-sequential order inside each block.
    "awq"   quantcore.awq: scales searched for q/k/v (folded into attn_norm), gate/up (folded
            into ffn_norm) and down (folded into up's rows); o is not scaled under grouped-query
            attention (v's rows do not map one to one onto o's columns), as in the reference.
            Then a clipping search for v, o, gate, up and down (q and k are not clipped: their
            errors go through the softmax, the reference skips them too), then RTN.
Blocks are processed in execution order: the calibration sequences run through the blocks
already quantized, so each block is calibrated on the inputs it will see (as the GPTQ paper
does). Calibration text: quantcore.assets.calibration_text() (news articles), never the
evaluation text.
"""

from __future__ import annotations

import copy
from typing import Iterable

import numpy as np

from quantcore.models.llama import LINEAR_NAMES, Linear, LlamaBlock, LlamaModel, RMSNorm
from quantcore.matmul import INT8_SCHEMES, matmul
from quantcore.quantize import SCHEMES, QuantizedTensor, quantize

METHODS = ("rtn", "fp8", "gptq", "awq")
# GPTQ's default calibration (n_sequences, length): more, shorter sequences than AWQ's default
# (measured in quantize_model's docstring)
GPTQ_CALIBRATION = (128, 128)
CALIBRATED = ("gptq", "awq")


class QuantizedLinear:
    """y = x @ W.T for the weight W a QuantizedTensor holds.

    Args:
        qt: QuantizedTensor of shape [out_features, in_features].
        activations: None (float32 activations, the default) or "int8" (see the property).

    Attributes:
        qt: the QuantizedTensor; nbytes counts its codes, scales and zero points.
    """

    def __init__(self, qt: QuantizedTensor, activations: str | None = None):
        if not isinstance(qt, QuantizedTensor):
            raise TypeError(f"QuantizedLinear: qt must be a QuantizedTensor (got {type(qt).__name__})")
        if len(qt.shape) != 2:
            raise ValueError(f"QuantizedLinear: qt must be 2-D [out_features, in_features] (got shape {qt.shape})")
        self.qt = qt
        self.activations = activations

    @property
    def activations(self) -> str | None:
        """None (float32 activations) or "int8" (x quantized per block, integer dot products:
        quantcore.matmul's activations="int8"; schemes with integer codes only)."""
        return self._activations

    @activations.setter
    def activations(self, value: str | None) -> None:
        _check_activations("QuantizedLinear", value, [self.qt.scheme])
        self._activations = value

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
        """x: float32 [..., in_features] -> float32 [..., out_features], through quantcore.matmul
        (straight from the packed codes; the weight is never dequantized whole)."""
        return matmul(x, self.qt, activations=self._activations)

    __call__ = forward

    def __repr__(self) -> str:
        return f"QuantizedLinear({self.qt!r})"


class QuantizedEmbedding:
    """Row lookups in a quantized [vocab_size, n_embd] matrix: only the rows asked for are
    dequantized. With tied embeddings it shares its QuantizedTensor with the output layer.

    Args:
        qt: QuantizedTensor [vocab_size, n_embd] (group_size must not be 0: rows are cut out
            together with their own scales).
    """

    def __init__(self, qt: QuantizedTensor):
        if not isinstance(qt, QuantizedTensor) or len(qt.shape) != 2:
            raise TypeError("QuantizedEmbedding: qt must be a 2-D QuantizedTensor")
        if qt.group_size == 0:
            raise ValueError("QuantizedEmbedding: qt must have per-row or per-group scales (got group_size=0)")
        if getattr(qt, "perm", None) is not None:
            raise ValueError("QuantizedEmbedding: qt must not have a column permutation (perm)")
        self.qt = qt

    @property
    def shape(self) -> tuple:
        return self.qt.shape

    @property
    def nbytes(self) -> int:
        return self.qt.nbytes

    def __getitem__(self, tokens) -> np.ndarray:
        """float32 [..., n_embd] embeddings of int token ids [...]."""
        ids = np.asarray(tokens)
        flat = ids.reshape(-1)
        q = self.qt
        rows = QuantizedTensor(q.scheme, (flat.size, q.shape[1]), q.group_size, q.symmetric,
                               np.ascontiguousarray(q.codes[flat]), np.ascontiguousarray(q.scales[flat]),
                               None if q.zeros is None else np.ascontiguousarray(q.zeros[flat]))
        return rows.dequantize().reshape(ids.shape + (q.shape[1],))


def _check_method(method: object, scheme: object) -> None:
    if method not in METHODS:
        raise ValueError(f"quantize_model: method must be one of {list(METHODS)} (got {method!r})")
    if scheme not in SCHEMES:
        raise ValueError(f"quantize_model: scheme must be one of {list(SCHEMES)} (got {scheme!r})")
    if method == "fp8" and not str(scheme).startswith("fp8_"):
        raise ValueError(f"quantize_model: method 'fp8' needs scheme 'fp8_e4m3fn' or 'fp8_e5m2' (got {scheme!r})")
    if method in CALIBRATED and (scheme == "nf4" or str(scheme).startswith("fp8_")):
        raise ValueError(f"quantize_model: method {method!r} needs an integer or GGUF scheme (got {scheme!r})")


def _check_activations(fn: str, activations: object, schemes: list[str]) -> None:
    """ValueError naming `fn` unless `activations` is None, or "int8" with integer codes in every
    one of `schemes`."""
    if activations is not None and activations != "int8":
        raise ValueError(f"{fn}: activations must be None or 'int8' (got {activations!r})")
    other = sorted({s for s in schemes if s not in INT8_SCHEMES}) if activations == "int8" else []
    if other:
        raise ValueError(f"{fn}: activations='int8' needs integer codes: schemes {list(INT8_SCHEMES)} (got {other})")


def _quantize_embedding(model: LlamaModel, embedding_scheme: str | None) -> tuple[object, object]:
    """The (input embedding, output linear) of the quantized model."""
    if embedding_scheme is None:
        return model.token_embd, model.output
    q_out = QuantizedLinear(quantize(model.output.weight, embedding_scheme))
    if model.config.tied_embeddings:
        # tied: the input embedding is the same quantized matrix, looked up row by row
        return QuantizedEmbedding(q_out.qt), q_out
    return QuantizedEmbedding(quantize(model.token_embd, embedding_scheme)), q_out


def quantize_model(model: LlamaModel, method: str = "rtn", scheme: str = "int4", *, group_size: int | None = None,
                   symmetric: bool = False, embedding_scheme: str | None = "q8_0",
                   layers: Iterable[int] | None = None, calibration: np.ndarray | None = None,
                   act_order: bool = True, damp: float = 0.03, static_groups: bool | None = None,
                   clip_search: bool = True, true_sequential: bool = True,
                   activations: str | None = None, progress: bool = True) -> LlamaModel:
    """A copy of `model` with its block linears quantized.

    Args:
        model: a float LlamaModel (not modified).
        method: "rtn", "fp8", "gptq" or "awq" (see the module docstring).
        scheme: a quantcore.quantize scheme ("int4", "int3", "q4_0", "fp8_e4m3fn", ...).
        group_size, symmetric: as for quantcore.quantize (None, the default: the scheme's
            default, 128; 32 for q4_0 / q4_1 / q8_0).
        embedding_scheme: scheme of the embedding / output matrix (default "q8_0", 8.5 bits);
            None keeps it float32.
        layers: block indices to quantize (default: all).
        calibration: gptq / awq: int token ids [n_sequences, length]; default
            calibration_tokens(model.tokenizer, *GPTQ_CALIBRATION) for gptq (128 sequences of
            128 tokens) and calibration_tokens(model.tokenizer) for awq (32 of 256).
        act_order: gptq: columns by decreasing Hessian diagonal (on by default).
        damp: gptq: relative dampening of the Hessian diagonal (default 0.03).
        static_groups: gptq: every group's parameters found up front from the original weight,
            so that act-order needs no stored permutation and the result exports to GGUF.
            None (the default): the same as act_order. False: parameters from the error-updated
            weights as each group is reached (the QuantizedTensor then carries `perm`).
        clip_search: gptq: each group's range shrunk by the factor (1.00 .. 0.80) of least
            diag(H)-weighted rounding error (gptq.quantize's clip_search; on by default).
        true_sequential: gptq: inside a block, o is calibrated on the attention through the
            quantized q/k/v, gate/up on the stream after the quantized attention, down on the
            quantized gate/up (the reference's --true-sequential; on by default). It also saves
            the separate pass that captures each block's float inputs.
        activations: None (float32 activations) or "int8": the quantized model then runs its
            linears on int8 activations (set_activations; calibration still sees float32
            activations). Needs a scheme with integer codes.
        progress: show a progress bar (tqdm) over the layers.

    GPTQ's defaults, measured on SmolLM2-135M (float perplexity 21.406 on the demo's 8 windows;
    RTN int4 g64 asymmetric 27.547, int3 g64 65.64). "recovered" is (RTN - GPTQ) / (RTN - float)
    at int4 g64 asymmetric:
        act-order + static groups, damp 0.3, 32 x 256 tokens (the former defaults): 25.179, 39%;
        + clip_search: 24.656, 47% (int3 g64: 37.85, 1.77x float);
        + 64 x 128 tokens: 24.523, 49%; and damp 0.1: 24.316, 53%; damp 0.03: 24.292, 53%;
        dynamic groups instead of static (same settings): 25.218, 38%;
        128 x 64 tokens: 24.267, 53%; 128 x 128: 23.986, 58%;
        128 x 128 with true_sequential (the defaults): 24.038, 57%, and 20% faster; int3 g64
        37.18 (1.74x float). On 16 windows (float 20.270, RTN int4 25.585, int3 59.49): int4
        22.627, 56% recovered; int3 32.58 (1.61x float). With the Hessian's products summed in
        float32 and the calibration sequences stacked (the demo, 8 windows): int4 24.161, 55%;
        int3 36.11 (1.69x float). GPTQ on the whole model takes about 75 s on 2 cores. Then
        also: damp 0.01 24.174 (55%), damp 0.1 24.264 (54%), 256 x 128 tokens 23.941 (59%,
        but 125 s, which would take the demo near its 10-minute budget).
    Where the rest of the gap sits: GPTQ lowers every linear's output error on held-out text
    (q/k/v to about 0.3x RTN's, gate/up 0.65x, down 0.8x) but raises the error of q/k/v on the
    first token of a window (the attention sink, which every later token reads) to 1.4-4x
    RTN's in blocks 15-25. Weighting that token 16x in H did not help, though (below).
    Later measurements (int4 g64, 8 windows, the defaults unless named; none changed them):
    the next three 128 x 128 pieces of the calibration text: 53.1%, 53.5%, 54.3%;
    512 x 64 tokens 52%; 512 x 128 (65k tokens, most of the text) 59.4% in 424 s;
    act_order=False 30%; static_groups=False 47% (30% without clip_search); H from the float
    model's activations instead of the quantized model's 56.7% (256 x 128: 57.8%); the
    clipping search scored by the group's whole block of H instead of its diagonal 55.2%, with
    the two ends of the range shrunk independently 57.1%; those three together with 256 x 128
    tokens 60.0% in 534 s; the first token of each calibration sequence weighted 16x in H
    52%; GPTQ on the least-squares target W X~ X^T (X X^T + 0.03 mean(diag) I)^-1 that
    matches the float model's inputs X~ (asymmetric calibration) diverged (ppl 53.8).

    Returns:
        A new LlamaModel sharing the tokenizer and config with `model`; norms are shared too
        unless AWQ folded scales into them.

    Raises:
        ValueError: unknown method or scheme, or a scheme that does not fit the method.
    """
    _check_method(method, scheme)
    _check_activations("quantize_model", activations, [scheme])
    if embedding_scheme is not None and embedding_scheme not in SCHEMES:
        raise ValueError(f"quantize_model: embedding_scheme must be one of {list(SCHEMES)} or None "
                         f"(got {embedding_scheme!r})")
    selected = set(range(model.config.n_layer)) if layers is None else {int(i) for i in layers}
    hs = cos = sin = None
    if method in CALIBRATED:
        if calibration is None:
            shape = GPTQ_CALIBRATION if method == "gptq" else ()
            calibration = calibration_tokens(model.tokenizer, *shape)
        calibration = np.asarray(calibration)
        if calibration.ndim != 2 or calibration.size == 0:
            raise ValueError(f"quantize_model: calibration must be int token ids [n_sequences, length] "
                             f"(got shape {calibration.shape})")
        hs = np.concatenate([model.embed(seq) for seq in calibration])  # [n * length, d]
        cos, sin = model.rope(0, calibration.shape[1])
        n_seq = calibration.shape[0]
    from tqdm.auto import tqdm

    blocks = []
    kw = dict(group_size=group_size, symmetric=symmetric)
    gptq_options = dict(act_order=act_order, damp=damp, clip_search=clip_search,
                        static_groups=act_order if static_groups is None else static_groups)
    for block in tqdm(model.blocks, desc=f"quantize {method} {scheme}", disable=not progress, leave=False):
        linears, attn_norm, ffn_norm = dict(block.linears), block.attn_norm, block.ffn_norm
        if block.index in selected and method == "gptq" and true_sequential:
            linears, hs = _gptq_block_sequential(block, hs, n_seq, cos, sin, scheme, kw, gptq_options)
            blocks.append(LlamaBlock(block.config, block.index, attn_norm, ffn_norm, linears))
            continue
        if block.index in selected:
            if method in CALIBRATED:
                inputs = _capture_block_inputs(block, hs, n_seq, cos, sin)
                if method == "gptq":
                    linears, attn_norm, ffn_norm = _gptq_block(block, inputs, scheme, kw, gptq_options)
                else:
                    linears, attn_norm, ffn_norm = _awq_block(block, inputs, scheme, kw)
            else:
                for name in LINEAR_NAMES:
                    linears[name] = QuantizedLinear(quantize(_float_weight(linears[name]), scheme, **kw))
        new_block = LlamaBlock(block.config, block.index, attn_norm, ffn_norm, linears)
        if hs is not None:
            hs = new_block.forward(hs, cos, sin, n_seq=n_seq)
        blocks.append(new_block)
    token_embd, output = _quantize_embedding(model, embedding_scheme)
    quantized = copy.copy(model)
    quantized.blocks = blocks
    quantized.token_embd = token_embd
    quantized.output = output
    quantized.quantization = {"method": method, "scheme": scheme, "group_size": group_size,
                              "symmetric": bool(symmetric), "embedding_scheme": embedding_scheme}
    return set_activations(quantized, activations) if activations is not None else quantized


def set_activations(model: LlamaModel, activations: str | None) -> LlamaModel:
    """Run a quantized model's linears on float32 (None) or int8 activations ("int8": each row
    of x quantized per block to int8 and integer dot products, quantcore.matmul's
    activations="int8"; SmolLM2-135M int4 g64 decoded 2-8% faster on 2 cores in interleaved runs,
    see bench/bench_model.py). Every block linear that is a QuantizedLinear must have integer codes
    (ValueError otherwise, nothing changed); the output linear follows where its scheme has them
    (the default q8_0) and stays on float activations otherwise. A runtime choice, not part of
    the weights: exports do not record it. Returns `model`, changed in place."""
    linears = [lin for block in model.blocks for lin in block.linears.values() if isinstance(lin, QuantizedLinear)]
    _check_activations("set_activations", activations, [lin.qt.scheme for lin in linears])
    if activations == "int8" and not linears:
        raise ValueError("set_activations: activations='int8' needs a model with quantized linears (quantize_model, "
                         "load_quantized); this one has none (a GGUF file loads as float32)")
    for lin in linears:
        lin.activations = activations
    if isinstance(model.output, QuantizedLinear):
        model.output.activations = activations if model.output.qt.scheme in INT8_SCHEMES else None
    return model


def calibration_tokens(tokenizer, n_sequences: int = 32, length: int = 256, *, text: str | None = None) -> np.ndarray:
    """Calibration sequences: the first `n_sequences` consecutive, non-overlapping `length`-token
    pieces of the calibration text (quantcore.assets.calibration_text(): news articles, never
    the evaluation text). int64 [n_sequences, length]."""
    if text is None:
        from quantcore import assets

        text = assets.calibration_text()
    ids = tokenizer.encode(text, add_bos=False)
    available = ids.size // length
    if not 0 < n_sequences <= available:
        raise ValueError(f"calibration_tokens: the text holds {available} sequences of {length} tokens "
                         f"(asked for n_sequences={n_sequences})")
    return ids[: n_sequences * length].reshape(n_sequences, length).copy()


def _capture_block_inputs(block: LlamaBlock, h: np.ndarray, n: int, cos: np.ndarray, sin: np.ndarray) -> dict:
    """Each linear's inputs over the n calibration sequences stacked in h: name -> float32
    [tokens, in_features]. The block's forward up to down's input (down's output, a quarter of
    the block's multiply-adds, is not needed)."""
    captured: dict = {}

    def keep(name: str, x: np.ndarray) -> None:
        captured[name.rsplit(".", 1)[1]] = x

    captured["down"] = block.swiglu(block.ffn_norm(h + block.attention(block.attn_norm(h), cos, sin, None, keep, n)),
                                    keep)
    return captured


# Linears that read the same input (their Hessians and AWQ scales are shared).
_SHARED_INPUT = {"q": "q", "k": "q", "v": "q", "o": "o", "gate": "gate", "up": "gate", "down": "down"}


def _gptq_linears(block: LlamaBlock, names, x: np.ndarray, scheme: str, kw: dict, options: dict) -> dict:
    """GPTQ on the block's linears `names`, which all read x: one Hessian, added in one batch
    (per sequence, rescaling H cost more than the products). name -> QuantizedLinear."""
    from quantcore import gptq

    hessian = gptq.Hessian(x.shape[-1])
    hessian.add_batch(x)
    return {name: QuantizedLinear(gptq.quantize(_float_weight(block.linears[name]), hessian, scheme, **options,
                                                **kw).qtensor)
            for name in names}


def _gptq_block(block: LlamaBlock, inputs: dict, scheme: str, kw: dict, options: dict):
    linears = {}
    for source in dict.fromkeys(_SHARED_INPUT.values()):
        names = [name for name in LINEAR_NAMES if _SHARED_INPUT[name] == source]
        linears.update(_gptq_linears(block, names, inputs[source], scheme, kw, options))
    return linears, block.attn_norm, block.ffn_norm


def _gptq_block_sequential(block: LlamaBlock, h: np.ndarray, n: int, cos: np.ndarray, sin: np.ndarray, scheme: str,
                           kw: dict, options: dict) -> tuple[dict, np.ndarray]:
    """GPTQ's true-sequential order inside a block (the reference's --true-sequential): q/k/v
    from the block's input; o from the attention of the quantized q/k/v; gate/up from the
    residual stream after the quantized attention; down from the quantized gate/up. h holds the
    n calibration sequences stacked. Returns the quantized linears and the block's output (the
    next block's input), computed on the way with the quantized linears, so no separate pass is
    needed."""
    # the block with each linear replaced as soon as it is quantized
    staged = LlamaBlock(block.config, block.index, block.attn_norm, block.ffn_norm, block.linears)
    linears = staged.linears

    def quantize_from(names, x):
        linears.update(_gptq_linears(block, names, x, scheme, kw, options))

    x_attn = block.attn_norm(h)
    quantize_from(("q", "k", "v"), x_attn)
    o_in = staged.heads(x_attn, cos, sin, None, n_seq=n)  # through the quantized q/k/v
    del x_attn
    quantize_from(("o",), o_in)
    h = h + linears["o"](o_in)
    del o_in
    x_ffn = block.ffn_norm(h)
    quantize_from(("gate", "up"), x_ffn)
    hidden = staged.swiglu(x_ffn)  # through the quantized gate/up
    del x_ffn
    quantize_from(("down",), hidden)
    return linears, h + linears["down"](hidden)


def _awq_block(block: LlamaBlock, inputs: dict, scheme: str, kw: dict):
    from quantcore import awq

    W = {name: _float_weight(block.linears[name]) for name in LINEAR_NAMES}
    # q/k/v read attn_norm's output: their scales fold into attn_norm's weight
    (W["q"], W["k"], W["v"]), s_attn = awq.apply([W["q"], W["k"], W["v"]],
                                                 awq.search_scales(inputs["q"], [W["q"], W["k"], W["v"]], scheme, **kw))
    attn_norm = RMSNorm(awq.fold_into_norm(block.attn_norm.weight, s_attn), block.attn_norm.eps)
    (W["gate"], W["up"]), s_ffn = awq.apply([W["gate"], W["up"]],
                                            awq.search_scales(inputs["gate"], [W["gate"], W["up"]], scheme, **kw))
    ffn_norm = RMSNorm(awq.fold_into_norm(block.ffn_norm.weight, s_ffn), block.ffn_norm.eps)
    # down reads silu(gate) * up: its scales fold into up's output rows
    (W["down"],), s_down = awq.apply([W["down"]], awq.search_scales(inputs["down"], [W["down"]], scheme, **kw))
    W["up"] = awq.fold_into_linear(W["up"], s_down)
    x = {"v": inputs["q"] / s_attn, "o": inputs["o"], "gate": inputs["gate"] / s_ffn, "up": inputs["gate"] / s_ffn,
         "down": inputs["down"] / s_down}
    if W["v"].shape[0] == W["o"].shape[1]:  # multi-head attention: o's scales fold into v's rows
        (W["o"],), s_o = awq.apply([W["o"]], awq.search_scales(inputs["o"], [W["o"]], scheme, **kw))
        W["v"] = awq.fold_into_linear(W["v"], s_o)
        x["o"] = inputs["o"] / s_o
    for name, xn in x.items():
        (W[name],), _ = awq.apply([W[name]], None, [awq.search_clip(xn, W[name], scheme, **kw)])
    linears = {name: QuantizedLinear(quantize(W[name], scheme, **kw)) for name in LINEAR_NAMES}
    return linears, attn_norm, ffn_norm


def _float_weight(linear: object) -> np.ndarray:
    if isinstance(linear, Linear):
        return linear.weight
    raise ValueError(f"quantize_model: expected float Linear layers (got {type(linear).__name__}); "
                     "quantize the float model, not an already quantized one")
