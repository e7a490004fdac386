"""quantcore.models against outside references.

- A tiny random llama (GQA, tied and untied, linear rope scaling), written with gguf.GGUFWriter
  the way llama.cpp's converter writes Hugging Face checkpoints (q/k rows permuted for RoPE),
  loaded through quantcore, against a plain float64 reference in this file that uses the
  Hugging Face layout (rotate_half on un-permuted weights), full causal attention, no cache.
- The tokenizer against a plain BPE written here with the `regex` module and llama.cpp's
  pre-tokenizer regexes for "smollm".
- The real SmolLM2-135M-Instruct (fetched through quantcore.assets): " Paris", and its
  perplexity on the evaluation protocol.
"""

from __future__ import annotations

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from quantcore import models  # noqa: E402
from quantcore.models import evaluate  # noqa: E402

EPS32 = float(np.finfo(np.float32).eps)

# ---------------------------------------------------------------------------------------
# Tiny random llama: reference implementation (Hugging Face layout, float64)
# ---------------------------------------------------------------------------------------


def ref_rms_norm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def ref_rotate_half(x):
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def ref_forward(w, cfg, tokens):
    """Logits [T, vocab] of a llama with Hugging Face weights, every position from scratch."""
    tokens = np.asarray(tokens)
    t, hd, nh, nkv = len(tokens), cfg["head_dim"], cfg["n_head"], cfg["n_head_kv"]
    inv_freq = 1.0 / cfg["rope_base"] ** (np.arange(0, hd, 2) / hd)
    angles = (np.arange(t) / cfg["rope_scale"])[:, None] * inv_freq[None, :]
    cos = np.cos(np.concatenate([angles, angles], axis=-1))[:, None, :]  # [T, 1, hd]
    sin = np.sin(np.concatenate([angles, angles], axis=-1))[:, None, :]
    h = w["embed"][tokens]
    for layer in w["layers"]:
        x = ref_rms_norm(h, layer["attn_norm"], cfg["eps"])
        q = (x @ layer["q"].T).reshape(t, nh, hd)
        k = (x @ layer["k"].T).reshape(t, nkv, hd)
        v = (x @ layer["v"].T).reshape(t, nkv, hd)
        q = q * cos + ref_rotate_half(q) * sin
        k = k * cos + ref_rotate_half(k) * sin
        attn = np.zeros((t, nh, hd))
        for j in range(nh):
            kv = j // (nh // nkv)
            scores = q[:, j] @ k[:, kv].T / np.sqrt(hd)
            scores[np.triu(np.ones((t, t), bool), 1)] = -np.inf
            p = np.exp(scores - scores.max(axis=1, keepdims=True))
            attn[:, j] = (p / p.sum(axis=1, keepdims=True)) @ v[:, kv]
        h = h + attn.reshape(t, nh * hd) @ layer["o"].T
        x = ref_rms_norm(h, layer["ffn_norm"], cfg["eps"])
        gate = x @ layer["gate"].T
        h = h + ((gate / (1 + np.exp(-gate))) * (x @ layer["up"].T)) @ layer["down"].T
    return ref_rms_norm(h, w["output_norm"], cfg["eps"]) @ w["output"].T


