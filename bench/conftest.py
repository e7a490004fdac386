"""Benchmark helpers: baselines in the same group, and a ratio summary at the end of the run.

Each benchmark may set extra_info:
    bytes     bytes one call moves (reads + writes): the summary shows GB/s.
    elements  elements one call converts: the summary shows G elements/s.
    role      "copy" for the memory-bandwidth reference of its group, "baseline" for another
              library doing the same work; "ours" (the default) for quantcore.
    vs_numpy_alternating, numpy_alternating_ms
              the median over rounds of numpy's time / ours, each round a numpy call then ours,
              and numpy's median in those rounds (bench_matmul's GEMV).
The summary gives, for each of ours, the speedup over every baseline of its group and the
share of the copy's bandwidth, all from medians of this one run.
"""

from __future__ import annotations

import concurrent.futures
import os
import sys

# OpenBLAS reads this once, when numpy loads it: its threads then sleep 2^4 cycles after a call
# instead of spinning for up to 2^28 (its default), which took a core from whatever ran next.
if "numpy" in sys.modules:
    raise RuntimeError("bench/conftest.py must run before numpy is imported (OPENBLAS_THREAD_TIMEOUT)")
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def parallel_copy(dst: np.ndarray, src: np.ndarray, pool: concurrent.futures.ThreadPoolExecutor, n: int) -> None:
    """np.copyto split over n threads (numpy releases the GIL for large copies)."""
    d, s = dst.reshape(-1), src.reshape(-1)
    bounds = np.linspace(0, d.size, n + 1).astype(int)
    list(pool.map(lambda i: np.copyto(d[bounds[i]:bounds[i + 1]], s[bounds[i]:bounds[i + 1]]), range(n)))


@pytest.fixture(scope="session")
def copy_pool():
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        yield pool


def pytest_terminal_summary(terminalreporter):
    session = getattr(terminalreporter.config, "_benchmarksession", None)
    if session is None or not session.benchmarks:
        return
    groups: dict[str, list] = {}
    for b in session.benchmarks:
        groups.setdefault(b.group or "", []).append(b)
    tr = terminalreporter
    tr.write_sep("=", "quantcore ratios (medians of this run)")
    for group, benches in groups.items():
        tr.write_line(f"[{group}]")
        copies = [b for b in benches if b.extra_info.get("role") == "copy"]
        copy_gbs = max((b.extra_info["bytes"] / b.stats.median / 1e9 for b in copies), default=None)
        baselines = [b for b in benches if b.extra_info.get("role") == "baseline"]
        for b in benches:
            median = b.stats.median
            parts = [f"  {b.name:<58} {median * 1e3:9.3f} ms"]
            if "elements" in b.extra_info:
                parts.append(f"{b.extra_info['elements'] / median / 1e9:7.3f} G el/s")
            if "bytes" in b.extra_info:
                parts.append(f"{b.extra_info['bytes'] / median / 1e9:6.1f} GB/s")
            role = b.extra_info.get("role", "ours")
            if role == "ours":
                for base in baselines:
                    parts.append(f"{base.stats.median / median:7.1f}x {base.name.split('[')[0].removeprefix('test_')}")
                if "vs_numpy_alternating" in b.extra_info:
                    parts.append(f"{b.extra_info['vs_numpy_alternating']:7.1f}x numpy (alternating: numpy "
                                 f"{b.extra_info['numpy_alternating_ms']:.2f} ms)")
                if copy_gbs and "bytes" in b.extra_info:
                    parts.append(f"{100 * b.extra_info['bytes'] / median / 1e9 / copy_gbs:5.0f}% of best copy")
            tr.write_line("  ".join(parts))
