"""AWQ: activation-aware weight quantization (Lin et al., 2023, "AWQ: Activation-aware Weight
Quantization for LLM Compression and Acceleration", sections 3.2-3.3).

Search is separated from apply: the search functions return data, apply() returns new arrays.

Scale search (the reference's auto_scale): linears that share one input x (q/k/v, or gate/up) get
one per-input-channel scale vector

    s = mean_tokens |x| ** alpha,   clamped to >= 1e-4,   s = s / sqrt(max(s) * min(s))

and alpha runs over the grid i / n_grid, i = 0 .. n_grid - 1. Each candidate quantizes every
weight as Q(W * s) / s (Q = quantcore.quantize, then dequantize) and is scored by the mean squared
error of the block output against the float weights: the concatenated outputs x @ W_i.T, or
forward(x, weights). The alpha with the lowest loss wins (the first of equal losses). At alpha = 0,
s is exactly 1, so Q(W * s) / s is round-to-nearest: the search is never worse than RTN on its
calibration tokens.

Clip search (the reference's auto_clip): for each output row and group of `group_size` inputs, the
clamp bound max_val = absmax(group) * (1 - i / n_grid), i < n_grid * max_shrink, that minimizes the
mean squared error of that group's contribution x_g @ w_g over a sample of tokens. As in the
reference the clamp is symmetric, [-max_val, max_val], for symmetric and asymmetric grids alike.
Run it on the scaled weights W * s with the scaled input x / s (the reference searches clipping
after applying the scales); the reference skips q and k (their error passes through q @ k.T).

Apply and fold: apply() returns W * s (clamped to the clip bounds); the network stays the same
function when the op that feeds x divides its output by s:
    RMSNorm before the linears:   norm_weight / s                    (fold_into_norm)
    a linear before (v -> o, up -> down):  prev_weight / s[:, None]  (fold_into_linear;
                                  divide its bias by s too, if it has one)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from quantcore._checks import as_array
from quantcore.quantize import _check_scheme, check_grid, quantize

__all__ = [
    "ScaleSearchResult",
    "apply",
    "fold_into_linear",
    "fold_into_norm",
    "search_clip",
    "search_scales",
]

_F32 = np.dtype(np.float32)
_FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")
_MIN_SCALE = 1e-4  # the reference's clamp of mean|x|^alpha, so dead channels get a finite scale

ForwardFn = Callable[[np.ndarray, list], np.ndarray]


@dataclass(frozen=True, repr=False, eq=False)
class ScaleSearchResult:
    """What search_scales found.

    Attributes:
        scales: float32 [in_features], the per-input-channel scales s of the best alpha
            (multiply the weights' columns by it; divide the preceding op's output by it).
        alpha: the best alpha.
        alphas: float64 [n_grid], the grid i / n_grid.
        losses: float64 [n_grid], the block-output MSE at each alpha (losses[0] is RTN's).
    """

    scales: np.ndarray
    alpha: float
    alphas: np.ndarray
    losses: np.ndarray

    @property
    def rtn_loss(self) -> float:
        """The block-output MSE of round-to-nearest (alpha = 0)."""
        return float(self.losses[0])

    @property
    def loss(self) -> float:
        """The block-output MSE at the best alpha."""
        return float(self.losses.min())

    def __repr__(self) -> str:
        return (f"ScaleSearchResult(alpha={self.alpha:g}, loss={self.loss:.6g}, rtn_loss={self.rtn_loss:.6g}, "
                f"in_features={self.scales.size})")


# ---------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------

def _float_matrix(a: object, fn: str, arg: str) -> np.ndarray:
    """a as a C-contiguous float32 2-D array with finite values."""
    arr = as_array(a, fn, arg)
    if arr.dtype.name not in _FLOAT_DTYPES:
        raise TypeError(f"{fn}: {arg} must be a float32, float16, bfloat16 or float64 array (got dtype {arr.dtype.name})")
    if arr.ndim != 2:
        raise ValueError(f"{fn}: {arg} must be 2-D (got shape {arr.shape})")
    if arr.size == 0:
        raise ValueError(f"{fn}: {arg} must not be empty (got shape {arr.shape})")
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf, reported below
        out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(out).all():
        r, c = np.argwhere(~np.isfinite(out))[0]
        raise ValueError(f"{fn}: {arg} contains NaN or inf (first at [{r}, {c}]){' after conversion to float32' if arr.dtype == np.float64 else ''}")
    return out


def _activations(x: object, fn: str) -> np.ndarray:
    """x [..., in_features] as float32 [tokens, in_features]."""
    arr = as_array(x, fn, "x")
    if arr.ndim < 2 or arr.size == 0:
        raise ValueError(f"{fn}: x must be a non-empty [tokens, in_features] (or [..., in_features]) array "
                         f"(got shape {arr.shape})")
    return _float_matrix(arr.reshape(-1, arr.shape[-1]), fn, "x")


def _weight_list(weights: object, in_features: int, fn: str) -> list[np.ndarray]:
    if isinstance(weights, np.ndarray) or not isinstance(weights, (list, tuple)):
        raise TypeError(f"{fn}: weights must be a list of [out_i, in_features] arrays (got {type(weights).__name__})")
    if len(weights) == 0:
        raise ValueError(f"{fn}: weights must not be empty (got an empty {type(weights).__name__})")
    out = []
    for i, w in enumerate(weights):
        w = _float_matrix(w, fn, f"weights[{i}]")
        if w.shape[1] != in_features:
            raise ValueError(f"{fn}: weights[{i}] has in_features={w.shape[1]} but x has {in_features} columns "
                             f"(weights[{i}].shape={w.shape})")
        out.append(w)
    return out


def _positive_int(value: object, fn: str, arg: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{fn}: {arg} must be an int (got {type(value).__name__})")
    if value < 1:
        raise ValueError(f"{fn}: {arg} must be >= 1 (got {value})")
    return int(value)


def _grid(scheme: object, group_size: object, symmetric: object, scale_dtype: object, in_features: int,
          fn: str) -> dict:
    """The quantize() keyword arguments, checked here so errors name `fn`."""
    name = _check_scheme(scheme, fn)
    g, symmetric, _ = check_grid(name, group_size, symmetric, scale_dtype, in_features, fn)
    return dict(scheme=name, group_size=g, symmetric=symmetric, scale_dtype=scale_dtype)


def _scale_vector(s: object, in_features: int, fn: str) -> np.ndarray:
    if isinstance(s, ScaleSearchResult):
        s = s.scales
    arr = as_array(s, fn, "scales")
    if arr.dtype.kind != "f":
        raise TypeError(f"{fn}: scales must be a float array (got dtype {arr.dtype.name})")
    if arr.shape != (in_features,):
        raise ValueError(f"{fn}: scales must have shape ({in_features},) (got {arr.shape})")
    arr = arr.astype(np.float32)
    if not (np.isfinite(arr).all() and (arr > 0).all()):
        raise ValueError(f"{fn}: scales must be positive and finite")
    return arr


# ---------------------------------------------------------------------------------------
# The search
# ---------------------------------------------------------------------------------------

def _fake_quantize(w: np.ndarray, grid: dict, out: np.ndarray | None = None) -> np.ndarray:
    """Q(w): quantize and dequantize, float32 [rows, cols] (C++ kernels); `out` may be w itself."""
    return quantize(w, **grid).dequantize(out=out)


def _sum_sq_output_error(x: np.ndarray, gram: Optional[np.ndarray], e: np.ndarray, y: np.ndarray | None) -> float:
    """sum((x @ e.T)^2), float64, with y a float32 [tokens, out] buffer for x @ e.T. With the Gram
    matrix G = x.T @ x (accumulated in float64, stored float32; used when tokens > 2 *
    in_features, where it is cheaper): the sum over rows r of e_r @ G @ e_r, the product in
    float32 and the sum in float64. Checked on SmolLM2's blocks (int4 g64, every alpha of blocks
    0, 5, ..., 29): within 1e-7 of the float64 form, the same alpha chosen everywhere, at half
    the time."""
    if gram is not None:
        eg = e @ gram  # float32 GEMM (gram is float32 here), terms summed in float64
        eg *= e
        return float(np.sum(eg, dtype=np.float64))
    np.matmul(x, e.T, out=y)
    return float(np.einsum("ij,ij->", y, y, dtype=np.float64))


def _prefix(buf: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A C-contiguous [rows, cols] view of the start of a flat buffer."""
    return buf[: shape[0] * shape[1]].reshape(shape)


