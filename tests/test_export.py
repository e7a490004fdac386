"""quantcore.models.export against outside references.

- GGUF: the exported file read back with the gguf package's GGUFReader: tensor bytes equal to
  quantcore.gguf.blocks_from_quantized(qt) and, for RTN, to the gguf package's own
  gguf.quants.quantize of the float weight; every key/value of the source file (types and
  values) unchanged except general.file_type and the added general.quantization_version /
  quantcore.*; LlamaModel.from_gguf of the export holds the same float32 weights as the
  quantized model, so its logits are the same.
- quantcore's safetensors format: exact round trip of every QuantizedTensor part, float tensor,
  key/value and the logits; truncated, bit-flipped, foreign and non-files raise ValueError.

Most tests use a tiny random llama written here with gguf.GGUFWriter (a full tokenizer: byte-level
BPE vocabulary, merges, token types, special ids, flags, chat template). On the real
SmolLM2-135M-Instruct: RTN q4_0 checked on bytes and key/values (logits after from_gguf with
--slow), and RTN q4_1, whose export must reproduce the tensors llama.cpp's tools wrote into the
source file byte for byte.
"""

from __future__ import annotations

import dataclasses
import json
import os

import ml_dtypes
import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from quantcore import gguf as qgguf  # noqa: E402
from quantcore import models  # noqa: E402
from quantcore.models import export  # noqa: E402
from quantcore.models.quantized import QuantizedLinear, quantize_model  # noqa: E402
from quantcore.quantize import QuantizedTensor, quantize  # noqa: E402

EPS32 = float(np.finfo(np.float32).eps)
QT = gguf.GGMLQuantizationType
GGUF_TYPE = {"q4_0": QT.Q4_0, "q4_1": QT.Q4_1, "q8_0": QT.Q8_0}
FILE_TYPE = {"q4_0": 2, "q4_1": 3, "q8_0": 7}  # llama_ftype: LLAMA_FTYPE_MOSTLY_*
LINEAR_GGUF = {"q": "attn_q", "k": "attn_k", "v": "attn_v", "o": "attn_output", "gate": "ffn_gate",
               "up": "ffn_up", "down": "ffn_down"}
TINY = dict(n_layer=2, n_embd=64, n_ff=128, n_head=4, n_head_kv=2, head_dim=16, vocab=300)
CHAT_TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"


# ---------------------------------------------------------------------------------------
# A tiny random llama with a complete tokenizer
# ---------------------------------------------------------------------------------------


