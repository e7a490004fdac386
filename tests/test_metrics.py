import numpy as np
import pytest
import scipy.spatial
import scipy.special
import scipy.stats

import quantcore
from quantcore import metrics


def test_error_against_direct_formulas():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((64, 32)).astype(np.float32)
    app = ref + rng.standard_normal((64, 32)).astype(np.float32) * 0.01
    e = metrics.error(ref, app)
    r, a = ref.astype(np.float64), app.astype(np.float64)
    assert e.mse == pytest.approx(np.mean((a - r) ** 2), rel=1e-12)
    assert e.rmse == pytest.approx(np.sqrt(e.mse), rel=1e-12)
    assert e.max_abs == pytest.approx(np.max(np.abs(a - r)), rel=1e-12)
    assert e.snr_db == pytest.approx(10 * np.log10(np.sum(r**2) / np.sum((a - r) ** 2)), rel=1e-12)
    assert e.cosine == pytest.approx(1 - scipy.spatial.distance.cosine(r.ravel(), a.ravel()), rel=1e-12)


def test_error_edge_cases():
    x = np.ones(4, np.float32)
    exact = metrics.error(x, x)
    assert exact.mse == 0 and exact.snr_db == float("inf") and exact.cosine == pytest.approx(1.0)
    zeros = metrics.error(np.zeros(3), np.zeros(3))
    assert zeros.cosine == 1.0
    assert metrics.error(np.zeros(3), np.ones(3)).cosine == 0.0
    with pytest.raises(ValueError, match=r"same shape \(got \(4,\) and \(3,\)\)"):
        metrics.error(x, x[:3])
    with pytest.raises(ValueError, match="approx contains NaN or inf"):
        metrics.error(x, np.array([1, np.nan, 1, 1.0]))
    with pytest.raises(TypeError, match="reference must be a real-valued array"):
        metrics.error(np.array(["a"]), np.array(["b"]))


def test_kl_divergence_matches_scipy():
    rng = np.random.default_rng(1)
    p_logits = rng.standard_normal((5, 7, 50)) * 3
    q_logits = p_logits + rng.standard_normal((5, 7, 50)) * 0.3
    kl = metrics.kl_divergence(p_logits, q_logits)
    assert kl.shape == (5, 7)
    p = scipy.special.softmax(p_logits, axis=-1)
    q = scipy.special.softmax(q_logits, axis=-1)
    np.testing.assert_allclose(kl, scipy.stats.entropy(p, q, axis=-1), rtol=1e-10, atol=1e-14)
    np.testing.assert_array_equal(metrics.kl_divergence(p_logits, p_logits), 0.0)


def test_kl_divergence_is_stable_for_huge_logits():
    p = np.array([[1000.0, 0.0, -1000.0]])
    q = np.array([[999.0, 0.0, -1000.0]])
    kl = metrics.kl_divergence(p, q)
    assert np.isfinite(kl).all() and kl[0] == pytest.approx(0.0, abs=1e-12)


def test_kl_divergence_errors():
    with pytest.raises(ValueError, match="same shape"):
        metrics.kl_divergence(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="non-empty last"):
        metrics.kl_divergence(np.zeros((2, 0)), np.zeros((2, 0)))
    with pytest.raises(ValueError, match="NaN or inf"):
        metrics.kl_divergence(np.array([[np.inf, 0.0]]), np.zeros((1, 2)))


def test_perplexity():
    nll = np.array([1.0, 2.0, 3.0])
    assert metrics.perplexity(nll) == pytest.approx(np.exp(2.0))
    # a uniform model over V tokens has perplexity V
    assert metrics.perplexity(np.full(10, np.log(50257.0))) == pytest.approx(50257.0)
    for bad, msg in [(np.array([]), "empty"), (np.array([-1.0]), "non-negative"), (np.array([np.nan]), "finite")]:
        with pytest.raises(ValueError, match=msg):
            metrics.perplexity(bad)