def _act_mean(x: np.ndarray) -> np.ndarray:
    """mean |x| over tokens, float64 [in_features] (the reference's get_act_scale)."""
    return np.abs(x).mean(axis=0, dtype=np.float64)


def _scales_for(x_mean: np.ndarray, alpha: float) -> np.ndarray:
    s = np.maximum(x_mean ** alpha, _MIN_SCALE)
    return (s / np.sqrt(s.max() * s.min())).astype(np.float32)


def search_scales(
    x: np.ndarray,
    weights: Sequence[np.ndarray],
    scheme: str = "int4",
    *,
    group_size: int | None = None,
    symmetric: bool = False,
    n_grid: int = 20,
    forward: ForwardFn | None = None,
    scale_dtype: object = np.float16,
) -> ScaleSearchResult:
    """Search the per-input-channel AWQ scales of linears that share the input x.

    Args:
        x: float32 (float16, bfloat16, float64 converted) [tokens, in_features] (or [..., in_features]),
            the calibration input of the linears, finite.
        weights: list of float arrays [out_i, in_features], finite (e.g. [W_q, W_k, W_v]).
        scheme, group_size, symmetric, scale_dtype: the grid, as quantcore.quantize takes them
            (group_size None: quantize's default, 128; 32 for q4_0 / q4_1 / q8_0).
        n_grid: number of alphas, alpha = i / n_grid for i = 0 .. n_grid - 1 (>= 1).
        forward: optional forward(x, weights) -> array; the block whose output MSE is minimized,
            called with x as given and a list of float32 weights in the order of `weights`.
            Default: the concatenated outputs x @ W_i.T. (The reference scores q/k/v by the whole
            attention output and gate/up by the MLP output; pass that block as `forward` to match.)

    Returns:
        ScaleSearchResult (scales, alpha, alphas, losses).

    Raises:
        TypeError: x or a weight not a float array, weights not a list, wrong argument types.
        ValueError: empty weights; a weight's in_features differs from x's; NaN or inf; group_size
            not dividing in_features; unknown scheme; n_grid < 1; forward returning a non-finite
            array or one whose shape changes with the weights.

    Example:
        >>> r = awq.search_scales(x, [wq, wk, wv], "int4", group_size=128)
        >>> (wq_s, wk_s, wv_s), s = awq.apply([wq, wk, wv], r.scales)
        >>> norm_weight = awq.fold_into_norm(norm_weight, s)
    """
    fn = "search_scales"
    x2 = _activations(x, fn)
    ws = _weight_list(weights, x2.shape[1], fn)
    grid = _grid(scheme, group_size, symmetric, scale_dtype, x2.shape[1], fn)
    n_grid = _positive_int(n_grid, fn, "n_grid")
    if forward is not None and not callable(forward):
        raise TypeError(f"{fn}: forward must be callable or None (got {type(forward).__name__})")

    tokens, in_features = x2.shape
    x_mean = _act_mean(x2)
    alphas = np.arange(n_grid, dtype=np.float64) / n_grid
    losses = np.empty(n_grid, np.float64)
    if forward is None:
        # the Gram form costs 2 * out * in^2 float64 flops against 2 * tokens * in * out float32
        # ones, and float64 GEMM runs at about half the float32 rate
        gram = None
        if tokens > 2 * in_features:
            x64 = x2.astype(np.float64)
            gram = (x64.T @ x64).astype(np.float32)  # one array on both sides: BLAS's syrk
            del x64
        n_out = tokens * sum(w.shape[0] for w in ws)
        # buffers reused across alphas: fresh 64 MB arrays would pay their page faults every time
        max_rows = max(w.shape[0] for w in ws)
        e_buf = np.empty(max_rows * in_features, np.float32)
        y_buf = np.empty(tokens * max_rows, np.float32) if gram is None else None
    else:
        org_out = _forward_output(forward, x, ws, None, fn)

    for i, alpha in enumerate(alphas):
        s = _scales_for(x_mean, alpha)
        if forward is None:
            total = 0.0
            for w in ws:
                e = np.multiply(w, s, out=_prefix(e_buf, w.shape))  # W * s
                _fake_quantize(e, grid, out=e)                       # Q(W * s)
                e /= s                                               # Q(W * s) / s
                np.subtract(w, e, out=e)                             # W - Q(W * s) / s
                y = None if y_buf is None else _prefix(y_buf, (tokens, w.shape[0]))
                total += _sum_sq_output_error(x2, gram, e, y)
            losses[i] = total / n_out
        else:
            wq = [_fake_quantize(w * s, grid) / s for w in ws]
            out = _forward_output(forward, x, wq, org_out.shape, fn)
            losses[i] = np.mean(np.square(org_out - out))
    best = int(np.argmin(losses))
    return ScaleSearchResult(_scales_for(x_mean, alphas[best]), float(alphas[best]), alphas, losses)


