// AVX2 (+FMA, F16C) FP8 kernels: 8 lanes of the scalar reference's arithmetic on float32 bit
// patterns; tails go to the scalar reference. Only this file is compiled with AVX2 flags.
#include <immintrin.h>

#include <type_traits>

#include "fp8_simd_constants.h"
#include "quantcore/fp8.h"

namespace quantcore::avx2 {
namespace {

inline __m256i set1(int v) { return _mm256_set1_epi32(v); }

// AVX2 has no unsigned 32-bit compare; every operand here is below 2^31, so signed works.
inline __m256i gt(__m256i a, int b) { return _mm256_cmpgt_epi32(a, set1(b)); }

// 8 floats -> 8 FP8 codes in the low byte of each 32-bit lane.
template <Fp8Format F>
inline __m256i encode8(__m256 x, Overflow overflow) {
  using C = Fp8Constants<F>;
  const __m256i bits = _mm256_castps_si256(x);
  const __m256i abs = _mm256_and_si256(bits, set1(0x7FFFFFFF));
  const __m256i sign = _mm256_and_si256(_mm256_srli_epi32(bits, 24), set1(0x80));
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(abs, C::kShift), set1(1));
  const __m256i rounded = _mm256_add_epi32(_mm256_add_epi32(abs, set1(C::kRoundBias)), lsb);
  const __m256i normal = _mm256_sub_epi32(_mm256_srli_epi32(rounded, C::kShift), set1(C::kRebias));
  // Subnormal results: the FPU rounds abs + 2^k (ulp = FP8 subnormal step) to nearest-even.
  const __m256 magic = _mm256_castsi256_ps(set1(static_cast<int>(C::kMagicBits)));
  const __m256i sub = _mm256_sub_epi32(
      _mm256_castps_si256(_mm256_add_ps(_mm256_castsi256_ps(abs), magic)), set1(static_cast<int>(C::kMagicBits)));
  const __m256i is_sub = _mm256_cmpgt_epi32(set1(static_cast<int>(C::kMinNormalBits)), abs);
  __m256i code = _mm256_blendv_epi8(normal, sub, is_sub);
  const int over_code = overflow == Overflow::kSaturate ? C::kMaxFinite : C::kNonFiniteOverflow;
  code = _mm256_blendv_epi8(code, set1(over_code), gt(abs, static_cast<int>(C::kOverflowAbove)));
  code = _mm256_blendv_epi8(code, set1(C::kNaN), gt(abs, 0x7F800000));
  return _mm256_or_si256(code, sign);
}

// Four vectors of 8 codes (one per 32-bit lane) -> 32 bytes in order.
inline __m256i pack32(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i ab = _mm256_packus_epi32(a, b);  // lanes interleave by 128-bit half
  const __m256i cd = _mm256_packus_epi32(c, d);
  const __m256i abcd = _mm256_packus_epi16(ab, cd);
  return _mm256_permutevar8x32_epi32(abcd, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

template <Fp8Format F>
inline __m256 decode8(__m128i codes8) {  // low 8 bytes used
  using C = Fp8Constants<F>;
  const __m256i c = _mm256_cvtepu8_epi32(codes8);
  const __m256i mag = _mm256_and_si256(c, set1(0x7F));
  const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(c, set1(0x80)), 24);
  __m256i out = _mm256_add_epi32(_mm256_slli_epi32(mag, C::kShift), set1(C::kRebias << C::kShift));
  const __m256 sub = _mm256_mul_ps(_mm256_cvtepi32_ps(mag), _mm256_set1_ps(C::kSubnormalStep));
  out = _mm256_blendv_epi8(out, _mm256_castps_si256(sub), _mm256_cmpgt_epi32(set1(1 << C::kMantissaBits), mag));
  out = _mm256_blendv_epi8(out, set1(0x7FC00000), gt(mag, C::kFirstSpecial - 1));
  if constexpr (C::kHasInf)
    out = _mm256_blendv_epi8(out, set1(0x7F800000), _mm256_cmpeq_epi32(mag, set1(C::kInf)));
  return _mm256_castsi256_ps(_mm256_or_si256(out, sign));
}

template <class Body>
inline void for_format(Fp8Format fmt, Body body) {
  if (fmt == Fp8Format::kE4M3FN)
    body(std::integral_constant<Fp8Format, Fp8Format::kE4M3FN>{});
  else
    body(std::integral_constant<Fp8Format, Fp8Format::kE5M2>{});
}

// Encodes the first n - n % 32 elements; load(i) returns 8 floats starting at element i.
// Returns how many elements it handled, the caller finishes the tail with the scalar reference.
template <class Load>
std::size_t encode_body(Load load, uint8_t* dst, std::size_t n, Fp8Format fmt, Overflow overflow) {
  std::size_t i = 0;
  for_format(fmt, [&](auto f) {
    constexpr Fp8Format F = decltype(f)::value;
    for (; i + 32 <= n; i += 32) {
      const __m256i packed = pack32(encode8<F>(load(i), overflow), encode8<F>(load(i + 8), overflow),
                                    encode8<F>(load(i + 16), overflow), encode8<F>(load(i + 24), overflow));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), packed);
    }
  });
  return i;
}

template <class Store>
std::size_t decode_body(const uint8_t* src, std::size_t n, Fp8Format fmt, Store store) {
  std::size_t i = 0;
  for_format(fmt, [&](auto f) {
    constexpr Fp8Format F = decltype(f)::value;
    for (; i + 8 <= n; i += 8)
      store(i, decode8<F>(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + i))));
  });
  return i;
}

