import os
import subprocess
import sys

import numpy as np
import pytest

import quantcore


def test_available_isas_starts_with_scalar():
    isas = quantcore.available_isas()
    assert isas[0] == "scalar"
    assert set(isas) <= {"scalar", "avx2", "avx512", "neon"}
    assert quantcore.active_isa() in isas


@pytest.mark.parametrize("isa", quantcore.available_isas())
def test_using_isa_switches_and_restores(isa):
    before = quantcore.active_isa()
    with quantcore.using_isa(isa) as name:
        assert name == isa
        assert quantcore.active_isa() == isa
    assert quantcore.active_isa() == before


def test_using_isa_restores_after_exception():
    before = quantcore.active_isa()
    with pytest.raises(RuntimeError):
        with quantcore.using_isa("scalar"):
            raise RuntimeError("boom")
    assert quantcore.active_isa() == before


def test_using_isa_rejects_unknown_and_unsupported():
    with pytest.raises(ValueError, match="using_isa: name must be one of"):
        with quantcore.using_isa("sse9"):
            pass
    foreign = "neon" if "avx2" in quantcore.available_isas() else "avx2"
    with pytest.raises(ValueError, match=foreign):
        with quantcore.using_isa(foreign):
            pass
    with pytest.raises(TypeError, match="name must be a str"):
        with quantcore.using_isa(3):
            pass


def _run_python(code, **env):
    full_env = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=60)


def test_environment_variables_select_isa_and_threads():
    r = _run_python("import quantcore; print(quantcore.active_isa(), quantcore.get_num_threads())",
                    QUANTCORE_ISA="scalar", QUANTCORE_NUM_THREADS="3")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["scalar", "3"]


def test_bad_isa_environment_variable_is_a_clear_error():
    r = _run_python("import quantcore; quantcore.active_isa()", QUANTCORE_ISA="mmx")
    assert r.returncode != 0
    assert "QUANTCORE_ISA" in r.stderr and "mmx" in r.stderr


def test_set_num_threads_round_trip_and_results_do_not_depend_on_it():
    x = np.random.default_rng(0).standard_normal(1 << 20).astype(np.float32)
    old = quantcore.get_num_threads()
    try:
        quantcore.set_num_threads(1)
        assert quantcore.get_num_threads() == 1
        one = quantcore.fp8.encode(x)
        quantcore.set_num_threads(3)
        assert quantcore.get_num_threads() == 3
        three = quantcore.fp8.encode(x)
    finally:
        quantcore.set_num_threads(old)
    np.testing.assert_array_equal(one.view(np.uint8), three.view(np.uint8))


@pytest.mark.parametrize("bad, exc", [(0, ValueError), (-2, ValueError), (2000, ValueError), (1.5, TypeError), (True, TypeError)])
def test_set_num_threads_rejects_bad_values(bad, exc):
    with pytest.raises(exc, match="set_num_threads: n"):
        quantcore.set_num_threads(bad)


def test_kernels_release_the_gil():
    # Two Python threads encoding large arrays must overlap; if the GIL were held the
    # total would be the sum of both. Checked by a thread observing progress mid-kernel.
    import threading
    import time

    x = np.random.default_rng(1).standard_normal(1 << 24).astype(np.float32)
    ticks = []
    done = threading.Event()

    def ticker():
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    t = threading.Thread(target=ticker)
    t.start()
    start = time.perf_counter()
    with quantcore.using_isa("scalar"):  # slow enough (~50 ms a call) to observe
        for _ in range(3):
            quantcore.fp8.encode(x)
    end = time.perf_counter()
    done.set()
    t.join()
    inside = [s for s in ticks if start < s < end]
    # Holding the GIL, the ticker could run only between the 3 calls.
    assert len(inside) > 20