def test_weight_stats_finds_planted_outliers():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((128, 256)).astype(np.float32) * 0.02
    w[:, 17] *= 50  # an outlier input channel, as in LLM.int8()'s observation
    w[5, :] *= 20
    s = metrics.weight_stats(w)
    assert 17 in s.outlier_cols and s.outlier_cols[0] == 17
    assert list(s.outlier_rows) == [5]
    assert s.absmax == pytest.approx(float(np.abs(w).max()))
    counts, edges = s.histogram
    assert counts.sum() == w.size and edges[0] == pytest.approx(-s.absmax)
    assert s.share_within[0.01] == pytest.approx(np.mean(np.abs(w.astype(np.float64)) <= 0.01))
    assert s.share_within[0.01] <= s.share_within[0.05] <= s.share_within[0.1]
    assert s.kurtosis > 3  # heavy tails from the outliers
    with pytest.raises(ValueError, match="NaN or inf"):
        metrics.weight_stats(np.array([[np.nan]]))
    with pytest.raises(ValueError, match="1-D or 2-D"):
        metrics.weight_stats(np.zeros((2, 2, 2)))


def test_memory_footprint_reproduces_the_lesson_table():
    # 70B at FP16 is 140 GB; at INT4 35 GB before scale overhead (the lesson's arithmetic)
    assert metrics.memory_footprint(70e9, "fp16").gigabytes == pytest.approx(140.0)
    assert metrics.memory_footprint(70e9, "int4", 0).gigabytes == pytest.approx(35.0)
    assert metrics.memory_footprint(7e9, "fp32").gigabytes == pytest.approx(28.0)
    # group 128 with float16 scale and uint8 zero point: 4 + 24/128 bits per weight
    f = metrics.memory_footprint(70e9, "int4", 128)
    assert f.bits_per_weight == pytest.approx(4.1875)
    assert f.nbytes == int(np.ceil(70e9 * 4.1875 / 8))
    assert metrics.memory_footprint(405e9, "int4", 128, symmetric=True).bits_per_weight == pytest.approx(4.125)
    assert metrics.memory_footprint(13e9, "q4_0").bits_per_weight == pytest.approx(4.5)
    assert metrics.memory_footprint(13e9, "q8_0").bits_per_weight == pytest.approx(8.5)


@pytest.mark.parametrize("scheme, group_size, symmetric", [("int4", 128, False), ("int3", 64, True), ("nf4", 64, True),
                                                           ("q4_1", 32, False), ("fp8_e4m3fn", 128, True), ("int8", 32, False)])
def test_memory_footprint_matches_real_tensors(scheme, group_size, symmetric):
    w = np.random.default_rng(0).standard_normal((64, 512)).astype(np.float32)
    q = quantcore.quantize(w, scheme, group_size=group_size, symmetric=symmetric)
    f = metrics.memory_footprint(w.size, scheme, group_size, symmetric=symmetric)
    assert f.bits_per_weight == pytest.approx(q.bits_per_weight)
    assert f.nbytes == q.nbytes


def test_memory_footprint_errors():
    with pytest.raises(ValueError, match="n_params must be a non-negative"):
        metrics.memory_footprint(-1, "int4")
    with pytest.raises(ValueError, match="scheme must be one of"):
        metrics.memory_footprint(10, "int5")
    with pytest.raises(ValueError, match="uses blocks of 32"):
        metrics.memory_footprint(10, "q4_0", 128)


def test_bit_width_sweep_shows_the_cliff():
    w = np.random.default_rng(3).standard_normal((128, 512)).astype(np.float32)
    rows = metrics.bit_width_sweep(w, bits=(2, 3, 4, 8), group_size=128)
    assert [r.bits for r in rows] == [2, 3, 4, 8]
    snr = [r.snr_db for r in rows]
    assert snr == sorted(snr)  # more bits, less error
    assert snr[3] - snr[2] > 20  # int8 is about 6 dB per bit better than int4
    assert snr[0] < 10  # int2 loses most of the signal
    for r in rows:
        q = quantcore.quantize(w, f"int{r.bits}", group_size=128)
        assert r.bits_per_weight == pytest.approx(q.bits_per_weight)
        assert r.mse == pytest.approx(metrics.error(w, q.dequantize()).mse)
        assert r.compression_vs_fp16 == pytest.approx(16 / q.bits_per_weight)
    with pytest.raises(ValueError, match=r"bits must be from \(2, 3, 4, 8\)"):
        metrics.bit_width_sweep(w, bits=(5,))
