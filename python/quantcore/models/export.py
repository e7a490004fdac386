"""Writing a (quantized) LlamaModel to a file: a GGUF file for llama.cpp, and quantcore's own
safetensors format, which loads back into a LlamaModel.

export_gguf(model, path)
    A llama-architecture GGUF (gguf.GGUFWriter, GGUF version 3, 32-byte alignment unless the
    source said otherwise). Key/values: every key of model.metadata and
    model.tokenizer_metadata, with the value types of the source file (model.metadata_types;
    a key without a recorded type gets the usual one: counts UINT32, reals FLOAT32, ...), then
    what changed on purpose:
        general.file_type             the llama_ftype of the type holding most block-linear
                                      weights (q4_0 -> 2, q4_1 -> 3, q8_0 -> 7, F32 -> 0, F16 -> 1)
        general.quantization_version  2 (GGML_QNT_VERSION) when any tensor is block-quantized
        quantcore.version             the quantcore version that wrote the file
        quantcore.quantization        JSON: model.quantization (method, scheme, ...) and the
                                      number of tensors of each GGML type
    llama.* hyper-parameters missing from the metadata are filled in from model.config.
    Tensors, with llama.cpp's names (token_embd, blk.N.attn_norm / attn_q / attn_k / attn_v /
    attn_output / ffn_norm / ffn_gate / ffn_up / ffn_down, output_norm, output):
        norms                         F32
        QuantizedLinear q4_0/q4_1/q8_0 that GGML type, the bytes of
                                      quantcore.gguf.blocks_from_quantized(qt), unchanged
        float Linear / float matrix   F32, or F16 with float_type="f16"
        other schemes                 ValueError naming the layer (or requantize_to=)
    With tied embeddings only token_embd.weight is written (no output.weight), as llama.cpp's
    converter does: it holds the output matrix, quantized or not.

save_quantized(model, path) / load_quantized(path)
    One safetensors file. Tensors:
        token_embd                    float32 [vocab, n_embd]; absent when it equals the output
                                      matrix (tied embeddings), which then rebuilds it
        output_norm, blk.N.attn_norm, blk.N.ffn_norm    float32 [n_embd]
        <layer>.codes / .scales / .zeros / .perm       a quantized linear's QuantizedTensor
                                      parts (bfloat16 scales as their uint16 bits; zeros and
                                      perm only when the tensor has them)
        <layer>.weight                a float linear, float32 [out, in]
    where <layer> is "blk.N.{q,k,v,o,gate,up,down}" or "output" (model.named_linears names).
    String metadata: format ("quantcore.LlamaModel"), format_version ("1"), quantcore_version,
    config (LlamaConfig fields), layers (per layer: kind, and scheme, shape, group_size,
    symmetric, scale_dtype for a quantized one), token_embd ("stored": float
    tensor "token_embd"; "output": tied to the output layer; "quantized": an untied quantized
    embedding stored as the layer "token_embd"),
    metadata / tokenizer_metadata / metadata_types / quantization (the model's attributes of
    those names), all JSON; crc32 (JSON: CRC-32 of each tensor's bytes) and metadata_crc32
    (CRC-32 of the other metadata entries), so a flipped byte anywhere is caught on load.

Both writers write to a temporary file in the destination's directory and rename it into
place: a failure never leaves a partial file at `path`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zlib
from typing import Callable

import numpy as np

from quantcore._io import replace_atomically
from quantcore.models.llama import (
    _GGUF_LINEAR_NAMES,
    LINEAR_NAMES,
    Linear,
    LlamaBlock,
    LlamaConfig,
    LlamaModel,
    RMSNorm,
)
from quantcore.models.quantized import QuantizedEmbedding, QuantizedLinear
from quantcore.quantize import QuantizedTensor

GGUF_SCHEMES = ("q4_0", "q4_1", "q8_0")
FORMAT = "quantcore.LlamaModel"
FORMAT_VERSION = "1"
GGML_QUANTIZATION_VERSION = 2  # GGML_QNT_VERSION: the block layouts of q4_0 / q4_1 / q8_0 since 2023

_FLOAT_TYPES = ("f32", "f16")
_QT_FIELDS = {f.name for f in dataclasses.fields(QuantizedTensor)}


# ---------------------------------------------------------------------------------------
# Shared: what each linear holds
# ---------------------------------------------------------------------------------------


def _check_model(model: object, fn: str) -> LlamaModel:
    if not isinstance(model, LlamaModel):
        raise TypeError(f"{fn}: model must be a quantcore.models.LlamaModel (got {type(model).__name__})")
    return model


def _layer_content(name: str, linear: object, fn: str) -> QuantizedTensor | np.ndarray:
    """The QuantizedTensor of a quantized linear (anything with a QuantizedTensor `.qt`), or the
    float32 weight [out, in] of a float `Linear`."""
    qt = getattr(linear, "qt", None)
    if isinstance(qt, QuantizedTensor):
        return qt
    if isinstance(linear, Linear):
        return linear.weight
    raise ValueError(f"{fn}: layer {name!r} is a {type(linear).__name__}; expected a Linear or a "
                     "QuantizedLinear (a layer holding a QuantizedTensor in .qt)")


def _perm(qt: QuantizedTensor) -> np.ndarray | None:
    """The optional column permutation (GPTQ act-order) of a QuantizedTensor, or None."""
    return getattr(qt, "perm", None)


def _expected_shapes(config: LlamaConfig) -> dict[str, tuple[int, int]]:
    d, ff = config.n_embd, config.n_ff
    hq, hkv = config.n_head * config.head_dim, config.n_head_kv * config.head_dim
    return {"q": (hq, d), "k": (hkv, d), "v": (hkv, d), "o": (d, hq), "gate": (ff, d), "up": (ff, d), "down": (d, ff)}


def _tied_embedding_matches(model: LlamaModel, content) -> bool:
    """Whether model.token_embd is exactly the output matrix (so one stored copy serves both)."""
    embd_qt = getattr(model.token_embd, "qt", None)  # a QuantizedEmbedding
    if embd_qt is not None:
        return embd_qt is content
    if isinstance(content, np.ndarray):
        return content is model.token_embd or np.array_equal(content, model.token_embd)
    return np.array_equal(content.dequantize(), model.token_embd)


def _check_path(path: object, fn: str) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{fn}: path must be a str or os.PathLike (got {type(path).__name__})")
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{fn}: path {path!r} is a directory; expected a file name")
    return path


# ---------------------------------------------------------------------------------------
# GGUF
# ---------------------------------------------------------------------------------------


def _infer_type(value: object):
    """The GGUF value type llama.cpp's converter would use for a Python value."""
    from gguf import GGUFValueType as T

    if isinstance(value, (bool, np.bool_)):
        return T.BOOL
    if isinstance(value, (int, np.integer)):
        if 0 <= value < 1 << 32:
            return T.UINT32
        if -(1 << 31) <= value < 0:
            return T.INT32
        if 0 < value < 1 << 64:
            return T.UINT64
        if -(1 << 63) <= value < 0:
            return T.INT64
        raise ValueError(f"the integer {value} does not fit 64 bits")
    if isinstance(value, (float, np.floating)):
        return T.FLOAT32
    if isinstance(value, str):
        return T.STRING
    raise ValueError(f"no GGUF value type for {type(value).__name__}")


