// NEON (AArch64 Advanced SIMD) FP8 kernels: 4 lanes of the scalar reference's arithmetic on
// float32 bit patterns, 16 elements per step; tails go to the scalar reference.
#include <arm_neon.h>

#include <type_traits>

#include "fp8_simd_constants.h"
#include "quantcore/fp8.h"

namespace quantcore::neon {
namespace {

inline uint32x4_t set1(uint32_t v) { return vdupq_n_u32(v); }

template <Fp8Format F>
inline uint32x4_t encode4(float32x4_t x, Overflow overflow) {
  using C = Fp8Constants<F>;
  const uint32x4_t bits = vreinterpretq_u32_f32(x);
  const uint32x4_t abs = vandq_u32(bits, set1(0x7FFFFFFF));
  const uint32x4_t sign = vandq_u32(vshrq_n_u32(bits, 24), set1(0x80));
  const uint32x4_t lsb = vandq_u32(vshrq_n_u32(abs, C::kShift), set1(1));
  const uint32x4_t rounded = vaddq_u32(vaddq_u32(abs, set1(C::kRoundBias)), lsb);
  const uint32x4_t normal = vsubq_u32(vshrq_n_u32(rounded, C::kShift), set1(C::kRebias));
  // Subnormal results: the FPU rounds abs + 2^k (ulp = FP8 subnormal step) to nearest-even.
  const float32x4_t magic = vreinterpretq_f32_u32(set1(C::kMagicBits));
  const uint32x4_t sub =
      vsubq_u32(vreinterpretq_u32_f32(vaddq_f32(vreinterpretq_f32_u32(abs), magic)), set1(C::kMagicBits));
  uint32x4_t code = vbslq_u32(vcltq_u32(abs, set1(C::kMinNormalBits)), sub, normal);
  const uint32_t over_code = overflow == Overflow::kSaturate ? C::kMaxFinite : C::kNonFiniteOverflow;
  code = vbslq_u32(vcgtq_u32(abs, set1(C::kOverflowAbove)), set1(over_code), code);
  code = vbslq_u32(vcgtq_u32(abs, set1(0x7F800000)), set1(C::kNaN), code);
  return vorrq_u32(code, sign);
}

inline uint8x16_t narrow16(uint32x4_t a, uint32x4_t b, uint32x4_t c, uint32x4_t d) {
  const uint16x8_t ab = vcombine_u16(vmovn_u32(a), vmovn_u32(b));
  const uint16x8_t cd = vcombine_u16(vmovn_u32(c), vmovn_u32(d));
  return vcombine_u8(vmovn_u16(ab), vmovn_u16(cd));
}

template <Fp8Format F>
inline float32x4_t decode4(uint32x4_t c) {
  using C = Fp8Constants<F>;
  const uint32x4_t mag = vandq_u32(c, set1(0x7F));
  const uint32x4_t sign = vshlq_n_u32(vandq_u32(c, set1(0x80)), 24);
  uint32x4_t out = vaddq_u32(vshlq_n_u32(mag, C::kShift), set1(C::kRebias << C::kShift));
  const float32x4_t sub = vmulq_f32(vcvtq_f32_u32(mag), vdupq_n_f32(C::kSubnormalStep));
  out = vbslq_u32(vcltq_u32(mag, set1(1u << C::kMantissaBits)), vreinterpretq_u32_f32(sub), out);
  out = vbslq_u32(vcgeq_u32(mag, set1(C::kFirstSpecial)), set1(0x7FC00000), out);
  if constexpr (C::kHasInf) out = vbslq_u32(vceqq_u32(mag, set1(C::kInf)), set1(0x7F800000), out);
  return vreinterpretq_f32_u32(vorrq_u32(out, sign));
}

template <class Body>
inline void for_format(Fp8Format fmt, Body body) {
  if (fmt == Fp8Format::kE4M3FN)
    body(std::integral_constant<Fp8Format, Fp8Format::kE4M3FN>{});
  else
    body(std::integral_constant<Fp8Format, Fp8Format::kE5M2>{});
}

// Encodes the first n - n % 16 elements; load(i) returns 4 floats starting at element i.
template <class Load>
std::size_t encode_body(Load load, uint8_t* dst, std::size_t n, Fp8Format fmt, Overflow overflow) {
  std::size_t i = 0;
  for_format(fmt, [&](auto f) {
    constexpr Fp8Format F = decltype(f)::value;
    for (; i + 16 <= n; i += 16)
      vst1q_u8(dst + i, narrow16(encode4<F>(load(i), overflow), encode4<F>(load(i + 4), overflow),
                                 encode4<F>(load(i + 8), overflow), encode4<F>(load(i + 12), overflow)));
  });
  return i;
}

// Decodes the first n - n % 16 codes; store(i, v) writes 4 floats for elements i..i+3.
template <class Store>
std::size_t decode_body(const uint8_t* src, std::size_t n, Fp8Format fmt, Store store) {
  std::size_t i = 0;
  for_format(fmt, [&](auto f) {
    constexpr Fp8Format F = decltype(f)::value;
    for (; i + 16 <= n; i += 16) {
      const uint8x16_t c = vld1q_u8(src + i);
      const uint16x8_t lo = vmovl_u8(vget_low_u8(c)), hi = vmovl_u8(vget_high_u8(c));
      store(i, decode4<F>(vmovl_u16(vget_low_u16(lo))));
      store(i + 4, decode4<F>(vmovl_u16(vget_high_u16(lo))));
      store(i + 8, decode4<F>(vmovl_u16(vget_low_u16(hi))));
      store(i + 12, decode4<F>(vmovl_u16(vget_high_u16(hi))));
    }
  });
  return i;
}

}  // namespace

void encode_f32(const float* src, uint8_t* dst, std::size_t n, Fp8Format fmt, Overflow overflow) {
  std::size_t i = encode_body([&](std::size_t j) { return vld1q_f32(src + j); }, dst, n, fmt, overflow);
  scalar::encode_f32(src + i, dst + i, n - i, fmt, overflow);
}

void encode_f64(const double* src, uint8_t* dst, std::size_t n, Fp8Format fmt, Overflow overflow) {
  // FCVTXN converts float64 -> float32 rounding to odd, so the later nearest-even rounding
  // to FP8 equals a single rounding of the double.
  auto load = [&](std::size_t j) { return vcvtx_high_f32_f64(vcvtx_f32_f64(vld1q_f64(src + j)), vld1q_f64(src + j + 2)); };
  std::size_t i = encode_body(load, dst, n, fmt, overflow);
  scalar::encode_f64(src + i, dst + i, n - i, fmt, overflow);
}

void encode_f16(const uint16_t* src, uint8_t* dst, std::size_t n, Fp8Format fmt, Overflow overflow) {
  auto load = [&](std::size_t j) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(src + j))); };
  std::size_t i = encode_body(load, dst, n, fmt, overflow);
  scalar::encode_f16(src + i, dst + i, n - i, fmt, overflow);
}

