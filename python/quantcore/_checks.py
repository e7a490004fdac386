"""Argument checks shared by the public functions: clear errors that name the argument."""

from __future__ import annotations

import numpy as np


def as_array(x: object, fn: str, arg: str) -> np.ndarray:
    """x as an ndarray (lists and scalars are converted); object arrays are refused."""
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"{fn}: {arg} must be an array of floats (got {type(x).__name__})")
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{fn}: {arg} must be an array of floats ({exc})") from None


def check_out(out: object, fn: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """`out` must be a writable ndarray of exactly this shape and dtype."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{fn}: out must be a numpy array (got {type(out).__name__})")
    if out.shape != tuple(shape):
        raise ValueError(f"{fn}: out must have shape {tuple(shape)} (got {out.shape})")
    if out.dtype != dtype:
        raise ValueError(f"{fn}: out must have dtype {np.dtype(dtype).name} (got {out.dtype.name})")
    if not out.flags.writeable:
        raise ValueError(f"{fn}: out must be writable (got a read-only array)")
    return out


def contiguous(a: np.ndarray) -> np.ndarray:
    """a itself if C-contiguous, else a C-ordered copy (0-d stays 0-d, unlike ascontiguousarray)."""
    return a if a.flags.c_contiguous else np.array(a, order="C")