def _all_fit(items: list, vtype) -> bool:
    """Whether every value in `items` can be written as the GGUF scalar type `vtype`."""
    from gguf import GGUFValueType as T

    bools = (bool, np.bool_)
    if vtype == T.STRING:
        return all(isinstance(v, str) for v in items)
    if vtype == T.BOOL:
        return all(isinstance(v, bools) for v in items)
    numbers = (float, int, np.floating, np.integer)
    if vtype in (T.FLOAT32, T.FLOAT64):
        return all(isinstance(v, numbers) and not isinstance(v, bools) for v in items)
    bits = {T.UINT8: 8, T.INT8: 8, T.UINT16: 16, T.INT16: 16, T.UINT32: 32, T.INT32: 32, T.UINT64: 64, T.INT64: 64}
    if vtype not in bits:
        return False
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bools) for v in items):
        return False
    if not items:
        return True
    b = bits[vtype]
    signed = vtype in (T.INT8, T.INT16, T.INT32, T.INT64)
    lo, hi = (-(1 << (b - 1)), 1 << (b - 1)) if signed else (0, 1 << b)
    return lo <= int(min(items)) and int(max(items)) < hi


def _gguf_value(key: str, value: object, recorded: tuple | None):
    """GGUFValue(value, type, sub_type): the recorded type when the value still fits it, else inferred."""
    from gguf import GGUFValueType as T
    from gguf.gguf_writer import GGUFValue

    try:
        if isinstance(value, (list, tuple)):
            items = list(value)
            sub = None
            if recorded and len(recorded) == 2 and recorded[0] == T.ARRAY:
                sub = T(recorded[1])
                if not _all_fit(items, sub):
                    sub = None
            if sub is None:
                if not items:
                    sub = T.STRING
                else:
                    sub = _infer_type(items[0])
                    if sub == T.UINT32 and _all_fit(items, T.INT32) and not _all_fit(items, T.UINT32):
                        sub = T.INT32
                    if not _all_fit(items, sub):
                        raise ValueError("its elements do not share one GGUF type")
            return GGUFValue(items, T.ARRAY, sub)
        if recorded and len(recorded) == 1 and recorded[0] != T.ARRAY and _all_fit([value], T(recorded[0])):
            return GGUFValue(value, T(recorded[0]))
        return GGUFValue(value, _infer_type(value))
    except ValueError as exc:
        raise ValueError(f"export_gguf: metadata key {key!r} has a value GGUF cannot hold "
                         f"({type(value).__name__}: {exc})") from None


