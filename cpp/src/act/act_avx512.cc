// AVX-512 activation kernels (see act.h): 16 values per step, vscalefps for 2^n (exact, with
// gradual underflow), the tail under a mask.
#include <immintrin.h>

#include "quantcore/act.h"

namespace quantcore::avx512 {
namespace {

// exp(y) for y <= 0 (y below act::kExpMin gives 0).
inline __m512 exp_nonpositive(__m512 y) {
  y = _mm512_max_ps(y, _mm512_set1_ps(act::kExpMin));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(y, _mm512_set1_ps(act::kLog2e)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(act::kLn2Hi), y);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(act::kLn2Lo), r);
  __m512 p = _mm512_set1_ps(act::kTaylor[7]);
  for (int k = 6; k >= 0; --k) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(act::kTaylor[k]));
  return _mm512_scalef_ps(p, n);
}

inline __m512 silu(__m512 x) {
  const __m512 e = exp_nonpositive(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_abs_ps(x)));
  const __mmask16 negative = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
  const __m512 numerator = _mm512_mask_mul_ps(x, negative, x, e);
  return _mm512_div_ps(numerator, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

}  // namespace

void swiglu(const float* gate, const float* up, float* out, std::size_t n) {
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 s = silu(_mm512_loadu_ps(gate + i));
    _mm512_storeu_ps(out + i, up == nullptr ? s : _mm512_mul_ps(s, _mm512_loadu_ps(up + i)));
  }
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m512 s = silu(_mm512_maskz_loadu_ps(m, gate + i));
    _mm512_mask_storeu_ps(out + i, m, up == nullptr ? s : _mm512_mul_ps(s, _mm512_maskz_loadu_ps(m, up + i)));
  }
}

}  // namespace quantcore::avx512
