"""GPTQ: calibration-driven quantization that corrects each column's rounding error in the
columns not yet quantized (Frantar, Ashkboos, Hoefler, Alistarh 2022, "GPTQ: Accurate
Post-Training Quantization for Generative Pre-trained Transformers", Algorithm 1; the structure of
the IST-DASLab reference gptq.py, and AutoGPTQ's act-order / static-groups handling).

    H = Hessian(in_features); H.add_batch(x) for each calibration batch x [tokens, in_features]
    result = quantcore.gptq.quantize(W, H, "int4", group_size=128)
    result.qtensor            # a QuantizedTensor: dequantize(), save(), gguf export, matmul
    result.losses             # per-row proxy loss, sum over columns of ((w - q) / d)^2 / 2

The algorithm (names as in the paper):
    H = 2/N sum x x^T (float64). Dead inputs (H[i, i] == 0): H[i, i] = 1 and W[:, i] = 0.
    act_order: columns in order of decreasing diag(H) (a stable sort).
    H += damp * mean(diag H) * I; Hinv = the upper Cholesky factor U of H^-1 (U^T U = H^-1),
    computed in float64 and used in float32. If H + damp is not positive-definite, damp rises
    x10 (GPTQDampWarning) up to 1.0; past that, ValueError.
    Columns are taken in blocks of block_size; inside a block, column by column (C++, rows in
    parallel): q = quantize(w), err = (w - q) / Hinv[i, i], the rest of the block
    W1[:, i+1:] -= err * Hinv1[i, i+1:]; after the block, one lazy update
    W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:] (float32 BLAS through numpy).
    Group parameters: when the first column of a group is reached, from the group's columns as
    they stand then (error-updated: inside the block the columns updated so far, beyond it W less
    the block's pending update, Err1 so far @ Hinv). With static_groups, from the original W up
    front, in the original column order. group_size -1: one group per row, from the whole row.

clip_search: each group's parameters come from its range shrunk by the factor (of CLIP_SHRINKS)
that minimizes the group's diag(H)-weighted squared rounding error, the reference quantizer's
optional search (quant.py, mse=True), instead of the full range.

The grid is exactly quantcore.quantize's: the same per-group rules for scale and zero point (the
scale rounded to scale_dtype before codes are computed) and the same codes, through the same C++
helpers; for q4_0 / q4_1 / q8_0, llama.cpp's rules (gguf.h). So a W that needs no error feedback
(e.g. H diagonal) gives exactly quantcore.quantize's result (without clip_search), and a GPTQ-optimized q4_0 / q4_1 /
q8_0 tensor converts to llama.cpp blocks with quantcore.gguf.blocks_from_quantized. One
difference from RTN: updated weights can leave the range their group's parameters were found
from; codes are clamped to the grid (as the reference quantizer clamps).

Act-order and the stored layout: with act_order and not static_groups, groups are formed along
the permuted columns (as AutoGPTQ does), so the QuantizedTensor holds W[:, perm] and carries
`perm` (except with group_size -1: one group per row does not depend on the order);
dequantize() puts the columns back, and a matmul uses x[..., perm]. Such a tensor has no GGUF
form (llama.cpp has no column permutation): use static_groups=True (groups in the original order,
no perm) for a GGUF export with act-order.

Differences from the IST-DASLab reference, by choice: H is averaged over tokens (the reference
counts sequences; the constant factor changes nothing); the group parameters of a group that
starts inside a block use the error-updated columns (the reference reads the block's columns as
they were before the block); Hinv from one Cholesky factorization of H in reversed order and a
triangular inverse (the same U as the reference's cholesky, cholesky_inverse, cholesky), in
float64.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import ml_dtypes
import numpy as np

from quantcore import _core
from quantcore._checks import as_array
from quantcore.pack import pack_bits
from quantcore.quantize import QuantizedTensor, _SCALE_TYPE_CODE, check_grid

__all__ = ["CLIP_SHRINKS", "GPTQDampWarning", "GPTQResult", "Hessian", "SCHEMES", "quantize"]

# scheme -> (grid, bits, fixed symmetric or None, fixed group size or None); grid ids as in gptq.h
_GRID_SYMMETRIC, _GRID_ASYMMETRIC, _GRID_Q4_0, _GRID_Q4_1, _GRID_Q8_0 = range(5)
_SCHEME_INFO = {
    "int8": (None, 8, None, None),
    "int4": (None, 4, None, None),
    "int3": (None, 3, None, None),
    "int2": (None, 2, None, None),
    "q4_0": (_GRID_Q4_0, 4, True, 32),
    "q4_1": (_GRID_Q4_1, 4, False, 32),
    "q8_0": (_GRID_Q8_0, 8, True, 32),
}
SCHEMES = tuple(_SCHEME_INFO)  # the integer grids GPTQ can target

_DAMP_CAP = 1.0  # the largest relative damp tried before giving up
_PARAMS_BYTES = 32  # sizeof(GptqParams)
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16))


class GPTQDampWarning(UserWarning):
    """H + damp * mean(diag H) * I was not positive-definite, so damp was raised."""


def _float_array(x: object, fn: str, arg: str) -> np.ndarray:
    a = as_array(x, fn, arg)
    if a.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{fn}: {arg} must be float32, float64, float16 or bfloat16 (got dtype {a.dtype.name})")
    return a


def _check_finite(a: np.ndarray, fn: str, arg: str) -> None:
    bad = ~np.isfinite(a)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{fn}: {arg} contains NaN or inf (first at index {where})")


class Hessian:
    """The GPTQ Hessian of one linear layer, H = 2/N sum over tokens of x x^T (float64).

    Streaming: add_batch keeps H as the running average over every token seen so far (the
    reference's nsamples scheme, counted in tokens), so batches of any size can be added in any
    number. Products and the average are float64.

    Args:
        in_features: the layer's input width (positive int).

    Example:
        >>> h = Hessian(4096)
        >>> for x in batches:          # x [tokens, 4096] or [batch, seq, 4096]
        ...     h.add_batch(x)
        >>> result = quantcore.gptq.quantize(W, h, "int4")
    """

    def __init__(self, in_features: int):
        if isinstance(in_features, bool) or not isinstance(in_features, (int, np.integer)):
            raise TypeError(f"Hessian: in_features must be an int (got {type(in_features).__name__})")
        if in_features <= 0:
            raise ValueError(f"Hessian: in_features must be positive (got {in_features})")
        self.in_features = int(in_features)
        self._H = np.zeros((self.in_features, self.in_features), np.float64)
        self.n_tokens = 0

    def add_batch(self, x: np.ndarray) -> None:
        """Add calibration inputs x: float array [..., in_features] (every leading axis counts
        as tokens). Raises TypeError (not a float array) or ValueError (wrong last dimension,
        no tokens, NaN or inf)."""
        a = _float_array(x, "Hessian.add_batch", "x")
        if a.ndim < 1 or a.shape[-1] != self.in_features:
            raise ValueError(f"Hessian.add_batch: x must have shape [..., {self.in_features}] (got {a.shape})")
        x2 = a.reshape(-1, self.in_features)
        tokens = x2.shape[0]
        if tokens == 0:
            raise ValueError(f"Hessian.add_batch: x holds no tokens (got shape {a.shape})")
        xs = x2.astype(np.float64 if x2.dtype == np.float64 else np.float32)
        _check_finite(xs, "Hessian.add_batch", "x")
        total = self.n_tokens + tokens
        # running average: H_new = n/total * H_old + 2/total * sum x x^T. The products are summed
        # in the input's precision (float32 for float32/16 input, as the reference's float32
        # matmul), one array on both sides (BLAS syrk); H itself accumulates in float64.
        self._H *= self.n_tokens / total
        xs *= xs.dtype.type(np.sqrt(2.0 / total))
        self._H += xs.T @ xs
        self.n_tokens = total

    @property
    def H(self) -> np.ndarray:
        """float64 [in_features, in_features], read-only view. ValueError before any add_batch."""
        if self.n_tokens == 0:
            raise ValueError("Hessian.H: no calibration data yet (call add_batch first)")
        view = self._H.view()
        view.flags.writeable = False
        return view


@dataclass(frozen=True, eq=False)
class GPTQResult:
    """What gptq.quantize returns.

    Attributes:
        qtensor: the QuantizedTensor (with `perm` set for act_order without static_groups,
            unless group_size is -1).
        losses: float64 [out_features], per row the sum over columns of ((w - q) / d)^2 / 2,
            d = Hinv[i, i] (the reference's Losses).
        damp: the relative dampening finally used (larger than asked after a failed Cholesky).
    """

    qtensor: QuantizedTensor
    losses: np.ndarray
    damp: float

    @property
    def loss(self) -> float:
        """The total proxy loss, sum of losses."""
        return float(self.losses.sum())


# clip_search's factors of each group's range: 1.00, 0.99, ..., 0.80 (the reference's grid step)
CLIP_SHRINKS = (1.0 - 0.01 * np.arange(21)).astype(np.float32)


def _inverse_cholesky(H: np.ndarray, damp: float) -> tuple[np.ndarray, float]:
    """Upper-triangular U (float32, C order) with U^T U = (H + damp * mean(diag H) * I)^-1,
    computed in float64, and the damp used.

    With J the reversal of the index order, J (H + D) J = C C^T (lower Cholesky factor C) gives
    H + D = (J C J)(J C J)^T with J C J upper triangular, so U = (J C J)^-1 = J C^-1 J: one
    factorization and one triangular inverse.
    """
    n = H.shape[0]
    mean = float(np.mean(np.diag(H)))
    current = damp
    while True:
        a = np.array(H[::-1, ::-1], dtype=np.float64, order="F")  # LAPACK's order: no copy inside
        a[np.diag_indices(n)] += current * mean
        C = _cholesky_lower(a)
        if C is not None:
            break
        raised = current * 10 if current > 0 else 1e-6
        if raised > _DAMP_CAP * (1 + 1e-9):
            raise ValueError(
                f"gptq.quantize: H is not positive-definite even with damp={current:g} (the cap is {_DAMP_CAP:g}); "
                f"H needs more calibration tokens, or holds NaN-free but inconsistent values"
            )
        warnings.warn(
            f"gptq.quantize: H + damp * mean(diag H) * I is not positive-definite with damp={current:g}; "
            f"retrying with damp={raised:g}",
            GPTQDampWarning,
            stacklevel=3,
        )
        current = raised
    del a
    Cinv = _inverse_lower(C)
    return Cinv[::-1, ::-1].astype(np.float32, order="C"), current


def _cholesky_lower(a: np.ndarray) -> np.ndarray | None:
    """The lower Cholesky factor of a (overwritten), or None when a is not positive-definite."""
    try:
        from scipy.linalg import lapack
    except ImportError:  # numpy alone: the same factor, slower
        try:
            return np.linalg.cholesky(a)
        except np.linalg.LinAlgError:
            return None
    c, info = lapack.dpotrf(a, lower=1, clean=1, overwrite_a=1)
    return c if info == 0 else None


def _inverse_lower(c: np.ndarray) -> np.ndarray:
    try:
        from scipy.linalg import lapack
    except ImportError:
        return np.tril(np.linalg.inv(c))
    inv, info = lapack.dtrtri(c, lower=1, overwrite_c=1)
    if info != 0:  # a zero pivot cannot follow a successful Cholesky factorization
        raise ValueError(f"gptq.quantize: the Cholesky factor of H is singular (LAPACK dtrtri info={info})")
    return inv  # dpotrf(clean=1) zeroed the upper triangle and dtrtri(lower=1) leaves it alone


def _group_params(G: np.ndarray, grid: int, bits: int, scale_code: int, g: int, col0: int,
                  clip: tuple | None = None):
    """Parameters of one group for all rows: (params bytes [rows, 32], stored scale, stored zero).
    clip: None (the group's range), or (shrinks float32 [k], weight float32 [gs] or None):
    the clipping search, each row's least-error factor of its range."""
    rows = G.shape[0]
    G = np.ascontiguousarray(G, dtype=np.float32)
    if not np.isfinite(G).all():
        r = int(np.argwhere(~np.isfinite(G))[0][0])
        raise ValueError(
            f"gptq.quantize: the error-updated weights of row {r} became non-finite at group {g} (column {col0}); "
            f"H is too ill-conditioned (raise damp)"
        )
    params = np.empty((rows, _PARAMS_BYTES), np.uint8)
    scale = np.empty(rows, np.float32)
    zero = np.empty(rows, np.float32)
    if clip is None:
        bad = _core.gptq_params(G, grid, bits, scale_code, params, scale, zero)
    else:
        shrinks, weight = clip
        chosen = np.empty(rows, np.float32)
        bad = _core.gptq_clip_params(G, weight, shrinks, grid, bits, scale_code, params, scale, zero, chosen)
    if bad >= 0:
        raise ValueError(
            f"gptq.quantize: the scale of group {g} (from column {col0}) of row {bad} is not finite in the "
            f"scale dtype (the group's range is too large; use scale_dtype=np.float32)"
        )
    return params, scale, zero


def quantize(
    W: np.ndarray,
    H: np.ndarray | Hessian,
    scheme: str = "int4",
    *,
    group_size: int | None = None,
    symmetric: bool = False,
    act_order: bool = False,
    static_groups: bool = False,
    damp: float = 0.01,
    block_size: int = 128,
    scale_dtype: object = np.float16,
    clip_search: bool = False,
) -> GPTQResult:
    """Quantize a linear layer's weight with GPTQ (algorithm in the module docstring).

    Args:
        W: float array [out_features, in_features] (float32, float16, bfloat16 or float64;
            computed in float32).
        H: float array [in_features, in_features] (2/N sum x x^T, symmetric), or a Hessian.
        scheme: "int8", "int4", "int3", "int2", or the GGUF grids "q4_0", "q4_1", "q8_0"
            (quantcore.quantize's rules for each).
        group_size: a positive divisor of in_features, or -1 (one group per row). Default 128;
            q4_0 / q4_1 / q8_0 have blocks of 32 and accept only 32 (their default).
        symmetric: int schemes: symmetric (True) or with a zero point (False). GGUF schemes fix it.
        act_order: quantize columns in order of decreasing diag(H).
        static_groups: find every group's parameters up front from the original W, in the
            original column order (then act_order needs no stored permutation).
        damp: relative dampening, >= 0: damp * mean(diag H) is added to the diagonal.
        block_size: columns per lazy-update block (positive).
        scale_dtype: np.float16, np.float32 or ml_dtypes.bfloat16 (GGUF schemes: float16).
        clip_search: find each group's parameters by the reference quantizer's clipping search
            (IST-DASLab quant.py, mse=True): the parameters of the group's values times each
            factor of CLIP_SHRINKS (1.00, 0.99, ..., 0.80), keeping per row the factor of least
            sum_j diag(H)_j (w_j - q_j)^2 over the group's columns (the reference scores
            |w - q|^2.4 unweighted; diag(H) weighs each column as GPTQ's loss does). With
            static_groups the search runs on the original W; otherwise on the error-updated
            columns when the group is reached.

    Returns:
        GPTQResult: qtensor (QuantizedTensor; `perm` set when act_order and not static_groups
        and there are several groups per row), losses (float64 [out_features]) and the damp used.

    Raises:
        TypeError: W or H is not a float array; an argument of the wrong type.
        ValueError: unknown or non-integer scheme (nf4, fp8); W not 2-D or empty; H not
            [in_features, in_features]; NaN or inf in W or H; group_size not dividing in_features;
            block_size or damp out of range; H not positive-definite even with damp 1.0; a
            scale overflowing scale_dtype.

    Warns:
        GPTQDampWarning: damp was raised because the Cholesky factorization failed.

    Example:
        >>> h = quantcore.gptq.Hessian(W.shape[1]); h.add_batch(x)
        >>> r = quantcore.gptq.quantize(W, h, "int4", group_size=128, act_order=True)
        >>> err = np.linalg.norm((W - r.qtensor.dequantize()) @ x.T)
    """
    fn = "gptq.quantize"
    if not isinstance(scheme, str) or scheme not in _SCHEME_INFO:
        raise ValueError(f"{fn}: scheme must be one of {list(SCHEMES)} (an integer grid; got {scheme!r})")
    grid, bits, fixed_symmetric, _ = _SCHEME_INFO[scheme]
    a = _float_array(W, fn, "W")
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"{fn}: W must be 2-D [out_features, in_features] and not empty (got shape {a.shape})")
    rows, cols = (int(d) for d in a.shape)
    if isinstance(H, Hessian):
        h = H.H
    else:
        h = _float_array(H, fn, "H")
    if h.shape != (cols, cols):
        raise ValueError(f"{fn}: H must have shape {(cols, cols)} for W of shape {a.shape} (got {h.shape})")
    for name, flag in (("symmetric", symmetric), ("act_order", act_order), ("static_groups", static_groups),
                       ("clip_search", clip_search)):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{fn}: {name} must be a bool (got {type(flag).__name__})")
    if isinstance(group_size, (int, np.integer)) and not isinstance(group_size, bool) and group_size < 1 \
            and group_size != -1:
        # unlike quantize(), no 0: GPTQ finds group parameters as it reaches the columns
        raise ValueError(f"{fn}: group_size must be a positive divisor of in_features or -1 (got {group_size})")
    group_size, _, dtype = check_grid(scheme, group_size, symmetric, scale_dtype, cols, fn)
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)):
        raise TypeError(f"{fn}: block_size must be an int (got {type(block_size).__name__})")
    if block_size <= 0:
        raise ValueError(f"{fn}: block_size must be positive (got {block_size})")
    if isinstance(damp, bool) or not isinstance(damp, (int, float, np.floating, np.integer)):
        raise TypeError(f"{fn}: damp must be a float (got {type(damp).__name__})")
    if not (0 <= float(damp) <= _DAMP_CAP):
        raise ValueError(f"{fn}: damp must be in [0, {_DAMP_CAP:g}] (got {damp})")
    sym = bool(symmetric) if fixed_symmetric is None else fixed_symmetric
    if grid is None:
        grid = _GRID_SYMMETRIC if sym else _GRID_ASYMMETRIC
    scale_code = _SCALE_TYPE_CODE[dtype]

    W = np.array(a, dtype=np.float32, order="C")  # a copy: updated in place below
    _check_finite(W, fn, "W")
    H = np.array(h, dtype=np.float64)
    _check_finite(H, fn, "H")

    dead = np.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0

    gs = cols if group_size == -1 else group_size
    n_groups = cols // gs
    table = np.empty((n_groups, rows, _PARAMS_BYTES), np.uint8)  # GptqParams [group, row]
    scales32 = np.empty((rows, n_groups), np.float32)
    zeros32 = np.empty((rows, n_groups), np.float32)

    shrinks = CLIP_SHRINKS if clip_search else None
    diag = np.diag(H).astype(np.float32)

    def set_group(g: int, G: np.ndarray, col0: int, weight: np.ndarray | None = None) -> None:
        clip = None if shrinks is None else (shrinks, weight)
        table[g], scales32[:, g], zeros32[:, g] = _group_params(G, grid, bits, scale_code, g, col0, clip)

    if static_groups:  # from the original W, original column order
        for g in range(n_groups):
            set_group(g, W[:, g * gs:(g + 1) * gs], g * gs, np.ascontiguousarray(diag[g * gs:(g + 1) * gs]))

    perm = None
    if act_order:
        perm = np.argsort(-np.diag(H), kind="stable").astype(np.int64)
        W = np.ascontiguousarray(W[:, perm])
        H = H[perm][:, perm]
        diag = diag[perm]
    # group of the column at each position of the processing order
    if static_groups and perm is not None:
        group_of = (perm // gs).astype(np.int32)
    else:
        group_of = (np.arange(cols) // gs).astype(np.int32)

    Hinv, used_damp = _inverse_cholesky(H, float(damp))
    del H

    codes = np.empty((rows, cols), np.uint8)
    losses = np.zeros(rows, np.float64)
    # the lazy update's product, in one buffer reused by every block (no fresh pages per block)
    product = np.empty(rows * max(cols - block_size, 0), np.float32)
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        count = i2 - i1
        Hinv1 = np.ascontiguousarray(Hinv[i1:i2, i1:i2])
        Err1 = np.zeros((rows, count), np.float32)
        # segments of the block between group starts (parameters found at each start)
        starts = [] if static_groups else [j for j in range(i1, i2) if j % gs == 0]
        bounds = sorted({i1, i2, *starts})
        for s0, s1 in zip(bounds[:-1], bounds[1:]):
            if s0 in starts:
                end = s0 + gs
                if end <= i2 or s0 == i1:  # no update of these columns is pending
                    current = W[:, s0:end]
                else:  # the group reaches past the block: subtract this block's pending update
                    beyond = W[:, i2:end] - Err1[:, :s0 - i1] @ Hinv[i1:s0, i2:end]
                    current = np.concatenate([W[:, s0:i2], beyond], axis=1)
                set_group(s0 // gs, current, s0, np.ascontiguousarray(diag[s0:end]))
            _core.gptq_columns(W, i1, count, s0 - i1, s1 - i1, Hinv1, grid, bits, scale_code, table, group_of,
                               codes, Err1, losses)
        if i2 < cols:
            update = product[:rows * (cols - i2)].reshape(rows, cols - i2)
            np.matmul(Err1, Hinv[i1:i2, i2:], out=update)
            W[:, i2:] -= update
    if not np.isfinite(losses).all():
        r = int(np.argwhere(~np.isfinite(losses))[0][0])
        raise ValueError(f"{fn}: the quantization error of row {r} is not finite; "
                         f"H is too ill-conditioned (raise damp)")

    stored_perm = None
    if perm is not None:
        # groups in the original order (static), or one group per row (the order does not
        # matter): store the codes in the original order, no permutation needed
        if static_groups or n_groups == 1:
            original = np.empty_like(codes)
            original[:, perm] = codes
            codes = original
        else:
            stored_perm = perm
    row_bytes = (cols * bits + 7) // 8
    if (cols * bits) % 8 == 0:
        packed = pack_bits(codes, bits).reshape(rows, row_bytes)
    else:  # rows start on a byte boundary
        packed = np.stack([pack_bits(row, bits) for row in codes])
    scales = scales32.astype(dtype)  # exact: the values are already of the scale dtype
    if grid == _GRID_ASYMMETRIC:
        zeros = zeros32.astype(np.uint8)
    elif grid == _GRID_Q4_1:
        zeros = zeros32.astype(np.float16)
    else:
        zeros = None
    qt = QuantizedTensor(scheme, (rows, cols), group_size, sym, packed, scales, zeros, stored_perm)
    return GPTQResult(qt, losses, used_damp)