def _config_keys(config: LlamaConfig) -> dict[str, object]:
    """llama.* hyper-parameters of a config, the keys LlamaModel.from_gguf reads."""
    keys = {
        "llama.block_count": config.n_layer,
        "llama.context_length": config.context_length,
        "llama.embedding_length": config.n_embd,
        "llama.feed_forward_length": config.n_ff,
        "llama.attention.head_count": config.n_head,
        "llama.attention.head_count_kv": config.n_head_kv,
        "llama.rope.freq_base": config.rope_base,
        "llama.rope.dimension_count": config.rope_dim,
        "llama.attention.layer_norm_rms_epsilon": config.norm_eps,
        "llama.vocab_size": config.vocab_size,
    }
    if config.head_dim != config.n_embd // config.n_head:
        keys["llama.attention.key_length"] = config.head_dim
        keys["llama.attention.value_length"] = config.head_dim
    if config.rope_scale != 1.0:
        keys["llama.rope.scaling.type"] = "linear"
        keys["llama.rope.scaling.factor"] = config.rope_scale
    return keys


def _gguf_tensor_name(layer: str) -> str:
    """"blk.3.q" -> "blk.3.attn_q.weight"; "output" -> "output.weight"."""
    if layer == "output":
        return "output.weight"
    prefix, _, short = layer.rpartition(".")
    return f"{prefix}.{_GGUF_LINEAR_NAMES[short]}.weight"


def _gguf_matrix(layer: str, content, float_type: str, requantize_to: str | None):
    """(array, GGMLQuantizationType, type name) to write for one matrix."""
    from gguf import GGMLQuantizationType as Q

    from quantcore import gguf as qgguf
    from quantcore.quantize import quantize

    if isinstance(content, np.ndarray):
        if float_type == "f16":
            return np.ascontiguousarray(content, np.float16), Q.F16, "f16"
        return np.ascontiguousarray(content, np.float32), Q.F32, "f32"
    qt = content
    perm = _perm(qt)
    permuted = perm is not None and not np.array_equal(perm, np.arange(qt.shape[-1]))
    if qt.scheme not in GGUF_SCHEMES or permuted:
        if requantize_to is None:
            why = (f"has scheme {qt.scheme!r}" if qt.scheme not in GGUF_SCHEMES else
                   f"has scheme {qt.scheme!r} with a column permutation (act_order), which GGUF blocks cannot hold")
            raise ValueError(f"export_gguf: layer {layer!r} {why}; GGUF holds the schemes "
                             f"{', '.join(GGUF_SCHEMES)} and float linears (pass requantize_to='q4_0', 'q4_1' "
                             "or 'q8_0' to round such layers again onto a GGUF grid)")
        qt = quantize(qt.dequantize(), requantize_to)
    return qgguf.blocks_from_quantized(qt), Q[qt.scheme.upper()], qt.scheme


