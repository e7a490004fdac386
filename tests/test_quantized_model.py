"""quantize_model, QuantizedLinear / QuantizedEmbedding, the demo's evaluation and report, on a
tiny random llama (written as GGUF by tests/test_models.py's helper) and on SmolLM2."""

import numpy as np
import pytest

import quantcore
from quantcore import models
from quantcore.models.demo import Config, FloatReference, format_table, layer_output_errors, run_demo
from quantcore.models.quantized import QuantizedEmbedding, QuantizedLinear, quantize_model, set_activations
from test_models import CASES, write_tiny_llama


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    cfg, tied, types = CASES["tied-f32"]
    path = tmp_path_factory.mktemp("tiny") / "tiny.gguf"
    write_tiny_llama(path, cfg, seed=0, tied=tied, types=types)
    return path


@pytest.fixture(scope="module")
def tiny(tiny_path):
    return models.LlamaModel.from_gguf(tiny_path)


def test_rtn_model_uses_quantized_tensors_equal_to_quantize(tiny):
    q = quantize_model(tiny, "rtn", "int4", group_size=16, progress=False)
    for (name, lin), (_, flin) in zip(q.named_linears(), tiny.named_linears()):
        assert isinstance(lin, QuantizedLinear), name
        expected = quantcore.quantize(flin.weight, "q8_0" if name == "output" else "int4",
                                      group_size=32 if name == "output" else 16)
        np.testing.assert_array_equal(lin.qt.codes, expected.codes)
        np.testing.assert_array_equal(lin.qt.scales, expected.scales)
    assert isinstance(q.token_embd, QuantizedEmbedding) and q.token_embd.qt is q.output.qt  # tied
    # the float model is untouched
    assert all(type(lin).__name__ == "Linear" for _, lin in tiny.named_linears())


def test_quantized_forward_equals_float_forward_with_dequantized_weights(tiny):
    q = quantize_model(tiny, "rtn", "int8", group_size=-1, embedding_scheme=None, progress=False)
    ids = np.arange(1, 40)
    # the same model with the dequantized weights as float Linears
    deq = quantize_model(tiny, "rtn", "int8", group_size=-1, embedding_scheme=None, progress=False)
    for block in deq.blocks:
        for name in models.LINEAR_NAMES:
            block.linears[name] = models.Linear(block.linears[name].qt.dequantize())
    np.testing.assert_allclose(q.forward(ids), deq.forward(ids), rtol=1e-5, atol=1e-5)
    # and int8 is close to the float model
    ref = tiny.forward(ids)
    assert np.abs(q.forward(ids) - ref).max() < 0.05 * np.abs(ref).max()


def test_int8_activations_run_every_quantized_linear_through_the_int8_path(tiny):
    q = quantize_model(tiny, "rtn", "int4", group_size=16, activations="int8", progress=False)
    assert all(lin.activations == "int8" for _, lin in q.named_linears())  # the q8_0 output too
    ids = np.arange(1, 40)
    # the same quantized weights, each linear's product recomputed with matmul's int8 path
    x = q.embed(ids)
    lin = q.blocks[0].linears["q"]
    np.testing.assert_array_equal(lin(x), quantcore.matmul(x, lin.qt, activations="int8"))
    assert not np.array_equal(lin(x), quantcore.matmul(x, lin.qt))
    # switching back gives the float-activation model, bit for bit
    float_acts = quantize_model(tiny, "rtn", "int4", group_size=16, progress=False)
    y8, ref = q.forward(ids), float_acts.forward(ids)
    assert not np.array_equal(y8, ref)
    assert np.abs(y8 - ref).max() < 0.05 * np.abs(ref).max()  # int8 rounding of x: a small change
    set_activations(q, None)
    np.testing.assert_array_equal(q.forward(ids), ref)
    # an fp8 model has no integer codes; an nf4 output stays on float activations
    fp8 = quantize_model(tiny, "fp8", "fp8_e4m3fn", group_size=-1, progress=False)
    with pytest.raises(ValueError, match=r"set_activations: activations='int8' needs integer codes.*fp8_e4m3fn"):
        set_activations(fp8, "int8")
    assert all(lin.activations is None for _, lin in fp8.named_linears())  # nothing changed
    q.output = QuantizedLinear(quantcore.quantize(tiny.output.weight, "nf4", group_size=32))
    set_activations(q, "int8")
    assert q.output.activations is None and q.blocks[0].linears["q"].activations == "int8"
    with pytest.raises(ValueError, match=r"quantize_model: activations='int8' needs integer codes.*'nf4'"):
        quantize_model(tiny, "rtn", "nf4", activations="int8")
    with pytest.raises(ValueError, match=r"quantize_model: activations must be None or 'int8' \(got 'int4'\)"):
        quantize_model(tiny, "rtn", "int4", activations="int4")
    with pytest.raises(ValueError, match=r"QuantizedLinear: activations must be None or 'int8' \(got 'fp16'\)"):
        lin.activations = "fp16"
    with pytest.raises(ValueError, match=r"QuantizedLinear: activations='int8' needs integer codes"):
        QuantizedLinear(fp8.blocks[0].linears["q"].qt, activations="int8")


