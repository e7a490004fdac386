// AVX-512 (F, BW, DQ, VL) group quantization: 16 lanes of the scalar reference's arithmetic
// (IEEE division, round-to-nearest-even conversion, integer clamp) for codes, the parameters of
// 16 groups at once (scalar::group_params restated across lanes), the scalar reference for
// tails and special cases. Only this file is compiled with AVX-512 flags.
#include <immintrin.h>

#include <cmath>

#include "intq_rows.h"
#include "quantcore/intq.h"
#include "quantcore/pack.h"

namespace quantcore::avx512 {
namespace {

// NF4: the code is the number of midpoints y exceeds (a tie stays on the lower entry), found by
// a 4-step binary search over the 15 sorted midpoints held in one register.
inline __m512i nf4_codes(__m512 y, __m512 midpoints) {
  __m512i code = _mm512_setzero_si512();
  for (int step = 8; step >= 1; step /= 2) {
    const __m512 m = _mm512_permutexvar_ps(_mm512_add_epi32(code, _mm512_set1_epi32(step - 1)), midpoints);
    code = _mm512_mask_add_epi32(code, _mm512_cmp_ps_mask(y, m, _CMP_GT_OQ), code, _mm512_set1_epi32(step));
  }
  return code;
}

// Reduces 16 vectors at once: lane j of the result is op over the 16 lanes of v[j]. Each level
// halves the vectors by pairing halves of two inputs (15 ops instead of 16 x 4 for separate
// reductions); the final permute undoes the interleaving the in-lane levels leave behind.
template <class Op>
inline __m512 reduce_16x16(const __m512* v, Op op) {
  __m512 a[8], b[4], c[2];
  for (int j = 0; j < 8; ++j)  // 256-bit halves: lanes 0-7 from v[2j], 8-15 from v[2j+1]
    a[j] = op(_mm512_shuffle_f32x4(v[2 * j], v[2 * j + 1], _MM_SHUFFLE(1, 0, 1, 0)),
              _mm512_shuffle_f32x4(v[2 * j], v[2 * j + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  for (int j = 0; j < 4; ++j)  // 128-bit quads: quad k of b[j] reduces v[4j + k]
    b[j] = op(_mm512_shuffle_f32x4(a[2 * j], a[2 * j + 1], _MM_SHUFFLE(2, 0, 2, 0)),
              _mm512_shuffle_f32x4(a[2 * j], a[2 * j + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  for (int j = 0; j < 2; ++j)  // pairs within quads: quad k holds v[8j + k] twice, v[8j + 4 + k] twice
    c[j] = op(_mm512_shuffle_ps(b[2 * j], b[2 * j + 1], _MM_SHUFFLE(1, 0, 1, 0)),
              _mm512_shuffle_ps(b[2 * j], b[2 * j + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  // Singles: lane 4k + m now reduces v[4m + k].
  const __m512 d = op(_mm512_shuffle_ps(c[0], c[1], _MM_SHUFFLE(2, 0, 2, 0)),
                      _mm512_shuffle_ps(c[0], c[1], _MM_SHUFFLE(3, 1, 3, 1)));
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(order, d);
}

// scalar::round_scale for 16 lanes: vcvtps2ph rounds nearest-even with float16's subnormals and
// overflow to inf, exactly as the scalar code; bfloat16 is the same bit rounding as scalar.
inline __m512 round_scale16(__m512 x, ScaleType t) {
  switch (t) {
    case ScaleType::kFloat16:
      return _mm512_cvtph_ps(_mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    case ScaleType::kBFloat16: {
      const __m512i b = _mm512_castps_si512(x);
      const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
      const __m512i rounded = _mm512_add_epi32(_mm512_add_epi32(b, _mm512_set1_epi32(0x7FFF)), lsb);
      return _mm512_castsi512_ps(_mm512_and_si512(rounded, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u))));
    }
    default:
      return x;
  }
}

// scalar::group_params for 16 groups with ranges [lo, hi] (finite). Returns false, writing
// nothing, if a scale overflows: the caller then lets the scalar code report it.
inline bool group_params16(__m512 lo, __m512 hi, const IntqScheme& s, GroupParams* p) {
  const __m512 zero = _mm512_setzero_ps();
  const __m512 sign = _mm512_set1_ps(-0.0f);
  const __m512 absmax = _mm512_max_ps(_mm512_xor_ps(lo, sign), hi);
  const __mmask16 constant = _mm512_cmp_ps_mask(lo, hi, _CMP_EQ_OQ) & _mm512_cmp_ps_mask(lo, zero, _CMP_NEQ_OQ);
  int32_t zero_point = 0, code_min = 0, code_max = 15;
  __m512 exact = absmax;
  if (s.kind == IntqKind::kSymmetric) {
    const int32_t qmax = (1 << (s.bits - 1)) - 1;
    zero_point = 1 << (s.bits - 1);
    code_min = zero_point - qmax;
    code_max = zero_point + qmax;
    exact = _mm512_mask_blend_ps(constant, _mm512_div_ps(absmax, _mm512_set1_ps(static_cast<float>(qmax))), absmax);
  } else if (s.kind == IntqKind::kAsymmetric) {
    code_max = (1 << s.bits) - 1;
    const __m512 range = _mm512_sub_ps(_mm512_max_ps(hi, zero), _mm512_min_ps(lo, zero));
    exact = _mm512_mask_blend_ps(constant, _mm512_div_ps(range, _mm512_set1_ps(static_cast<float>(code_max))), absmax);
  }
  const __m512 rounded = round_scale16(exact, s.scale_type);
  const __mmask16 nonzero = _mm512_cmp_ps_mask(absmax, zero, _CMP_NEQ_OQ);
  if ((_mm512_cmp_ps_mask(rounded, _mm512_set1_ps(INFINITY), _CMP_EQ_OQ) & nonzero) != 0) return false;
  // The smallest positive value of the scale type (scalar smallest_positive): 2^-24, 2^-133, 2^-149.
  const int tiny_bits = s.scale_type == ScaleType::kFloat16 ? 0x33800000 : s.scale_type == ScaleType::kBFloat16 ? 0x00010000 : 1;
  const __m512 tiny = _mm512_castsi512_ps(_mm512_set1_epi32(tiny_bits));
  __m512 scale = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(rounded, zero, _CMP_EQ_OQ), rounded, tiny);
  scale = _mm512_mask_blend_ps(nonzero, _mm512_set1_ps(1.0f), scale);
  alignas(64) float scales[16];
  alignas(64) int32_t zeros[16];
  _mm512_store_ps(scales, scale);
  if (s.kind == IntqKind::kAsymmetric) {
    const __m512 neg_lo = _mm512_xor_ps(_mm512_min_ps(lo, zero), sign);
    const __m512i z = _mm512_cvtps_epi32(_mm512_div_ps(neg_lo, scale));  // nearest-even, like round_even
    _mm512_store_si512(zeros, _mm512_min_epi32(z, _mm512_set1_epi32(code_max)));
  } else {
    _mm512_store_si512(zeros, _mm512_set1_epi32(zero_point));
  }
  for (int j = 0; j < 16; ++j) p[j] = GroupParams{scales[j], zeros[j], code_min, code_max};
  return true;
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

IntqStatus params_f32(const float* src, std::size_t group_size, std::size_t n_groups,
                      const IntqScheme& s, GroupParams* p, std::size_t* bad_group) {
  std::size_t g = 0;
  if (group_size % 16 == 0) {
    // 16 groups at a time: per-group min / max vectors, one transposed reduction, the
    // parameters in 16 lanes. NaN is caught by an unordered compare, inf by the range itself;
    // either, or a scale overflow, hands the block to the scalar code to report exactly.
    const __m512 inf = _mm512_set1_ps(INFINITY);
    for (; g + 16 <= n_groups; g += 16) {
      __m512 lo[16], hi[16];
      __mmask16 nan = 0;
      for (int j = 0; j < 16; ++j) {
        const float* x = src + (g + j) * group_size;
        __m512 l = _mm512_loadu_ps(x), h = l;
        nan |= _mm512_cmp_ps_mask(l, l, _CMP_UNORD_Q);
        for (std::size_t i = 16; i < group_size; i += 16) {
          const __m512 v = _mm512_loadu_ps(x + i);
          l = _mm512_min_ps(l, v);
          h = _mm512_max_ps(h, v);
          nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        }
        lo[j] = l;
        hi[j] = h;
      }
      const __m512 block_lo = reduce_16x16(lo, [](__m512 a, __m512 b) { return _mm512_min_ps(a, b); });
      const __m512 block_hi = reduce_16x16(hi, [](__m512 a, __m512 b) { return _mm512_max_ps(a, b); });
      const bool finite = nan == 0 && _mm512_cmp_ps_mask(block_lo, _mm512_sub_ps(_mm512_setzero_ps(), inf), _CMP_EQ_OQ) == 0 &&
                          _mm512_cmp_ps_mask(block_hi, inf, _CMP_EQ_OQ) == 0;
      if (!finite || !group_params16(block_lo, block_hi, s, p + g)) {
        const IntqStatus status = scalar::params_f32(src + g * group_size, group_size, 16, s, p + g, bad_group);
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
  const __m512 scale = _mm512_set1_ps(p.scale);
  std::size_t i = 0;
  if (s.kind == IntqKind::kNf4) {
    const __m512 midpoints = _mm512_maskz_loadu_ps(0x7FFF, kNf4Midpoints);  // lane 15 unused
    for (; i + 16 <= n; i += 16) {
      const __m512 y = _mm512_div_ps(_mm512_loadu_ps(src + i), scale);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(codes + i), _mm512_cvtepi32_epi8(nf4_codes(y, midpoints)));
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

}  // namespace quantcore::avx512
