"""A llama-architecture transformer loaded from a GGUF file, run in float32 numpy.

Contract of the forward pass (the llama graph of llama.cpp, which GGUF files are made for):

    h = token_embd[tokens]                                   # [T, d]
    for each block:
        x = rms_norm(h) * attn_norm
        q, k, v = x @ Wq.T, x @ Wk.T, x @ Wv.T               # [T, n_head*hd], [T, n_head_kv*hd] x2
        q, k = rope(q), rope(k)                              # adjacent pairs (2i, 2i+1), see below
        h = h + (softmax(q k^T / sqrt(hd) + causal) v) @ Wo.T  # query head j reads KV head j // group
        x = rms_norm(h) * ffn_norm
        h = h + (silu(x @ Wgate.T) * (x @ Wup.T)) @ Wdown.T
    logits = (rms_norm(h) * output_norm) @ W_out.T           # W_out = token_embd when tied

RoPE layout. Hugging Face llama checkpoints rotate the two halves of each head
(dimension i with i + hd/2, "rotate_half"). llama.cpp's converter permutes the rows of
attn_q / attn_k per head so that the stored GGUF weights expect the original
adjacent-pairs rotation instead (dimension 2i with 2i+1; llama.cpp's rope type 0,
LLAMA_ROPE_TYPE_NORM). This module applies the adjacent-pairs rotation to the weights
as stored; tests/test_models.py checks it against a reference that uses the
Hugging Face layout on un-permuted weights.

Every linear layer is a `Linear` object held in `LlamaBlock.linears` under the names
q, k, v, o, gate, up, down; a later change swaps them for quantized ones. Anything with
`__call__(x) -> y` and `nbytes` can stand in for a `Linear`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping

import numpy as np

from quantcore import _core

LINEAR_NAMES = ("q", "k", "v", "o", "gate", "up", "down")

# GGUF tensor name (inside "blk.{i}.") of each linear of a block.
_GGUF_LINEAR_NAMES = {
    "q": "attn_q",
    "k": "attn_k",
    "v": "attn_v",
    "o": "attn_output",
    "gate": "ffn_gate",
    "up": "ffn_up",
    "down": "ffn_down",
}

CaptureFn = Callable[[str, np.ndarray], None]


def dequantize_tensor(data: np.ndarray, tensor_type: object) -> np.ndarray:
    """Dequantize one GGUF tensor's raw data to float32.

    The single place where stored GGUF blocks become floats: quantcore.gguf.dequantize_blocks,
    bit-exact with the gguf package's dequantize, in C++ for the common types.

    Args:
        data: the tensor's data as `gguf.GGUFReader` returns it: uint8 [rows, bytes per row]
            for block-quantized types, float32/float16 [..] for float types.
        tensor_type: its `gguf.GGMLQuantizationType`.

    Returns:
        float32 array, C-contiguous, [rows, columns] (for a weight: [out_features, in_features]),
        never a view of the file mapping.

    Raises:
        ValueError: quantcore cannot dequantize this type.
    """
    from gguf.quants import quant_shape_from_byte_shape

    from quantcore import gguf as qgguf

    arr = np.asarray(data)
    shape = quant_shape_from_byte_shape(arr.shape, tensor_type) if arr.dtype == np.uint8 else arr.shape
    out = np.empty(shape, np.float32)
    qgguf.dequantize_blocks(arr, tensor_type, shape, out=out)
    return out


class Linear:
    """y = x @ weight.T, a dense float32 linear layer without bias.

    Args:
        weight: float32 [out_features, in_features] (GGUF / nn.Linear row convention).

    Raises:
        TypeError: weight is not a numpy array.
        ValueError: weight is not 2-D or not float32.

    Example:
        >>> lin = Linear(np.eye(3, dtype=np.float32))
        >>> lin(np.ones((2, 3), np.float32)).shape
        (2, 3)
    """

    def __init__(self, weight: np.ndarray):
        if not isinstance(weight, np.ndarray):
            raise TypeError(f"Linear: weight must be a numpy array (got {type(weight).__name__})")
        if weight.ndim != 2:
            raise ValueError(f"Linear: weight must be 2-D [out_features, in_features] (got shape {weight.shape})")
        if weight.dtype != np.float32:
            raise ValueError(f"Linear: weight must be float32 (got {weight.dtype.name})")
        self.weight = weight

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    @property
    def nbytes(self) -> int:
        """Bytes of weight storage."""
        return self.weight.nbytes

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x: float32 [..., in_features] -> float32 [..., out_features]."""
        return x @ self.weight.T

    __call__ = forward

    def __repr__(self) -> str:
        return f"Linear(out_features={self.out_features}, in_features={self.in_features}, dtype=float32)"


