import numpy as np
import pytest
import scipy.spatial
import scipy.special
import scipy.stats

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