def hf_to_gguf_rows(weight, n_head):
    """Reorder q/k rows per head from rotate_half pairs (i, i + hd/2) to adjacent pairs (2i, 2i + 1).

    This is the permutation llama.cpp's convert_hf_to_gguf.py applies to llama attn_q / attn_k.
    """
    out_features, in_features = weight.shape
    hd = out_features // n_head
    return weight.reshape(n_head, 2, hd // 2, in_features).transpose(0, 2, 1, 3).reshape(out_features, in_features)


def byte_symbols():
    """GPT-2's reversible map from the 256 byte values to printable characters."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def write_tiny_llama(path, cfg, seed, *, tied, types):
    """Random llama weights (float64, HF layout) -> GGUF at `path`; returns the weights as stored.

    types maps "embed" / "linear" / "output" to a GGMLQuantizationType; the returned reference
    weights are the values the file really holds (after float16 / Q8_0 rounding).
    """
    rng = np.random.default_rng(seed)
    qt = gguf.GGMLQuantizationType
    d, ff, nh, nkv, hd, vocab = cfg["n_embd"], cfg["n_ff"], cfg["n_head"], cfg["n_head_kv"], cfg["head_dim"], cfg["vocab"]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(cfg["n_layer"])
    writer.add_context_length(256)
    writer.add_embedding_length(d)
    writer.add_feed_forward_length(ff)
    writer.add_head_count(nh)
    writer.add_head_count_kv(nkv)
    writer.add_rope_freq_base(cfg["rope_base"])
    writer.add_rope_dimension_count(hd)
    writer.add_layer_norm_rms_eps(cfg["eps"])
    if cfg["rope_scale"] != 1.0:
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(cfg["rope_scale"])
    # A byte-level vocabulary: the 256 byte symbols and merges of a few pairs.
    symbols = [byte_symbols()[b] for b in range(256)]
    merges = ["Ġ t", "h e", "Ġt he", "l l", "o r"]
    tokens = symbols + [m.replace(" ", "") for m in merges]
    tokens += [f"<extra_{i}>" for i in range(vocab - len(tokens))]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_merges(merges)
    writer.add_token_types([1] * (vocab - 1) + [3])
    writer.add_eos_token_id(vocab - 1)

    def store(name, value, kind):
        value = np.ascontiguousarray(value, dtype=np.float32)
        if kind == qt.F32:
            writer.add_tensor(name, value)
            return value.astype(np.float64)
        if kind == qt.F16:
            writer.add_tensor(name, value.astype(np.float16))
            return value.astype(np.float16).astype(np.float64)
        blocks = gguf.quants.quantize(value, kind)
        writer.add_tensor(name, blocks, raw_dtype=kind)
        return gguf.quants.dequantize(blocks, kind).astype(np.float64)

    def rand(*shape, scale=1.0):
        return rng.standard_normal(shape) * scale / np.sqrt(shape[-1])

    w = {"embed": store("token_embd.weight", rng.standard_normal((vocab, d)), types["embed"]), "layers": []}
    for i in range(cfg["n_layer"]):
        layer = {}
        q, k = rand(nh * hd, d), rand(nkv * hd, d)
        # The file holds the permuted rows; the reference keeps the HF rows (of the stored values).
        q_stored = store(f"blk.{i}.attn_q.weight", hf_to_gguf_rows(q, nh), types["linear"])
        k_stored = store(f"blk.{i}.attn_k.weight", hf_to_gguf_rows(k, nkv), types["linear"])
        layer["q"] = q_stored.reshape(nh, hd // 2, 2, d).transpose(0, 2, 1, 3).reshape(nh * hd, d)
        layer["k"] = k_stored.reshape(nkv, hd // 2, 2, d).transpose(0, 2, 1, 3).reshape(nkv * hd, d)
        np.testing.assert_array_equal(hf_to_gguf_rows(layer["q"], nh), q_stored)
        layer["v"] = store(f"blk.{i}.attn_v.weight", rand(nkv * hd, d), types["linear"])
        layer["o"] = store(f"blk.{i}.attn_output.weight", rand(d, nh * hd), types["linear"])
        layer["gate"] = store(f"blk.{i}.ffn_gate.weight", rand(ff, d, scale=2.0), types["linear"])
        layer["up"] = store(f"blk.{i}.ffn_up.weight", rand(ff, d), types["linear"])
        layer["down"] = store(f"blk.{i}.ffn_down.weight", rand(d, ff), types["linear"])
        layer["attn_norm"] = store(f"blk.{i}.attn_norm.weight", 1 + 0.1 * rng.standard_normal(d), qt.F32)
        layer["ffn_norm"] = store(f"blk.{i}.ffn_norm.weight", 1 + 0.1 * rng.standard_normal(d), qt.F32)
        w["layers"].append(layer)
    w["output_norm"] = store("output_norm.weight", 1 + 0.1 * rng.standard_normal(d), qt.F32)
    w["output"] = w["embed"] if tied else store("output.weight", rand(vocab, d), types["output"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return w


TINY = dict(n_layer=2, n_embd=64, n_ff=96, n_head=4, n_head_kv=2, head_dim=16, vocab=272, eps=1e-5)
QT = gguf.GGMLQuantizationType
CASES = {
    # GQA 4 query heads on 2 KV heads, tied embeddings, all float32
    "tied-f32": (dict(TINY, rope_base=10000.0, rope_scale=1.0), True,
                 dict(embed=QT.F32, linear=QT.F32, output=QT.F32)),
    # untied output, float16 linears, Q8_0 embedding, 8 query heads on 2 KV heads, linear rope scaling
    "untied-f16-q8_0": (dict(TINY, n_head=8, head_dim=8, rope_base=100000.0, rope_scale=2.0), False,
                        dict(embed=QT.Q8_0, linear=QT.F16, output=QT.F32)),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def tiny(request, tmp_path_factory):
    cfg, tied, types = CASES[request.param]
    path = tmp_path_factory.mktemp("tiny") / f"{request.param}.gguf"
    weights = write_tiny_llama(path, cfg, seed=sorted(CASES).index(request.param), tied=tied, types=types)
    return cfg, weights, models.LlamaModel.from_gguf(path), path


def logits_tolerance(cfg, ref):
    """float32 forward vs float64 reference: a K-term float32 dot product is off by about
    eps32 * sqrt(K) of its scale (K = max(n_embd, n_ff)); the errors add over the blocks and
    the output layer; factor 2 for the norm, softmax and silu steps in between."""
    k = max(cfg["n_embd"], cfg["n_ff"])
    return 2 * EPS32 * np.sqrt(k) * (cfg["n_layer"] + 1) * np.abs(ref).max()


def test_tiny_config_from_metadata(tiny):
    cfg, _, model, _ = tiny
    c = model.config
    assert (c.n_layer, c.n_embd, c.n_ff, c.n_head, c.n_head_kv, c.head_dim, c.vocab_size) == (
        cfg["n_layer"], cfg["n_embd"], cfg["n_ff"], cfg["n_head"], cfg["n_head_kv"], cfg["head_dim"], cfg["vocab"])
    assert c.rope_base == cfg["rope_base"] and c.rope_scale == cfg["rope_scale"]
    assert c.norm_eps == pytest.approx(cfg["eps"])


def test_tiny_prefill_matches_reference(tiny):
    cfg, weights, model, _ = tiny
    tokens = np.random.default_rng(1).integers(0, cfg["vocab"], 40)
    ref = ref_forward(weights, cfg, tokens)
    got = model.forward(tokens)
    assert got.dtype == np.float32 and got.shape == (40, cfg["vocab"])
    np.testing.assert_allclose(got, ref, rtol=0, atol=logits_tolerance(cfg, ref))


def test_tiny_decode_with_kv_cache_matches_reference(tiny):
    cfg, weights, model, _ = tiny
    tokens = np.random.default_rng(2).integers(0, cfg["vocab"], 40)
    ref = ref_forward(weights, cfg, tokens)
    tol = logits_tolerance(cfg, ref)
    cache = model.new_cache(capacity=4)  # small, so the cache has to grow
    np.testing.assert_allclose(model.forward(tokens[:7], cache), ref[:7], rtol=0, atol=tol)
    for t in range(7, 30):  # one-token decode steps
        np.testing.assert_allclose(model.forward(tokens[t : t + 1], cache), ref[t : t + 1], rtol=0, atol=tol)
    # a multi-token chunk after decode steps (prefill continuing a cache)
    np.testing.assert_allclose(model.forward(tokens[30:], cache), ref[30:], rtol=0, atol=tol)
    assert cache.length == 40


def test_tiny_rope_layout_is_adjacent_pairs(tiny):
    """The un-permuted (Hugging Face) rows must NOT reproduce the reference: the layout matters."""
    cfg, weights, model, _ = tiny
    tokens = np.random.default_rng(3).integers(0, cfg["vocab"], 24)
    ref = ref_forward(weights, cfg, tokens)
    originals = [dict(block.linears) for block in model.blocks]
    for block, layer in zip(model.blocks, weights["layers"]):
        block.linears["q"] = models.Linear(layer["q"].astype(np.float32))
        block.linears["k"] = models.Linear(layer["k"].astype(np.float32))
    try:
        assert np.abs(model.forward(tokens) - ref).max() > 100 * logits_tolerance(cfg, ref)
    finally:
        for block, linears in zip(model.blocks, originals):
            block.linears = linears


def test_tiny_tied_output_shares_embedding(tiny):
    _, weights, model, _ = tiny
    assert model.config.tied_embeddings == (weights["output"] is weights["embed"])
    if model.config.tied_embeddings:
        assert model.output.weight is model.token_embd


def test_capture_sees_every_linear_input(tiny):
    cfg, _, model, _ = tiny
    seen = {}
    tokens = np.arange(9) % cfg["vocab"]
    logits = model.forward(tokens, capture=lambda name, x: seen.setdefault(name, x.copy()))
    names = [name for name, _ in model.named_linears()]
    assert list(seen) == names
    for name, lin in model.named_linears():
        assert seen[name].shape == (9, lin.in_features), name
    np.testing.assert_array_equal(model.output(seen["output"]), logits)


def test_layer_by_layer_equals_forward(tiny):
    cfg, _, model, _ = tiny
    tokens = np.arange(11) % cfg["vocab"]
    h = model.embed(tokens)
    cos, sin = model.rope(0, tokens.size)
    for block in model.blocks:
        h = block.forward(h, cos, sin)
    np.testing.assert_array_equal(model.output(model.output_norm(h)), model.forward(tokens))


def test_stacked_sequences_equal_one_at_a_time(tiny):
    cfg, _, model, _ = tiny
    rng = np.random.default_rng(7)
    hs = [model.embed(rng.integers(0, cfg["vocab"], 9)) for _ in range(3)]
    cos, sin = model.rope(0, 9)
    block = model.blocks[0]
    stacked = block.forward(np.concatenate(hs), cos, sin, n_seq=3)
    np.testing.assert_allclose(stacked, np.concatenate([block.forward(h, cos, sin) for h in hs]), rtol=1e-5,
                               atol=1e-6)
    with pytest.raises(ValueError, match="stacked sequences"):
        block.forward(np.concatenate(hs), cos, sin, model.new_cache(27), n_seq=3)


def test_weights_are_writable_copies(tiny):
    """Norm and float32 weights must not stay views of the read-only file mapping (AWQ folds scales into them)."""
    _, _, model, _ = tiny
    arrays = [model.token_embd, model.output_norm.weight, model.output.weight]
    for block in model.blocks:
        arrays += [block.attn_norm.weight, block.ffn_norm.weight, *(lin.weight for lin in block.linears.values())]
    for a in arrays:
        assert a.flags.writeable and a.flags.c_contiguous and a.dtype == np.float32


def test_linears_are_swappable(tiny):
    cfg, _, model, _ = tiny
    tokens = np.arange(6) % cfg["vocab"]
    before = model.forward(tokens)

    class Counting:
        def __init__(self, inner):
            self.inner, self.calls, self.nbytes = inner, 0, inner.nbytes

        def __call__(self, x):
            self.calls += 1
            return self.inner(x)

    original = model.blocks[-1].linears["down"]
    model.blocks[-1].linears["down"] = wrapped = Counting(original)
    try:
        np.testing.assert_array_equal(model.forward(tokens), before)
        assert wrapped.calls == 1
    finally:
        model.blocks[-1].linears["down"] = original


def test_tiny_tokenizer_from_gguf(tiny):
    _, _, model, _ = tiny
    tok = model.tokenizer
    assert tok is not None and tok.pre == "default" and tok.eos_id == model.config.vocab_size - 1
    for text in ["the other hello", " thee\n\n  x", "ünïcödé 🙂"]:
        assert tok.decode(tok.encode(text)) == text
    assert list(tok.encode(" the")) == [256 + 2]  # "Ġt" + "he" -> "Ġthe"


def test_tiny_generate_greedy_matches_argmax(tiny):
    cfg, weights, model, _ = tiny
    prompt = np.array([5, 17, 3])
    new = models.generate(model, prompt, 6, stop_at_eos=False)
    seq = list(prompt)
    for _ in range(6):
        seq.append(int(np.argmax(ref_forward(weights, cfg, seq)[-1])))
    assert list(new) == seq[3:]


def test_speed_and_perplexity_run_on_given_tokens(tiny):
    cfg, weights, model, _ = tiny
    s = evaluate.speed(model, np.arange(9) % cfg["vocab"], decode_tokens=3, repeats=2)
    assert s.prompt_tokens == 9 and s.decode_tokens == 3
    assert s.prefill_tokens_per_s > 0 and s.decode_tokens_per_s > 0
    windows = np.random.default_rng(4).integers(0, cfg["vocab"], (2, 16))
    result = evaluate.perplexity(model, windows, progress=False)
    ref_nll = []
    for w in windows:
        lp = ref_forward(weights, cfg, w)[:-1]
        ref_nll.append(np.log(np.exp(lp - lp.max(1, keepdims=True)).sum(1)) + lp.max(1) - lp[np.arange(15), w[1:]])
    np.testing.assert_allclose(result.nll, ref_nll, rtol=1e-5)
    assert result.perplexity == pytest.approx(np.exp(np.mean(ref_nll)), rel=1e-5)


def test_weight_nbytes_counts_shared_arrays_once(tiny):
    cfg, _, model, _ = tiny
    d, ff, hd = cfg["n_embd"], cfg["n_ff"], cfg["head_dim"]
    per_block = d * hd * (2 * cfg["n_head"] + 2 * cfg["n_head_kv"]) + 3 * d * ff + 2 * d
    expected = cfg["n_layer"] * per_block + cfg["vocab"] * d + d
    if not model.config.tied_embeddings:
        expected += cfg["vocab"] * d
    assert model.weight_nbytes() == 4 * expected


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------


def test_forward_rejects_bad_tokens(tiny):
    _, _, model, _ = tiny
    with pytest.raises(ValueError, match="tokens"):
        model.forward(np.zeros((2, 3), np.int64))
    with pytest.raises(ValueError, match="tokens"):
        model.forward(np.array([], np.int64))
    with pytest.raises(ValueError, match=r"\[0, "):
        model.forward(np.array([model.config.vocab_size]))
    with pytest.raises(TypeError, match="integers"):
        model.forward(np.array([0.5, 1.0]))


def test_from_gguf_rejects_missing_and_corrupt_files(tmp_path, tiny):
    _, _, _, path = tiny
    with pytest.raises(FileNotFoundError, match="no file"):
        models.LlamaModel.from_gguf(tmp_path / "missing.gguf")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"this is not a gguf file at all" * 10)
    with pytest.raises(ValueError, match="not a readable GGUF"):
        models.LlamaModel.from_gguf(bad)
    data = path.read_bytes()
    corrupt = tmp_path / "corrupt.gguf"
    # cut in the metadata, cut in the tensor data, last byte missing, wrong magic
    for damaged in (data[:4000], data[: len(data) // 2], data[:-1], b"GGUX" + data[4:]):
        corrupt.write_bytes(damaged)
        with pytest.raises(ValueError, match="is not a readable GGUF file"):
            models.LlamaModel.from_gguf(corrupt)


def test_from_gguf_rejects_other_architectures(tmp_path):
    path = tmp_path / "gpt2.gguf"
    writer = gguf.GGUFWriter(str(path), "gpt2")
    writer.add_tensor("token_embd.weight", np.zeros((4, 32), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ValueError, match="general.architecture must be 'llama'"):
        models.LlamaModel.from_gguf(path)


def test_linear_rejects_bad_weights():
    with pytest.raises(TypeError, match="weight"):
        models.Linear([[1.0]])
    with pytest.raises(ValueError, match="2-D"):
        models.Linear(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="float32"):
        models.Linear(np.zeros((2, 2), np.float64))


def test_stable_numerics_do_not_warn():
    """silu and softmax on extreme values: no overflow warnings (pytest turns them into errors)."""
    from quantcore.models.llama import silu, softmax

    x = np.array([-1e4, -100.0, 0.0, 100.0, 1e4], np.float32)
    np.testing.assert_allclose(silu(x), [0, -100 * np.exp(-100.0), 0, 100, 1e4], rtol=1e-6, atol=1e-30)
    p = softmax(np.array([[-np.inf, 0.0, 1e4]], np.float32))
    np.testing.assert_array_equal(p, [[0, 0, 1]])


def test_evaluation_windows_protocol():
    class CharTokenizer:
        def encode(self, text, add_bos=None):
            return np.frombuffer(text.encode(), np.uint8).astype(np.int64)

    text = bytes(range(65, 91)).decode() * 40  # 1040 "tokens" -> 8 windows of 128
    w = evaluate.evaluation_windows(CharTokenizer(), 3, window=128, text=text)
    ids = CharTokenizer().encode(text)
    np.testing.assert_array_equal(w, np.stack([ids[0:128], ids[512:640], ids[896:1024]]))  # windows 0, 4 (3.5 rounds to even), 7
    with pytest.raises(ValueError, match="n_windows=9"):
        evaluate.evaluation_windows(CharTokenizer(), 9, window=128, text=text)
    with pytest.raises(ValueError, match="n_windows"):
        evaluate.evaluation_windows(CharTokenizer(), 0, text=text)


def test_token_nll_and_kl_against_direct_formulas():
    rng = np.random.default_rng(5)
    logits = (rng.standard_normal((7, 50)) * 5).astype(np.float32)
    targets = rng.integers(0, 50, 7)
    l64 = logits.astype(np.float64)
    expected = np.log(np.exp(l64).sum(axis=1)) - l64[np.arange(7), targets]
    np.testing.assert_allclose(evaluate.token_nll(logits, targets, chunk=3), expected, rtol=1e-12)

    class Fixed:
        def __init__(self, table):
            self.table = table

        def forward(self, tokens):
            return self.table[: len(tokens)]

    other = (logits + rng.standard_normal(logits.shape)).astype(np.float32)
    res = evaluate.kl_divergence(Fixed(logits), Fixed(other), np.zeros((1, 7), np.int64), progress=False, chunk=2)
    p = np.exp(l64) / np.exp(l64).sum(axis=1, keepdims=True)
    q = np.exp(other.astype(np.float64)) / np.exp(other.astype(np.float64)).sum(axis=1, keepdims=True)
    assert res.kl == pytest.approx(np.mean(np.sum(p * np.log(p / q), axis=1)), rel=1e-10)
    assert res.top1_agreement == np.mean(p.argmax(1) == q.argmax(1))
    assert evaluate.kl_divergence(Fixed(logits), Fixed(logits), np.zeros((1, 7), np.int64), progress=False).kl == 0


# ---------------------------------------------------------------------------------------
# The real model: SmolLM2-135M-Instruct (Q4_1 GGUF dequantized to float32)
# ---------------------------------------------------------------------------------------

# Measured with this file's protocol: evaluate.perplexity(model, n_windows=2), 2 x 511 scored tokens.
SMOLLM2_PERPLEXITY_2_WINDOWS = 24.018227692934556


@pytest.fixture(scope="module")
def smollm2():
    return models.load_model()


@pytest.fixture(scope="module")
def eval_text():
    from quantcore import assets

    return assets.evaluation_text()


def test_smollm2_config(smollm2):
    c = smollm2.config
    assert (c.n_layer, c.n_embd, c.n_head, c.n_head_kv, c.head_dim, c.n_ff, c.vocab_size) == (30, 576, 9, 3, 64, 1536, 49152)
    assert c.tied_embeddings and c.rope_base == 100000.0 and c.rope_dim == 64
    assert smollm2.tokenizer.pre == "smollm" and not smollm2.tokenizer.add_bos


def test_smollm2_knows_the_capital_of_france(smollm2):
    tok = smollm2.tokenizer
    new = models.generate(smollm2, tok.encode("The capital of France is"), 1)
    assert tok.decode(new) == " Paris"


def test_smollm2_decode_matches_prefill(smollm2):
    tok = smollm2.tokenizer
    ids = tok.encode("The quick brown fox jumps over the lazy dog, and then")
    full = smollm2.forward(ids)
    cache = smollm2.new_cache()
    smollm2.forward(ids[:-3], cache)
    steps = np.concatenate([smollm2.forward(ids[i : i + 1], cache) for i in range(ids.size - 3, ids.size)])
    # 30 float32 blocks: a different summation order (1 row vs many) moves logits by ~1e-4 of their scale
    np.testing.assert_allclose(steps, full[-3:], rtol=0, atol=1e-3 * np.abs(full[-3:]).max())


def test_smollm2_perplexity_recorded(smollm2):
    result = evaluate.perplexity(smollm2, n_windows=2, progress=False)
    assert result.nll.shape == (2, 511)
    # float32 GEMMs may sum in another order on another CPU; the mean over 1022 tokens moves far less than 1e-4.
    assert result.perplexity == pytest.approx(SMOLLM2_PERPLEXITY_2_WINDOWS, rel=1e-4)


def test_smollm2_tokenizer_round_trips_evaluation_text(smollm2, eval_text):
    tok = smollm2.tokenizer
    ids = tok.encode(eval_text)
    assert ids.dtype == np.int64 and ids.size > 600_000
    assert tok.decode(ids) == eval_text


TRICKY = [
    "",
    " ",
    "hello  world\n\n\tfoo   ",
    "   leading and trailing   ",
    "line\r\nwindows\r\n\r\n",
    "日本語のテキスト、中文文本 and 한국어",
    "emoji 🤗🎉👩‍👩‍👧 flags 🇫🇷 skin 👍🏽",
    "naïve café résumé Ångström ß ſ ﬁ",
    "digits 1234567890 3.14159 1,000,000 x2y3 ½ ² ٣٤ Ⅻ",
    "it's they're we've I'm you'll he'd IT'S",
    "<|im_start|>user\nHi<|im_end|>",
    "zero\u200bwidth\ufeff and nbsp\u00a0 and \x00\x01\x7f control",
    "Ġ Ċ ĉ byte-symbol look-alikes",
    "a" * 300,
]


@pytest.mark.parametrize("text", TRICKY)
def test_smollm2_tokenizer_round_trips_tricky_text(smollm2, text):
    tok = smollm2.tokenizer
    assert tok.decode(tok.encode(text)) == text
    assert tok.decode(tok.encode(text, special=True)) == text


def test_smollm2_tokenizer_special_tokens(smollm2):
    tok = smollm2.tokenizer
    assert list(tok.encode("<|im_start|>user", special=True)) == [1, tok.encode("user")[0]]
    assert 1 not in tok.encode("<|im_start|>user")  # control tokens in data stay plain text
    assert tok.eos_id == 2 and tok.token(2) == "<|im_end|>"


def reference_bpe(text, vocab, ranks, regex):
    """Byte-level BPE written out: llama.cpp's "smollm" splits (each digit alone, then the
    GPT-2 regex), GPT-2's byte symbols, then repeatedly merge the lowest-ranked adjacent pair."""
    gpt2 = regex.compile(r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+")
    table = byte_symbols()
    ids = []
    for part in regex.split(r"(\p{N})", text):
        for piece in gpt2.findall(part) if part else []:
            syms = [table[b] for b in piece.encode("utf-8")]
            while len(syms) > 1:
                pairs = [(ranks.get((a, b), np.inf), i) for i, (a, b) in enumerate(zip(syms, syms[1:]))]
                rank, i = min(pairs)
                if rank == np.inf:
                    break
                syms[i : i + 2] = [syms[i] + syms[i + 1]]
            ids.extend(vocab[s] for s in syms)
    return ids


def test_smollm2_tokenizer_matches_reference_bpe(smollm2, eval_text):
    regex = pytest.importorskip("regex")
    tok = smollm2.tokenizer
    vocab = {tok.token(i): i for i in range(tok.vocab_size)}
    from quantcore import assets
    import gguf as _gguf

    reader = _gguf.GGUFReader(assets.default_model_path())
    merges = reader.fields["tokenizer.ggml.merges"].contents()
    ranks = {tuple(m.split(" ")): r for r, m in enumerate(merges)}
    samples = [eval_text[:6000], eval_text[1_000_000:1_004000], *TRICKY]
    for text in samples:
        assert list(tok.encode(text)) == reference_bpe(text, vocab, ranks, regex), text[:60]


def test_smollm2_matches_transformers_golden_logits(smollm2):
    """Golden logits from Hugging Face transformers (tests/data/make_transformers_reference.py):
    an independent GGUF reader, q/k de-permutation, rotate_half RoPE and torch kernels."""
    import pathlib

    ref = np.load(pathlib.Path(__file__).with_name("data") / "smollm2_transformers_reference.npz")
    tokens = ref["tokens"]
    assert list(smollm2.tokenizer.encode(str(ref["text"]))) == list(tokens)
    logits = smollm2.forward(tokens)
    # float32 against torch float32: eps32 * sqrt(K) per dot product (K = n_ff = 1536), over 30 blocks + output
    tol = EPS32 * np.sqrt(1536) * 31 * np.abs(ref["top_logits"]).max()
    np.testing.assert_allclose(np.take_along_axis(logits, ref["top_ids"].astype(np.int64), axis=1),
                               ref["top_logits"], rtol=0, atol=tol)
    decided = ref["top_logits"][:, 0] - ref["top_logits"][:, 1] > 2 * tol  # top-1 cannot flip within tol
    assert decided.mean() > 0.95
    np.testing.assert_array_equal(logits.argmax(axis=1)[decided], ref["top_ids"][decided, 0])
    log_probs = evaluate.token_nll(logits, ref["top_ids"][:, 0].astype(np.int64))
    np.testing.assert_allclose(log_probs, ref["logsumexp"] - ref["top_logits"][:, 0], rtol=0, atol=tol)


def test_command_line_report(tiny, capsys):
    """`python -m quantcore.models MODEL --windows N` on the tiny model (its byte-level vocabulary)."""
    _, _, _, path = tiny
    assert evaluate.main([str(path), "--windows", "2", "--decode-tokens", "2"]) == 0
    out = capsys.readouterr().out
    assert "perplexity" in out and "over 2 windows x 511 scored tokens" in out
    assert "prefill" in out and "decode" in out and "weight memory" in out