def test_quantized_embedding_looks_up_dequantized_rows(tiny):
    qt = quantcore.quantize(tiny.token_embd, "int4", group_size=32)
    emb = QuantizedEmbedding(qt)
    ids = np.array([[3, 3, 7], [0, 200, 5]])
    np.testing.assert_array_equal(emb[ids], qt.dequantize()[ids])
    assert emb.shape == tiny.token_embd.shape and emb.nbytes == qt.nbytes
    with pytest.raises(ValueError, match="group_size=0"):
        QuantizedEmbedding(quantcore.quantize(tiny.token_embd, "int4", group_size=0))


def test_weight_memory_counts_tied_quantized_storage_once(tiny):
    q = quantize_model(tiny, "rtn", "int4", group_size=16, progress=False)
    linears = sum(lin.nbytes for b in q.blocks for lin in b.linears.values())
    norms = sum(b.attn_norm.weight.nbytes + b.ffn_norm.weight.nbytes for b in q.blocks) + q.output_norm.weight.nbytes
    assert q.weight_nbytes() == linears + q.output.nbytes + norms


def test_fp8_method_and_errors(tiny):
    q = quantize_model(tiny, "fp8", "fp8_e4m3fn", group_size=-1, progress=False)
    assert q.blocks[0].linears["q"].qt.scheme == "fp8_e4m3fn"
    with pytest.raises(ValueError, match="method must be one of"):
        quantize_model(tiny, "magic", "int4")
    with pytest.raises(ValueError, match="method 'fp8' needs scheme"):
        quantize_model(tiny, "fp8", "int4")
    with pytest.raises(ValueError, match="scheme must be one of"):
        quantize_model(tiny, "rtn", "int5")
    with pytest.raises(ValueError, match="quantize the float model"):
        quantize_model(q, "rtn", "int4", group_size=16, progress=False)


def test_float_reference_compare_matches_evaluate(tiny):
    windows = np.random.default_rng(0).integers(0, tiny.config.vocab_size, (2, 24))
    ref = FloatReference(tiny, windows, progress=False)
    assert ref.perplexity == pytest.approx(models.perplexity(tiny, windows, progress=False).perplexity, rel=1e-5)
    q = quantize_model(tiny, "rtn", "int3", group_size=16, progress=False)
    ppl, kl, top1 = ref.compare(q, progress=False)
    assert ppl == pytest.approx(models.perplexity(q, windows, progress=False).perplexity, rel=1e-5)
    expected = models.kl_divergence(tiny, q, windows, progress=False)
    assert kl == pytest.approx(expected.kl, rel=1e-3)
    assert top1 == pytest.approx(expected.top1_agreement)
    assert ref.compare(tiny, progress=False)[1:] == (pytest.approx(0.0, abs=1e-6), 1.0)


def test_layer_output_errors_grow_as_bits_shrink(tiny):
    tokens = np.arange(1, 33)
    e8 = layer_output_errors(tiny, quantize_model(tiny, "rtn", "int8", group_size=16, progress=False), tokens)
    e3 = layer_output_errors(tiny, quantize_model(tiny, "rtn", "int3", group_size=16, progress=False), tokens)
    assert set(e8) == {f"blk.{i}.{n}" for i in range(tiny.config.n_layer) for n in models.LINEAR_NAMES}
    assert all(e8[k] < e3[k] for k in e8)


