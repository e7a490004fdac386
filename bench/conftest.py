"""Benchmark helpers: baselines in the same group, and a ratio summary at the end of the run.

Each benchmark may set extra_info:
    bytes     bytes one call moves (reads + writes): the summary shows GB/s.
    elements  elements one call converts: the summary shows G elements/s.
    role      "copy" for the memory-bandwidth reference of its group, "baseline" for another
              library doing the same work; "ours" (the default) for quantcore.
    vs_numpy_alternating, numpy_alternating_ms, copy_share_alternating
              the medians over rounds of numpy's time / ours and of our GB/s / the copy's, each
              round a numpy call and a copy, then ours, and numpy's median in those rounds
              (bench_matmul's GEMV).
The summary gives, for each of ours, the speedup over every baseline of its group and the
share of the copy's bandwidth, all from medians of this one run.
"""

from __future__ import annotations

import concurrent.futures
import os
import sys
from pathlib import Path

import pytest

# Files whose numpy baseline alternates with our calls, round by round (bench_matmul's GEMV).
# OpenBLAS's idle threads spin after each call (for about 0.1 s by default, and longer here)
# and take a core from the quantcore call that follows: fp8 GEMV 2.8 ms right after numpy's,
# 1.6 ms with OPENBLAS_THREAD_TIMEOUT=4 (they sleep at once). OpenBLAS reads it once, when
# numpy loads, so it is set here, before any bench module imports numpy, and only when those
# files run alone: bench_model's float forward keeps OpenBLAS's default, as its users run it.
ALTERNATING = {"bench_matmul.py"}


def pytest_configure(config):
    files = {Path(str(a).split("::")[0]).name for a in config.args}
    if files and files <= ALTERNATING and "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")


def openblas_threads_sleep() -> bool:
    """True when numpy's OpenBLAS was loaded with OPENBLAS_THREAD_TIMEOUT set (see above)."""
    return "OPENBLAS_THREAD_TIMEOUT" in os.environ


def parallel_copy(dst, src, pool: concurrent.futures.ThreadPoolExecutor, n: int) -> None:
    """np.copyto split over n threads (numpy releases the GIL for large copies)."""
    import numpy as np

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
                if "copy_share_alternating" in b.extra_info:
                    parts.append(f"{100 * b.extra_info['copy_share_alternating']:5.0f}% of copy (alternating)")
                if "vs_numpy_alternating" in b.extra_info:
                    parts.append(f"{b.extra_info['vs_numpy_alternating']:7.1f}x numpy (alternating: numpy "
                                 f"{b.extra_info['numpy_alternating_ms']:.2f} ms)")
                if copy_gbs and "bytes" in b.extra_info:
                    parts.append(f"{100 * b.extra_info['bytes'] / median / 1e9 / copy_gbs:5.0f}% of best copy")
            tr.write_line("  ".join(parts))
