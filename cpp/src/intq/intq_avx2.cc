// AVX2 group quantization: 8 lanes of the scalar reference's arithmetic
// (IEEE division, round-to-nearest-even conversion, integer clamp) for codes, the parameters of
// 8 groups at once (scalar::group_params restated across lanes), the scalar reference for
// tails and special cases. Only this file is compiled with AVX2 flags.
#include <immintrin.h>

#include <cmath>

#include "intq_rows.h"
#include "quantcore/intq.h"
#include "quantcore/pack.h"

namespace quantcore::avx2 {
namespace {

// NF4: the code is the number of midpoints y exceeds (a tie stays on the lower entry); a true
// compare is all ones, i.e. -1, so subtracting it counts.
inline __m256i nf4_codes(__m256 y) {
  __m256i code = _mm256_setzero_si256();
  for (float m : kNf4Midpoints)
    code = _mm256_sub_epi32(code, _mm256_castps_si256(_mm256_cmp_ps(y, _mm256_set1_ps(m), _CMP_GT_OQ)));
  return code;
}

inline __m256i int_codes(__m256 y, __m256i zero, __m256i code_min, __m256i code_max) {
  // cvtps_epi32 rounds with MXCSR's mode: nearest-even unless someone changed it, like nearbyint.
  const __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(y), zero);
  return _mm256_min_epi32(_mm256_max_epi32(q, code_min), code_max);
}

// 4 x 8 codes in 0..255 -> 32 bytes in order. The packs work within 128-bit halves, giving
// dword groups a0-3 b0-3 c0-3 d0-3 | a4-7 b4-7 c4-7 d4-7; the dword permute restores order.
inline void store_codes32(uint8_t* dst, __m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i bytes = _mm256_packus_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), _mm256_permutevar8x32_epi32(bytes, order));
}

