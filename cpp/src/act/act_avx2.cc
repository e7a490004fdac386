// AVX2 activation kernels (see act.h): 8 values per step; 2^n is built in the exponent field in
// two factors 2^(n/2) and 2^(n - n/2), each a normal float, so results in the subnormal range
// round once more but are not flushed. The tail runs through a zero-padded buffer.
#include <immintrin.h>

#include <algorithm>

#include "quantcore/act.h"

namespace quantcore::avx2 {
namespace {

inline __m256 pow2(__m256i k) {  // 2^k for -126 <= k <= 127
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k, _mm256_set1_epi32(127)), 23));
}

// exp(y) for y <= 0 (y below act::kExpMin gives 0 or a subnormal within an ulp).
inline __m256 exp_nonpositive(__m256 y) {
  y = _mm256_max_ps(y, _mm256_set1_ps(act::kExpMin));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(y, _mm256_set1_ps(act::kLog2e)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(act::kLn2Hi), y);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(act::kLn2Lo), r);
  __m256 p = _mm256_set1_ps(act::kTaylor[7]);
  for (int k = 6; k >= 0; --k) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(act::kTaylor[k]));
  const __m256i ni = _mm256_cvtps_epi32(n);  // -151 <= n <= 0
  const __m256i half = _mm256_srai_epi32(ni, 1);
  return _mm256_mul_ps(_mm256_mul_ps(p, pow2(half)), pow2(_mm256_sub_epi32(ni, half)));
}

inline __m256 silu(__m256 x) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 e = exp_nonpositive(_mm256_or_ps(x, sign));  // -|x|
  const __m256 negative = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
  const __m256 numerator = _mm256_blendv_ps(x, _mm256_mul_ps(x, e), negative);
  return _mm256_div_ps(numerator, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

}  // namespace

void swiglu(const float* gate, const float* up, float* out, std::size_t n) {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 s = silu(_mm256_loadu_ps(gate + i));
    _mm256_storeu_ps(out + i, up == nullptr ? s : _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
  }
  if (i < n) {
    alignas(32) float g[8] = {}, u[8] = {}, o[8];
    std::copy(gate + i, gate + n, g);
    if (up != nullptr) std::copy(up + i, up + n, u);
    const __m256 s = silu(_mm256_load_ps(g));
    _mm256_store_ps(o, up == nullptr ? s : _mm256_mul_ps(s, _mm256_load_ps(u)));
    std::copy(o, o + (n - i), out + i);
  }
}

}  // namespace quantcore::avx2