void encode_bf16(const uint16_t* src, uint8_t* dst, std::size_t n, Fp8Format fmt, Overflow overflow) {
  auto load = [&](std::size_t j) { return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(src + j), 16)); };
  std::size_t i = encode_body(load, dst, n, fmt, overflow);
  scalar::encode_bf16(src + i, dst + i, n - i, fmt, overflow);
}

void decode_f32(const uint8_t* src, float* dst, std::size_t n, Fp8Format fmt) {
  std::size_t i = decode_body(src, n, fmt, [&](std::size_t j, float32x4_t v) { vst1q_f32(dst + j, v); });
  scalar::decode_f32(src + i, dst + i, n - i, fmt);
}

void decode_f16(const uint8_t* src, uint16_t* dst, std::size_t n, Fp8Format fmt) {
  // Every FP8 value is exact in float16, so this conversion never rounds.
  std::size_t i = decode_body(src, n, fmt, [&](std::size_t j, float32x4_t v) {
    vst1_u16(dst + j, vreinterpret_u16_f16(vcvt_f16_f32(v)));
  });
  scalar::decode_f16(src + i, dst + i, n - i, fmt);
}

void decode_bf16(const uint8_t* src, uint16_t* dst, std::size_t n, Fp8Format fmt) {
  std::size_t i = decode_body(src, n, fmt, [&](std::size_t j, float32x4_t v) {
    vst1_u16(dst + j, vshrn_n_u32(vreinterpretq_u32_f32(v), 16));
  });
  scalar::decode_bf16(src + i, dst + i, n - i, fmt);
}

uint32_t amax_bits_f32(const float* src, std::size_t n) {
  const uint32x4_t abs_mask = set1(0x7FFFFFFF);
  uint32x4_t m0 = vdupq_n_u32(0), m1 = vdupq_n_u32(0);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    m0 = vmaxq_u32(m0, vandq_u32(vreinterpretq_u32_f32(vld1q_f32(src + i)), abs_mask));
    m1 = vmaxq_u32(m1, vandq_u32(vreinterpretq_u32_f32(vld1q_f32(src + i + 4)), abs_mask));
  }
  const uint32_t head = vmaxvq_u32(vmaxq_u32(m0, m1));
  const uint32_t tail = scalar::amax_bits_f32(src + i, n - i);
  return head > tail ? head : tail;
}

void encode_scaled_f32(const float* src, uint8_t* dst, std::size_t n, float scale, Fp8Format fmt) {
  const float32x4_t s = vdupq_n_f32(scale);
  std::size_t i = encode_body([&](std::size_t j) { return vdivq_f32(vld1q_f32(src + j), s); }, dst, n, fmt,
                              Overflow::kSaturate);
  scalar::encode_scaled_f32(src + i, dst + i, n - i, scale, fmt);
}

}  // namespace quantcore::neon