def _forward_output(forward: ForwardFn, x: object, ws: list, shape: tuple | None, fn: str) -> np.ndarray:
    out = np.asarray(forward(x, ws), dtype=np.float64)
    if shape is not None and out.shape != shape:
        raise ValueError(f"{fn}: forward returned shape {out.shape} with quantized weights but {shape} with the "
                         f"float weights")
    if not np.isfinite(out).all():
        raise ValueError(f"{fn}: forward returned NaN or inf")
    return out


def search_clip(
    x: np.ndarray,
    weight: np.ndarray,
    scheme: str = "int4",
    *,
    group_size: int | None = None,
    symmetric: bool = False,
    n_grid: int = 20,
    max_shrink: float = 0.5,
    n_sample_tokens: int = 512,
    scale_dtype: object = np.float16,
) -> np.ndarray:
    """Search per-row, per-group clamp bounds of one linear's weight (the reference's auto_clip).

    Every token stride-th token is used, stride = max(1, tokens // n_sample_tokens), as the
    reference samples. For each candidate i = 0 .. int(n_grid * max_shrink) - 1 (at least i = 0) the weight is
    clamped to [-max_val, max_val] with max_val = absmax(row, group) * (1 - i / n_grid), quantized
    (Q = quantize then dequantize), and each (row, group) keeps the bound with the lowest
    mean_tokens (x_g @ (Q(w_g) - w_g))^2, the first of equal losses. i = 0 is no clipping, so no
    group's sampled error grows.

    Args:
        x: float32 (float16, bfloat16, float64 converted) [tokens, in_features] (or [..., in_features]),
            the linear's input (x / s if the weight was scaled by s).
        weight: float array [out_features, in_features] (W * s if scaled).
        scheme, group_size, symmetric, scale_dtype: the grid as quantcore.quantize takes them;
            group_size must be a positive divisor of in_features or -1 (one group per row).
        n_grid: grid resolution (>= 1).
        max_shrink: largest fraction of absmax cut off, in [0, 1).
        n_sample_tokens: how many tokens to sample (>= 1).

    Returns:
        float32 [out_features, n_groups], the clamp bound of each row's groups; pass it to apply().

    Raises:
        TypeError / ValueError: as search_scales, and group_size 0, max_shrink outside [0, 1).

    Example:
        >>> max_val = awq.search_clip(x / s, w * s, "int4", group_size=128)
        >>> (w_clipped,), _ = awq.apply([w * s], clip=[max_val])
    """
    fn = "search_clip"
    x2 = _activations(x, fn)
    w = _float_matrix(weight, fn, "weight")
    if w.shape[1] != x2.shape[1]:
        raise ValueError(f"{fn}: weight has in_features={w.shape[1]} but x has {x2.shape[1]} columns "
                         f"(weight.shape={w.shape})")
    grid = _grid(scheme, group_size, symmetric, scale_dtype, x2.shape[1], fn)
    n_grid = _positive_int(n_grid, fn, "n_grid")
    n_sample_tokens = _positive_int(n_sample_tokens, fn, "n_sample_tokens")
    if isinstance(max_shrink, bool) or not isinstance(max_shrink, (int, float, np.floating, np.integer)):
        raise TypeError(f"{fn}: max_shrink must be a float (got {type(max_shrink).__name__})")
    if not 0.0 <= max_shrink < 1.0:
        raise ValueError(f"{fn}: max_shrink must be in [0, 1) (got {max_shrink})")
    g = grid["group_size"]
    if g == 0:
        raise ValueError(f"{fn}: group_size must be a positive divisor of in_features or -1 (got 0: one group "
                         f"over the whole tensor cannot be clipped group by group)")
    out_features, in_features = w.shape
    g = in_features if g == -1 else g
    n_groups = in_features // g

    step = max(1, x2.shape[0] // n_sample_tokens)
    xs = x2[::step]  # the reference's input_feat[:, 0::n_token // n_sample_token]
    group_error = _GroupError(xs, out_features, n_groups, g)
    org_max = np.abs(w).reshape(out_features, n_groups, g).max(axis=2)  # [out, n_groups]
    best_max = org_max.copy()
    min_err = np.full((out_features, n_groups), np.inf)
    n_steps = max(1, int(n_grid * max_shrink))  # the reference's range(int(max_shrink * n_grid))
    w3 = w.reshape(out_features, n_groups, g)  # [out, in] -> [out, n_groups, g]
    e = np.empty_like(w)
    for i in range(n_steps):
        max_val = (org_max * np.float32(1 - i / n_grid)).astype(np.float32)
        np.clip(w3, -max_val[..., None], max_val[..., None], out=e.reshape(w3.shape))
        _fake_quantize(e, grid, out=e)
        e -= w
        err = group_error(e)
        better = err < min_err
        min_err[better] = err[better]
        best_max[better] = max_val[better]
    return best_max.astype(np.float32)


class _GroupError:
    """err[o, j] = mean over tokens of (x_j . e_oj)^2, the squared error of group j's contribution
    to output o, for x [tokens, in] and e [out, in] with groups of g inputs.

    When 2 * g < tokens it is the quadratic form e_oj @ G_j @ e_oj with the per-group Gram matrices
    G_j = x_j.T @ x_j / tokens (float64, [n_groups, g, g]): 2 * out * in * g float64 flops a call
    instead of the 2 * tokens * in * out float32 ones of forming the group outputs (which it does
    otherwise; float64 GEMM runs at about half the float32 rate)."""

    def __init__(self, x: np.ndarray, out_features: int, n_groups: int, g: int):
        self.tokens = x.shape[0]
        self.shape = (out_features, n_groups, g)
        x3 = x.reshape(self.tokens, n_groups, g).transpose(1, 0, 2)  # [n_groups, tokens, g]
        if 2 * g < self.tokens:
            x3 = x3.astype(np.float64)
            self.gram = x3.transpose(0, 2, 1) @ x3 / self.tokens  # [n_groups, g, g]
            self.e64 = np.empty((n_groups, out_features, g), np.float64)
            self.buf = np.empty_like(self.e64)
        else:
            self.gram = None
            self.x3 = np.ascontiguousarray(x3)
            self.buf = np.empty((n_groups, self.tokens, out_features), np.float32)

    def __call__(self, e: np.ndarray) -> np.ndarray:
        e3 = e.reshape(self.shape).transpose(1, 0, 2)  # [out, in] -> [n_groups, out, g]
        if self.gram is not None:
            np.copyto(self.e64, e3)
            np.matmul(self.e64, self.gram, out=self.buf)
            self.buf *= self.e64
            return self.buf.sum(axis=2).T  # [out, n_groups]
        np.matmul(self.x3, e3.transpose(0, 2, 1), out=self.buf)  # [n_groups, tokens, out]
        np.square(self.buf, out=self.buf)
        return self.buf.sum(axis=1, dtype=np.float64).T / self.tokens


# ---------------------------------------------------------------------------------------
# Apply and fold
# ---------------------------------------------------------------------------------------

def apply(
    weights: Sequence[np.ndarray],
    scales: np.ndarray | ScaleSearchResult | None = None,
    clip: Sequence[np.ndarray | None] | np.ndarray | None = None,
) -> tuple[list[np.ndarray], np.ndarray]:
    """The AWQ-transformed weights, ready for quantcore.quantize, and the scales to fold.

    Each weight becomes W * s (columns scaled), then clamped row and group wise to
    [-clip, clip] (the reference's apply_scale then apply_clip). The network computes the same
    function once the op feeding the linears divides its output by s: fold_into_norm() for an
    RMSNorm / LayerNorm weight, fold_into_linear() for a preceding linear.

    Args:
        weights: list of float arrays [out_i, in_features].
        scales: float [in_features] positive, or a ScaleSearchResult; None: no scaling (s = 1).
        clip: None, or one entry per weight: None or float [out_i, n_groups] bounds from search_clip
            (computed on the scaled weight); a single array is accepted for a single weight.

    Returns:
        (list of float32 [out_i, in_features] new weights, float32 [in_features] s).

    Raises:
        TypeError / ValueError: mismatched shapes, non-positive or non-finite scales, a clip whose
            n_groups does not divide in_features, NaN or inf.

    Example:
        >>> (w_q, w_k, w_v), s = awq.apply([wq, wk, wv], result)
        >>> attn_norm.weight = awq.fold_into_norm(attn_norm.weight, s)
    """
    fn = "apply"
    if isinstance(weights, np.ndarray) or not isinstance(weights, (list, tuple)):
        raise TypeError(f"{fn}: weights must be a list of [out_i, in_features] arrays (got {type(weights).__name__})")
    if len(weights) == 0:
        raise ValueError(f"{fn}: weights must not be empty")
    first = _float_matrix(weights[0], fn, "weights[0]")
    ws = _weight_list(weights, first.shape[1], fn)
    in_features = first.shape[1]
    s = np.ones(in_features, np.float32) if scales is None else _scale_vector(scales, in_features, fn)
    if clip is None:
        clips: list = [None] * len(ws)
    elif isinstance(clip, np.ndarray):
        if len(ws) != 1:
            raise ValueError(f"{fn}: clip must be a list with one entry per weight (got one array for {len(ws)} weights)")
        clips = [clip]
    elif isinstance(clip, (list, tuple)):
        if len(clip) != len(ws):
            raise ValueError(f"{fn}: clip must have one entry per weight (got {len(clip)} for {len(ws)} weights)")
        clips = list(clip)
    else:
        raise TypeError(f"{fn}: clip must be None, an array or a list (got {type(clip).__name__})")

    out = []
    for i, (w, c) in enumerate(zip(ws, clips)):
        w = w * s
        if c is not None:
            c = _float_matrix(c, fn, f"clip[{i}]")
            rows, n_groups = c.shape
            if rows != w.shape[0] or in_features % n_groups:
                raise ValueError(f"{fn}: clip[{i}] must be [{w.shape[0]}, n_groups] with n_groups dividing "
                                 f"in_features={in_features} (got shape {c.shape})")
            if (c < 0).any():
                raise ValueError(f"{fn}: clip[{i}] must be >= 0")
            grouped = w.reshape(rows, n_groups, -1)  # [out, in] -> [out, n_groups, g]
            np.clip(grouped, -c[..., None], c[..., None], out=grouped)
        out.append(w)
    return out, s


def fold_into_norm(norm_weight: np.ndarray, s: np.ndarray | ScaleSearchResult) -> np.ndarray:
    """The RMSNorm (or LayerNorm) weight that absorbs 1 / s: norm_weight / s.

    norm(x) * (w / s) @ (W * s).T == norm(x) * w @ W.T, so replace the norm's weight by this (and a
    LayerNorm's bias by bias / s) when the linears after it take apply()'s W * s.

    Args:
        norm_weight: float [in_features].
        s: float [in_features] positive (apply()'s second result), or a ScaleSearchResult.

    Returns:
        norm_weight / s, in norm_weight's float dtype (float32 for other input dtypes).
    """
    w, sv = _fold_operands(norm_weight, s, "fold_into_norm", "norm_weight", 1, "1-D [in_features]")
    return (w / sv).astype(w.dtype)


def fold_into_linear(prev_weight: np.ndarray, s: np.ndarray | ScaleSearchResult) -> np.ndarray:
    """The preceding linear's weight that absorbs 1 / s: its output rows divided by s.

    prev_weight is [in_features, prev_in] (its outputs are the next linears' inputs: v -> o,
    up -> down); returns prev_weight / s[:, None]. Divide its bias by s too, if it has one.
    (With grouped-query attention, v's outputs feed o once per query group; fold there only
    when v's out_features equals o's in_features, as the reference does.)

    Args:
        prev_weight: float [in_features, prev_in].
        s: float [in_features] positive, or a ScaleSearchResult.

    Returns:
        prev_weight / s[:, None], in prev_weight's float dtype (float32 for other input dtypes).
    """
    w, sv = _fold_operands(prev_weight, s, "fold_into_linear", "prev_weight", 2,
                           "2-D [in_features, prev_in]")
    return (w / sv[:, None]).astype(w.dtype)


def _fold_operands(weight: object, s: object, fn: str, arg: str, ndim: int,
                   shape: str) -> tuple[np.ndarray, np.ndarray]:
    """The checked weight of a fold (ndim dimensions, described as `shape` in errors) and s,
    both in the weight's float dtype (float32 for dtypes other than float32 / float64)."""
    w = as_array(weight, fn, arg)
    if w.dtype.kind != "f":
        raise TypeError(f"{fn}: {arg} must be a float array (got dtype {w.dtype.name})")
    if w.ndim != ndim:
        raise ValueError(f"{fn}: {arg} must be {shape} (got shape {w.shape})")
    sv = _scale_vector(s, w.shape[0], fn)
    dtype = w.dtype if w.dtype in (np.float32, np.float64) else np.dtype(np.float32)
    return w.astype(dtype), sv.astype(dtype)
