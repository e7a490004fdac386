"""Instruction-set selection and the thread pool size."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from quantcore import _core

_isa_lock = threading.RLock()  # the ISA is process-wide; nesting in one thread is fine


def available_isas() -> list[str]:
    """The instruction sets this CPU can run, reference first, e.g. ["scalar", "avx2", "avx512"]."""
    return list(_core.available_isas())


def active_isa() -> str:
    """The instruction set kernels use now (QUANTCORE_ISA, else the best available)."""
    try:
        return _core.active_isa()
    except ValueError as exc:  # a bad QUANTCORE_ISA surfaces here
        raise ValueError(f"QUANTCORE_ISA: {exc}") from None


def _check_isa(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"using_isa: name must be a str (got {type(name).__name__})")
    if name not in available_isas():
        raise ValueError(
            f"using_isa: name must be one of {available_isas()} on this CPU (got {name!r})"
        )
    return name


@contextlib.contextmanager
def using_isa(name: str) -> Iterator[str]:
    """Run the enclosed code with kernels of one instruction set, then restore the previous one.

    Args:
        name: one of available_isas().

    Raises:
        ValueError: this CPU (or build) cannot run `name`.

    Example:
        >>> with quantcore.using_isa("scalar"):
        ...     codes = quantcore.fp8.encode(x)
    """
    _check_isa(name)
    with _isa_lock:
        previous = active_isa()
        _core.force_isa(name)
        try:
            yield name
        finally:
            _core.force_isa(previous)


def get_num_threads() -> int:
    """Threads the kernels split work over (QUANTCORE_NUM_THREADS, else the usable CPUs)."""
    return _core.get_num_threads()


def set_num_threads(n: int) -> None:
    """Set the number of kernel threads (1 runs everything on the calling thread)."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads: n must be an int (got {type(n).__name__})")
    if not 1 <= n <= 1024:
        raise ValueError(f"set_num_threads: n must be in 1..1024 (got {n})")
    _core.set_num_threads(n)
