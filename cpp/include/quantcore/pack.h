// Dense bit packing of small unsigned codes, 1 to 8 bits each.
//
// Bit order: defined once, in python/quantcore/pack.py's docstring (the public contract). In
// short: code i occupies bits [i*b, (i+1)*b) of a little-endian, LSB-first bit stream; n codes
// take ceil(n*b/8) bytes, the unused high bits of the last byte are zero, and 8 codes fill
// exactly b bytes. A quantized matrix packs each row separately (rows start on a byte boundary).
#pragma once

#include <cstddef>
#include <cstdint>

namespace quantcore {

// Bytes taken by n codes of `bits` bits.
constexpr std::size_t packed_bytes(std::size_t n, int bits) {
  return (n * static_cast<std::size_t>(bits) + 7) / 8;
}

// One signature per kernel; every ISA namespace (scalar, avx2, avx512, neon) provides all.
// bits is in 1..8 (the caller checks).
#define QUANTCORE_PACK_KERNELS(X)                                                           \
  /* dst[0 .. packed_bytes(n, bits)) = the codes' bit stream. Returns false (dst then     \
     unspecified) if any code has a bit set at or above `bits`. */                         \
  X(bool, pack_bits, (const uint8_t* codes, std::size_t n, int bits, uint8_t* dst))         \
  /* codes[0 .. n) = the first n codes of the bit stream at src (packed_bytes(n, bits)). */ \
  X(void, unpack_bits, (const uint8_t* src, std::size_t n, int bits, uint8_t* codes))

#define QUANTCORE_DECLARE_KERNEL(ret, name, args) ret name args;
namespace scalar { QUANTCORE_PACK_KERNELS(QUANTCORE_DECLARE_KERNEL) }
namespace avx2 { QUANTCORE_PACK_KERNELS(QUANTCORE_DECLARE_KERNEL) }
namespace avx512 { QUANTCORE_PACK_KERNELS(QUANTCORE_DECLARE_KERNEL) }
namespace neon { QUANTCORE_PACK_KERNELS(QUANTCORE_DECLARE_KERNEL) }
#undef QUANTCORE_DECLARE_KERNEL

#define QUANTCORE_KERNEL_POINTER(ret, name, args) ret(*name) args;
struct PackKernels {
  QUANTCORE_PACK_KERNELS(QUANTCORE_KERNEL_POINTER)
};
#undef QUANTCORE_KERNEL_POINTER

// The table for the ISA currently selected (see dispatch.h).
const PackKernels& pack_kernels();

}  // namespace quantcore
