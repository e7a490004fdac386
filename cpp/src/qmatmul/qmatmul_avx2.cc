// AVX2 quantized matmul (compiled with -mavx2 -mfma -mf16c -mbmi2).
//
// gemv_rows: 2-, 3-, 4- and 8-bit integer codes and nf4 decoded in registers (gemv_4bit_wide,
// gemv_codes), fp8 through float16 (gemv_fp8); other layouts decoded by the shared (dispatched)
// decoders into an L1-sized buffer, then dotted with 4 accumulators; gemm_rows: kGemmRows rows
// decoded into buf and a 3 x 32 register-blocked microkernel (12 accumulators of 8 floats);
// qdot_rows_int8: the shared 256-bit integer loops (qmatmul_ymm.h).
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "quantcore/intq.h"
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

// 4-bit codes (int4 sym / asym, q4_0, q4_1, nf4; group a multiple of 32, in_features of 64) in
// registers: 32 bytes of a 64-code block read as 8 words of 8 codes, a shift by 4t and a mask
// give code 8j + t in lane j, matched by x in x_wide order; code - zero is formed in int32
// (exact) and converted (nf4: the codebook value, two vpermps and a blend on bit 3), and
// multiplied with x, 8 at a time. Lanes 0-3 hold codes 0-31 of the block and lanes 4-7 codes
// 32-63, so each half takes its own group's scale once per block (q4_1: its m times the sum of
// those x). The decode-then-dot path ran at about 0.8x numpy's float32 GEMV.
template <int M, bool kNf4>
void gemv_4bit_wide(const QWeight& w, std::size_t r0, std::size_t r1, const float* x, float* y, std::size_t ldy) {
  const std::size_t cols = w.cols, per_group = w.group_size / 32;
  const bool has_offset = w.format == QWeightFormat::kQ4_1;
  const __m256i low = _mm256_set1_epi32(0x0F);
  const __m256 book_lo = _mm256_loadu_ps(kNf4Codebook), book_hi = _mm256_loadu_ps(kNf4Codebook + 8);
  ymm::RowGroups p(cols / w.group_size);
  for (std::size_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.codes + r * w.row_bytes;
    ymm::row_groups(w, r, p);
    __m256 acc[M];
    for (int i = 0; i < M; ++i) acc[i] = _mm256_setzero_ps();
    for (std::size_t k0 = 0; k0 < cols; k0 += 64) {
      const std::size_t ga = k0 / 32 / per_group, gb = (k0 / 32 + 1) / per_group;  // groups of the halves
      auto halves = [](float a, float b) { return _mm256_set_m128(_mm_set1_ps(b), _mm_set1_ps(a)); };
      const __m256i words = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + k0 / 2));
      const __m256i zero = _mm256_cvtps_epi32(halves(p.zero[ga], p.zero[gb]));
      __m256 part[M], xs[M];
      for (int i = 0; i < M; ++i) part[i] = xs[i] = _mm256_setzero_ps();
#pragma GCC unroll 8
      for (int t = 0; t < 8; ++t) {
        const __m256i c = _mm256_and_si256(_mm256_srli_epi32(words, 4 * t), low);
        const __m256 v = kNf4 ? _mm256_blendv_ps(_mm256_permutevar8x32_ps(book_lo, c), _mm256_permutevar8x32_ps(book_hi, c),
                                                 _mm256_castsi256_ps(_mm256_slli_epi32(c, 28)))
                              : _mm256_cvtepi32_ps(_mm256_sub_epi32(c, zero));
        for (int i = 0; i < M; ++i) {
          const __m256 xv = _mm256_loadu_ps(x + i * cols + k0 + 8 * t);
          part[i] = _mm256_fmadd_ps(v, xv, part[i]);
          if (has_offset) xs[i] = _mm256_add_ps(xs[i], xv);
        }
      }
      const __m256 scale = halves(p.scale[ga], p.scale[gb]);
      for (int i = 0; i < M; ++i) acc[i] = _mm256_fmadd_ps(part[i], scale, acc[i]);
      if (has_offset) {
        const __m256 offset = halves(p.offset[ga], p.offset[gb]);
        for (int i = 0; i < M; ++i) acc[i] = _mm256_fmadd_ps(xs[i], offset, acc[i]);
      }
    }
    for (int i = 0; i < M; ++i) y[i * ldy + r] = ymm::hsum(acc[i]);
  }
}

