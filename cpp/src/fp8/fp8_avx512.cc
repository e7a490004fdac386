// AVX-512 (F, BW, DQ, VL) FP8 kernels: 16 lanes of the scalar reference's arithmetic on
// float32 bit patterns. Only this file is compiled with AVX-512 flags.
#include <immintrin.h>

#include <type_traits>

#include "fp8_simd_constants.h"
#include "quantcore/fp8.h"

namespace quantcore::avx512 {
namespace {

// 16 floats -> 16 FP8 codes; the same rounding as scalar::encode_one_f32.
template <Fp8Format F>
inline __m128i encode16(__m512 x, Overflow overflow) {
  using C = Fp8Constants<F>;
  const __m512i bits = _mm512_castps_si512(x);
  const __m512i abs = _mm512_and_si512(bits, _mm512_set1_epi32(0x7FFFFFFF));
  const __m512i sign = _mm512_and_si512(_mm512_srli_epi32(bits, 24), _mm512_set1_epi32(0x80));
  // Normal results: round the float32 mantissa to M bits, nearest-even, then rebias.
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(abs, C::kShift), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_add_epi32(
      _mm512_add_epi32(abs, _mm512_set1_epi32(C::kRoundBias)), lsb);
  const __m512i normal = _mm512_sub_epi32(_mm512_srli_epi32(rounded, C::kShift),
                                          _mm512_set1_epi32(C::kRebias));
  // Subnormal results: adding 2^k whose ulp equals the FP8 subnormal step lets the FPU do the
  // nearest-even rounding; the low bits of the sum are then the FP8 code (8 = smallest normal).
  const __m512 magic = _mm512_castsi512_ps(_mm512_set1_epi32(C::kMagicBits));
  const __m512i sub = _mm512_sub_epi32(
      _mm512_castps_si512(_mm512_add_ps(_mm512_castsi512_ps(abs), magic)), _mm512_set1_epi32(C::kMagicBits));
  const __mmask16 is_sub = _mm512_cmplt_epu32_mask(abs, _mm512_set1_epi32(C::kMinNormalBits));
  __m512i code = _mm512_mask_blend_epi32(is_sub, normal, sub);
  const __mmask16 is_over = _mm512_cmpgt_epu32_mask(abs, _mm512_set1_epi32(C::kOverflowAbove));
  const int over_code = overflow == Overflow::kSaturate ? C::kMaxFinite : C::kNonFiniteOverflow;
  code = _mm512_mask_blend_epi32(is_over, code, _mm512_set1_epi32(over_code));
  const __mmask16 is_nan = _mm512_cmpgt_epu32_mask(abs, _mm512_set1_epi32(0x7F800000));
  code = _mm512_mask_blend_epi32(is_nan, code, _mm512_set1_epi32(C::kNaN));
  return _mm512_cvtepi32_epi8(_mm512_or_si512(code, sign));
}

// 16 codes -> 16 floats, exact; NaN codes give the canonical quiet NaN with the code's sign.
template <Fp8Format F>
inline __m512 decode16(__m128i codes) {
  using C = Fp8Constants<F>;
  const __m512i c = _mm512_cvtepu8_epi32(codes);
  const __m512i mag = _mm512_and_si512(c, _mm512_set1_epi32(0x7F));
  const __m512i sign = _mm512_slli_epi32(_mm512_and_si512(c, _mm512_set1_epi32(0x80)), 24);
  __m512i out = _mm512_add_epi32(_mm512_slli_epi32(mag, C::kShift), _mm512_set1_epi32(C::kRebias << C::kShift));
  const __m512 sub = _mm512_mul_ps(_mm512_cvtepi32_ps(mag), _mm512_set1_ps(C::kSubnormalStep));
  out = _mm512_mask_blend_epi32(_mm512_cmplt_epu32_mask(mag, _mm512_set1_epi32(1 << C::kMantissaBits)),
                                out, _mm512_castps_si512(sub));
  out = _mm512_mask_blend_epi32(_mm512_cmpge_epu32_mask(mag, _mm512_set1_epi32(C::kFirstSpecial)),
                                out, _mm512_set1_epi32(0x7FC00000));
  if constexpr (C::kHasInf)
    out = _mm512_mask_blend_epi32(_mm512_cmpeq_epu32_mask(mag, _mm512_set1_epi32(C::kInf)), out,
                                  _mm512_set1_epi32(0x7F800000));
  return _mm512_castsi512_ps(_mm512_or_si512(out, sign));
}

template <Fp8Format F, class Load>
inline void encode_loop(std::size_t n, uint8_t* dst, Overflow overflow, Load load) {
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), encode16<F>(load(i), overflow));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm_mask_storeu_epi8(dst + i, m, encode16<F>(load(i, m), overflow));
  }
}