inline float hmin(__m256 v) {
  __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_min_ps(m, _mm_movehl_ps(m, m));
  m = _mm_min_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

inline float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

// Reduces 8 vectors at once: lane j of the result is op over the 8 lanes of v[j]. Each level
// halves the vectors by pairing halves of two inputs; the final permute undoes the interleaving
// the in-lane levels leave behind.
template <class Op>
inline __m256 reduce_8x8(const __m256* v, Op op) {
  __m256 a[4], b[2];
  for (int j = 0; j < 4; ++j)  // 128-bit halves: lanes 0-3 from v[2j], 4-7 from v[2j+1]
    a[j] = op(_mm256_permute2f128_ps(v[2 * j], v[2 * j + 1], 0x20), _mm256_permute2f128_ps(v[2 * j], v[2 * j + 1], 0x31));
  for (int j = 0; j < 2; ++j)  // pairs: the low half holds v[4j], v[4j+2]; the high half v[4j+1], v[4j+3]
    b[j] = op(_mm256_shuffle_ps(a[2 * j], a[2 * j + 1], _MM_SHUFFLE(1, 0, 1, 0)),
              _mm256_shuffle_ps(a[2 * j], a[2 * j + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  // Singles: the low half holds v[0], v[2], v[4], v[6]; the high half v[1], v[3], v[5], v[7].
  const __m256 c = op(_mm256_shuffle_ps(b[0], b[1], _MM_SHUFFLE(2, 0, 2, 0)),
                      _mm256_shuffle_ps(b[0], b[1], _MM_SHUFFLE(3, 1, 3, 1)));
  return _mm256_permutevar8x32_ps(c, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// scalar::round_scale for 8 lanes: F16C's vcvtps2ph rounds nearest-even with float16's
// subnormals and overflow to inf, exactly as the scalar code; bfloat16 is the same bit rounding.
inline __m256 round_scale8(__m256 x, ScaleType t) {
  switch (t) {
    case ScaleType::kFloat16:
      return _mm256_cvtph_ps(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    case ScaleType::kBFloat16: {
      const __m256i b = _mm256_castps_si256(x);
      const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(b, 16), _mm256_set1_epi32(1));
      const __m256i rounded = _mm256_add_epi32(_mm256_add_epi32(b, _mm256_set1_epi32(0x7FFF)), lsb);
      return _mm256_castsi256_ps(_mm256_and_si256(rounded, _mm256_set1_epi32(static_cast<int>(0xFFFF0000u))));
    }
    default:
      return x;
  }
}

// scalar::group_params for 8 groups with ranges [lo, hi] (finite). Returns false, writing
// nothing, if a scale overflows: the caller then lets the scalar code report it.
inline bool group_params8(__m256 lo, __m256 hi, const IntqScheme& s, GroupParams* p) {
  const __m256 zero = _mm256_setzero_ps();
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 absmax = _mm256_max_ps(_mm256_xor_ps(lo, sign), hi);
  const __m256 constant = _mm256_and_ps(_mm256_cmp_ps(lo, hi, _CMP_EQ_OQ), _mm256_cmp_ps(lo, zero, _CMP_NEQ_OQ));
  int32_t zero_point = 0, code_min = 0, code_max = 15;
  __m256 exact = absmax;
  if (s.kind == IntqKind::kSymmetric) {
    const int32_t qmax = (1 << (s.bits - 1)) - 1;
    zero_point = 1 << (s.bits - 1);
    code_min = zero_point - qmax;
    code_max = zero_point + qmax;
    exact = _mm256_blendv_ps(_mm256_div_ps(absmax, _mm256_set1_ps(static_cast<float>(qmax))), absmax, constant);
  } else if (s.kind == IntqKind::kAsymmetric) {
    code_max = (1 << s.bits) - 1;
    const __m256 range = _mm256_sub_ps(_mm256_max_ps(hi, zero), _mm256_min_ps(lo, zero));
    exact = _mm256_blendv_ps(_mm256_div_ps(range, _mm256_set1_ps(static_cast<float>(code_max))), absmax, constant);
  }
  const __m256 rounded = round_scale8(exact, s.scale_type);
  const __m256 nonzero = _mm256_cmp_ps(absmax, zero, _CMP_NEQ_OQ);
  if (_mm256_movemask_ps(_mm256_and_ps(_mm256_cmp_ps(rounded, _mm256_set1_ps(INFINITY), _CMP_EQ_OQ), nonzero)) != 0)
    return false;
  // The smallest positive value of the scale type (scalar smallest_positive): 2^-24, 2^-133, 2^-149.
  const int tiny_bits = s.scale_type == ScaleType::kFloat16 ? 0x33800000 : s.scale_type == ScaleType::kBFloat16 ? 0x00010000 : 1;
  const __m256 tiny = _mm256_castsi256_ps(_mm256_set1_epi32(tiny_bits));
  __m256 scale = _mm256_blendv_ps(rounded, tiny, _mm256_cmp_ps(rounded, zero, _CMP_EQ_OQ));
  scale = _mm256_blendv_ps(_mm256_set1_ps(1.0f), scale, nonzero);
  alignas(32) float scales[8];
  alignas(32) int32_t zeros[8];
  _mm256_store_ps(scales, scale);
  if (s.kind == IntqKind::kAsymmetric) {
    const __m256 neg_lo = _mm256_xor_ps(_mm256_min_ps(lo, zero), sign);
    const __m256i z = _mm256_cvtps_epi32(_mm256_div_ps(neg_lo, scale));  // nearest-even, like round_even
    _mm256_store_si256(reinterpret_cast<__m256i*>(zeros), _mm256_min_epi32(z, _mm256_set1_epi32(code_max)));
  } else {
    _mm256_store_si256(reinterpret_cast<__m256i*>(zeros), _mm256_set1_epi32(zero_point));
  }
  for (int j = 0; j < 8; ++j) p[j] = GroupParams{scales[j], zeros[j], code_min, code_max};
  return true;
}

}  // namespace

Range range_f32(const float* src, std::size_t n) {
  __m256 lo = _mm256_set1_ps(INFINITY), hi = _mm256_set1_ps(-INFINITY);
  __m256i abs_max = _mm256_setzero_si256();  // integer compare: NaN > inf > finite
  const __m256i abs_mask = _mm256_set1_epi32(0x7FFFFFFF);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_loadu_ps(src + i);
    lo = _mm256_min_ps(lo, x);
    hi = _mm256_max_ps(hi, x);
    abs_max = _mm256_max_epu32(abs_max, _mm256_and_si256(_mm256_castps_si256(x), abs_mask));
  }
  const Range tail = i < n ? scalar::range_f32(src + i, n - i) : Range{INFINITY, -INFINITY, true};
  // Every lane below 0x7F800000 <=> no lane compares (signed) greater than 0x7F7FFFFF.
  const bool head_finite =
      _mm256_movemask_epi8(_mm256_cmpgt_epi32(abs_max, _mm256_set1_epi32(0x7F7FFFFF))) == 0;
  const float head_lo = hmin(lo), head_hi = hmax(hi);
  return Range{head_lo < tail.lo ? head_lo : tail.lo, head_hi > tail.hi ? head_hi : tail.hi,
               head_finite && tail.finite};
}

IntqStatus params_f32(const float* src, std::size_t group_size, std::size_t n_groups,
                      const IntqScheme& s, GroupParams* p, std::size_t* bad_group) {
  std::size_t g = 0;
  if (group_size % 8 == 0) {
    // 8 groups at a time: per-group min / max vectors, one transposed reduction, the
    // parameters in 8 lanes. NaN is caught by an unordered compare, inf by the range itself;
    // either, or a scale overflow, hands the block to the scalar code to report exactly.
    const __m256 inf = _mm256_set1_ps(INFINITY);
    for (; g + 8 <= n_groups; g += 8) {
      __m256 lo[8], hi[8];
      __m256 nan = _mm256_setzero_ps();
      for (int j = 0; j < 8; ++j) {
        const float* x = src + (g + j) * group_size;
        __m256 l = _mm256_loadu_ps(x), h = l;
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(l, l, _CMP_UNORD_Q));
        for (std::size_t i = 8; i < group_size; i += 8) {
          const __m256 v = _mm256_loadu_ps(x + i);
          l = _mm256_min_ps(l, v);
          h = _mm256_max_ps(h, v);
          nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        }
        lo[j] = l;
        hi[j] = h;
      }
      const __m256 block_lo = reduce_8x8(lo, [](__m256 a, __m256 b) { return _mm256_min_ps(a, b); });
      const __m256 block_hi = reduce_8x8(hi, [](__m256 a, __m256 b) { return _mm256_max_ps(a, b); });
      const __m256 infinite = _mm256_or_ps(_mm256_cmp_ps(block_lo, _mm256_sub_ps(_mm256_setzero_ps(), inf), _CMP_EQ_OQ),
                                           _mm256_cmp_ps(block_hi, inf, _CMP_EQ_OQ));
      const bool finite = _mm256_movemask_ps(_mm256_or_ps(nan, infinite)) == 0;
      if (!finite || !group_params8(block_lo, block_hi, s, p + g)) {
        const IntqStatus status = scalar::params_f32(src + g * group_size, group_size, 8, s, p + g, bad_group);
        if (status != IntqStatus::kOk) {
          *bad_group += g;
          return status;
        }
      }
    }
  }
  // Remaining groups one at a time: the SIMD range, the shared scalar parameters.
  for (; g < n_groups; ++g) {
    const Range r = range_f32(src + g * group_size, group_size);
    const IntqStatus status = r.finite ? scalar::group_params(r.lo, r.hi, s, p + g) : IntqStatus::kNonFinite;
    if (status != IntqStatus::kOk) {
      *bad_group = g;
      return status;
    }
  }
  return IntqStatus::kOk;
}

void encode_group(const float* src, std::size_t n, const IntqScheme& s, const GroupParams& p,
                  uint8_t* codes) {
  const __m256 scale = _mm256_set1_ps(p.scale);
  const __m256i zero = _mm256_set1_epi32(p.zero);
  const __m256i code_min = _mm256_set1_epi32(p.code_min), code_max = _mm256_set1_epi32(p.code_max);
  auto codes8 = [&](const float* x) {
    const __m256 y = _mm256_div_ps(_mm256_loadu_ps(x), scale);
    return s.kind == IntqKind::kNf4 ? nf4_codes(y) : int_codes(y, zero, code_min, code_max);
  };
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32)
    store_codes32(codes + i, codes8(src + i), codes8(src + i + 8), codes8(src + i + 16), codes8(src + i + 24));
  if (i < n) scalar::encode_group(src + i, n - i, s, p, codes + i);
}

void decode_group(const uint8_t* codes, std::size_t n, const IntqScheme& s, const GroupParams& p,
                  float* dst) {
  const __m256 scale = _mm256_set1_ps(p.scale);
  std::size_t i = 0;
  if (s.kind == IntqKind::kNf4) {
    // 16 entries in two 8-entry tables; bit 3 of the code, moved to the sign bit, picks one.
    const __m256 book_lo = _mm256_loadu_ps(kNf4Codebook), book_hi = _mm256_loadu_ps(kNf4Codebook + 8);
    for (; i + 8 <= n; i += 8) {
      const __m256i c = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + i)));
      const __m256 v = _mm256_blendv_ps(_mm256_permutevar8x32_ps(book_lo, c), _mm256_permutevar8x32_ps(book_hi, c),
                                        _mm256_castsi256_ps(_mm256_slli_epi32(c, 28)));
      _mm256_storeu_ps(dst + i, _mm256_mul_ps(v, scale));
    }
  } else {
    const __m256i zero = _mm256_set1_epi32(p.zero);
    for (; i + 8 <= n; i += 8) {
      const __m256i c = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + i)));
      _mm256_storeu_ps(dst + i, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(c, zero)), scale));
    }
  }
  if (i < n) scalar::decode_group(codes + i, n - i, s, p, dst + i);
}

namespace {
constexpr RowKernels kRowKernels{params_f32, encode_group, decode_group, pack_bits, unpack_bits};
}  // namespace

IntqStatus quantize_rows(const float* src, std::size_t rows, std::size_t cols,
                         std::size_t group_size, const IntqScheme& s, const GroupParams* fixed,
                         uint8_t* codes, void* scales, uint8_t* zeros, std::size_t* bad_group) {
  return quantize_rows_with(kRowKernels, src, rows, cols, group_size, s, fixed, codes, scales,
                            zeros, bad_group);
}

void dequantize_rows(const uint8_t* codes, std::size_t rows, std::size_t cols,
                     std::size_t group_size, const IntqScheme& s, const void* scales,
                     const uint8_t* zeros, std::size_t scale_row_stride, float* dst) {
  dequantize_rows_with(kRowKernels, codes, rows, cols, group_size, s, scales, zeros,
                       scale_row_stride, dst);
}

}  // namespace quantcore::avx2