// 2-, 3- and 8-bit integer codes (group and in_features multiples of 8) in registers: 8 codes
// at a time into 32-bit lanes (8-bit: vpmovzxbd; 2- and 3-bit: their b bytes broadcast, shifted
// right by b * lane and masked), code - zero in int32 (exact), converted and multiplied with x in
// order; each group's sum is scaled once. The decode-then-dot path ran at 0.6-1.1x numpy.
template <int kBits, int M>
void gemv_codes(const QWeight& w, std::size_t r0, std::size_t r1, const float* x, float* y, std::size_t ldy) {
  const std::size_t cols = w.cols, group = w.group_size, n_groups = cols / group;
  const __m256i shifts = _mm256_setr_epi32(0, kBits, 2 * kBits, 3 * kBits, 4 * kBits, 5 * kBits, 6 * kBits, 7 * kBits);
  const __m256i mask = _mm256_set1_epi32((1 << kBits) - 1);
  ymm::RowGroups p(n_groups);
  for (std::size_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.codes + r * w.row_bytes;
    ymm::row_groups(w, r, p);
    __m256 acc[M];
    for (int i = 0; i < M; ++i) acc[i] = _mm256_setzero_ps();
    for (std::size_t g = 0; g < n_groups; ++g) {
      const __m256i zero = _mm256_set1_epi32(static_cast<int32_t>(p.zero[g]));
      auto codes8 = [&](std::size_t k) {  // codes k .. k + 7 as int32 lanes, less the zero point
        __m256i c;
        if (kBits == 8) {
          c = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + k)));
        } else {
          const uint8_t* src = row + k * kBits / 8;
          uint32_t word;
          if (k + 8 < cols)  // a 4-byte load (the byte past the 8 codes' ones is the row's)
            std::memcpy(&word, src, 4);
          else  // the row's last codes: only their own bytes
            word = kBits == 2 ? src[0] | src[1] << 8 : src[0] | src[1] << 8 | src[2] << 16;
          c = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int32_t>(word)), shifts), mask);
        }
        return _mm256_cvtepi32_ps(_mm256_sub_epi32(c, zero));
      };
      __m256 part0[M], part1[M];  // two chains of multiply-adds per batch row
      for (int i = 0; i < M; ++i) part0[i] = part1[i] = _mm256_setzero_ps();
      std::size_t k = g * group;
      for (; k + 16 <= (g + 1) * group; k += 16) {
        const __m256 v0 = codes8(k), v1 = codes8(k + 8);
        for (int i = 0; i < M; ++i) {
          part0[i] = _mm256_fmadd_ps(v0, _mm256_loadu_ps(x + i * cols + k), part0[i]);
          part1[i] = _mm256_fmadd_ps(v1, _mm256_loadu_ps(x + i * cols + k + 8), part1[i]);
        }
      }
      if (k < (g + 1) * group) {
        const __m256 v0 = codes8(k);
        for (int i = 0; i < M; ++i) part0[i] = _mm256_fmadd_ps(v0, _mm256_loadu_ps(x + i * cols + k), part0[i]);
      }
      const __m256 scale = _mm256_set1_ps(p.scale[g]);
      for (int i = 0; i < M; ++i) acc[i] = _mm256_fmadd_ps(_mm256_add_ps(part0[i], part1[i]), scale, acc[i]);
    }
    for (int i = 0; i < M; ++i) y[i * ldy + r] = ymm::hsum(acc[i]);
  }
}

}  // namespace

#include "qmatmul_decoded.h"