def export_gguf(model: LlamaModel, path: str | os.PathLike, *, float_type: str = "f32",
                requantize_to: str | None = None, progress: bool = False) -> None:
    """Write `model` as a llama-architecture GGUF file that llama.cpp and LlamaModel.from_gguf load.

    Layout, key/values and tensor types: see the module docstring. q4_0 / q4_1 / q8_0 linears
    are written as those GGML types with the exact bytes of quantcore.gguf.blocks_from_quantized,
    so LlamaModel.from_gguf(path) holds the same float32 weights as the quantized model
    dequantizes to.

    Args:
        model: a LlamaModel (float, or quantized by quantize_model, GPTQ, AWQ ...).
        path: the .gguf file to write (replaced if it exists).
        float_type: "f32" (default) or "f16": the type of float linears and of a float
            embedding / output matrix. Norms are always F32.
        requantize_to: None (default): a quantized linear of a scheme GGUF cannot hold raises.
            "q4_0", "q4_1" or "q8_0": such a linear is dequantized and quantized again with
            that scheme (the file then no longer computes what the model computes).
        progress: show the gguf writer's progress bar.

    Raises:
        TypeError: model is not a LlamaModel, or path is not a str / PathLike.
        ValueError: a layer's scheme GGUF cannot hold (naming the layer), a bad float_type or
            requantize_to, a tied model whose token_embd differs from its output matrix, a
            model whose metadata says another architecture, or path is a directory.
        OSError: the directory is not writable.

    Example:
        >>> q = quantize_model(load_model(), "rtn", "q4_0", group_size=32)
        >>> export_gguf(q, "smollm2-q4_0.gguf")
        >>> LlamaModel.from_gguf("smollm2-q4_0.gguf")   # dequantized: the same weights as q
    """
    import gguf

    fn = "export_gguf"
    model = _check_model(model, fn)
    path = _check_path(path, fn)
    if float_type not in _FLOAT_TYPES:
        raise ValueError(f"{fn}: float_type must be 'f32' or 'f16' (got {float_type!r})")
    if requantize_to is not None and requantize_to not in GGUF_SCHEMES:
        raise ValueError(f"{fn}: requantize_to must be None or one of {list(GGUF_SCHEMES)} (got {requantize_to!r})")
    arch = model.metadata.get("general.architecture", "llama")
    if arch != "llama":
        raise ValueError(f"{fn}: model.metadata says general.architecture {arch!r}; only 'llama' is written")

    config = model.config
    tensors: list[tuple[str, np.ndarray, object]] = []  # (GGUF name, data, GGML type)
    written_types: dict[str, int] = {}
    linear_weights: dict[str, int] = {}  # type name -> block-linear weights of that type

    def add_matrix(gguf_name: str, layer: str, content, counts: bool) -> None:
        data, ggml_type, type_name = _gguf_matrix(layer, content, float_type, requantize_to)
        tensors.append((gguf_name, data, ggml_type))
        written_types[type_name] = written_types.get(type_name, 0) + 1
        if counts:
            linear_weights[type_name] = linear_weights.get(type_name, 0) + int(np.prod(content.shape))

    def add_norm(gguf_name: str, norm: RMSNorm) -> None:
        tensors.append((gguf_name, np.ascontiguousarray(norm.weight, np.float32), gguf.GGMLQuantizationType.F32))
        written_types["f32"] = written_types.get("f32", 0) + 1

    output = _layer_content("output", model.output, fn)
    if config.tied_embeddings:
        if not _tied_embedding_matches(model, output):
            raise ValueError(f"{fn}: the model has tied embeddings but token_embd differs from the output "
                             "matrix; a GGUF file with tied embeddings holds one matrix for both")
        add_matrix("token_embd.weight", "output", output, counts=False)
    else:
        add_matrix("token_embd.weight", "token_embd", getattr(model.token_embd, "qt", model.token_embd), counts=False)
    for block in model.blocks:
        i = block.index
        add_norm(f"blk.{i}.attn_norm.weight", block.attn_norm)
        for name in LINEAR_NAMES:
            layer = f"blk.{i}.{name}"
            add_matrix(_gguf_tensor_name(layer), layer, _layer_content(layer, block.linears[name], fn), counts=True)
        add_norm(f"blk.{i}.ffn_norm.weight", block.ffn_norm)
    add_norm("output_norm.weight", model.output_norm)
    if not config.tied_embeddings:
        add_matrix("output.weight", "output", output, counts=False)

    # -- key/values: the source's, in its order, then what changed on purpose --------------
    from gguf import GGUFValueType as T
    from gguf.gguf_writer import GGUFValue

    import quantcore

    dominant = max(linear_weights, key=linear_weights.get) if linear_weights else "f32"
    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                 "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0, "q4_1": gguf.LlamaFileType.MOSTLY_Q4_1,
                 "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[dominant]
    summary = {"quantization": model.quantization, "tensor_types": dict(sorted(written_types.items()))}
    if requantize_to is not None:
        summary["requantize_to"] = requantize_to

    kv: dict[str, GGUFValue] = {}
    alignment = None
    skipped = ("general.architecture", "general.alignment")  # written by GGUFWriter itself
    for key, value in list(model.metadata.items()) + list(model.tokenizer_metadata.items()):
        if key == "general.alignment":
            alignment = int(value)
        if key in skipped or key.startswith("quantcore.") or key.startswith("GGUF."):
            continue
        kv[key] = _gguf_value(key, value, model.metadata_types.get(key))
    for key, value in _config_keys(config).items():
        if key not in kv:
            kv[key] = _gguf_value(key, value, None)
    kv["general.file_type"] = GGUFValue(int(file_type), T.UINT32)
    if any(t in GGUF_SCHEMES for t in written_types):
        kv["general.quantization_version"] = GGUFValue(GGML_QUANTIZATION_VERSION, T.UINT32)
    kv["quantcore.version"] = GGUFValue(quantcore.__version__, T.STRING)
    kv["quantcore.quantization"] = GGUFValue(_json(summary, "model.quantization", fn), T.STRING)

    def write(tmp: str) -> None:
        writer = gguf.GGUFWriter(tmp, "llama")
        try:
            if alignment is not None:
                writer.add_custom_alignment(alignment)
            for key, value in kv.items():
                writer.add_key_value(key, value.value, value.type, value.sub_type)
            for name, data, ggml_type in tensors:
                if ggml_type in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
                    writer.add_tensor(name, data)
                else:
                    writer.add_tensor(name, data, raw_dtype=ggml_type)
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file(progress=progress)
        finally:
            writer.close()

    replace_atomically(path, write)


