import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest

from quantcore import cli, formats


def by_format(rows):
    return {r.format.split(" ")[0]: r for r in rows}


def test_describe_stored_values_match_numpy_and_ml_dtypes():
    for value in [0.1, 3.14159, -0.00073, 42.5, 1.2e-6, 1e6]:
        rows = by_format(formats.describe(value))
        assert rows["fp32"].stored == float(np.float32(value))
        with np.errstate(over="ignore"):  # 1e6 overflows float16 to inf
            assert rows["fp16"].stored == float(np.float16(value))
        assert rows["bf16"].stored == float(ml_dtypes.bfloat16(value))
        assert rows["e4m3fn"].stored == float(ml_dtypes.float8_e4m3fn(value)) or np.isnan(rows["e4m3fn"].stored)
        assert rows["e5m2"].stored == float(ml_dtypes.float8_e5m2(value))
        for r in rows.values():
            if np.isfinite(r.stored):
                assert r.abs_error == pytest.approx(abs(r.stored - value), abs=0)


def test_describe_bit_fields():
    rows = by_format(formats.describe(0.1))
    assert rows["fp32"].bits == "0.01111011.10011001100110011001101"  # 0x3DCCCCCD
    assert rows["e4m3fn"].bits == "0.0011.101"  # 0.1015625 = 1.625 * 2^-4
    assert rows["e5m2"].bits == "0.01011.10"  # 0.09375 = 1.5 * 2^-4
    neg = by_format(formats.describe(-2.0))
    assert neg["bf16"].bits == "1.10000000.0000000"


def test_describe_notes_overflow_underflow_and_subnormals():
    rows = by_format(formats.describe(500.0))
    assert rows["e4m3fn"].note == "overflow -> NaN" and np.isnan(rows["e4m3fn"].stored)
    assert rows["e4m3fn"].abs_error == float("inf")
    assert by_format(formats.describe(1e5))["e5m2"].note == "overflow -> inf"
    assert by_format(formats.describe(1e-9))["e4m3fn"].note == "underflow -> 0"
    assert by_format(formats.describe(2.0**-8))["e4m3fn"].note == "subnormal"


def test_describe_integer_rows_with_scale():
    rows = by_format(formats.describe(0.37, scale=0.05))
    assert rows["int8"].stored == pytest.approx(7 * 0.05)
    assert rows["int8"].bits == "00000111"
    assert rows["int4"].stored == pytest.approx(7 * 0.05)  # 0.37 / 0.05 = 7.4 -> 7 <= qmax 7
    big = by_format(formats.describe(-1.0, scale=0.05))
    assert big["int4"].stored == pytest.approx(-7 * 0.05) and big["int4"].note == "clamped"
    assert big["int4"].bits == "1001"  # -7 in 4-bit two's complement


def test_describe_errors():
    with pytest.raises(TypeError, match="describe: value must be a real number"):
        formats.describe("0.1")
    with pytest.raises(ValueError, match="describe: scale must be positive and finite"):
        formats.describe(0.1, scale=0.0)


def test_cli_formats_prints_a_table(capsys):
    assert cli.main(["formats", "0.1", "3.14159", "-0.00073", "42.5", "1.2e-6"]) == 0
    out = capsys.readouterr().out
    for name in ("fp32", "fp16", "bf16", "e4m3fn", "e5m2"):
        assert out.count(name) == 5
    assert "0.1015625" in out and "0.0011.101" in out


def test_cli_entry_point_runs():
    r = subprocess.run([sys.executable, "-m", "quantcore.cli", "formats", "448", "--scale", "4"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "int8" in r.stdout and "int4" in r.stdout


def test_cli_bad_input_is_a_clear_error():
    r = subprocess.run([sys.executable, "-m", "quantcore.cli", "formats", "1.0", "--scale", "-1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "scale must be positive" in r.stderr