template <class Body>
inline void for_format(Fp8Format fmt, Body body) {
  if (fmt == Fp8Format::kE4M3FN)
    body(std::integral_constant<Fp8Format, Fp8Format::kE4M3FN>{});
  else
    body(std::integral_constant<Fp8Format, Fp8Format::kE5M2>{});
}

// Lane loaders: (i) a full vector, (i, mask) a masked tail (masked-off lanes read nothing).
struct LoadF32 {
  const float* p;
  __m512 operator()(std::size_t i) const { return _mm512_loadu_ps(p + i); }
  __m512 operator()(std::size_t i, __mmask16 m) const { return _mm512_maskz_loadu_ps(m, p + i); }
};
struct LoadF16 {
  const uint16_t* p;
  __m512 operator()(std::size_t i) const {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)));
  }
  __m512 operator()(std::size_t i, __mmask16 m) const { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p + i)); }
};
struct LoadBF16 {
  const uint16_t* p;
  static __m512 widen(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }
  __m512 operator()(std::size_t i) const { return widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i))); }
  __m512 operator()(std::size_t i, __mmask16 m) const { return widen(_mm256_maskz_loadu_epi16(m, p + i)); }
};
// float64 -> float32 rounded to odd (truncate, then set the last bit if anything was lost). With
// 20 spare bits beyond FP8's mantissa, the later nearest-even rounding is then exactly the
// rounding of the original double: no double-rounding error.
struct LoadF64 {
  const double* p;
  static __m256 to_odd(__m512d x) {
    const __m256 t = _mm512_cvt_roundpd_ps(x, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __mmask8 inexact = _mm512_cmp_pd_mask(_mm512_cvtps_pd(t), x, _CMP_NEQ_UQ);
    return _mm256_castsi256_ps(_mm256_mask_or_epi32(_mm256_castps_si256(t), inexact, _mm256_castps_si256(t),
                                                    _mm256_set1_epi32(1)));
  }
  __m512 operator()(std::size_t i) const {
    return _mm512_insertf32x8(_mm512_castps256_ps512(to_odd(_mm512_loadu_pd(p + i))),
                              to_odd(_mm512_loadu_pd(p + i + 8)), 1);
  }
  __m512 operator()(std::size_t i, __mmask16 m) const {
    return _mm512_insertf32x8(
        _mm512_castps256_ps512(to_odd(_mm512_maskz_loadu_pd(static_cast<__mmask8>(m), p + i))),
        to_odd(_mm512_maskz_loadu_pd(static_cast<__mmask8>(m >> 8), p + i + 8)), 1);
  }
};

template <class Load>
void encode_any(Load load, uint8_t* dst, std::size_t n, Fp8Format fmt, Overflow overflow) {
  for_format(fmt, [&](auto f) { encode_loop<decltype(f)::value>(n, dst, overflow, load); });
}

template <class Store>
void decode_any(const uint8_t* src, std::size_t n, Fp8Format fmt, Store store) {
  for_format(fmt, [&](auto f) {
    constexpr Fp8Format F = decltype(f)::value;
    std::size_t i = 0;
    for (; i + 16 <= n; i += 16)
      store(i, decode16<F>(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
    if (i < n) {
      const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
      store(i, decode16<F>(_mm_maskz_loadu_epi8(m, src + i)), m);
    }
  });
}

}  // namespace

void encode_f32(const float* src, uint8_t* dst, std::size_t n, Fp8Format fmt, Overflow overflow) {
  encode_any(LoadF32{src}, dst, n, fmt, overflow);
}

void encode_f64(const double* src, uint8_t* dst, std::size_t n, Fp8Format fmt, Overflow overflow) {
  encode_any(LoadF64{src}, dst, n, fmt, overflow);
}

void encode_f16(const uint16_t* src, uint8_t* dst, std::size_t n, Fp8Format fmt, Overflow overflow) {
  encode_any(LoadF16{src}, dst, n, fmt, overflow);
}

void encode_bf16(const uint16_t* src, uint8_t* dst, std::size_t n, Fp8Format fmt, Overflow overflow) {
  encode_any(LoadBF16{src}, dst, n, fmt, overflow);
}

void decode_f32(const uint8_t* src, float* dst, std::size_t n, Fp8Format fmt) {
  struct {
    float* d;
    void operator()(std::size_t i, __m512 v) const { _mm512_storeu_ps(d + i, v); }
    void operator()(std::size_t i, __m512 v, __mmask16 m) const { _mm512_mask_storeu_ps(d + i, m, v); }
  } store{dst};
  decode_any(src, n, fmt, store);
}

void decode_f16(const uint8_t* src, uint16_t* dst, std::size_t n, Fp8Format fmt) {
  // Every FP8 value is exact in float16, so the float32 -> float16 conversion never rounds.
  struct {
    uint16_t* d;
    void operator()(std::size_t i, __m512 v) const {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i), _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
    }
    void operator()(std::size_t i, __m512 v, __mmask16 m) const {
      _mm256_mask_storeu_epi16(d + i, m, _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
    }
  } store{dst};
  decode_any(src, n, fmt, store);
}

void decode_bf16(const uint8_t* src, uint16_t* dst, std::size_t n, Fp8Format fmt) {
  struct {
    uint16_t* d;
    static __m256i narrow(__m512 v) { return _mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_castps_si512(v), 16)); }
    void operator()(std::size_t i, __m512 v) const { _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i), narrow(v)); }
    void operator()(std::size_t i, __m512 v, __mmask16 m) const { _mm256_mask_storeu_epi16(d + i, m, narrow(v)); }
  } store{dst};
  decode_any(src, n, fmt, store);
}

