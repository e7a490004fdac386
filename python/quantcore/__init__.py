"""quantcore: quantization of LLM weights with a C++ SIMD core.

Modules:
    quantcore.fp8      FP8 e4m3fn / e5m2 encode, decode and scaled quantization.
    quantcore.formats  Bit-level view of a value in each number format.
    quantcore.quantize Group-wise int8/int4/int3/int2, NF4 and scaled FP8 quantization.
    quantcore.pack     Dense bit packing of 1..8-bit codes.
    quantcore.awq      AWQ: activation-aware scale and clip search, apply and fold.
    quantcore.gptq     GPTQ: Hessian accumulation and error-feedback quantization of a layer.
    quantcore.matmul   (the function) x @ W.T straight from a QuantizedTensor's packed codes.

Functions: quantize(w, scheme, ...) -> QuantizedTensor, load(path), pack_bits, unpack_bits.

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
from quantcore import awq, fp8, formats, gguf, gptq, metrics
from quantcore.pack import pack_bits, unpack_bits
from quantcore.quantize import QuantizedTensor, load, quantize
from quantcore.matmul import matmul

__all__ = [
    "QuantizedTensor",
    "active_isa",
    "available_isas",
    "awq",
    "formats",
    "fp8",
    "get_num_threads",
    "gguf",
    "gptq",
    "load",
    "matmul",
    "metrics",
    "pack_bits",
    "quantize",
    "set_num_threads",
    "unpack_bits",
    "using_isa",
]
__version__ = "0.1.0"
