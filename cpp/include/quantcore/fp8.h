// FP8 formats and conversion kernels.
//
// Contract (follows the OCP 8-bit floating point spec and ml_dtypes' names):
//   e4m3fn: S.EEEE.MMM, bias 7, no infinities, NaN = S.1111.111 (0x7F / 0xFF).
//           Largest finite 448 = 1.75 * 2^8 (S.1111.110). Smallest subnormal 2^-9.
//   e5m2:   S.EEEEE.MM, bias 15, IEEE-style: inf = S.11111.00, NaN = S.11111.{01,10,11}.
//           Largest finite 57344 = 1.75 * 2^15 (S.11110.11). Smallest subnormal 2^-16.
// Encoding rounds to nearest, ties to even, directly from the source type (a float64 input
// is rounded once, never through float32). NaN encodes as sign | 0x7F (e4m3fn) or
// sign | 0x7E (e5m2), which is what ml_dtypes produces.
// Overflow (a finite value that rounds past the largest finite value, or an infinity):
//   Overflow::kNonFinite  ml_dtypes' astype: NaN for e4m3fn, +-inf for e5m2.
//   Overflow::kSaturate   clamp to +-largest finite, as hardware "satfinite" conversions do.
// Decoding is exact; a NaN code decodes to the canonical quiet NaN with the code's sign.
#pragma once

#include <cstddef>
#include <cstdint>

namespace quantcore {

enum class Fp8Format : int { kE4M3FN = 0, kE5M2 = 1 };
enum class Overflow : int { kNonFinite = 0, kSaturate = 1 };

// Format traits as data; the scalar converter is generic over them.
struct Fp8Traits {
  int exponent_bits;
  int mantissa_bits;
  int bias;
  bool has_inf;
  uint8_t max_finite;  // magnitude code of the largest finite value
  uint8_t nan;         // magnitude code written for NaN
  float max_value;
};

constexpr Fp8Traits kE4M3FNTraits{4, 3, 7, false, 0x7E, 0x7F, 448.0f};
constexpr Fp8Traits kE5M2Traits{5, 2, 15, true, 0x7B, 0x7E, 57344.0f};

constexpr const Fp8Traits& fp8_traits(Fp8Format fmt) {
  return fmt == Fp8Format::kE4M3FN ? kE4M3FNTraits : kE5M2Traits;
}

// One signature per kernel; every ISA namespace (scalar, avx2, avx512, neon) provides all.
// f16 and bf16 are passed as their raw uint16_t bits.
#define QUANTCORE_FP8_KERNELS(X)                                                             \
  X(void, encode_f32, (const float* src, uint8_t* dst, std::size_t n, Fp8Format fmt,        \
                       Overflow overflow))                                                   \
  X(void, encode_f64, (const double* src, uint8_t* dst, std::size_t n, Fp8Format fmt,       \
                       Overflow overflow))                                                   \
  X(void, encode_f16, (const uint16_t* src, uint8_t* dst, std::size_t n, Fp8Format fmt,     \
                       Overflow overflow))                                                   \
  X(void, encode_bf16, (const uint16_t* src, uint8_t* dst, std::size_t n, Fp8Format fmt,    \
                        Overflow overflow))                                                  \
  X(void, decode_f32, (const uint8_t* src, float* dst, std::size_t n, Fp8Format fmt))        \
  X(void, decode_f16, (const uint8_t* src, uint16_t* dst, std::size_t n, Fp8Format fmt))     \
  X(void, decode_bf16, (const uint8_t* src, uint16_t* dst, std::size_t n, Fp8Format fmt))    \
  /* Largest |x| as float bits (NaN > inf > finite when compared as integers). */            \
  X(uint32_t, amax_bits_f32, (const float* src, std::size_t n))                              \
  /* dst[i] = encode(src[i] / scale) with saturation; scale > 0 and finite. */               \
  X(void, encode_scaled_f32, (const float* src, uint8_t* dst, std::size_t n, float scale,   \
                              Fp8Format fmt))

#define QUANTCORE_DECLARE_KERNEL(ret, name, args) ret name args;
namespace scalar { QUANTCORE_FP8_KERNELS(QUANTCORE_DECLARE_KERNEL) }
namespace avx2 { QUANTCORE_FP8_KERNELS(QUANTCORE_DECLARE_KERNEL) }
namespace avx512 { QUANTCORE_FP8_KERNELS(QUANTCORE_DECLARE_KERNEL) }
namespace neon { QUANTCORE_FP8_KERNELS(QUANTCORE_DECLARE_KERNEL) }
#undef QUANTCORE_DECLARE_KERNEL

#define QUANTCORE_KERNEL_POINTER(ret, name, args) ret(*name) args;
struct Fp8Kernels {
  QUANTCORE_FP8_KERNELS(QUANTCORE_KERNEL_POINTER)
};
#undef QUANTCORE_KERNEL_POINTER

// The table for the ISA currently selected (see dispatch.h).
const Fp8Kernels& fp8_kernels();

// Scalar helpers shared by the SIMD files for their tails and by the scalar reference.
namespace scalar {
uint8_t encode_one_f32(float x, Fp8Format fmt, Overflow overflow);
float decode_one_f32(uint8_t code, Fp8Format fmt);
}  // namespace scalar

}  // namespace quantcore