uint32_t amax_bits_f32(const float* src, std::size_t n) {
  const __m512i abs_mask = _mm512_set1_epi32(0x7FFFFFFF);
  __m512i m0 = _mm512_setzero_si512(), m1 = _mm512_setzero_si512();
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    m0 = _mm512_max_epu32(m0, _mm512_and_si512(_mm512_loadu_si512(src + i), abs_mask));
    m1 = _mm512_max_epu32(m1, _mm512_and_si512(_mm512_loadu_si512(src + i + 16), abs_mask));
  }
  const uint32_t head = _mm512_reduce_max_epu32(_mm512_max_epu32(m0, m1));
  const uint32_t tail = scalar::amax_bits_f32(src + i, n - i);
  return head > tail ? head : tail;
}

void encode_scaled_f32(const float* src, uint8_t* dst, std::size_t n, float scale, Fp8Format fmt) {
  const __m512 s = _mm512_set1_ps(scale);
  struct {
    const float* p;
    __m512 s;
    __m512 operator()(std::size_t i) const { return _mm512_div_ps(_mm512_loadu_ps(p + i), s); }
    __m512 operator()(std::size_t i, __mmask16 m) const { return _mm512_div_ps(_mm512_maskz_loadu_ps(m, p + i), s); }
  } load{src, s};
  encode_any(load, dst, n, fmt, Overflow::kSaturate);
}

}  // namespace quantcore::avx512
