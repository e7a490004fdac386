// AVX-512 GPTQ column loop: the scalar reference's operations per element, 16 columns per
// vector and 4 rows at a time (each Hinv1 vector load serves 4 rows). The rank-1 update is a
// multiply then a subtract, never an FMA, so every element rounds as in the scalar code.
#include <immintrin.h>

#include "quantcore/gptq.h"

namespace quantcore::avx512 {

namespace {
constexpr std::size_t kTile = 4;  // rows sharing one pass over Hinv1's row i
}  // namespace

void gptq_columns(float* w, std::size_t ldw, std::size_t rows, std::size_t block, std::size_t c0,
                  std::size_t c1, const float* hinv, const GptqScheme& s, const GptqParams* params,
                  std::size_t params_stride, const int32_t* group_of, uint8_t* codes,
                  std::size_t ldc, float* err, double* losses) {
  std::size_t r0 = 0;
  for (; r0 + kTile <= rows; r0 += kTile) {
    float* wr[kTile];
    for (std::size_t t = 0; t < kTile; ++t) wr[t] = w + (r0 + t) * ldw;
    for (std::size_t i = c0; i < c1; ++i) {
      const float* h = hinv + i * block;
      const float d = h[i];
      const GptqParams* pg = params + static_cast<std::size_t>(group_of[i]) * params_stride + r0;
      float e[kTile];
      for (std::size_t t = 0; t < kTile; ++t) {
        float dq;
        codes[(r0 + t) * ldc + i] = scalar::gptq_encode(wr[t][i], s, pg[t], &dq);
        e[t] = (wr[t][i] - dq) / d;
        err[(r0 + t) * block + i] = e[t];
        losses[r0 + t] += 0.5 * static_cast<double>(e[t]) * static_cast<double>(e[t]);
      }
      const __m512 e0 = _mm512_set1_ps(e[0]), e1 = _mm512_set1_ps(e[1]);
      const __m512 e2 = _mm512_set1_ps(e[2]), e3 = _mm512_set1_ps(e[3]);
      std::size_t j = i + 1;
      for (; j + 16 <= block; j += 16) {
        const __m512 hv = _mm512_loadu_ps(h + j);
        _mm512_storeu_ps(wr[0] + j, _mm512_sub_ps(_mm512_loadu_ps(wr[0] + j), _mm512_mul_ps(e0, hv)));
        _mm512_storeu_ps(wr[1] + j, _mm512_sub_ps(_mm512_loadu_ps(wr[1] + j), _mm512_mul_ps(e1, hv)));
        _mm512_storeu_ps(wr[2] + j, _mm512_sub_ps(_mm512_loadu_ps(wr[2] + j), _mm512_mul_ps(e2, hv)));
        _mm512_storeu_ps(wr[3] + j, _mm512_sub_ps(_mm512_loadu_ps(wr[3] + j), _mm512_mul_ps(e3, hv)));
      }
      if (j < block) {  // the last columns under a mask
        const __mmask16 m = static_cast<__mmask16>((1u << (block - j)) - 1u);
        const __m512 hv = _mm512_maskz_loadu_ps(m, h + j);
        _mm512_mask_storeu_ps(wr[0] + j, m, _mm512_sub_ps(_mm512_maskz_loadu_ps(m, wr[0] + j), _mm512_mul_ps(e0, hv)));
        _mm512_mask_storeu_ps(wr[1] + j, m, _mm512_sub_ps(_mm512_maskz_loadu_ps(m, wr[1] + j), _mm512_mul_ps(e1, hv)));
        _mm512_mask_storeu_ps(wr[2] + j, m, _mm512_sub_ps(_mm512_maskz_loadu_ps(m, wr[2] + j), _mm512_mul_ps(e2, hv)));
        _mm512_mask_storeu_ps(wr[3] + j, m, _mm512_sub_ps(_mm512_maskz_loadu_ps(m, wr[3] + j), _mm512_mul_ps(e3, hv)));
      }
    }
  }
  // The last rows (fewer than a tile): the reference, row by row.
  scalar::gptq_columns(w + r0 * ldw, ldw, rows - r0, block, c0, c1, hinv, s, params + r0, params_stride,
                       group_of, codes + r0 * ldc, ldc, err + r0 * block, losses + r0);
}

}  // namespace quantcore::avx512
