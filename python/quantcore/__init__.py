"""quantcore: quantization of LLM weights with a C++ SIMD core.

Modules:
    quantcore.fp8      FP8 e4m3fn / e5m2 encode, decode and scaled quantization.
    quantcore.formats  Bit-level view of a value in each number format.

Run-time controls:
    available_isas(), using_isa(name), set_num_threads(n), get_num_threads().
"""

from quantcore._runtime import (
    active_isa,
    available_isas,
    get_num_threads,
    set_num_threads,
    using_isa,
)
from quantcore import fp8, formats, gguf

__all__ = [
    "active_isa",
    "available_isas",
    "fp8",
    "formats",
    "get_num_threads",
    "gguf",
    "set_num_threads",
    "using_isa",
]
__version__ = "0.1.0"