// float64 -> float32 rounded to odd, so that the later nearest-even rounding to FP8 equals a
// single rounding of the double. cvtpd_ps rounds to nearest; step back toward zero when that
// rounded up in magnitude, then set the last bit if the conversion was inexact.
inline __m128 f64_to_f32_odd(__m256d x) {
  const __m128 r = _mm256_cvtpd_ps(x);
  const __m256d back = _mm256_cvtps_pd(r);
  const __m256d sign_mask = _mm256_set1_pd(-0.0);
  const __m256d grew = _mm256_cmp_pd(_mm256_andnot_pd(sign_mask, back), _mm256_andnot_pd(sign_mask, x), _CMP_GT_OQ);
  const __m256d inexact = _mm256_cmp_pd(back, x, _CMP_NEQ_UQ);
  // Narrow the 64-bit lane masks to 32-bit lanes.
  const __m128i grew32 = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(
      _mm256_castpd_si256(grew), _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6)));
  const __m128i inexact32 = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(
      _mm256_castpd_si256(inexact), _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6)));
  __m128i bits = _mm_add_epi32(_mm_castps_si128(r), grew32);  // mask is -1: one step toward zero
  bits = _mm_or_si128(bits, _mm_and_si128(inexact32, _mm_set1_epi32(1)));
  return _mm_castsi128_ps(bits);
}

}  // namespace

void encode_f32(const float* src, uint8_t* dst, std::size_t n, Fp8Format fmt, Overflow overflow) {
  std::size_t i = encode_body([&](std::size_t j) { return _mm256_loadu_ps(src + j); }, dst, n, fmt, overflow);
  scalar::encode_f32(src + i, dst + i, n - i, fmt, overflow);
}

void encode_f64(const double* src, uint8_t* dst, std::size_t n, Fp8Format fmt, Overflow overflow) {
  auto load = [&](std::size_t j) {
    return _mm256_set_m128(f64_to_f32_odd(_mm256_loadu_pd(src + j + 4)), f64_to_f32_odd(_mm256_loadu_pd(src + j)));
  };
  std::size_t i = encode_body(load, dst, n, fmt, overflow);
  scalar::encode_f64(src + i, dst + i, n - i, fmt, overflow);
}

void encode_f16(const uint16_t* src, uint8_t* dst, std::size_t n, Fp8Format fmt, Overflow overflow) {
  auto load = [&](std::size_t j) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + j))); };
  std::size_t i = encode_body(load, dst, n, fmt, overflow);
  scalar::encode_f16(src + i, dst + i, n - i, fmt, overflow);
}

void encode_bf16(const uint16_t* src, uint8_t* dst, std::size_t n, Fp8Format fmt, Overflow overflow) {
  auto load = [&](std::size_t j) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + j));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  };
  std::size_t i = encode_body(load, dst, n, fmt, overflow);
  scalar::encode_bf16(src + i, dst + i, n - i, fmt, overflow);
}

void decode_f32(const uint8_t* src, float* dst, std::size_t n, Fp8Format fmt) {
  std::size_t i = decode_body(src, n, fmt, [&](std::size_t j, __m256 v) { _mm256_storeu_ps(dst + j, v); });
  scalar::decode_f32(src + i, dst + i, n - i, fmt);
}

void decode_f16(const uint8_t* src, uint16_t* dst, std::size_t n, Fp8Format fmt) {
  // Every FP8 value is exact in float16, so this conversion never rounds.
  std::size_t i = decode_body(src, n, fmt, [&](std::size_t j, __m256 v) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + j), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  });
  scalar::decode_f16(src + i, dst + i, n - i, fmt);
}

void decode_bf16(const uint8_t* src, uint16_t* dst, std::size_t n, Fp8Format fmt) {
  std::size_t i = decode_body(src, n, fmt, [&](std::size_t j, __m256 v) {
    const __m256i hi = _mm256_srli_epi32(_mm256_castps_si256(v), 16);
    const __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(hi), _mm256_extracti128_si256(hi, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + j), packed);
  });
  scalar::decode_bf16(src + i, dst + i, n - i, fmt);
}

uint32_t amax_bits_f32(const float* src, std::size_t n) {
  const __m256i abs_mask = set1(0x7FFFFFFF);
  __m256i m0 = _mm256_setzero_si256(), m1 = _mm256_setzero_si256();
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    m0 = _mm256_max_epu32(m0, _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i)), abs_mask));
    m1 = _mm256_max_epu32(m1, _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i + 8)), abs_mask));
  }
  alignas(32) uint32_t lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), _mm256_max_epu32(m0, m1));
  uint32_t m = scalar::amax_bits_f32(src + i, n - i);
  for (uint32_t v : lanes) m = v > m ? v : m;
  return m;
}

void encode_scaled_f32(const float* src, uint8_t* dst, std::size_t n, float scale, Fp8Format fmt) {
  const __m256 s = _mm256_set1_ps(scale);
  std::size_t i = encode_body([&](std::size_t j) { return _mm256_div_ps(_mm256_loadu_ps(src + j), s); }, dst, n, fmt,
                              Overflow::kSaturate);
  scalar::encode_scaled_f32(src + i, dst + i, n - i, scale, fmt);
}

}  // namespace quantcore::avx2
