// AVX-512 (F, BW, DQ, VL) group quantization: 16 lanes of the scalar reference's arithmetic
// (IEEE division, round-to-nearest-even conversion, integer clamp), the scalar reference for
// tails, and the shared per-group parameters. Only this file is compiled with AVX-512 flags.
#include <immintrin.h>

#include <cmath>

#include "intq_rows.h"
#include "quantcore/intq.h"
#include "quantcore/pack.h"

namespace quantcore::avx512 {
namespace {

// NF4: the code is the number of midpoints y exceeds (a tie stays on the lower entry).
inline __m512i nf4_codes(__m512 y) {
  __m512i code = _mm512_setzero_si512();
  const __m512i one = _mm512_set1_epi32(1);
  for (float m : kNf4Midpoints)
    code = _mm512_mask_add_epi32(code, _mm512_cmp_ps_mask(y, _mm512_set1_ps(m), _CMP_GT_OQ), code, one);
  return code;
}

}  // namespace

Range range_f32(const float* src, std::size_t n) {
  __m512 lo = _mm512_set1_ps(INFINITY), hi = _mm512_set1_ps(-INFINITY);
  __m512i abs_max = _mm512_setzero_si512();  // integer compare: NaN > inf > finite
  const __m512i abs_mask = _mm512_set1_epi32(0x7FFFFFFF);
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 x = _mm512_loadu_ps(src + i);
    lo = _mm512_min_ps(lo, x);
    hi = _mm512_max_ps(hi, x);
    abs_max = _mm512_max_epu32(abs_max, _mm512_and_si512(_mm512_castps_si512(x), abs_mask));
  }
  const Range tail = i < n ? scalar::range_f32(src + i, n - i) : Range{INFINITY, -INFINITY, true};
  const float head_lo = _mm512_reduce_min_ps(lo), head_hi = _mm512_reduce_max_ps(hi);
  const bool head_finite = _mm512_reduce_max_epu32(abs_max) < 0x7F800000u;
  return Range{head_lo < tail.lo ? head_lo : tail.lo, head_hi > tail.hi ? head_hi : tail.hi,
               head_finite && tail.finite};
}

void encode_group(const float* src, std::size_t n, const IntqScheme& s, const GroupParams& p,
                  uint8_t* codes) {
  const __m512 scale = _mm512_set1_ps(p.scale);
  std::size_t i = 0;
  if (s.kind == IntqKind::kNf4) {
    for (; i + 16 <= n; i += 16) {
      const __m512 y = _mm512_div_ps(_mm512_loadu_ps(src + i), scale);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(codes + i), _mm512_cvtepi32_epi8(nf4_codes(y)));
    }
  } else {
    const __m512i zero = _mm512_set1_epi32(p.zero);
    const __m512i code_min = _mm512_set1_epi32(p.code_min), code_max = _mm512_set1_epi32(p.code_max);
    for (; i + 16 <= n; i += 16) {
      const __m512 y = _mm512_div_ps(_mm512_loadu_ps(src + i), scale);
      // cvtps_epi32 rounds with MXCSR's mode: nearest-even unless changed, like nearbyint.
      __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(y), zero);
      q = _mm512_min_epi32(_mm512_max_epi32(q, code_min), code_max);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(codes + i), _mm512_cvtepi32_epi8(q));
    }
  }
  if (i < n) scalar::encode_group(src + i, n - i, s, p, codes + i);
}

void decode_group(const uint8_t* codes, std::size_t n, const IntqScheme& s, const GroupParams& p,
                  float* dst) {
  const __m512 scale = _mm512_set1_ps(p.scale);
  std::size_t i = 0;
  if (s.kind == IntqKind::kNf4) {
    const __m512 book = _mm512_loadu_ps(kNf4Codebook);
    for (; i + 16 <= n; i += 16) {
      const __m512i c = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + i)));
      _mm512_storeu_ps(dst + i, _mm512_mul_ps(_mm512_permutexvar_ps(c, book), scale));
    }
  } else {
    const __m512i zero = _mm512_set1_epi32(p.zero);
    for (; i + 16 <= n; i += 16) {
      const __m512i c = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + i)));
      _mm512_storeu_ps(dst + i, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(c, zero)), scale));
    }
  }
  if (i < n) scalar::decode_group(codes + i, n - i, s, p, dst + i);
}

namespace {
constexpr RowKernels kRowKernels{range_f32, encode_group, decode_group, pack_bits, unpack_bits};
}  // namespace

IntqStatus quantize_rows(const float* src, std::size_t rows, std::size_t cols,
                         std::size_t group_size, const IntqScheme& s, const GroupParams* fixed,
                         uint8_t* codes, float* scales, uint8_t* zeros, std::size_t* bad_group) {
  return quantize_rows_with(kRowKernels, src, rows, cols, group_size, s, fixed, codes, scales,
                            zeros, bad_group);
}

void dequantize_rows(const uint8_t* codes, std::size_t rows, std::size_t cols,
                     std::size_t group_size, const IntqScheme& s, const float* scales,
                     const uint8_t* zeros, std::size_t scale_row_stride, float* dst) {
  dequantize_rows_with(kRowKernels, codes, rows, cols, group_size, s, scales, zeros,
                       scale_row_stride, dst);
}

}  // namespace quantcore::avx512