# ---------------------------------------------------------------------------------------
# quantcore's own format (safetensors)
# ---------------------------------------------------------------------------------------


def _numpy_to_python(value: object) -> object:
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def _json(value: object, what: str, fn: str) -> str:
    """JSON text of a value; dict order is kept (the order of GGUF key/values is part of the file).
    numpy scalars and arrays are written as their Python values."""
    try:
        return json.dumps(value, allow_nan=True, default=_numpy_to_python)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{fn}: {what} is not JSON-serializable ({exc})") from None


def _metadata_crc(metadata: dict[str, str]) -> int:
    """CRC-32 of every metadata entry except metadata_crc32, in a fixed order."""
    canonical = json.dumps({k: v for k, v in metadata.items() if k != "metadata_crc32"}, sort_keys=True)
    return zlib.crc32(canonical.encode("utf-8"))


def save_quantized(model: LlamaModel, path: str | os.PathLike) -> None:
    """Write `model` (quantized or float) to one safetensors file in quantcore's format.

    Everything load_quantized needs to rebuild a model that computes the same logits: every
    QuantizedTensor's parts (codes, scales, zeros, and perm when the tensor has one), the float
    tensors, the config, the tokenizer's GGUF fields and the metadata. Layout and checksums:
    see the module docstring. Written under a temporary name and renamed into place.

    Args:
        model: a LlamaModel whose linears are Linear or QuantizedLinear (anything holding a
            QuantizedTensor in `.qt` counts as quantized and loads back as a QuantizedLinear).
        path: the file to write, conventionally *.safetensors (replaced if it exists).

    Raises:
        TypeError: model is not a LlamaModel, or path is not a str / PathLike.
        ValueError: a layer that is neither kind (naming it), metadata that JSON cannot hold,
            or path is a directory.
        OSError: the directory is not writable.

    Example:
        >>> save_quantized(quantize_model(load_model(), "rtn", "int4"), "smollm2-int4.safetensors")
        >>> model = load_quantized("smollm2-int4.safetensors")
    """
    import quantcore
    from safetensors.numpy import save_file

    fn = "save_quantized"
    model = _check_model(model, fn)
    path = _check_path(path, fn)
    config = model.config
    tensors: dict[str, np.ndarray] = {}
    layers: dict[str, dict] = {}

    def add_layer(layer: str, content) -> None:
        if isinstance(content, np.ndarray):
            tensors[f"{layer}.weight"] = np.ascontiguousarray(content, np.float32)
            layers[layer] = {"kind": "float"}
            return
        qt = content
        tensors[f"{layer}.codes"] = qt.codes
        tensors[f"{layer}.scales"] = qt.scales.view(np.uint16) if qt.scales.dtype.name == "bfloat16" else qt.scales
        if qt.zeros is not None:
            tensors[f"{layer}.zeros"] = qt.zeros
        perm = _perm(qt)
        if perm is not None:
            tensors[f"{layer}.perm"] = np.asarray(perm)
        layers[layer] = {"kind": "quantized", "scheme": qt.scheme, "shape": list(qt.shape),
                         "group_size": int(qt.group_size), "symmetric": bool(qt.symmetric),
                         "scale_dtype": qt.scales.dtype.name}

    for name, linear in model.named_linears():
        add_layer(name, _layer_content(name, linear, fn))
    output = _layer_content("output", model.output, fn)
    token_embd = "output" if config.tied_embeddings and _tied_embedding_matches(model, output) else "stored"
    if token_embd == "stored" and isinstance(getattr(model.token_embd, "qt", None), QuantizedTensor):
        token_embd = "quantized"  # an untied QuantizedEmbedding: stored like a quantized layer
        add_layer("token_embd", model.token_embd.qt)
    elif token_embd == "stored":
        tensors["token_embd"] = np.ascontiguousarray(model.token_embd, np.float32)
    for block in model.blocks:
        tensors[f"blk.{block.index}.attn_norm"] = np.ascontiguousarray(block.attn_norm.weight, np.float32)
        tensors[f"blk.{block.index}.ffn_norm"] = np.ascontiguousarray(block.ffn_norm.weight, np.float32)
    tensors["output_norm"] = np.ascontiguousarray(model.output_norm.weight, np.float32)
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}

    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "quantcore_version": quantcore.__version__,
        "config": _json(dataclasses.asdict(config), "model.config", fn),
        "layers": _json(layers, "the layer table", fn),
        "token_embd": token_embd,
        "metadata": _json(model.metadata, "model.metadata", fn),
        "tokenizer_metadata": _json(model.tokenizer_metadata, "model.tokenizer_metadata", fn),
        "metadata_types": _json(model.metadata_types, "model.metadata_types", fn),
        "quantization": _json(model.quantization, "model.quantization", fn),
        "crc32": json.dumps({k: zlib.crc32(v.data) for k, v in tensors.items()}, sort_keys=True),
    }
    metadata["metadata_crc32"] = str(_metadata_crc(metadata))
    replace_atomically(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def _read_safetensors(path: str, fn: str) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    from safetensors import SafetensorError, safe_open

    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except IsADirectoryError:
        raise ValueError(f"{fn}: {path!r} is a directory, not a model file") from None
    if head == b"GGUF":
        raise ValueError(f"{fn}: {path!r} is a GGUF file, not a quantcore safetensors model; "
                         "load it with LlamaModel.from_gguf")
    try:
        with safe_open(path, framework="numpy") as f:
            metadata = f.metadata() or {}
            if metadata.get("format") != FORMAT:
                raise ValueError(f"{fn}: {path!r} is not a quantcore model file (metadata format is "
                                 f"{metadata.get('format')!r}, expected {FORMAT!r})")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, KeyError, TypeError, OverflowError) as exc:  # I/O errors stay OSError
        raise ValueError(f"{fn}: {path!r} is not a readable safetensors file (truncated or corrupted?): "
                         f"{type(exc).__name__}: {exc}") from None
    except ValueError as exc:
        if str(exc).startswith(f"{fn}:"):
            raise
        raise ValueError(f"{fn}: {path!r} is not a readable safetensors file (truncated or corrupted?): {exc}") from None
    return metadata, tensors


