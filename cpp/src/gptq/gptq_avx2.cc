// AVX2 GPTQ column loop: the scalar reference's operations per element, 8 columns per
// vector and 4 rows at a time (each Hinv1 vector load serves 4 rows). The rank-1 update is a
// multiply then a subtract, never an FMA, so every element rounds as in the scalar code.
#include <immintrin.h>

#include "quantcore/gptq.h"

namespace quantcore::avx2 {

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
      const __m256 e0 = _mm256_set1_ps(e[0]), e1 = _mm256_set1_ps(e[1]);
      const __m256 e2 = _mm256_set1_ps(e[2]), e3 = _mm256_set1_ps(e[3]);
      std::size_t j = i + 1;
      for (; j + 8 <= block; j += 8) {
        const __m256 hv = _mm256_loadu_ps(h + j);
        _mm256_storeu_ps(wr[0] + j, _mm256_sub_ps(_mm256_loadu_ps(wr[0] + j), _mm256_mul_ps(e0, hv)));
        _mm256_storeu_ps(wr[1] + j, _mm256_sub_ps(_mm256_loadu_ps(wr[1] + j), _mm256_mul_ps(e1, hv)));
        _mm256_storeu_ps(wr[2] + j, _mm256_sub_ps(_mm256_loadu_ps(wr[2] + j), _mm256_mul_ps(e2, hv)));
        _mm256_storeu_ps(wr[3] + j, _mm256_sub_ps(_mm256_loadu_ps(wr[3] + j), _mm256_mul_ps(e3, hv)));
      }
      for (; j < block; ++j) {  // the last columns, element by element (same operations)
        wr[0][j] -= e[0] * h[j];
        wr[1][j] -= e[1] * h[j];
        wr[2][j] -= e[2] * h[j];
        wr[3][j] -= e[3] * h[j];
      }
    }
  }
  // The last rows (fewer than a tile): the reference, row by row.
  scalar::gptq_columns(w + r0 * ldw, ldw, rows - r0, block, c0, c1, hinv, s, params + r0, params_stride,
                       group_of, codes + r0 * ldc, ldc, err + r0 * block, losses + r0);
}

}  // namespace quantcore::avx2