@dataclass(frozen=True)
class LlamaConfig:
    """Hyper-parameters of a llama-architecture model (GGUF `llama.*` metadata).

    head_dim is the per-head width of queries and keys (`llama.attention.key_length`,
    else n_embd / n_head); rope_dim is how many leading dimensions of each head RoPE
    rotates (`llama.rope.dimension_count`, else head_dim).
    """

    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    vocab_size: int
    rope_base: float = 10000.0
    rope_dim: int | None = None
    rope_scale: float = 1.0  # positions are divided by this ("linear" rope scaling)
    norm_eps: float = 1e-5
    context_length: int = 2048
    tied_embeddings: bool = True

    def __post_init__(self) -> None:
        for name in ("n_layer", "n_embd", "n_ff", "n_head", "n_head_kv", "head_dim", "vocab_size"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"LlamaConfig: {name} must be a positive integer (got {value!r})")
        if self.n_head % self.n_head_kv:
            raise ValueError(f"LlamaConfig: n_head must be a multiple of n_head_kv "
                             f"(got n_head={self.n_head}, n_head_kv={self.n_head_kv})")
        rope_dim = self.head_dim if self.rope_dim is None else self.rope_dim
        if rope_dim % 2 or not 0 < rope_dim <= self.head_dim:
            raise ValueError(f"LlamaConfig: rope_dim must be even and in (0, head_dim={self.head_dim}] "
                             f"(got {rope_dim})")
        object.__setattr__(self, "rope_dim", rope_dim)


class RMSNorm:
    """y = x / sqrt(mean(x^2) + eps) * weight over the last axis.

    Args:
        weight: float32 [n_embd].
        eps: added to the mean square.
    """

    def __init__(self, weight: np.ndarray, eps: float):
        self.weight = np.ascontiguousarray(weight, dtype=np.float32)
        self.eps = float(eps)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        ms = np.mean(np.square(x), axis=-1, keepdims=True)
        return x * (1.0 / np.sqrt(ms + np.float32(self.eps))) * self.weight


