// Compile-time constants the SIMD FP8 kernels derive from Fp8Traits (shared by every ISA).
#pragma once

#include <cstdint>
#include <cstring>

#include "quantcore/fp8.h"

namespace quantcore {

constexpr float pow2(int e) {
  float r = 1.0f;
  for (; e < 0; ++e) r *= 0.5f;
  for (; e > 0; --e) r *= 2.0f;
  return r;
}

template <Fp8Format F>
struct Fp8Constants {
  static constexpr const Fp8Traits& T = fp8_traits(F);
  static constexpr int kMantissaBits = T.mantissa_bits;
  static constexpr int kShift = 23 - kMantissaBits;            // float32 -> FP8 mantissa shift
  static constexpr int kRoundBias = (1 << (kShift - 1)) - 1;   // + lsb gives nearest-even
  static constexpr int kRebias = (127 - T.bias) << kMantissaBits;
  // Smallest normal 2^(1 - bias), as float32 bits.
  static constexpr uint32_t kMinNormalBits = static_cast<uint32_t>(127 + 1 - T.bias) << 23;
  // 2^(1 - bias - M + 23): a float32 whose ulp is the FP8 subnormal step 2^(1 - bias - M).
  static constexpr uint32_t kMagicBits = static_cast<uint32_t>(127 + 1 - T.bias - kMantissaBits + 23) << 23;
  // Largest float32 bits that still round to the largest finite FP8 value: the halfway point
  // to the next step rounds down only when the largest finite mantissa is even.
  static constexpr uint32_t kMaxFiniteBits =
      (static_cast<uint32_t>((T.max_finite >> kMantissaBits) + 127 - T.bias) << 23) |
      (static_cast<uint32_t>(T.max_finite & ((1 << kMantissaBits) - 1)) << kShift);
  static constexpr uint32_t kHalfwayBits = kMaxFiniteBits + (1u << (kShift - 1));
  static constexpr uint32_t kOverflowAbove = (T.max_finite & 1) ? kHalfwayBits - 1 : kHalfwayBits;
  static constexpr int kMaxFinite = T.max_finite;
  static constexpr int kNonFiniteOverflow = T.has_inf ? T.max_finite + 1 : T.nan;
  static constexpr int kNaN = T.nan;
  static constexpr bool kHasInf = T.has_inf;
  static constexpr int kInf = T.max_finite + 1;  // only meaningful when kHasInf
  // First magnitude code that is not a finite number (inf or NaN).
  static constexpr int kFirstSpecial = T.has_inf ? T.max_finite + 1 : T.nan;
  static constexpr float kSubnormalStep = pow2(1 - T.bias - kMantissaBits);
};

}  // namespace quantcore
