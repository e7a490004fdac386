"""SwiGLU's activation kernel (quantcore/act.h) against float64, on every ISA."""
import numpy as np
import pytest

import quantcore
from quantcore.models.llama import silu

ISAS = quantcore.available_isas()
EPS32 = float(np.finfo(np.float32).eps)
# Below x = -87 sigmoid(x) is subnormal: its absolute rounding error (up to 2^-149 per step,
# here two steps) comes out multiplied by |x|
TINY = 2.0**-148


def reference(x, up=None):
    x64 = x.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        y = x64 / (1.0 + np.exp(-x64))
    return y if up is None else y * up.astype(np.float64)


def assert_silu_close(y, ref, x, ulps=4):
    assert y.dtype == np.float32
    finite = np.isfinite(ref)
    err = np.abs(y[finite].astype(np.float64) - ref[finite])
    tol = ulps * EPS32 * np.abs(ref[finite]) + TINY * np.maximum(1.0, np.abs(x[finite].astype(np.float64)))
    bad = np.argmax(err - tol)
    assert np.all(err <= tol), f"at x index {bad}: got {y[finite][bad]!r}, expected {ref[finite][bad]!r}"


@pytest.mark.parametrize("isa", ISAS)
def test_float32_bit_patterns(isa):
    """Every 256th float32 bit pattern (2^24 values: every exponent, both signs, subnormals)."""
    bits = np.arange(0, 2**32, 256, dtype=np.uint64).astype(np.uint32) + np.uint32(77)
    x = bits.view(np.float32)
    x = x[np.isfinite(x)]
    with quantcore.using_isa(isa):
        y = silu(x)
    assert_silu_close(y, reference(x), x)


@pytest.mark.parametrize("isa", ISAS)
def test_special_values_and_tails(isa):
    special = np.array([0.0, -0.0, 1e-45, -1e-45, 1e-38, -1e-38, 1.0, -1.0, 15.9, -15.9, 87.0, -87.0, 88.7,
                        -88.7, 103.0, -103.0, 104.5, -104.5, 200.0, -200.0, 3e38, -3e38], np.float32)
    with quantcore.using_isa(isa):
        for n in range(1, len(special) + 1):  # every tail length of the 16- and 8-wide loops
            y = silu(special[:n])
            assert_silu_close(y, reference(special[:n]), special[:n])
            assert np.array_equal(np.signbit(y[special[:n] == 0]), np.signbit(special[:n][special[:n] == 0]))
        y = silu(np.array([np.inf, -np.inf, np.nan, 2.0], np.float32))
    assert y[0] == np.inf and np.isnan(y[1]) and np.isnan(y[2])
    assert_silu_close(y[3:], reference(np.float32([2.0])), np.float32([2.0]))
    # x * sigmoid(x) in float arithmetic: -inf * 0 is NaN, as numpy's x / (1 + exp(-x)) gives


@pytest.mark.parametrize("isa", ISAS)
def test_times_up_any_shape(isa):
    rng = np.random.default_rng(0)
    gate = (rng.standard_normal((37, 61)) * 8).astype(np.float32)
    up = rng.standard_normal((37, 61)).astype(np.float32)
    with quantcore.using_isa(isa):
        y = silu(gate, up)
        big = silu(np.tile(gate, (40, 20)), np.tile(up, (40, 20)))  # 1.8 M values: split over the threads
    assert y.shape == gate.shape
    assert_silu_close(y, reference(gate, up), gate * up, ulps=5)
    np.testing.assert_array_equal(big, np.tile(y, (40, 20)))


def test_non_contiguous_and_errors():
    x = np.linspace(-20, 20, 200, dtype=np.float32).reshape(20, 10)
    np.testing.assert_array_equal(silu(x.T), silu(np.ascontiguousarray(x.T)))
    np.testing.assert_array_equal(silu(x.astype(np.float64)), silu(x))
    with pytest.raises(ValueError, match="up must have x's shape"):
        silu(x, x[:, :5])