def byte_symbols() -> list[str]:
    """GPT-2's printable stand-ins for the 256 byte values, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(extra)) for b in range(256)]


def write_tiny_source(path, *, tied: bool, seed: int) -> None:
    """A float32 llama GGUF as llama.cpp's converter lays one out, with every tokenizer field
    SmolLM2's file has (model, pre, tokens, token types, merges, bos/eos/unk/padding ids,
    add_bos / add_space_prefix flags, chat template) and a few general.* keys."""
    c = TINY
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_type("model")
    w.add_name("tiny test llama")
    w.add_languages(["en", "fr"])
    w.add_block_count(c["n_layer"])
    w.add_context_length(256)
    w.add_embedding_length(c["n_embd"])
    w.add_feed_forward_length(c["n_ff"])
    w.add_head_count(c["n_head"])
    w.add_head_count_kv(c["n_head_kv"])
    w.add_rope_freq_base(100000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_vocab_size(c["vocab"])
    w.add_rope_dimension_count(c["head_dim"])
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    merges = ["Ġ t", "h e", "Ġt he", "l l", "o r", "Ġ a"]
    tokens = specials + byte_symbols() + [m.replace(" ", "") for m in merges]
    tokens += [f"<extra_{i}>" for i in range(c["vocab"] - len(tokens))]
    w.add_add_space_prefix(False)
    w.add_add_bos_token(False)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types([3, 3, 3] + [1] * (c["vocab"] - 3))
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_pad_token_id(2)
    w.add_chat_template(CHAT_TEMPLATE)

    def rand(*shape):
        return (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32)

    d, ff = c["n_embd"], c["n_ff"]
    hq, hkv = c["n_head"] * c["head_dim"], c["n_head_kv"] * c["head_dim"]
    w.add_tensor("token_embd.weight", rng.standard_normal((c["vocab"], d)).astype(np.float32))
    shapes = {"q": (hq, d), "k": (hkv, d), "v": (hkv, d), "o": (d, hq), "gate": (ff, d), "up": (ff, d), "down": (d, ff)}
    for i in range(c["n_layer"]):
        w.add_tensor(f"blk.{i}.attn_norm.weight", (1 + 0.1 * rng.standard_normal(d)).astype(np.float32))
        for name, shape in shapes.items():
            w.add_tensor(f"blk.{i}.{LINEAR_GGUF[name]}.weight", rand(*shape))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", (1 + 0.1 * rng.standard_normal(d)).astype(np.float32))
    w.add_tensor("output_norm.weight", (1 + 0.1 * rng.standard_normal(d)).astype(np.float32))
    if not tied:
        w.add_tensor("output.weight", rand(c["vocab"], d))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.fixture(scope="module", params=["tied", "untied"])
def source(request, tmp_path_factory):
    """(path of the float source GGUF, the float LlamaModel loaded from it)."""
    path = tmp_path_factory.mktemp("src") / f"tiny-{request.param}.gguf"
    write_tiny_source(path, tied=request.param == "tied", seed=len(request.param))
    return path, models.LlamaModel.from_gguf(path)


TOKENS = np.array([1, 3 + 116, 3 + 104, 3 + 101, 3 + 32, 20, 299, 7, 2, 150, 64, 33])


def float_twin(model):
    """The model with every QuantizedLinear replaced by a float Linear of its dequantized weight:
    what LlamaModel.from_gguf must rebuild from an exported file."""
    blocks = []
    for block in model.blocks:
        linears = {n: models.Linear(lin.qt.dequantize()) if hasattr(lin, "qt") else lin
                   for n, lin in block.linears.items()}
        blocks.append(models.LlamaBlock(block.config, block.index, block.attn_norm, block.ffn_norm, linears))
    out = model.output
    out = models.Linear(out.qt.dequantize()) if hasattr(out, "qt") else out
    embd = out.weight if model.config.tied_embeddings else model.token_embd
    return models.LlamaModel(model.config, embd, blocks, model.output_norm, out)


def logits_tolerance(model, logits):
    """Same weights, another matmul kernel (quantcore.matmul once QuantizedLinear uses it): a
    K-term float32 dot product moves by about eps32 * sqrt(K) of its scale, K = max(n_embd, n_ff);
    the errors add over the blocks and the output; factor 2 for the steps in between."""
    c = model.config
    return 2 * EPS32 * np.sqrt(max(c.n_embd, c.n_ff)) * (c.n_layer + 1) * float(np.abs(logits).max())


def read_fields(reader) -> dict:
    """key -> (types, contents) of every key/value except the GGUF.* header fields."""
    return {k: (list(f.types), f.contents()) for k, f in reader.fields.items() if not k.startswith("GGUF.")}


def tensor_bytes(reader) -> dict:
    return {t.name: (t.tensor_type, np.asarray(t.data)) for t in reader.tensors}


# ---------------------------------------------------------------------------------------
# GGUF export
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["q4_0", "q4_1", "q8_0"])
def test_gguf_tensor_bytes_match_blocks_and_gguf_package(source, scheme, tmp_path):
    src_path, model = source
    q = quantize_model(model, "rtn", scheme, group_size=32, progress=False)
    out = tmp_path / "out.gguf"
    models.export_gguf(q, out)
    src = tensor_bytes(gguf.GGUFReader(src_path))
    got = tensor_bytes(gguf.GGUFReader(out))
    assert set(got) == set(src)  # tied: token_embd only, no output.weight, as in the source
    for block in q.blocks:
        for name, lin in block.linears.items():
            ttype, data = got[f"blk.{block.index}.{LINEAR_GGUF[name]}.weight"]
            assert ttype == GGUF_TYPE[scheme]
            np.testing.assert_array_equal(data, qgguf.blocks_from_quantized(lin.qt))
            # outside reference: the gguf package's own quantizer on the float weight
            np.testing.assert_array_equal(data, gguf.quants.quantize(model.blocks[block.index].linears[name].weight,
                                                                     GGUF_TYPE[scheme]))
        for norm in ("attn_norm", "ffn_norm"):
            key = f"blk.{block.index}.{norm}.weight"
            assert got[key][0] == QT.F32
            np.testing.assert_array_equal(got[key][1], src[key][1])
    np.testing.assert_array_equal(got["output_norm.weight"][1], src["output_norm.weight"][1])
    # the output matrix at q8_0 (quantize_model's default embedding_scheme)
    out_name = "token_embd.weight" if model.config.tied_embeddings else "output.weight"
    assert got[out_name][0] == QT.Q8_0
    np.testing.assert_array_equal(got[out_name][1], qgguf.blocks_from_quantized(q.output.qt))
    if not model.config.tied_embeddings:  # the untied input embedding is quantized the same way
        assert got["token_embd.weight"][0] == QT.Q8_0
        np.testing.assert_array_equal(got["token_embd.weight"][1], qgguf.blocks_from_quantized(q.token_embd.qt))


@pytest.mark.parametrize("scheme", ["q4_0", "q8_0"])
def test_gguf_metadata_and_tokenizer_identical_to_source(source, scheme, tmp_path):
    src_path, model = source
    q = quantize_model(model, "rtn", scheme, group_size=32, progress=False)
    out = tmp_path / "out.gguf"
    models.export_gguf(q, out)
    src = read_fields(gguf.GGUFReader(src_path))
    got = read_fields(gguf.GGUFReader(out))
    changed = {"general.file_type", "general.quantization_version", "quantcore.version", "quantcore.quantization"}
    assert set(got) - set(src) <= changed
    for key, (types, value) in src.items():
        if key in changed:
            continue
        assert got[key][0] == types, key
        assert got[key][1] == value, key
    assert got["tokenizer.chat_template"][1] == CHAT_TEMPLATE
    assert got["tokenizer.ggml.merges"][1] == src["tokenizer.ggml.merges"][1]
    assert got["general.file_type"] == ([gguf.GGUFValueType.UINT32], FILE_TYPE[scheme])
    assert got["general.quantization_version"] == ([gguf.GGUFValueType.UINT32], 2)
    info = json.loads(got["quantcore.quantization"][1])
    assert info["quantization"] == {"method": "rtn", "scheme": scheme, "group_size": 32, "symmetric": False,
                                    "embedding_scheme": "q8_0"}
    # the block linears, plus the q8_0 output matrix (and an untied q8_0 input embedding)
    untied = not source[1].config.tied_embeddings
    assert info["tensor_types"][scheme] == 7 * TINY["n_layer"] + (scheme == "q8_0") * (1 + untied)


def test_gguf_loads_back_with_the_same_weights_and_logits(source, tmp_path):
    _, model = source
    q = quantize_model(model, "rtn", "q4_1", group_size=32, progress=False)
    out = tmp_path / "out.gguf"
    models.export_gguf(q, out)
    back = models.LlamaModel.from_gguf(out)
    assert back.config == q.config
    for qb, bb in zip(q.blocks, back.blocks):
        for name, lin in qb.linears.items():
            np.testing.assert_array_equal(bb.linears[name].weight, lin.qt.dequantize())
    vocab = np.arange(q.config.vocab_size)
    np.testing.assert_array_equal(back.token_embd, q.token_embd[vocab])  # a QuantizedEmbedding's rows
    np.testing.assert_array_equal(back.output.weight, q.output.qt.dequantize())
    # same float32 weights and the same numpy forward: bit-identical logits
    expected = float_twin(q).forward(TOKENS)
    np.testing.assert_array_equal(back.forward(TOKENS), expected)
    # the quantized model's own forward: identical today (x @ dequantize().T); within float
    # rounding of a K-term dot product if QuantizedLinear switches to another kernel
    np.testing.assert_allclose(q.forward(TOKENS), expected, rtol=0, atol=logits_tolerance(q, expected))
    text = "hello the world, 12 <|im_start|>"
    np.testing.assert_array_equal(back.tokenizer.encode(text, special=True), model.tokenizer.encode(text, special=True))


@pytest.mark.parametrize("float_type", ["f32", "f16"])
def test_gguf_float_model(source, float_type, tmp_path):
    src_path, model = source
    out = tmp_path / "out.gguf"
    models.export_gguf(model, out, float_type=float_type)
    reader = gguf.GGUFReader(out)
    src = tensor_bytes(gguf.GGUFReader(src_path))
    for name, (ttype, data) in tensor_bytes(reader).items():
        if "norm" in name or float_type == "f32":
            assert ttype == QT.F32, name
            np.testing.assert_array_equal(data, src[name][1])
        else:
            assert ttype == QT.F16, name
            np.testing.assert_array_equal(data, src[name][1].astype(np.float16))
    fields = read_fields(reader)
    assert fields["general.file_type"][1] == {"f32": 0, "f16": 1}[float_type]
    assert "general.quantization_version" not in fields
    assert json.loads(fields["quantcore.quantization"][1])["quantization"] is None
    if float_type == "f32":
        np.testing.assert_array_equal(models.LlamaModel.from_gguf(out).forward(TOKENS), model.forward(TOKENS))


def test_gguf_dominant_type_sets_file_type(source, tmp_path):
    _, model = source
    q = quantize_model(model, "rtn", "q4_0", group_size=32, progress=False)
    # the two FFN matrices of the last block at q8_0: still fewer weights than the q4_0 ones
    last = q.blocks[-1].linears
    for name in ("gate", "up"):
        last[name] = QuantizedLinear(quantize(model.blocks[-1].linears[name].weight, "q8_0"))
    out = tmp_path / "mixed.gguf"
    models.export_gguf(q, out)
    reader = gguf.GGUFReader(out)
    assert reader.fields["general.file_type"].contents() == FILE_TYPE["q4_0"]
    types = {t.name: t.tensor_type for t in reader.tensors}
    assert types[f"blk.{TINY['n_layer'] - 1}.ffn_gate.weight"] == QT.Q8_0
    assert types["blk.0.ffn_gate.weight"] == QT.Q4_0


def test_gguf_metadata_without_recorded_types(source, tmp_path):
    """Keys added by hand get the converter's usual types; a value that no longer fits its
    recorded type is written with the type of its new value; a value GGUF cannot hold raises."""
    import copy

    _, model = source
    m = copy.copy(model)
    m.metadata = dict(model.metadata, **{"general.author": "me", "custom.count": 5, "custom.big": 1 << 40,
                                         "custom.ratio": 0.5, "custom.flag": True, "custom.ids": [1, -2, 3],
                                         "custom.names": ["a", "b"], "general.name": 7})
    models.export_gguf(m, tmp_path / "x.gguf")
    T = gguf.GGUFValueType
    got = read_fields(gguf.GGUFReader(tmp_path / "x.gguf"))
    assert got["general.author"] == ([T.STRING], "me")
    assert got["custom.count"] == ([T.UINT32], 5)
    assert got["custom.big"] == ([T.UINT64], 1 << 40)
    assert got["custom.ratio"] == ([T.FLOAT32], 0.5)
    assert got["custom.flag"] == ([T.BOOL], True)
    assert got["custom.ids"] == ([T.ARRAY, T.INT32], [1, -2, 3])
    assert got["custom.names"] == ([T.ARRAY, T.STRING], ["a", "b"])
    assert got["general.name"] == ([T.UINT32], 7)  # was a string
    m.metadata["custom.bad"] = {"a": 1}
    with pytest.raises(ValueError, match="export_gguf: metadata key 'custom.bad' has a value GGUF cannot hold"):
        models.export_gguf(m, tmp_path / "y.gguf")
    assert not (tmp_path / "y.gguf").exists()


def test_gguf_unsupported_scheme_names_the_layer(source, tmp_path):
    _, model = source
    q = quantize_model(model, "rtn", "int4", group_size=32, progress=False)
    out = tmp_path / "out.gguf"
    with pytest.raises(ValueError, match=r"export_gguf: layer 'blk\.0\.q' has scheme 'int4'.*q4_0, q4_1, q8_0"):
        models.export_gguf(q, out)
    assert not out.exists() and os.listdir(tmp_path) == []
    # requantize_to: the int4 weights rounded again onto q8_0
    models.export_gguf(q, out, requantize_to="q8_0")
    got = tensor_bytes(gguf.GGUFReader(out))
    lin = q.blocks[1].linears["down"]
    np.testing.assert_array_equal(got["blk.1.ffn_down.weight"][1],
                                  gguf.quants.quantize(lin.qt.dequantize(), QT.Q8_0))
    assert json.loads(gguf.GGUFReader(out).fields["quantcore.quantization"].contents())["requantize_to"] == "q8_0"


def test_gguf_argument_errors(source, tmp_path):
    _, model = source
    with pytest.raises(TypeError, match="export_gguf: model"):
        models.export_gguf(object(), tmp_path / "x.gguf")
    with pytest.raises(ValueError, match="export_gguf: float_type must be 'f32' or 'f16' \\(got 'bf16'\\)"):
        models.export_gguf(model, tmp_path / "x.gguf", float_type="bf16")
    with pytest.raises(ValueError, match="export_gguf: requantize_to must be None or one of"):
        models.export_gguf(model, tmp_path / "x.gguf", requantize_to="int4")
    with pytest.raises(ValueError, match="is a directory"):
        models.export_gguf(model, tmp_path)
    q = quantize_model(model, "rtn", "q8_0", group_size=32, progress=False)
    q.blocks[0].linears["v"] = object()
    with pytest.raises(ValueError, match="export_gguf: layer 'blk.0.v' is a object"):
        models.export_gguf(q, tmp_path / "x.gguf")


def test_gguf_tied_embedding_must_match_output(tmp_path):
    write_tiny_source(tmp_path / "tied.gguf", tied=True, seed=0)
    model = models.LlamaModel.from_gguf(tmp_path / "tied.gguf")
    q = quantize_model(model, "rtn", "q8_0", group_size=32, progress=False)
    q.token_embd = model.token_embd  # float, while the output matrix is q8_0
    with pytest.raises(ValueError, match="tied embeddings but token_embd differs"):
        models.export_gguf(q, tmp_path / "x.gguf")


def test_gguf_write_failure_keeps_the_old_file(source, tmp_path, monkeypatch):
    _, model = source
    models.export_gguf(model, tmp_path / "ok.gguf")
    (tmp_path / "plain").write_bytes(b"")  # the mode a plain open() gives, not mkstemp's 0600
    assert (tmp_path / "ok.gguf").stat().st_mode == (tmp_path / "plain").stat().st_mode
    (tmp_path / "ok.gguf").unlink()
    (tmp_path / "plain").unlink()
    out = tmp_path / "out.gguf"
    out.write_bytes(b"previous contents")

    def fail(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", fail)
    with pytest.raises(OSError, match="disk full"):
        models.export_gguf(model, out)
    assert out.read_bytes() == b"previous contents"
    assert os.listdir(tmp_path) == ["out.gguf"]


def test_gguf_act_order_permutation_is_refused(source, tmp_path):
    """A QuantizedTensor with a non-identity column permutation (GPTQ act_order) has its blocks
    in permuted column order, which a GGUF tensor cannot say: refused, or requantized."""
    _, model = source
    q = quantize_model(model, "rtn", "q4_0", group_size=32, progress=False)
    qt = q.blocks[0].linears["up"].qt
    perm = np.random.default_rng(0).permutation(qt.shape[1])
    q.blocks[0].linears["up"] = QuantizedLinear(_with_perm(qt, perm))
    with pytest.raises(ValueError, match=r"layer 'blk\.0\.up'.*column permutation"):
        models.export_gguf(q, tmp_path / "x.gguf")
    q.blocks[0].linears["up"] = QuantizedLinear(_with_perm(qt, np.arange(qt.shape[1])))
    models.export_gguf(q, tmp_path / "x.gguf")  # the identity is no permutation


def _with_perm(qt: QuantizedTensor, perm: np.ndarray) -> QuantizedTensor:
    return QuantizedTensor(qt.scheme, qt.shape, qt.group_size, qt.symmetric, qt.codes, qt.scales, qt.zeros,
                           perm=np.asarray(perm, np.int64))


# ---------------------------------------------------------------------------------------
# quantcore's own format
# ---------------------------------------------------------------------------------------


def mixed_model(model):
    """Every kind of layer: int4 asymmetric g32 (uint8 zeros), int3 symmetric g64, nf4, fp8,
    q4_1 (float16 zeros), int8 with bfloat16 scales, one float Linear left in place."""
    q = quantize_model(model, "rtn", "int4", group_size=32, progress=False)
    b0, b1 = q.blocks[0].linears, q.blocks[1].linears
    fw = {(i, n): model.blocks[i].linears[n].weight for i in range(2) for n in models.LINEAR_NAMES}
    b0["k"] = QuantizedLinear(quantize(fw[0, "k"], "int3", group_size=64, symmetric=True))
    b0["v"] = QuantizedLinear(quantize(fw[0, "v"], "nf4", group_size=64))
    b0["o"] = QuantizedLinear(quantize(fw[0, "o"], "fp8_e4m3fn", group_size=-1))
    b1["gate"] = QuantizedLinear(quantize(fw[1, "gate"], "q4_1"))
    b1["up"] = QuantizedLinear(quantize(fw[1, "up"], "int8", group_size=32, scale_dtype=ml_dtypes.bfloat16))
    b1["down"] = model.blocks[1].linears["down"]  # float
    return q


def assert_same_qt(a: QuantizedTensor, b: QuantizedTensor):
    assert (a.scheme, a.shape, a.group_size, a.symmetric) == (b.scheme, b.shape, b.group_size, b.symmetric)
    for name in ("codes", "scales", "zeros"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype and x.shape == y.shape, name
            np.testing.assert_array_equal(x.view(np.uint8), y.view(np.uint8))


def assert_same_model(a, b):
    assert a.config == b.config
    vocab = np.arange(a.config.vocab_size)
    np.testing.assert_array_equal(a.token_embd[vocab], b.token_embd[vocab])
    np.testing.assert_array_equal(a.output_norm.weight, b.output_norm.weight)
    for (name, la), (_, lb) in zip(a.named_linears(), b.named_linears()):
        assert type(la) is type(lb), name
        if isinstance(la, QuantizedLinear):
            assert_same_qt(la.qt, lb.qt)
        else:
            np.testing.assert_array_equal(la.weight, lb.weight)
    for ba, bb in zip(a.blocks, b.blocks):
        np.testing.assert_array_equal(ba.attn_norm.weight, bb.attn_norm.weight)
        np.testing.assert_array_equal(ba.ffn_norm.weight, bb.ffn_norm.weight)
    assert a.metadata == b.metadata
    assert a.tokenizer_metadata == b.tokenizer_metadata
    assert a.metadata_types == b.metadata_types
    assert a.quantization == b.quantization


@pytest.fixture(scope="module")
def saved(source, tmp_path_factory):
    """(quantized model, path of its save_quantized file)."""
    q = mixed_model(source[1])
    path = tmp_path_factory.mktemp("own") / "model.safetensors"
    models.save_quantized(q, path)
    return q, path


def test_own_format_round_trips_exactly(saved):
    q, path = saved
    back = models.load_quantized(path)
    assert_same_model(q, back)
    np.testing.assert_array_equal(back.forward(TOKENS), q.forward(TOKENS))
    text = "hello the world <|im_end|>"
    np.testing.assert_array_equal(back.tokenizer.encode(text, special=True), q.tokenizer.encode(text, special=True))
    assert (back.tokenizer.bos_id, back.tokenizer.eos_id, back.tokenizer.add_bos) == (1, 2, False)
    if q.config.tied_embeddings:
        from safetensors import safe_open

        with safe_open(path, "numpy") as f:  # one copy of the tied matrix: the output's q8_0 codes
            assert "token_embd" not in f.keys() and f.metadata()["token_embd"] == "output"


def test_own_format_float_model_round_trips(source, tmp_path):
    _, model = source
    path = tmp_path / "float.safetensors"
    models.save_quantized(model, path)
    back = models.load_quantized(path)
    assert_same_model(model, back)
    if model.config.tied_embeddings:
        assert back.output.weight is back.token_embd
    np.testing.assert_array_equal(back.forward(TOKENS), model.forward(TOKENS))


def test_own_format_then_gguf_is_the_same_file(source, tmp_path):
    """Nothing export_gguf needs is lost on the way through quantcore's format."""
    _, model = source
    q = quantize_model(model, "rtn", "q4_0", group_size=32, progress=False)
    models.save_quantized(q, tmp_path / "m.safetensors")
    models.export_gguf(q, tmp_path / "a.gguf")
    models.export_gguf(models.load_quantized(tmp_path / "m.safetensors"), tmp_path / "b.gguf")
    assert (tmp_path / "a.gguf").read_bytes() == (tmp_path / "b.gguf").read_bytes()


