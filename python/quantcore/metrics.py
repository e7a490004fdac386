"""Quality metrics: what quantization cost, in numbers. Everything accumulates in float64.

    error(reference, approx)          MSE, RMSE, max abs error, SNR (dB), cosine similarity
    kl_divergence(logits_p, logits_q) KL(P || Q) per row of logits
    perplexity(nll)                   exp(mean negative log-likelihood)
    memory_footprint(n_params, ...)   bytes of weights, scale and zero overhead included
    weight_stats(w)                   histogram, share of small weights, outlier rows/columns
    bit_width_sweep(w, bits=...)      error and compression per bit width (the bit-width cliff)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from quantcore._checks import as_array


def _float64(x: object, fn: str, arg: str) -> np.ndarray:
    a = as_array(x, fn, arg)
    if a.dtype.kind not in "fiu" and a.dtype.name != "bfloat16" and not a.dtype.name.startswith("float8"):
        raise TypeError(f"{fn}: {arg} must be a real-valued array (got dtype {a.dtype.name})")
    return np.asarray(a, dtype=np.float64)


@dataclass(frozen=True)
class ErrorStats:
    """Error of an approximation against a reference.

    mse, rmse, max_abs: of (approx - reference). snr_db: 10 log10(sum ref^2 / sum err^2)
    (inf for an exact copy). cosine: cosine similarity of the flattened arrays (1 when both are
    zero, 0 when exactly one is).
    """

    mse: float
    rmse: float
    max_abs: float
    snr_db: float
    cosine: float


def error(reference: np.ndarray, approx: np.ndarray) -> ErrorStats:
    """Compare `approx` with `reference` (same shape, any real dtype), in float64.

    Raises:
        TypeError: non-numeric input.
        ValueError: shapes differ, or either contains NaN or inf.

    Example:
        >>> error(w, quantcore.quantize(w, "int4").dequantize()).snr_db
    """
    ref = _float64(reference, "error", "reference")
    app = _float64(approx, "error", "approx")
    if ref.shape != app.shape:
        raise ValueError(f"error: reference and approx must have the same shape (got {ref.shape} and {app.shape})")
    for name, a in (("reference", ref), ("approx", app)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"error: {name} contains NaN or inf")
    if ref.size == 0:
        raise ValueError("error: reference is empty")
    diff = app - ref
    sq = float(np.dot(diff.ravel(), diff.ravel()))
    signal = float(np.dot(ref.ravel(), ref.ravel()))
    mse = sq / ref.size
    snr = float("inf") if sq == 0 else (10 * np.log10(signal / sq) if signal > 0 else float("-inf"))
    norms = np.sqrt(signal) * np.linalg.norm(app)
    if norms == 0:
        cosine = 1.0 if signal == 0 and not app.any() else 0.0
    else:
        cosine = float(np.dot(ref.ravel(), app.ravel()) / norms)
    return ErrorStats(mse, float(np.sqrt(mse)), float(np.abs(diff).max()), float(snr), cosine)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def kl_divergence(logits_p: np.ndarray, logits_q: np.ndarray) -> np.ndarray:
    """KL(P || Q) in nats for each row, where P = softmax(logits_p), Q = softmax(logits_q).

    Args:
        logits_p: reference logits [..., vocab] (e.g. the float model's).
        logits_q: approximate logits of the same shape (e.g. the quantized model's).

    Returns:
        float64 array of shape logits_p.shape[:-1]; 0 where the distributions match.

    Raises:
        ValueError: shapes differ, fewer than one dimension, or non-finite logits.
    """
    p = _float64(logits_p, "kl_divergence", "logits_p")
    q = _float64(logits_q, "kl_divergence", "logits_q")
    if p.shape != q.shape:
        raise ValueError(f"kl_divergence: logits_p and logits_q must have the same shape (got {p.shape} and {q.shape})")
    if p.ndim == 0 or p.shape[-1] == 0:
        raise ValueError(f"kl_divergence: logits need a non-empty last (vocabulary) axis (got shape {p.shape})")
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(q))):
        raise ValueError("kl_divergence: logits contain NaN or inf")
    log_p, log_q = _log_softmax(p), _log_softmax(q)
    kl = (np.exp(log_p) * (log_p - log_q)).sum(axis=-1)
    return np.maximum(kl, 0.0)  # rounding can leave -1e-17 where P == Q


def perplexity(nll: np.ndarray) -> float:
    """exp(mean(nll)) for per-token negative log-likelihoods in nats.

    Raises:
        ValueError: empty input, negative or non-finite values.
    """
    a = _float64(nll, "perplexity", "nll").ravel()
    if a.size == 0:
        raise ValueError("perplexity: nll is empty")
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError("perplexity: nll must be finite and non-negative (negative log-likelihoods in nats)")
    return float(np.exp(a.mean()))


# Storage of one weight and of one group's metadata, in bits: (code bits, scale bits, zero bits).
_FLOAT_BITS = {"fp32": 32, "fp16": 16, "bf16": 16}


@dataclass(frozen=True)
class Footprint:
    """Weight memory of a model: total bytes and bits per weight, overhead included."""

    n_params: int
    scheme: str
    group_size: int | None
    bits_per_weight: float
    nbytes: int

    @property
    def gigabytes(self) -> float:
        """Decimal gigabytes (1e9 bytes), the unit of the '70B at FP16 is 140 GB' rule."""
        return self.nbytes / 1e9


def memory_footprint(n_params: int, scheme: str = "int4", group_size: int | None = None, *, symmetric: bool = False,
                     scale_dtype: object = np.float16) -> Footprint:
    """Bytes needed for `n_params` weights in `scheme`, scale and zero-point overhead included.

    Args:
        n_params: number of weights, e.g. 70e9 (floats are rounded to int).
        scheme: "fp32", "fp16", "bf16", or any quantcore.quantize scheme.
        group_size: weights per scale (ignored by the float formats); None: the scheme's
            default (128; 32 for q4_0/q4_1/q8_0); 0 or -1 mean one scale per tensor / row,
            counted as no overhead.
        symmetric, scale_dtype: as for quantcore.quantize.

    Example:
        >>> memory_footprint(70e9, "fp16").gigabytes      # 140.0
        >>> memory_footprint(70e9, "int4", 128).gigabytes  # 4 + (16 + 16) / 128 bits each
    """
    if isinstance(n_params, bool) or not isinstance(n_params, (int, float, np.integer, np.floating)):
        raise TypeError(f"memory_footprint: n_params must be a number (got {type(n_params).__name__})")
    if not np.isfinite(n_params) or n_params < 0:
        raise ValueError(f"memory_footprint: n_params must be a non-negative finite number (got {n_params})")
    n = int(round(float(n_params)))
    if scheme in _FLOAT_BITS:
        bpw = float(_FLOAT_BITS[scheme])
    else:
        from quantcore.quantize import scheme_bits_per_weight

        bpw = scheme_bits_per_weight(scheme, group_size, symmetric=symmetric, scale_dtype=scale_dtype)
    return Footprint(n, scheme, group_size, bpw, int(np.ceil(n * bpw / 8)))


@dataclass(frozen=True)
class WeightStats:
    """Distribution of a weight matrix [out_features, in_features].

    histogram: (counts, bin_edges) over [-absmax, absmax] in `bins` bins.
    share_within: fraction of weights with |w| <= t for t in 0.01, 0.05, 0.1.
    outlier_rows / outlier_cols: output rows / input columns whose absmax exceeds
    `outlier_factor` times the median row / column absmax (the channels that make one scale
    per tensor or per row a poor fit), sorted by decreasing absmax.
    """

    mean: float
    std: float
    absmax: float
    kurtosis: float
    histogram: tuple
    share_within: dict
    outlier_rows: np.ndarray
    outlier_cols: np.ndarray
    outlier_factor: float = field(default=4.0)


def weight_stats(w: np.ndarray, *, bins: int = 101, outlier_factor: float = 4.0) -> WeightStats:
    """Histogram, share of small weights and outlier channels of a weight (1-D or 2-D).

    Raises:
        ValueError: empty, more than 2-D, or non-finite weights; bins < 1; outlier_factor <= 0.
    """
    a = _float64(w, "weight_stats", "w")
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"weight_stats: w must be a non-empty 1-D or 2-D array (got shape {np.shape(w)})")
    if not np.all(np.isfinite(a)):
        raise ValueError("weight_stats: w contains NaN or inf")
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"weight_stats: bins must be a positive int (got {bins!r})")
    if not outlier_factor > 0:
        raise ValueError(f"weight_stats: outlier_factor must be positive (got {outlier_factor})")
    absmax = float(np.abs(a).max())
    mean, std = float(a.mean()), float(a.std())
    kurt = float(((a - mean) ** 4).mean() / std**4) if std > 0 else float("nan")
    edge = absmax if absmax > 0 else 1.0
    hist = np.histogram(a, bins=bins, range=(-edge, edge))
    share = {t: float((np.abs(a) <= t).mean()) for t in (0.01, 0.05, 0.1)}

    def outliers(channel_max: np.ndarray) -> np.ndarray:
        limit = outlier_factor * np.median(channel_max)
        idx = np.nonzero(channel_max > limit)[0]
        return idx[np.argsort(-channel_max[idx], kind="stable")]

    abs_a = np.abs(a)
    return WeightStats(mean, std, absmax, kurt, hist, share, outliers(abs_a.max(axis=1)), outliers(abs_a.max(axis=0)),
                       outlier_factor)


@dataclass(frozen=True)
class SweepRow:
    """One bit width of bit_width_sweep: its scheme, storage cost and error."""

    bits: int
    scheme: str
    bits_per_weight: float
    compression_vs_fp16: float
    mse: float
    snr_db: float
    cosine: float
    max_abs: float


def bit_width_sweep(w: np.ndarray, bits: tuple = (2, 3, 4, 8), *, group_size: int = 128,
                    symmetric: bool = False) -> list[SweepRow]:
    """Quantize `w` at each bit width and measure the loss: where the bit-width cliff is.

    Args:
        w: 2-D float weight [out_features, in_features].
        bits: integer bit widths from {2, 3, 4, 8}.
        group_size, symmetric: as for quantcore.quantize.

    Returns:
        A SweepRow per bit width, in the order given.
    """
    from quantcore.quantize import quantize

    rows = []
    for b in bits:
        if b not in (2, 3, 4, 8):
            raise ValueError(f"bit_width_sweep: bits must be from (2, 3, 4, 8) (got {b!r})")
        q = quantize(w, f"int{b}", group_size=group_size, symmetric=symmetric)
        e = error(w, q.dequantize())
        rows.append(SweepRow(b, q.scheme, q.bits_per_weight, 16.0 / q.bits_per_weight, e.mse, e.snr_db, e.cosine,
                             e.max_abs))
    return rows
