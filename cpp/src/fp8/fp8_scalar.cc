// Scalar reference for FP8 conversion: one element at a time, one generic converter driven by
// the source format's bit layout and the destination's Fp8Traits. The SIMD variants must
// produce the same bytes; they call the per-element helpers here for their tails.
#include <cstring>

#include "quantcore/float_bits.h"
#include "quantcore/fp8.h"

namespace quantcore {
namespace {

// Bit layout of an IEEE-754 binary source format.
struct SourceLayout {
  int exponent_bits;
  int mantissa_bits;
};
constexpr SourceLayout kF64{11, 52};
constexpr SourceLayout kF32{8, 23};
constexpr SourceLayout kF16{5, 10};
constexpr SourceLayout kBF16{8, 7};

// Rounds the source value held in `bits` to the FP8 format `d`, nearest-even, in one step.
uint8_t encode_bits(uint64_t bits, SourceLayout s, const Fp8Traits& d, Overflow overflow) {
  const int total = 1 + s.exponent_bits + s.mantissa_bits;
  const uint8_t sign = static_cast<uint8_t>(((bits >> (total - 1)) & 1u) << 7);
  const uint64_t mantissa_mask = (uint64_t{1} << s.mantissa_bits) - 1;
  const uint64_t exponent_max = (uint64_t{1} << s.exponent_bits) - 1;
  const uint64_t exponent = (bits >> s.mantissa_bits) & exponent_max;
  uint64_t mantissa = bits & mantissa_mask;
  const uint8_t overflow_code = overflow == Overflow::kSaturate ? d.max_finite
                                : d.has_inf ? static_cast<uint8_t>(d.max_finite + 1)
                                            : d.nan;

  if (exponent == exponent_max) {
    if (mantissa != 0) return sign | d.nan;
    return sign | overflow_code;  // +-inf
  }
  if (exponent == 0 && mantissa == 0) return sign;

  // value = m * 2^(e - mantissa_bits) with m holding the implicit bit for normals.
  const int source_bias = (1 << (s.exponent_bits - 1)) - 1;
  int e;
  if (exponent == 0) {
    e = 1 - source_bias;  // subnormal: no implicit bit
  } else {
    e = static_cast<int>(exponent) - source_bias;
    mantissa |= uint64_t{1} << s.mantissa_bits;
  }
  // Normalize subnormal sources so the leading one sits at bit mantissa_bits.
  while ((mantissa >> s.mantissa_bits) == 0) {
    mantissa <<= 1;
    --e;
  }
  // Destination biased exponent; below 1 the result is subnormal and loses extra bits.
  const int biased = e + d.bias;
  int shift = s.mantissa_bits - d.mantissa_bits;
  if (biased < 1) shift += 1 - biased;
  uint64_t rounded;
  if (shift >= 64) {
    rounded = 0;
  } else {
    const uint64_t half = uint64_t{1} << (shift - 1);
    const uint64_t rest = mantissa & ((uint64_t{1} << shift) - 1);
    rounded = mantissa >> shift;
    if (rest > half || (rest == half && (rounded & 1))) ++rounded;
  }
  // Assemble: for normals, (biased - 1) << mantissa_bits plus the rounded significand (whose
  // implicit bit adds the last exponent step); a carry out of the mantissa bumps the exponent.
  uint64_t code = biased < 1 ? rounded
                             : (static_cast<uint64_t>(biased - 1) << d.mantissa_bits) + rounded;
  if (code > d.max_finite) return sign | overflow_code;
  return sign | static_cast<uint8_t>(code);
}

template <class T>
uint64_t raw_bits(T x) {
  if constexpr (sizeof(T) == 8) {
    uint64_t b;
    std::memcpy(&b, &x, 8);
    return b;
  } else if constexpr (sizeof(T) == 4) {
    return float_bits(x);
  } else {
    return x;  // uint16_t already holds bits
  }
}

constexpr uint32_t kCanonicalNaN = 0x7FC00000u;

}  // namespace

namespace scalar {

uint8_t encode_one_f32(float x, Fp8Format fmt, Overflow overflow) {
  return encode_bits(float_bits(x), kF32, fp8_traits(fmt), overflow);
}

float decode_one_f32(uint8_t code, Fp8Format fmt) {
  const Fp8Traits& t = fp8_traits(fmt);
  const uint32_t sign = static_cast<uint32_t>(code & 0x80) << 24;
  const uint32_t magnitude = code & 0x7F;
  const uint32_t exponent = magnitude >> t.mantissa_bits;
  const uint32_t mantissa = magnitude & ((1u << t.mantissa_bits) - 1);
  const uint32_t exponent_max = (1u << t.exponent_bits) - 1;
  if (t.has_inf && exponent == exponent_max)
    return bits_float(sign | (mantissa == 0 ? 0x7F800000u : kCanonicalNaN));
  if (!t.has_inf && magnitude == t.nan) return bits_float(sign | kCanonicalNaN);
  if (exponent == 0) {
    // subnormal: mantissa * 2^(1 - bias - mantissa_bits), exact in float32
    float v = static_cast<float>(mantissa) *
              bits_float(static_cast<uint32_t>(127 + 1 - t.bias - t.mantissa_bits) << 23);
    return bits_float(sign | float_bits(v));
  }
  return bits_float(sign | ((exponent + 127 - t.bias) << 23) | (mantissa << (23 - t.mantissa_bits)));
}

void encode_f32(const float* src, uint8_t* dst, std::size_t n, Fp8Format fmt, Overflow overflow) {
  for (std::size_t i = 0; i < n; ++i) dst[i] = encode_bits(raw_bits(src[i]), kF32, fp8_traits(fmt), overflow);
}

void encode_f64(const double* src, uint8_t* dst, std::size_t n, Fp8Format fmt, Overflow overflow) {
  for (std::size_t i = 0; i < n; ++i) dst[i] = encode_bits(raw_bits(src[i]), kF64, fp8_traits(fmt), overflow);
}

void encode_f16(const uint16_t* src, uint8_t* dst, std::size_t n, Fp8Format fmt, Overflow overflow) {
  for (std::size_t i = 0; i < n; ++i) dst[i] = encode_bits(src[i], kF16, fp8_traits(fmt), overflow);
}

void encode_bf16(const uint16_t* src, uint8_t* dst, std::size_t n, Fp8Format fmt, Overflow overflow) {
  for (std::size_t i = 0; i < n; ++i) dst[i] = encode_bits(src[i], kBF16, fp8_traits(fmt), overflow);
}

void decode_f32(const uint8_t* src, float* dst, std::size_t n, Fp8Format fmt) {
  for (std::size_t i = 0; i < n; ++i) dst[i] = decode_one_f32(src[i], fmt);
}

// float32 -> float16 bits for values that are exactly representable in float16 (every FP8
// value is), and NaN -> the canonical float16 quiet NaN with its sign.
static uint16_t exact_f32_to_f16_bits(float x) {
  const uint32_t b = float_bits(x);
  const uint16_t sign = static_cast<uint16_t>((b >> 16) & 0x8000);
  const uint32_t abs = b & 0x7FFFFFFFu;
  if (abs > 0x7F800000u) return sign | 0x7E00;
  if (abs == 0x7F800000u) return sign | 0x7C00;
  if (abs == 0) return sign;
  const int e = static_cast<int>(abs >> 23) - 127;
  if (e >= -14) return sign | static_cast<uint16_t>(((e + 15) << 10) | ((abs & 0x7FFFFF) >> 13));
  // float16 subnormal: value / 2^-24 is an integer for every FP8 input
  return sign | static_cast<uint16_t>(bits_float(abs) * 16777216.0f);
}

void decode_f16(const uint8_t* src, uint16_t* dst, std::size_t n, Fp8Format fmt) {
  for (std::size_t i = 0; i < n; ++i) dst[i] = exact_f32_to_f16_bits(decode_one_f32(src[i], fmt));
}

void decode_bf16(const uint8_t* src, uint16_t* dst, std::size_t n, Fp8Format fmt) {
  // Every FP8 value has at most 3 mantissa bits, so dropping float32's low 16 bits is exact.
  for (std::size_t i = 0; i < n; ++i)
    dst[i] = static_cast<uint16_t>(float_bits(decode_one_f32(src[i], fmt)) >> 16);
}

uint32_t amax_bits_f32(const float* src, std::size_t n) {
  uint32_t m = 0;
  for (std::size_t i = 0; i < n; ++i) {
    uint32_t a = float_bits(src[i]) & 0x7FFFFFFFu;
    m = a > m ? a : m;
  }
  return m;
}

void encode_scaled_f32(const float* src, uint8_t* dst, std::size_t n, float scale, Fp8Format fmt) {
  for (std::size_t i = 0; i < n; ++i) dst[i] = encode_one_f32(src[i] / scale, fmt, Overflow::kSaturate);
}

}  // namespace scalar

}  // namespace quantcore