def test_own_format_permutation(source, tmp_path):
    _, model = source
    q = quantize_model(model, "rtn", "int4", group_size=32, progress=False)
    qt = q.blocks[0].linears["q"].qt
    perm = np.random.default_rng(1).permutation(qt.shape[1])
    q.blocks[0].linears["q"] = QuantizedLinear(_with_perm(qt, perm))
    path = tmp_path / "perm.safetensors"
    models.save_quantized(q, path)
    from safetensors import safe_open

    with safe_open(path, "numpy") as f:
        np.testing.assert_array_equal(f.get_tensor("blk.0.q.perm"), perm)
    back = models.load_quantized(path)
    np.testing.assert_array_equal(back.blocks[0].linears["q"].qt.perm, perm)
    np.testing.assert_array_equal(back.forward(TOKENS), q.forward(TOKENS))


def _must_fail(path, match="load_quantized: "):
    with pytest.raises(ValueError, match=match):
        models.load_quantized(path, load_tokenizer=False)


def test_own_format_truncated(saved, tmp_path):
    data = saved[1].read_bytes()
    header = 8 + int.from_bytes(data[:8], "little")
    for n in (0, 1, 7, 8, 100, header - 1, header, header + 1, (header + len(data)) // 2, len(data) - 1):
        bad = tmp_path / f"trunc{n}.safetensors"
        bad.write_bytes(data[:n])
        _must_fail(bad)


def test_own_format_every_sampled_bit_flip_is_caught(saved, tmp_path):
    """Single-bit flips at 300 offsets, half in the JSON header, half in the tensor data."""
    data = bytearray(saved[1].read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    rng = np.random.default_rng(7)
    offsets = np.concatenate([rng.integers(0, header, 150), rng.integers(header, len(data), 150)])
    bad = tmp_path / "flipped.safetensors"
    for off in offsets:
        flipped = bytearray(data)
        flipped[off] ^= 1 << int(rng.integers(0, 8))
        bad.write_bytes(flipped)
        _must_fail(bad)


def test_own_format_foreign_files(saved, source, tmp_path):
    from safetensors.numpy import save_file

    save_file({"weight": np.ones((2, 2), np.float32)}, tmp_path / "foreign.safetensors", metadata={"format": "pt"})
    _must_fail(tmp_path / "foreign.safetensors", "not a quantcore model file.*'pt'")
    quantize(np.ones((2, 32), np.float32), "int4", group_size=32).save(tmp_path / "qt.safetensors")
    _must_fail(tmp_path / "qt.safetensors", "quantcore.QuantizedTensor")
    _must_fail(source[0], "is a GGUF file.*LlamaModel.from_gguf")
    (tmp_path / "random.bin").write_bytes(np.random.default_rng(0).bytes(4096))
    _must_fail(tmp_path / "random.bin")
    (tmp_path / "empty").write_bytes(b"")
    _must_fail(tmp_path / "empty")
    _must_fail(tmp_path, "is a directory")
    with pytest.raises(FileNotFoundError, match="load_quantized: no such file"):
        models.load_quantized(tmp_path / "missing.safetensors")
    with pytest.raises(TypeError, match="load_quantized: path"):
        models.load_quantized(3)


def test_own_format_newer_version_and_edited_metadata(saved, tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import save_file

    with safe_open(saved[1], "numpy") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    save_file(tensors, tmp_path / "v2.safetensors", metadata=dict(meta, format_version="2"))
    _must_fail(tmp_path / "v2.safetensors", "format_version '2'.*reads '1'")
    # a consistent-looking edit (valid JSON) without updating the checksum
    edited = dict(meta, metadata=json.dumps(dict(json.loads(meta["metadata"]), **{"general.name": "other"})))
    save_file(tensors, tmp_path / "edited.safetensors", metadata=edited)
    _must_fail(tmp_path / "edited.safetensors", "metadata checksum")
    # a missing tensor, with the tables rewritten to match: the layer is incomplete
    del tensors["blk.1.up.codes"]
    crc = json.loads(meta["crc32"])
    del crc["blk.1.up.codes"]
    rewritten = dict(meta, crc32=json.dumps(crc, sort_keys=True))
    rewritten["metadata_crc32"] = str(export._metadata_crc(rewritten))
    save_file(tensors, tmp_path / "missing.safetensors", metadata=rewritten)
    _must_fail(tmp_path / "missing.safetensors", r"layer 'blk\.1\.up'")


def test_own_format_argument_errors_and_atomic_write(source, tmp_path, monkeypatch):
    _, model = source
    with pytest.raises(TypeError, match="save_quantized: model"):
        models.save_quantized("model", tmp_path / "x.safetensors")
    with pytest.raises(ValueError, match="save_quantized: path .* is a directory"):
        models.save_quantized(model, tmp_path)
    q = quantize_model(model, "rtn", "int4", group_size=32, progress=False)
    q.blocks[1].linears["o"] = lambda x: x
    with pytest.raises(ValueError, match="save_quantized: layer 'blk.1.o' is a function"):
        models.save_quantized(q, tmp_path / "x.safetensors")
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"previous contents")
    import safetensors.numpy

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.numpy, "save_file", fail)
    with pytest.raises(OSError, match="disk full"):
        models.save_quantized(model, out)
    assert out.read_bytes() == b"previous contents" and os.listdir(tmp_path) == ["out.safetensors"]


# ---------------------------------------------------------------------------------------
# The real model
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2():
    return models.load_model()


@pytest.fixture(scope="module")
def smollm2_q4_0(smollm2, tmp_path_factory):
    """(float SmolLM2, its RTN q4_0 model, the exported GGUF path)."""
    model = smollm2
    q = quantize_model(model, "rtn", "q4_0", group_size=32, progress=False)
    out = tmp_path_factory.mktemp("smollm2") / "smollm2-q4_0.gguf"
    models.export_gguf(q, out)
    return model, q, out


def test_smollm2_rtn_q4_0_export(smollm2_q4_0):
    model, q, out = smollm2_q4_0
    reader = gguf.GGUFReader(out)
    got = read_fields(reader)
    # the source file's key/values as LlamaModel.from_gguf read them with GGUFReader (types included)
    src = {k: (list(model.metadata_types[k]), v) for k, v in {**model.metadata, **model.tokenizer_metadata}.items()}
    assert len(model.tokenizer_metadata["tokenizer.ggml.tokens"]) == 49152 and "tokenizer.chat_template" in src
    changed = {"general.file_type", "quantcore.version", "quantcore.quantization"}
    assert set(got) == set(src) | changed
    for key in set(src) - changed:
        assert got[key] == src[key], key
    assert got["general.file_type"][1] == 2 and src["general.file_type"][1] == 3  # MOSTLY_Q4_0, was Q4_1
    tensors = {t.name: t for t in reader.tensors}
    assert len(tensors) == 272 and "output.weight" not in tensors  # tied, as the source
    assert tensors["token_embd.weight"].tensor_type == QT.Q8_0
    np.testing.assert_array_equal(tensors["token_embd.weight"].data, qgguf.blocks_from_quantized(q.output.qt))
    for block in q.blocks:
        for name, lin in block.linears.items():
            t = tensors[f"blk.{block.index}.{LINEAR_GGUF[name]}.weight"]
            assert t.tensor_type == QT.Q4_0
            np.testing.assert_array_equal(t.data, qgguf.blocks_from_quantized(lin.qt))
        for norm in ("attn_norm", "ffn_norm"):
            np.testing.assert_array_equal(tensors[f"blk.{block.index}.{norm}.weight"].data,
                                          getattr(block, norm).weight)


@pytest.mark.slow
def test_smollm2_exported_gguf_loads_back_with_the_same_logits(smollm2_q4_0):
    model, q, out = smollm2_q4_0
    back = models.LlamaModel.from_gguf(out)
    ids = model.tokenizer.encode("The capital of France is")
    np.testing.assert_array_equal(back.forward(ids), float_twin(q).forward(ids))


def test_smollm2_rtn_q4_1_export_reproduces_the_source_file(smollm2, tmp_path):
    """The source file holds llama.cpp's Q4_1 (linears) and Q8_0 (embedding) blocks; the model
    dequantizes them, and RTN with the same schemes rounds every value back onto its own grid
    point. So the export must hold byte for byte the tensors llama.cpp's tools wrote, and the
    source's key/values, with only the quantcore.* keys added."""
    from quantcore import assets

    src_path = assets.default_model_path()
    q = quantize_model(smollm2, "rtn", "q4_1", group_size=32, progress=False)
    out = tmp_path / "smollm2-q4_1.gguf"
    models.export_gguf(q, out)
    src_reader, reader = gguf.GGUFReader(src_path), gguf.GGUFReader(out)
    src, got = read_fields(src_reader), read_fields(reader)
    assert set(got) - set(src) == {"quantcore.version", "quantcore.quantization"}
    assert all(got[k] == v for k, v in src.items())
    src_tensors = tensor_bytes(src_reader)
    got_tensors = tensor_bytes(reader)
    assert list(got_tensors) != [] and set(got_tensors) == set(src_tensors)
    for name, (ttype, data) in src_tensors.items():
        assert got_tensors[name][0] == ttype, name
        np.testing.assert_array_equal(got_tensors[name][1], data, err_msg=name)