namespace {

// fp8 (group a multiple of 16) in registers, 16 codes at a time: widened to 16-bit words, e5m2
// is the high byte of a float16; e4m3fn << 7 is a float16 of 2^-8 times the value (exponent bias
// 15 vs 7; 2^8 goes into the group scale), its sign moved from bit 14 to 15 by adding bit 14 to
// itself; vcvtph2ps converts exactly, subnormals included. A row holding an e4m3fn NaN code
// (magnitude 0x7F, tracked on the way) is redone by the decode-then-dot path so the NaN reaches
// the result. The decode-then-dot path alone ran at about 0.6x numpy's float32 GEMV.
template <int M, bool kE4m3fn>
void gemv_fp8(const QWeight& w, std::size_t r0, std::size_t r1, const QInput& in, float* y, std::size_t ldy) {
  const std::size_t cols = w.cols, group = w.group_size, n_groups = cols / group;
  const float unit = kE4m3fn ? 256.0f : 1.0f;
  ymm::RowGroups p(n_groups);
  for (std::size_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.codes + r * w.row_bytes;
    ymm::row_groups(w, r, p);
    __m128i magnitude = _mm_setzero_si128();
    __m256 acc[M];
    for (int i = 0; i < M; ++i) acc[i] = _mm256_setzero_ps();
    for (std::size_t g = 0; g < n_groups; ++g) {
      __m256 part0[M], part1[M];
      for (int i = 0; i < M; ++i) part0[i] = part1[i] = _mm256_setzero_ps();
      for (std::size_t k = g * group; k < (g + 1) * group; k += 16) {
        const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + k));
        __m256i v = _mm256_cvtepu8_epi16(bytes);
        if (kE4m3fn) {
          magnitude = _mm_max_epu8(magnitude, _mm_and_si128(bytes, _mm_set1_epi8(0x7F)));
          const __m256i t = _mm256_slli_epi16(v, 7);
          v = _mm256_add_epi16(t, _mm256_and_si256(t, _mm256_set1_epi16(0x4000)));
        } else {
          v = _mm256_slli_epi16(v, 8);
        }
        const __m256 lo = _mm256_cvtph_ps(_mm256_castsi256_si128(v)), hi = _mm256_cvtph_ps(_mm256_extracti128_si256(v, 1));
        for (int i = 0; i < M; ++i) {
          part0[i] = _mm256_fmadd_ps(lo, _mm256_loadu_ps(in.x + i * cols + k), part0[i]);
          part1[i] = _mm256_fmadd_ps(hi, _mm256_loadu_ps(in.x + i * cols + k + 8), part1[i]);
        }
      }
      const __m256 scale = _mm256_set1_ps(p.scale[g] * unit);
      for (int i = 0; i < M; ++i) acc[i] = _mm256_fmadd_ps(_mm256_add_ps(part0[i], part1[i]), scale, acc[i]);
    }
    if (kE4m3fn && _mm_movemask_epi8(_mm_cmpeq_epi8(magnitude, _mm_set1_epi8(0x7F))) != 0) {
      decoded::gemv_rows(w, r, r + 1, in, y, ldy);  // a NaN code: decode exactly
      continue;
    }
    for (int i = 0; i < M; ++i) y[i * ldy + r] = ymm::hsum(acc[i]);
  }
}

}  // namespace

void gemv_rows(const QWeight& w, std::size_t r0, std::size_t r1, const QInput& in, float* y, std::size_t ldy) {
  const bool nf4 = w.format == QWeightFormat::kIntq && w.scheme.kind == IntqKind::kNf4;
  if ((w.format == QWeightFormat::kIntq || w.format == QWeightFormat::kQ4_1) && w.scheme.bits == 4 &&
      in.x_wide != nullptr && w.group_size % 32 == 0 && in.m <= 8) {
    ymm::with_m(in.m, [&](auto c) {
      constexpr int M = decltype(c)::value;
      nf4 ? gemv_4bit_wide<M, true>(w, r0, r1, in.x_wide, y, ldy) : gemv_4bit_wide<M, false>(w, r0, r1, in.x_wide, y, ldy);
    });
    return;
  }
  const int bits = w.scheme.bits;
  if (plain_integer_codes(w) && (bits == 2 || bits == 3 || bits == 8) && w.group_size % 8 == 0 && in.m <= 8) {
    ymm::with_m(in.m, [&](auto c) {
      constexpr int M = decltype(c)::value;
      if (bits == 8)
        gemv_codes<8, M>(w, r0, r1, in.x, y, ldy);
      else if (bits == 3)
        gemv_codes<3, M>(w, r0, r1, in.x, y, ldy);
      else
        gemv_codes<2, M>(w, r0, r1, in.x, y, ldy);
    });
    return;
  }
  const bool fp8 = w.format == QWeightFormat::kE4m3fn || w.format == QWeightFormat::kE5m2;
  if (fp8 && w.group_size % 16 == 0 && in.m <= 8) {
    ymm::with_m(in.m, [&](auto c) {
      constexpr int M = decltype(c)::value;
      if (w.format == QWeightFormat::kE4m3fn)
        gemv_fp8<M, true>(w, r0, r1, in, y, ldy);
      else
        gemv_fp8<M, false>(w, r0, r1, in, y, ldy);
    });
    return;
  }
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
