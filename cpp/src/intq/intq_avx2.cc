// AVX2 group quantization: 8 lanes of the scalar reference's arithmetic (IEEE division,
// round-to-nearest-even conversion, integer clamp), the scalar reference for tails, and the
// shared per-group parameters. Only this file is compiled with AVX2 flags.
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
  // The SIMD ranges of up to 16 groups first, then the shared scalar parameters: separate loops
  // let the CPU overlap neighbouring groups' reductions and divisions.
  Range ranges[16];
  for (std::size_t g0 = 0; g0 < n_groups; g0 += 16) {
    const std::size_t count = n_groups - g0 < 16 ? n_groups - g0 : 16;
    for (std::size_t j = 0; j < count; ++j) ranges[j] = range_f32(src + (g0 + j) * group_size, group_size);
    for (std::size_t j = 0; j < count; ++j) {
      const Range& r = ranges[j];
      const IntqStatus status = r.finite ? scalar::group_params(r.lo, r.hi, s, p + g0 + j) : IntqStatus::kNonFinite;
      if (status != IntqStatus::kOk) {
        *bad_group = g0 + j;
        return status;
      }
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
