// AVX2 quantized matmul (compiled with -mavx2 -mfma -mf16c -mbmi2).
//
// gemv_rows: rows decoded by the shared (dispatched) decoders into an L1-sized buffer, then
// dotted with 4 accumulators; gemm_rows: kGemmRows rows decoded into buf and a 3 x 32
// register-blocked microkernel (12 accumulators of 8 floats); qdot_rows_int8: the shared
// 256-bit integer loops (qmatmul_ymm.h).
#include <immintrin.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "quantcore/pack.h"
#include "quantcore/qmatmul.h"

namespace quantcore::avx2 {
namespace {

#include "qmatmul_ymm.h"

float dot(const float* a, const float* b, std::size_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
  std::size_t k = 0;
  for (; k + 32 <= n; k += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 8), _mm256_loadu_ps(b + k + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 16), _mm256_loadu_ps(b + k + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 24), _mm256_loadu_ps(b + k + 24), s3);
  }
  for (; k + 8 <= n; k += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), s0);
  float sum = ymm::hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  for (; k < n; ++k) sum += a[k] * b[k];
  return sum;
}

template <int R>
void micro_tile(const float* wr, std::size_t cols, const float* panel, float* tile) {
  __m256 acc[R][4];
  for (int r = 0; r < R; ++r)
    for (int h = 0; h < 4; ++h) acc[r][h] = _mm256_setzero_ps();
  for (std::size_t k = 0; k < cols; ++k) {
    const float* xk = panel + k * kPanel;
    for (int r = 0; r < R; ++r) {
      const __m256 wv = _mm256_broadcast_ss(wr + r * cols + k);
      for (int h = 0; h < 4; ++h) acc[r][h] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xk + 8 * h), acc[r][h]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int h = 0; h < 4; ++h) _mm256_storeu_ps(tile + r * kPanel + 8 * h, acc[r][h]);
}

constexpr int kMicroRows = 3;
constexpr std::size_t kGemvRows = 4;  // rows decoded at a time by gemv_rows

}  // namespace

#include "qmatmul_decoded.h"

void gemv_rows(const QWeight& w, std::size_t r0, std::size_t r1, const QInput& in, float* y, std::size_t ldy) {
  decoded::gemv_rows(w, r0, r1, in, y, ldy);
}

void quantize_int8(const float* x, std::size_t cols, std::size_t block, int8_t* q, float* sx, int32_t* qsum) {
  scalar::quantize_int8(x, cols, block, q, sx, qsum);  // a small share of the work: the reference serves
}

void qdot_rows_int8(const QWeight& w, std::size_t r0, std::size_t r1, const QInputInt8& in, uint8_t* buf, float* y,
                    std::size_t ldy) {
  ymm::qdot_rows(w, r0, r1, in, buf, y, ldy);
}

}  // namespace quantcore::avx2