def rope_tables(positions: np.ndarray, rope_dim: int, base: float, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of the RoPE angles, float32 [T, rope_dim // 2].

    angle[t, i] = positions[t] / scale * base ** (-2 i / rope_dim), computed in float64.
    """
    inv_freq = base ** (-np.arange(0, rope_dim, 2, dtype=np.float64) / rope_dim)
    angles = (np.asarray(positions, dtype=np.float64) / scale)[:, None] * inv_freq[None, :]
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def apply_rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotate adjacent pairs (2i, 2i+1) of each head by the angle of its position.

    Args:
        x: float32 [T, n_heads, head_dim]; the first 2 * cos.shape[1] dimensions rotate,
            the rest pass through.
        cos, sin: float32 [T, rope_dim // 2] from `rope_tables`.

    Returns:
        float32 [T, n_heads, head_dim], a new array.
    """
    rope_dim = 2 * cos.shape[1]
    out = x.copy()
    even = x[..., 0:rope_dim:2]
    odd = x[..., 1:rope_dim:2]
    c = cos[:, None, :]
    s = sin[:, None, :]
    out[..., 0:rope_dim:2] = even * c - odd * s
    out[..., 1:rope_dim:2] = even * s + odd * c
    return out


def silu(x: np.ndarray, up: np.ndarray | None = None) -> np.ndarray:
    """x * sigmoid(x), times `up` when given (SwiGLU's product), float32 of x's shape: one C++
    pass over both cores (quantcore/act.h; within a few ulps of the exact function)."""
    x = np.ascontiguousarray(x, np.float32)
    out = np.empty_like(x)
    if up is not None:
        up = np.ascontiguousarray(up, np.float32)
        if up.shape != x.shape:
            raise ValueError(f"silu: up must have x's shape {x.shape} (got {up.shape})")
    _core.swiglu(x, up, out)
    return out


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax along `axis`, shifted by the maximum so exp never overflows; -inf entries give 0."""
    e = np.subtract(x, np.max(x, axis=axis, keepdims=True))
    np.exp(e, out=e)
    e /= np.sum(e, axis=axis, keepdims=True)
    return e


class KVCache:
    """Keys and values of the positions seen so far, per layer.

    Storage per layer: float32 [n_head_kv, capacity, head_dim], grown by doubling.
    `length` is the number of positions held (the position of the next token).
    """

    def __init__(self, config: LlamaConfig, capacity: int = 256):
        self.config = config
        self.length = 0
        shape = (config.n_head_kv, max(int(capacity), 1), config.head_dim)
        self._k = [np.empty(shape, np.float32) for _ in range(config.n_layer)]
        self._v = [np.empty(shape, np.float32) for _ in range(config.n_layer)]

    def append(self, layer: int, k: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Store k, v ([T, n_head_kv, head_dim]) at positions length..length+T of `layer`.

        Returns the layer's keys and values for positions 0..length+T, each
        [n_head_kv, length+T, head_dim] (views into the cache). `advance` moves
        `length` once all layers are done.
        """
        t = k.shape[0]
        end = self.length + t
        if end > self._k[layer].shape[1]:
            new_cap = max(end, 2 * self._k[layer].shape[1])
            for store in (self._k, self._v):
                grown = np.empty((self.config.n_head_kv, new_cap, self.config.head_dim), np.float32)
                grown[:, : self.length] = store[layer][:, : self.length]
                store[layer] = grown
        self._k[layer][:, self.length : end] = k.transpose(1, 0, 2)
        self._v[layer][:, self.length : end] = v.transpose(1, 0, 2)
        return self._k[layer][:, :end], self._v[layer][:, :end]

    def advance(self, t: int) -> None:
        self.length += t


class LlamaBlock:
    """One transformer block: pre-norm attention with RoPE and GQA, then a pre-norm SwiGLU FFN.

    Attributes:
        attn_norm, ffn_norm: RMSNorm.
        linears: dict name -> linear for q [n_head*hd, d], k, v [n_head_kv*hd, d],
            o [d, n_head*hd], gate, up [n_ff, d], down [d, n_ff]. Replace entries to
            swap in quantized layers.
    """

    def __init__(self, config: LlamaConfig, index: int, attn_norm: RMSNorm, ffn_norm: RMSNorm,
                 linears: Mapping[str, Linear]):
        missing = set(LINEAR_NAMES) - set(linears)
        if missing:
            raise ValueError(f"LlamaBlock: linears is missing {sorted(missing)}")
        self.config = config
        self.index = index
        self.attn_norm = attn_norm
        self.ffn_norm = ffn_norm
        self.linears: dict[str, Linear] = dict(linears)

    def _linear(self, name: str, x: np.ndarray, capture: CaptureFn | None) -> np.ndarray:
        if capture is not None:
            capture(f"blk.{self.index}.{name}", x)
        return self.linears[name](x)

    def attention(self, x: np.ndarray, cos: np.ndarray, sin: np.ndarray, cache: KVCache | None,
                  capture: CaptureFn | None = None, n_seq: int = 1) -> np.ndarray:
        """Attention of the normed input x (float32 [T, d]) -> float32 [T, d]; fills the cache.
        n_seq: x holds that many sequences of equal length stacked (no cache): each projection
        runs once over all of them, the attention itself per sequence."""
        return self._linear("o", self.heads(x, cos, sin, cache, capture, n_seq), capture)

    def heads(self, x: np.ndarray, cos: np.ndarray, sin: np.ndarray, cache: KVCache | None,
              capture: CaptureFn | None = None, n_seq: int = 1) -> np.ndarray:
        """The attention up to o: o's input [T, n_head * hd] (see attention)."""
        q, k, v = (self._linear(name, x, capture) for name in ("q", "k", "v"))
        if n_seq == 1:
            return self.attend(q, k, v, cos, sin, cache)
        if cache is not None:
            raise ValueError("LlamaBlock: stacked sequences (n_seq > 1) run without a cache")
        t = x.shape[0] // n_seq
        return np.concatenate([self.attend(q[i:i + t], k[i:i + t], v[i:i + t], cos, sin, None)
                               for i in range(0, n_seq * t, t)])

    def attend(self, q: np.ndarray, k: np.ndarray, v: np.ndarray, cos: np.ndarray, sin: np.ndarray,
               cache: KVCache | None) -> np.ndarray:
        """The attention between the projections and o: q [T, n_head * hd], k and v
        [T, n_kv * hd] (float32) -> the heads' outputs [T, n_head * hd], o's input; fills the
        cache."""
        cfg = self.config
        t = q.shape[0]
        hd = cfg.head_dim
        group = cfg.n_head // cfg.n_head_kv
        q = apply_rope(q.reshape(t, cfg.n_head, hd), cos, sin)
        k = apply_rope(k.reshape(t, cfg.n_head_kv, hd), cos, sin)
        v = v.reshape(t, cfg.n_head_kv, hd)
        past = 0 if cache is None else cache.length
        if cache is None:
            keys, values = k.transpose(1, 0, 2), v.transpose(1, 0, 2)  # [n_kv, S, hd]
        else:
            keys, values = cache.append(self.index, k, v)
        s = keys.shape[1]
        # q: [T, n_head, hd] -> [n_kv, group, T, hd]; query head j uses KV head j // group.
        qh = q.reshape(t, cfg.n_head_kv, group, hd).transpose(1, 2, 0, 3)
        scores = (qh @ keys[:, None].transpose(0, 1, 3, 2)) * np.float32(1.0 / np.sqrt(hd))  # [n_kv, g, T, S]
        causal = np.arange(s)[None, :] <= (past + np.arange(t))[:, None]  # [T, S]
        scores = np.where(causal, scores, np.float32(-np.inf))
        probs = softmax(scores, axis=-1)
        out = probs @ values[:, None]  # [n_kv, g, T, hd]
        return out.transpose(2, 0, 1, 3).reshape(t, cfg.n_head * hd)

    def ffn(self, x: np.ndarray, capture: CaptureFn | None = None) -> np.ndarray:
        """SwiGLU of the normed input x (float32 [T, d]) -> float32 [T, d]."""
        return self._linear("down", self.swiglu(x, capture), capture)

    def swiglu(self, x: np.ndarray, capture: CaptureFn | None = None) -> np.ndarray:
        """silu(gate(x)) * up(x): down's input [T, n_ff]."""
        return silu(self._linear("gate", x, capture), self._linear("up", x, capture))

    def forward(self, h: np.ndarray, cos: np.ndarray, sin: np.ndarray, cache: KVCache | None = None,
                capture: CaptureFn | None = None, n_seq: int = 1) -> np.ndarray:
        """Residual stream h (float32 [T, d]) through the block -> float32 [T, d].

        With a cache, h holds positions cache.length.. and the keys/values are appended
        (the caller advances the cache after the last block).
        """
        h = h + self.attention(self.attn_norm(h), cos, sin, cache, capture, n_seq)
        return h + self.ffn(self.ffn_norm(h), capture)


def _field_value(reader, key: str, default=None):
    field = reader.fields.get(key)
    if field is None:
        return default
    return field.contents()


class LlamaModel:
    """A llama-architecture language model in float32 numpy.

    Attributes:
        config: LlamaConfig.
        token_embd: float32 [vocab_size, n_embd], the input embedding.
        blocks: list of LlamaBlock.
        output_norm: RMSNorm.
        output: linear [vocab_size, n_embd]; with tied embeddings its weight is token_embd.
        tokenizer: quantcore.models.Tokenizer, or None when the file has no vocabulary.
        metadata: dict of the GGUF key/values that were read (strings, numbers, lists), except
            GGUF.* and tokenizer.ggml.*.
        tokenizer_metadata: dict of the file's tokenizer.ggml.* key/values (vocabulary, token
            types, merges, special token ids, flags), kept so the model can be written out again
            (quantcore.models.export); empty when the file has none.
        metadata_types: dict key -> tuple of gguf.GGUFValueType codes (field.types as the reader
            gives them, e.g. (9, 8) for an array of strings) for the keys of metadata and
            tokenizer_metadata, so an export writes each value with its original type.
        quantization: None for a float model; a dict saying how it was quantized (method,
            scheme, ...) on a model returned by quantize_model.

    Example:
        >>> model = LlamaModel.from_gguf(quantcore.assets.default_model_path())
        >>> ids = model.tokenizer.encode("The capital of France is")
        >>> logits = model.forward(ids)          # float32 [len(ids), 49152]

    Layer by layer (as GPTQ processes a model), the same computation as forward(ids):
        >>> h = model.embed(ids)                 # float32 [T, n_embd]
        >>> cos, sin = model.rope(0, len(ids))
        >>> for block in model.blocks:
        ...     h = block.forward(h, cos, sin, capture=None)
        >>> logits = model.output(model.output_norm(h))
    """

    def __init__(self, config: LlamaConfig, token_embd: np.ndarray, blocks: list[LlamaBlock],
                 output_norm: RMSNorm, output: Linear, tokenizer=None, metadata: dict | None = None, *,
                 tokenizer_metadata: dict | None = None, metadata_types: dict | None = None,
                 quantization: dict | None = None):
        if token_embd.shape != (config.vocab_size, config.n_embd):
            raise ValueError(f"LlamaModel: token_embd must have shape {(config.vocab_size, config.n_embd)} "
                             f"(got {token_embd.shape})")
        if len(blocks) != config.n_layer:
            raise ValueError(f"LlamaModel: expected {config.n_layer} blocks (got {len(blocks)})")
        self.config = config
        self.token_embd = token_embd
        self.blocks = blocks
        self.output_norm = output_norm
        self.output = output
        self.tokenizer = tokenizer
        self.metadata = metadata or {}
        self.tokenizer_metadata = tokenizer_metadata or {}
        self.metadata_types = metadata_types or {}
        self.quantization = quantization

    # -- loading -------------------------------------------------------------------------

    @classmethod
    def from_gguf(cls, path: str | os.PathLike, *, load_tokenizer: bool = True) -> "LlamaModel":
        """Load a llama-architecture GGUF file; every tensor is dequantized to float32.

        Args:
            path: the .gguf file.
            load_tokenizer: build the tokenizer from `tokenizer.ggml.*` (when present).

        Returns:
            LlamaModel.

        Raises:
            FileNotFoundError: no file at path.
            ValueError: not a GGUF file, not the llama architecture, a missing tensor or
                key, a tensor of the wrong shape, or an unsupported feature (rope scaling
                other than linear, rope_freqs, mixture of experts).
        """
        import gguf

        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"LlamaModel.from_gguf: no file at {path!r}")
        try:
            reader = gguf.GGUFReader(path)
        except Exception as exc:  # the reader raises ValueError, struct.error, IndexError ... on bad files
            raise ValueError(f"LlamaModel.from_gguf: {path!r} is not a readable GGUF file "
                             f"({type(exc).__name__}: {exc})") from None

        arch = _field_value(reader, "general.architecture")
        if arch != "llama":
            raise ValueError(f"LlamaModel.from_gguf: general.architecture must be 'llama' (got {arch!r} in {path!r})")
        tensors = {t.name: t for t in reader.tensors}

        def key(name, default=None, required=False):
            value = _field_value(reader, f"llama.{name}", default)
            if value is None and required:
                raise ValueError(f"LlamaModel.from_gguf: metadata key llama.{name} is missing in {path!r}")
            return value

        def tensor(name, shape):
            t = tensors.get(name)
            if t is None:
                raise ValueError(f"LlamaModel.from_gguf: tensor {name} is missing in {path!r}")
            values = dequantize_tensor(t.data, t.tensor_type).reshape(tuple(int(n) for n in reversed(t.shape)))
            if values.shape != shape:
                raise ValueError(f"LlamaModel.from_gguf: tensor {name} must have shape {shape} (got {values.shape})")
            return values

        if (key("expert_count", 0) or 0) > 0:
            raise ValueError("LlamaModel.from_gguf: mixture-of-experts llama models are not supported")
        if "rope_freqs.weight" in tensors:
            raise ValueError("LlamaModel.from_gguf: per-dimension rope frequency factors (rope_freqs.weight, "
                             "llama 3.1 style) are not supported")
        scaling = key("rope.scaling.type", "none")
        rope_scale = 1.0
        if scaling == "linear":
            rope_scale = float(key("rope.scaling.factor", 1.0))
        elif scaling not in ("none", None):
            raise ValueError(f"LlamaModel.from_gguf: rope scaling {scaling!r} is not supported (only linear)")

        n_embd = int(key("embedding_length", required=True))
        n_head = int(key("attention.head_count", required=True))
        n_head_kv = int(key("attention.head_count_kv", n_head))
        head_dim = int(key("attention.key_length", n_embd // n_head))
        value_dim = int(key("attention.value_length", head_dim))
        if value_dim != head_dim:
            raise ValueError(f"LlamaModel.from_gguf: key_length {head_dim} != value_length {value_dim} is not supported")
        embd = tensors.get("token_embd.weight")
        if embd is None:
            raise ValueError(f"LlamaModel.from_gguf: tensor token_embd.weight is missing in {path!r}")
        vocab_size = int(embd.shape[1])
        config = LlamaConfig(
            n_layer=int(key("block_count", required=True)),
            n_embd=n_embd,
            n_ff=int(key("feed_forward_length", required=True)),
            n_head=n_head,
            n_head_kv=n_head_kv,
            head_dim=head_dim,
            vocab_size=vocab_size,
            rope_base=float(key("rope.freq_base", 10000.0)),
            rope_dim=int(key("rope.dimension_count", head_dim)),
            rope_scale=rope_scale,
            norm_eps=float(key("attention.layer_norm_rms_epsilon", 1e-5)),
            context_length=int(key("context_length", 2048)),
            tied_embeddings="output.weight" not in tensors,
        )
        d, hq, hkv, ff = config.n_embd, config.n_head * head_dim, config.n_head_kv * head_dim, config.n_ff
        shapes = {"q": (hq, d), "k": (hkv, d), "v": (hkv, d), "o": (d, hq), "gate": (ff, d), "up": (ff, d),
                  "down": (d, ff)}
        token_embd = tensor("token_embd.weight", (vocab_size, d))
        blocks = []
        for i in range(config.n_layer):
            linears = {name: Linear(tensor(f"blk.{i}.{_GGUF_LINEAR_NAMES[name]}.weight", shapes[name]))
                       for name in LINEAR_NAMES}
            blocks.append(LlamaBlock(config, i,
                                     RMSNorm(tensor(f"blk.{i}.attn_norm.weight", (d,)), config.norm_eps),
                                     RMSNorm(tensor(f"blk.{i}.ffn_norm.weight", (d,)), config.norm_eps),
                                     linears))
        output_norm = RMSNorm(tensor("output_norm.weight", (d,)), config.norm_eps)
        output = Linear(token_embd if config.tied_embeddings else tensor("output.weight", (vocab_size, d)))

        metadata, tokenizer_metadata, metadata_types = {}, {}, {}
        for name, field in reader.fields.items():
            if name.startswith("GGUF."):
                continue
            try:
                value = field.contents()
            except Exception:  # a value type this gguf version cannot render: keep the rest
                continue
            (tokenizer_metadata if name.startswith("tokenizer.ggml.") else metadata)[name] = value
            metadata_types[name] = tuple(int(t) for t in field.types)
        tokenizer = None
        if load_tokenizer and "tokenizer.ggml.tokens" in tokenizer_metadata:
            from quantcore.models.tokenizer import Tokenizer

            tokenizer = Tokenizer.from_gguf_fields(tokenizer_metadata)
        return cls(config, token_embd, blocks, output_norm, output, tokenizer, metadata,
                   tokenizer_metadata=tokenizer_metadata, metadata_types=metadata_types)

    # -- running -------------------------------------------------------------------------

    def new_cache(self, capacity: int = 256) -> KVCache:
        """An empty KV cache for this model (grows past `capacity` as needed)."""
        return KVCache(self.config, capacity)

    def _check_tokens(self, tokens, fn: str) -> np.ndarray:
        ids = np.asarray(tokens)
        if ids.ndim != 1 or ids.size == 0:
            raise ValueError(f"{fn}: tokens must be a non-empty 1-D sequence of token ids (got shape {ids.shape})")
        if not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"{fn}: tokens must be integers (got {ids.dtype.name})")
        if ids.min() < 0 or ids.max() >= self.config.vocab_size:
            raise ValueError(f"{fn}: token ids must lie in [0, {self.config.vocab_size}) "
                             f"(got min {ids.min()}, max {ids.max()})")
        return ids

    def embed(self, tokens: np.ndarray) -> np.ndarray:
        """Input embeddings, float32 [T, n_embd], of token ids int [T]."""
        return self.token_embd[tokens]

    def rope(self, start: int, t: int) -> tuple[np.ndarray, np.ndarray]:
        """cos, sin tables (float32 [t, rope_dim // 2]) for positions start..start+t."""
        cfg = self.config
        return rope_tables(np.arange(start, start + t), cfg.rope_dim, cfg.rope_base, cfg.rope_scale)

    def hidden_states(self, tokens, cache: KVCache | None = None, capture: CaptureFn | None = None) -> np.ndarray:
        """Final-normed hidden states, float32 [T, n_embd] (the input of `output`)."""
        ids = self._check_tokens(tokens, "LlamaModel.forward")
        start = 0 if cache is None else cache.length
        cos, sin = self.rope(start, ids.size)
        h = self.embed(ids)
        for block in self.blocks:
            h = block.forward(h, cos, sin, cache, capture)
        if cache is not None:
            cache.advance(ids.size)
        return self.output_norm(h)

    def forward(self, tokens, cache: KVCache | None = None, capture: CaptureFn | None = None) -> np.ndarray:
        """Next-token logits for each position.

        Args:
            tokens: int [T] token ids, the positions cache.length..cache.length+T (0.. without a cache).
            cache: a KVCache from `new_cache()`; its keys/values are used and extended. None runs
                the T tokens alone.
            capture: called as capture(name, x) with each linear's input x (float32 [T, in_features])
                before it runs; names are "blk.{i}.{q|k|v|o|gate|up|down}" and "output".

        Returns:
            float32 [T, vocab_size].

        Raises:
            ValueError / TypeError: tokens are not a non-empty 1-D array of ids in range.
        """
        x = self.hidden_states(tokens, cache, capture)
        if capture is not None:
            capture("output", x)
        return self.output(x)

    __call__ = forward

    # -- introspection -------------------------------------------------------------------

    def named_linears(self) -> Iterator[tuple[str, Linear]]:
        """("blk.{i}.{name}", linear) for every block linear, in execution order; then ("output", output)."""
        for block in self.blocks:
            for name in LINEAR_NAMES:
                yield f"blk.{block.index}.{name}", block.linears[name]
        yield "output", self.output

    def weight_nbytes(self) -> int:
        """Bytes of weight storage: linears (their own `nbytes`), embedding and norms; storage
        shared between layers (tied embeddings) is counted once."""
        seen: set[int] = set()
        total = 0

        def add(obj, nbytes):
            nonlocal total
            # a quantized layer's storage is its QuantizedTensor; a float one's its weight array
            key = getattr(obj, "qt", None)
            if key is None:
                weight = getattr(obj, "weight", None)
                key = weight if isinstance(weight, np.ndarray) else obj
            if id(key) not in seen:
                seen.add(id(key))
                total += int(nbytes)

        add(self.token_embd, self.token_embd.nbytes)
        for _, lin in self.named_linears():
            add(lin, lin.nbytes)
        for block in self.blocks:
            add(block.attn_norm.weight, block.attn_norm.weight.nbytes)
            add(block.ffn_norm.weight, block.ffn_norm.weight.nbytes)
        add(self.output_norm.weight, self.output_norm.weight.nbytes)
        return total

    def __repr__(self) -> str:
        c = self.config
        return (f"LlamaModel(n_layer={c.n_layer}, n_embd={c.n_embd}, n_head={c.n_head}, n_head_kv={c.n_head_kv}, "
                f"n_ff={c.n_ff}, vocab_size={c.vocab_size}, tied={c.tied_embeddings})")


def load_model(path: str | os.PathLike | None = None, **kwargs) -> LlamaModel:
    """Load a llama GGUF (default: quantcore.assets.default_model_path()). See LlamaModel.from_gguf."""
    if path is None:
        from quantcore import assets

        path = assets.default_model_path()
    return LlamaModel.from_gguf(path, **kwargs)