def load_quantized(path: str | os.PathLike, *, load_tokenizer: bool = True) -> LlamaModel:
    """Read a file written by save_quantized back into a LlamaModel.

    Quantized layers come back as QuantizedLinear holding QuantizedTensors equal to the saved
    ones (same codes, scales, zeros, perm), float tensors unchanged, so the model computes the
    same logits as the model that was saved.

    Args:
        path: a file written by save_quantized.
        load_tokenizer: build the tokenizer from the stored tokenizer.ggml.* fields (when present).

    Returns:
        LlamaModel, with metadata, tokenizer_metadata, metadata_types and quantization restored.

    Raises:
        FileNotFoundError: nothing at `path`.
        ValueError: not a quantcore model file (a directory, a GGUF, another safetensors file,
            random bytes), a truncated or corrupted one (a checksum, a tensor or the metadata
            does not match), or one written by a newer format version.
    """
    from quantcore.quantize import _SCALE_DTYPES, _validate

    fn = "load_quantized"
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{fn}: path must be a str or os.PathLike (got {type(path).__name__})")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{fn}: no such file: {path!r}")
    metadata, tensors = _read_safetensors(path, fn)
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{fn}: {path!r} has format_version {metadata.get('format_version')!r}; "
                         f"this quantcore reads {FORMAT_VERSION!r}")
    try:
        if int(metadata["metadata_crc32"]) != _metadata_crc(metadata):
            raise ValueError("the metadata checksum does not match")
        expected_crc = json.loads(metadata["crc32"])
        config_fields = json.loads(metadata["config"])
        layers = json.loads(metadata["layers"])
        token_embd_kind = metadata["token_embd"]
        model_metadata = json.loads(metadata["metadata"])
        tokenizer_metadata = json.loads(metadata["tokenizer_metadata"])
        metadata_types = {k: tuple(v) for k, v in json.loads(metadata["metadata_types"]).items()}
        quantization = json.loads(metadata["quantization"])
        config = LlamaConfig(**config_fields)
    except (KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"{fn}: {path!r} has corrupted metadata ({type(exc).__name__}: {exc})") from None
    if not isinstance(expected_crc, dict) or set(expected_crc) != set(tensors):
        raise ValueError(f"{fn}: {path!r} is corrupted: its tensors do not match the checksum table "
                         f"(missing {sorted(set(expected_crc) - set(tensors))[:5]}, "
                         f"unexpected {sorted(set(tensors) - set(expected_crc))[:5]})")
    for k, v in tensors.items():
        if zlib.crc32(np.ascontiguousarray(v).data) != expected_crc[k]:
            raise ValueError(f"{fn}: {path!r} is corrupted: the checksum of tensor {k!r} does not match")

    def float_tensor(name: str, shape: tuple) -> np.ndarray:
        a = tensors.get(name)
        if a is None or a.dtype != np.float32 or a.shape != shape:
            got = "missing" if a is None else f"{a.dtype.name} {a.shape}"
            raise ValueError(f"{fn}: {path!r} is inconsistent: tensor {name!r} must be float32 {shape} (got {got})")
        return a

    def layer(name: str, shape: tuple):
        info = layers.get(name)
        if not isinstance(info, dict) or info.get("kind") not in ("float", "quantized"):
            raise ValueError(f"{fn}: {path!r} is inconsistent: no valid entry for layer {name!r}")
        if info["kind"] == "float":
            return Linear(float_tensor(f"{name}.weight", shape))
        try:
            scales = tensors[f"{name}.scales"]
            scale_dtype = _SCALE_DTYPES[info["scale_dtype"]]
            if scale_dtype.name == "bfloat16":
                if scales.dtype != np.uint16:
                    raise ValueError("bfloat16 scales must be stored as uint16")
                scales = scales.view(scale_dtype)
            kwargs = {}
            perm = tensors.get(f"{name}.perm")
            if perm is not None:
                if "perm" not in _QT_FIELDS:
                    raise ValueError("it has a column permutation (perm), which this quantcore's "
                                     "QuantizedTensor cannot hold")
                kwargs["perm"] = perm
            qt = QuantizedTensor(info["scheme"], tuple(info["shape"]), info["group_size"], info["symmetric"],
                                 tensors[f"{name}.codes"], scales, tensors.get(f"{name}.zeros"), **kwargs)
            _validate(qt, "QuantizedTensor", values=True)
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"{fn}: {path!r} is inconsistent: layer {name!r}: {type(exc).__name__}: {exc}") from None
        if qt.shape != shape:
            raise ValueError(f"{fn}: {path!r} is inconsistent: layer {name!r} must have shape {shape} (got {qt.shape})")
        return QuantizedLinear(qt)

    names = [f"blk.{i}.{n}" for i in range(config.n_layer) for n in LINEAR_NAMES] + ["output"]
    names += ["token_embd"] if token_embd_kind == "quantized" else []
    if not isinstance(layers, dict) or set(layers) != set(names):
        raise ValueError(f"{fn}: {path!r} is inconsistent: its layer table does not match the config "
                         f"({config.n_layer} blocks)")
    if token_embd_kind not in ("stored", "output", "quantized"):
        raise ValueError(f"{fn}: {path!r} is inconsistent: token_embd is {token_embd_kind!r}")
    expected = {"output_norm"} | {f"blk.{i}.{n}" for i in range(config.n_layer) for n in ("attn_norm", "ffn_norm")}
    expected |= {"token_embd"} if token_embd_kind == "stored" else set()
    for name in names:
        kind = layers[name].get("kind") if isinstance(layers[name], dict) else None
        expected |= {f"{name}.weight"} if kind == "float" else {f"{name}.{p}" for p in ("codes", "scales", "zeros", "perm")}
    unexpected = set(tensors) - expected
    if unexpected:
        raise ValueError(f"{fn}: {path!r} is inconsistent: unexpected tensors {sorted(unexpected)[:5]}")

    d = config.n_embd
    shapes = _expected_shapes(config)
    blocks = []
    for i in range(config.n_layer):
        linears = {name: layer(f"blk.{i}.{name}", shapes[name]) for name in LINEAR_NAMES}
        blocks.append(LlamaBlock(config, i, RMSNorm(float_tensor(f"blk.{i}.attn_norm", (d,)), config.norm_eps),
                                 RMSNorm(float_tensor(f"blk.{i}.ffn_norm", (d,)), config.norm_eps), linears))
    output_norm = RMSNorm(float_tensor("output_norm", (d,)), config.norm_eps)
    output = layer("output", (config.vocab_size, d))
    if token_embd_kind == "stored":
        token_embd = float_tensor("token_embd", (config.vocab_size, d))
    elif token_embd_kind == "quantized":
        token_embd = QuantizedEmbedding(layer("token_embd", (config.vocab_size, d)).qt)
    else:
        # tied: the same float array, or row lookups in the same QuantizedTensor
        token_embd = QuantizedEmbedding(output.qt) if isinstance(output, QuantizedLinear) else output.weight

    tokenizer = None
    if load_tokenizer and "tokenizer.ggml.tokens" in tokenizer_metadata:
        from quantcore.models.tokenizer import Tokenizer

        tokenizer = Tokenizer.from_gguf_fields(tokenizer_metadata)
    return LlamaModel(config, token_embd, blocks, output_norm, output, tokenizer, model_metadata,
                      tokenizer_metadata=tokenizer_metadata, metadata_types=metadata_types,
                      quantization=quantization)