def test_run_demo_on_a_tiny_model_writes_table_and_report(tiny_path, tmp_path):
    lines = []
    report = tmp_path / "report.html"
    rows = run_demo(tiny_path, configs=(Config("rtn", "int4", 16), Config("rtn", "int8", -1)), n_windows=1,
                    report_path=report, decode_tokens=2, progress=False, print_fn=lines.append)
    assert [r.label for r in rows] == ["float32", "rtn int4 g16", "rtn int8"]
    assert rows[2].kl < rows[1].kl and rows[1].bits_per_weight > 4
    text = report.read_text()
    assert text.count("data:image/png;base64,") == 3 and "rtn int4 g16" in text
    assert "rtn int4 g16" in lines[0] and "perplexity over 1 windows" in lines[0]
    assert format_table(rows, n_windows=1) == lines[0]


def test_cli_quantize_then_eval(tiny_path, tmp_path, capsys):
    from quantcore import cli

    out = tmp_path / "tiny-q4_0.gguf"
    assert cli.main(["quantize", str(tiny_path), "--method", "rtn", "--scheme", "q4_0", "-o", str(out), "--quiet"]) == 0
    assert "wrote" in capsys.readouterr().out
    back = models.LlamaModel.from_gguf(out)
    expected = quantize_model(models.LlamaModel.from_gguf(tiny_path), "rtn", "q4_0", group_size=32, progress=False)
    np.testing.assert_array_equal(back.blocks[0].linears["q"].weight, expected.blocks[0].linears["q"].qt.dequantize())
    own = tmp_path / "tiny-int4.safetensors"
    assert cli.main(["quantize", str(tiny_path), "--scheme", "int4", "--group-size", "16", "-o", str(own), "--quiet"]) == 0
    assert cli.main(["eval", str(own), "--windows", "1", "--decode-tokens", "2", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "perplexity" in text and "decode" in text and "weight memory" in text
    assert cli.main(["eval", str(own), "--windows", "1", "--decode-tokens", "2", "--quiet", "--activations", "int8"]) == 0
    text8 = capsys.readouterr().out
    assert "perplexity" in text8 and text8.split()[1] != text.split()[1]  # int8 activations move it a little
    assert cli.main(["eval", str(tiny_path), "--windows", "1", "--quiet", "--activations", "int8"]) == 2
    assert "needs a model with quantized linears" in capsys.readouterr().err
    assert cli.main(["quantize", str(tiny_path), "-o", str(tmp_path / "x.bin"), "--quiet"]) == 2
    assert "-o must name a .gguf or .safetensors file" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["gptq", "awq"])
def test_calibrated_methods_beat_rtn_on_their_calibration_data(tiny, method):
    rng = np.random.default_rng(4)
    calibration = rng.integers(0, tiny.config.vocab_size, (4, 48))
    q = quantize_model(tiny, method, "int3", group_size=16, calibration=calibration, progress=False)
    rtn = quantize_model(tiny, "rtn", "int3", group_size=16, progress=False)
    assert all(isinstance(lin, QuantizedLinear) and lin.qt.scheme == "int3" for _, lin in q.named_linears()
               if _ != "output")
    if method == "awq":  # scales were folded into both norms of every block
        assert all(not np.array_equal(a.attn_norm.weight, b.attn_norm.weight) for a, b in zip(q.blocks, tiny.blocks))
    # the logits on the calibration sequences move less from the float model's than RTN's do
    err = lambda m: sum(float(np.sum((m.forward(s) - tiny.forward(s)) ** 2)) for s in calibration)
    assert err(q) < err(rtn)


def test_calibration_tokens_come_from_the_calibration_text(tiny):
    from quantcore.models.quantized import calibration_tokens

    text = "the cat sat on the mat. " * 200
    tokens = calibration_tokens(tiny.tokenizer, 3, 20, text=text)
    assert tokens.shape == (3, 20)
    np.testing.assert_array_equal(tokens.reshape(-1), tiny.tokenizer.encode(text, add_bos=False)[:60])
    with pytest.raises(ValueError, match="calibration_tokens: the text holds"):
        calibration_tokens(tiny.tokenizer, 10_000, 20, text=text)
    with pytest.raises(ValueError, match="method 'gptq' needs an integer or GGUF scheme"):
        quantize_model(tiny, "gptq", "nf4")


def test_default_group_size_follows_the_scheme(tiny):
    assert quantize_model(tiny, "rtn", "q4_0", progress=False).blocks[0].linears["q"].qt.group_size == 32
    with pytest.raises(ValueError, match=r"in_features=64, group_size=128"):  # int4's default is 128
        quantize_model(tiny, "rtn", "int4", progress=False)


def test_captured_block_inputs_are_what_the_block_forward_sees(tiny):
    from quantcore.models.quantized import _capture_block_inputs

    rng = np.random.default_rng(5)
    hs = [rng.standard_normal((12, tiny.config.n_embd)).astype(np.float32) for _ in range(2)]
    cos, sin = tiny.rope(0, 12)
    block = tiny.blocks[1]
    want: dict = {}
    for h in hs:
        block.forward(h, cos, sin, capture=lambda name, x: want.setdefault(name.rsplit(".", 1)[1], []).append(x))
    got = _capture_block_inputs(block, np.concatenate(hs), len(hs), cos, sin)  # the sequences stacked
    assert set(got) == set(want)
    for name, xs in want.items():  # the linears ran on all sequences at once: float32 rounding only
        np.testing.assert_allclose(got[name], np.concatenate(xs), rtol=1e-5, atol=1e-6, err_msg=name)


def test_gptq_true_sequential_calibrates_each_linear_on_the_quantized_ones_before_it(tiny):
    from quantcore import gptq
    from quantcore.models.llama import LlamaBlock, silu

    rng = np.random.default_rng(6)
    calibration = rng.integers(0, tiny.config.vocab_size, (3, 40))
    options = dict(group_size=16, calibration=calibration, embedding_scheme=None, progress=False, layers=[0])
    seq = quantize_model(tiny, "gptq", "int4", true_sequential=True, **options)
    # restated step by step for block 0, from the float embeddings
    block = tiny.blocks[0]
    hs = [tiny.embed(s) for s in calibration]
    cos, sin = tiny.rope(0, calibration.shape[1])

    def gptq_codes(name, xs):
        h = gptq.Hessian(xs[0].shape[-1])
        h.add_batch(np.concatenate(xs))
        return gptq.quantize(block.linears[name].weight, h, "int4", group_size=16, act_order=True, static_groups=True,
                             damp=0.03, clip_search=True).qtensor

    got = seq.blocks[0].linears
    x_attn = [block.attn_norm(h) for h in hs]
    for name in ("q", "k", "v"):
        np.testing.assert_array_equal(got[name].qt.codes, gptq_codes(name, x_attn).codes, err_msg=name)
    staged = LlamaBlock(block.config, 0, block.attn_norm, block.ffn_norm,
                        {**block.linears, "q": got["q"], "k": got["k"], "v": got["v"]})
    o_in = []
    for x in x_attn:
        staged.attention(x, cos, sin, None, capture=lambda n, a: o_in.append(a) if n.endswith(".o") else None)
    np.testing.assert_array_equal(got["o"].qt.codes, gptq_codes("o", o_in).codes)
    hs = [h + got["o"](a) for h, a in zip(hs, o_in)]
    x_ffn = [block.ffn_norm(h) for h in hs]
    for name in ("gate", "up"):
        np.testing.assert_array_equal(got[name].qt.codes, gptq_codes(name, x_ffn).codes, err_msg=name)
    hidden = [silu(got["gate"](x)) * got["up"](x) for x in x_ffn]
    np.testing.assert_array_equal(got["down"].qt.codes, gptq_codes("down", hidden).codes)
    # block 1 was not selected: it stays float
    assert type(seq.blocks[1].linears["q"]).__name__ == "Linear"


def test_gptq_one_pass_calibrates_every_linear_on_the_float_block(tiny):
    """true_sequential=False: every linear of block 0 from the float block's inputs (one capture
    pass), linears that read the same input sharing one Hessian."""
    from quantcore import gptq

    rng = np.random.default_rng(7)
    calibration = rng.integers(0, tiny.config.vocab_size, (3, 40))
    q = quantize_model(tiny, "gptq", "int4", group_size=16, calibration=calibration, embedding_scheme=None,
                       progress=False, layers=[0], true_sequential=False)
    block = tiny.blocks[0]
    cos, sin = tiny.rope(0, calibration.shape[1])
    inputs: dict = {}
    for s in calibration:
        block.forward(tiny.embed(s), cos, sin, capture=lambda n, a: inputs.setdefault(n.rsplit(".", 1)[1], []).append(a))
    for name in ("q", "k", "v", "o", "gate", "up", "down"):
        h = gptq.Hessian(inputs[name][0].shape[-1])
        h.add_batch(np.concatenate(inputs[name]))
        expected = gptq.quantize(block.linears[name].weight, h, "int4", group_size=16, act_order=True,
                                 static_groups=True, damp=0.03, clip_search=True).qtensor
        np.testing.assert_array_equal(q.blocks[0].linears[name].qt.codes, expected.codes, err_msg=name)
