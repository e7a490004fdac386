"""The bit-level view of a value in each number format: what is stored, and what is lost.

describe(0.1) gives, for fp32, fp16, bf16, e4m3fn and e5m2 (and int8/int4 when a scale is
given), the value actually stored, its absolute error, and the sign / exponent / mantissa bits.
"""

from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np

from quantcore import fp8

# name -> (numpy dtype, exponent bits, mantissa bits)
FLOAT_FORMATS = {
    "fp32": (np.dtype(np.float32), 8, 23),
    "fp16": (np.dtype(np.float16), 5, 10),
    "bf16": (np.dtype(ml_dtypes.bfloat16), 8, 7),
    "e4m3fn": (np.dtype(ml_dtypes.float8_e4m3fn), 4, 3),
    "e5m2": (np.dtype(ml_dtypes.float8_e5m2), 5, 2),
}
INT_FORMATS = {"int8": 8, "int4": 4}


@dataclass(frozen=True)
class Representation:
    """One format's view of a value.

    format: format name; stored: the value the format holds (float, nan or +-inf);
    abs_error: |stored - value| (inf when the format overflows); bits: the stored bits as a
    string with fields split by '.', e.g. '0.01111011.10011001100110011001101' (sign, exponent,
    mantissa) or '00001101' for an integer code; note: overflow, saturation or underflow notes.
    """

    format: str
    stored: float
    abs_error: float
    bits: str
    note: str = ""


def _float_view(value: float, name: str) -> Representation:
    dtype, e_bits, m_bits = FLOAT_FORMATS[name]
    if name in fp8.FORMATS:
        stored_arr = fp8.encode(np.array([value], np.float64), name)
    else:
        # the scalar constructors round the double once (bfloat16's array astype goes via float32)
        with np.errstate(over="ignore"):
            stored_arr = np.array([dtype.type(value)], dtype)
    width = 1 + e_bits + m_bits
    raw = int(stored_arr.view(np.dtype(f"u{width // 8}"))[0])
    b = format(raw, f"0{width}b")
    bits = f"{b[0]}.{b[1:1 + e_bits]}.{b[1 + e_bits:]}"
    stored = float(stored_arr.astype(np.float64)[0])
    note = ""
    if np.isnan(stored) and not np.isnan(value):
        note = "overflow -> NaN"
    elif np.isinf(stored) and np.isfinite(value):
        note = "overflow -> inf"
    elif stored == 0 and value != 0:
        note = "underflow -> 0"
    elif stored != 0 and raw & ((1 << (width - 1)) - 1) < (1 << m_bits):
        note = "subnormal"
    err = abs(stored - value) if np.isfinite(stored) else float("inf")
    return Representation(name, stored, err, bits, note)


def _int_view(value: float, name: str, scale: float) -> Representation:
    n_bits = INT_FORMATS[name]
    qmax = 2 ** (n_bits - 1) - 1
    q_unclamped = int(np.rint(value / scale))  # symmetric: codes -qmax..qmax
    q = max(-qmax, min(qmax, q_unclamped))
    stored = q * scale
    note = "clamped" if q != q_unclamped else ""
    return Representation(f"{name} (scale {scale:g})", stored, abs(stored - value),
                          format(q & ((1 << n_bits) - 1), f"0{n_bits}b"), note)


def describe(value: float, *, scale: float | None = None) -> list[Representation]:
    """How `value` is stored in fp32, fp16, bf16, e4m3fn, e5m2 (and int8/int4 with `scale`).

    Args:
        value: a real number (Python float or numpy scalar).
        scale: for int8/int4, the step of the symmetric grid (value ~= q * scale).

    Returns:
        A list of Representation, one per format.

    Raises:
        TypeError: value is not a real number.
        ValueError: scale is not positive and finite.

    Example:
        >>> [r.stored for r in describe(0.1)][3]   # e4m3fn
        0.1015625
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"describe: value must be a real number (got {type(value).__name__})")
    value = float(value)
    rows = [_float_view(value, name) for name in FLOAT_FORMATS]
    if scale is not None:
        if isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating)):
            raise TypeError(f"describe: scale must be a real number (got {type(scale).__name__})")
        if not (np.isfinite(scale) and scale > 0):
            raise ValueError(f"describe: scale must be positive and finite (got {scale})")
        if not np.isfinite(value):
            raise ValueError(f"describe: an integer grid cannot hold {value}")
        rows += [_int_view(value, name, float(scale)) for name in INT_FORMATS]
    return rows


def format_table(value: float, rows: list[Representation]) -> str:
    """A plain-text table of describe()'s rows for one value."""
    header = f"value {value!r}"
    lines = [header, f"  {'format':<22}{'stored':>16}{'abs error':>13}  bits (sign.exponent.mantissa)"]
    for r in rows:
        err = "inf" if np.isinf(r.abs_error) else f"{r.abs_error:.3g}"
        note = f"  [{r.note}]" if r.note else ""
        lines.append(f"  {r.format:<22}{r.stored:>16.9g}{err:>13}  {r.bits}{note}")
    return "\n".join(lines)
