"""A small numpy restatement of GPTQ (Frantar et al., 2022, Algorithm 1 in the lazy-batch form
of the IST-DASLab reference gptq.py `fasterquant`, with AutoGPTQ's act-order and static groups),
written to be read next to the paper. tests/test_gptq.py compares quantcore.gptq against it code
for code.

Arithmetic as quantcore.gptq does it, so that the codes can agree exactly: W, the errors and the
per-column update in float32 (a product, then a difference); H and its inverse factor in float64,
used in float32; the lazy block update with the same numpy matmul. The inverse factor is computed
the reference's way (Cholesky, inverse, Cholesky of the inverse), not quantcore's.

The grid (Grid below) restates quantcore.quantize's per-group rules in numpy, independently of
the C++ helpers: int symmetric / asymmetric with the scale rounded to the scale dtype first, and
llama.cpp's q4_0 / q4_1 / q8_0 rules. The algorithm never looks inside it.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

F32 = np.float32


class Grid:
    """params(G [rows, n]) -> the per-row parameters of one group; encode(w [rows], p) -> (codes,
    decoded values). scheme: "int8".."int2" (with symmetric, scale_dtype) or "q4_0", "q4_1", "q8_0"."""

    def __init__(self, scheme, symmetric=False, scale_dtype=np.float16):
        self.scheme = scheme
        self.symmetric = symmetric
        self.scale_dtype = np.dtype(scale_dtype)
        self.bits = 8 if scheme in ("int8", "q8_0") else int(scheme[3]) if scheme.startswith("int") else 4

    def _round_scale(self, s):
        r = s.astype(self.scale_dtype).astype(F32)
        if not np.isfinite(r).all():
            raise ValueError("scale overflow")
        tiny = F32(ml_dtypes.finfo(self.scale_dtype).smallest_subnormal)
        return np.where(r == 0, tiny, r).astype(F32)

    def params(self, G):
        G = np.asarray(G, F32)
        if self.scheme == "q4_0":
            at = np.argmax(np.abs(G), axis=1)  # the first value of largest |x|
            d = (G[np.arange(len(G)), at] / F32(-8)).astype(F32)
            return {"d": d, "dq": d.astype(np.float16).astype(F32)}
        if self.scheme == "q4_1":
            lo = G[np.arange(len(G)), np.argmin(G, axis=1)]
            hi = G[np.arange(len(G)), np.argmax(G, axis=1)]
            d = ((hi - lo) / F32(15)).astype(F32)
            return {"d": d, "m": lo, "dq": d.astype(np.float16).astype(F32),
                    "mq": lo.astype(np.float16).astype(F32)}
        if self.scheme == "q8_0":
            d = (np.abs(G).max(axis=1) / F32(127)).astype(F32)
            return {"d": d, "dq": d.astype(np.float16).astype(F32)}
        # int grids (quantcore.quantize's module docstring)
        lo, hi = G.min(axis=1), G.max(axis=1)
        constant = (lo == hi) & (lo != 0)
        absmax = np.maximum(-lo, hi)
        if self.symmetric:
            qmax = 2 ** (self.bits - 1) - 1
            zero = np.full(len(G), 2 ** (self.bits - 1), np.int64)
            exact = np.where(constant, absmax, absmax / F32(qmax)).astype(F32)
            cmin, cmax = zero - qmax, zero + qmax
        else:
            levels = 2 ** self.bits - 1
            rng = (np.maximum(hi, F32(0)) - np.minimum(lo, F32(0))).astype(F32)
            exact = np.where(constant, absmax, rng / F32(levels)).astype(F32)
            cmin, cmax = np.zeros(len(G), np.int64), np.full(len(G), levels, np.int64)
        scale = np.where(absmax == 0, F32(1), self._round_scale(exact)).astype(F32)
        if not self.symmetric:
            zero = np.minimum(np.rint(-np.minimum(lo, F32(0)) / scale), cmax).astype(np.int64)
        return {"scale": scale, "zero": zero, "cmin": cmin, "cmax": cmax}

    def stored(self, p):
        """(scale, zero) as QuantizedTensor stores them (zero None when it has none)."""
        if self.scheme.startswith("q"):
            return p["dq"], (p["mq"] if self.scheme == "q4_1" else None)
        return p["scale"], (None if self.symmetric else p["zero"])

    def encode(self, w, p):
        w = np.asarray(w, F32)
        with np.errstate(invalid="ignore", over="ignore"):
            if self.scheme in ("q4_0", "q4_1", "q8_0"):
                d = p["d"]
                inv = np.where(d != 0, F32(1) / np.where(d != 0, d, F32(1)), F32(0)).astype(F32)
                if self.scheme == "q8_0":
                    v = (w * inv).astype(F32)
                    mag = np.abs(v)
                    whole = np.floor(mag)
                    r = np.copysign(whole + (mag - whole >= F32(0.5)), v)
                    q = np.where(np.isfinite(v), np.clip(r, -128, 127), 0).astype(np.int64)
                    return q + 128, (p["dq"] * q.astype(F32)).astype(F32)
                if self.scheme == "q4_0":
                    v = (w * inv + F32(8.5)).astype(F32)
                else:
                    v = ((w - p["m"]) * inv + F32(0.5)).astype(F32)
                code = np.where(np.isfinite(v), np.trunc(np.clip(v, 0, 15)), 0).astype(np.int64)
                if self.scheme == "q4_0":
                    return code, (p["dq"] * (code - 8).astype(F32)).astype(F32)
                return code, (code.astype(F32) * p["dq"] + p["mq"]).astype(F32)
            code = np.clip(np.rint(w / p["scale"]) + p["zero"], p["cmin"], p["cmax"]).astype(np.int64)
            return code, ((code - p["zero"]).astype(F32) * p["scale"]).astype(F32)


def clipped_params(grid, G, shrinks, weight=None):
    """The reference quantizer's clipping search (IST-DASLab quant.py, mse=True), error weighted
    by `weight` (one value per column of G, or None: all 1) and squared: per row, the parameters
    of the shrunk group shrink * G with the least sum_j weight_j (G_j - dq_j)^2, the first such
    shrink in the order given."""
    G = np.asarray(G, F32)
    rows, n = G.shape
    weight = np.ones(n) if weight is None else np.asarray(weight, np.float64)
    best, best_error = None, None
    for shrink in shrinks:
        p = grid.params((F32(shrink) * G).astype(F32))
        error = np.zeros(rows)
        for j in range(n):
            _, dq = grid.encode(G[:, j], p)
            error += weight[j] * (G[:, j].astype(np.float64) - dq.astype(np.float64)) ** 2
        if best is None:
            best, best_error = dict(p), error
            continue
        better = error < best_error
        for key, value in p.items():
            best[key] = np.where(better, value, best[key])
        best_error = np.where(better, error, best_error)
    return best


def gptq_reference(W, H, grid, *, group_size=128, block_size=128, damp=0.01, act_order=False, static_groups=False,
                   clip_shrinks=None):
    """Returns (codes int64 [out, in] (in the stored column order), scales [out, n_groups],
    zeros or None, perm or None (the stored permutation), losses float64 [out]).

    W: [out, in]; H: [in, in] (2/N sum x x^T); group_size -1: one group per row. clip_shrinks:
    None, or the factors of clipped_params (weighted by diag(H)) for every group's parameters.
    """
    W = np.array(W, dtype=F32)
    H = np.array(H, dtype=np.float64)
    rows, columns = W.shape
    dead = np.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0

    gs = columns if group_size == -1 else group_size
    n_groups = columns // gs
    diag = np.diag(H).astype(F32)

    def group_params(G, weight):
        return grid.params(G) if clip_shrinks is None else clipped_params(grid, G, clip_shrinks, weight)

    params = [None] * n_groups
    if static_groups:  # from the original W, original column order (AutoGPTQ)
        params = [group_params(W[:, g * gs:(g + 1) * gs], diag[g * gs:(g + 1) * gs]) for g in range(n_groups)]

    perm = np.arange(columns)
    if act_order:
        perm = np.argsort(-np.diag(H), kind="stable")
        W = W[:, perm]
        H = H[perm][:, perm]
        diag = diag[perm]

    H[np.diag_indices(columns)] += damp * np.mean(np.diag(H))
    # the reference: H = cholesky(H); H = cholesky_inverse(H); Hinv = cholesky(H, upper=True)
    L = np.linalg.cholesky(H)
    Linv = np.linalg.inv(L)
    Hinv = np.linalg.cholesky(Linv.T @ Linv).T.astype(F32)  # upper U, U^T U = H^-1

    codes = np.zeros((rows, columns), np.int64)  # in processing order
    losses = np.zeros(rows, np.float64)
    for i1 in range(0, columns, block_size):
        i2 = min(i1 + block_size, columns)
        count = i2 - i1
        W1 = W[:, i1:i2].copy()
        Err1 = np.zeros((rows, count), F32)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(count):
            j = i1 + i
            if static_groups:
                p = params[perm[j] // gs]
            else:
                if j % gs == 0:
                    # the group's columns as they stand now: updated inside the block, and
                    # beyond it W less this block's pending update
                    end = j + gs
                    current = W1[:, i:i + gs]
                    if end > i2:
                        beyond = W[:, i2:end]
                        if i > 0:
                            beyond = beyond - Err1[:, :i] @ Hinv[i1:j, i2:end]
                        current = np.concatenate([current, beyond], axis=1)
                    params[j // gs] = group_params(current, diag[j:end])
                p = params[j // gs]
            w = W1[:, i]
            d = Hinv1[i, i]
            q_code, q = grid.encode(w, p)
            codes[:, j] = q_code
            err1 = ((w - q) / d).astype(F32)
            losses += err1.astype(np.float64) ** 2 / 2
            W1[:, i:] -= np.outer(err1, Hinv1[i, i:]).astype(F32)
            Err1[:, i] = err1
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]

    stored = [grid.stored(p) for p in params]
    scales = np.stack([s for s, _ in stored], axis=1)
    zeros = None if stored[0][1] is None else np.stack([z for _, z in stored], axis=1)
    if act_order and (static_groups or n_groups == 1):  # back to the original column order
        original = np.empty_like(codes)
        original[:, perm] = codes
        return original, scales, zeros, None, losses
    return codes, scales, zeros, (perm if act_order else None), losses
