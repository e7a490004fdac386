// AVX-512 quantized matmul (compiled with -mavx512f/bw/dq/vl and the AVX2 flags). The int8
// activation path uses qmatmul_avx512vnni.cc where the CPU has VNNI, else the 256-bit loops.
//
// gemv_rows decodes codes in registers, never through memory:
//   4-bit (int4 sym/asym, nf4, q4_0, q4_1; group a multiple of 32): per group, a 16-entry table
//     holds the exact dequantized value of each code ((c - zero) * scale, nf4[c] * scale,
//     c * d + m), and vpermps turns 16 codes into 16 weights. A byte holds an even code (low
//     nibble) and an odd code (high nibble), so x comes in x_pairs order and no code is moved.
//     With in_features a multiple of 64, x comes in x_wide order and 32 bytes are read as 8
//     words of 8 codes: a shift puts one code of every word in the low nibble, all that the
//     256-bit vpermt2ps reads (groups of 64k: gemv_4bit_halves; groups of 32, q4_0 among
//     them: the table holds code - zero and each word's scale is applied once per 64 values,
//     gemv_4bit_lanes).
//   8-bit (int8, q8_0; group a multiple of 16): sum((code - zero) * x) per group, times scale.
//   2- and 3-bit (group a multiple of 16, in_features a multiple of 64): on CPUs with VBMI,
//     avx512vbmi::gemv_lowbit (a 16-entry table as for 4-bit codes); else decode-and-dot.
//   fp8 (group a multiple of 16): e5m2 is the high byte of a float16; e4m3fn << 7 is a float16
//     of 2^-8 times the value (exponent bias 15 vs 7), sign moved from bit 14 to 15 by adding
//     bit 14 to itself; vcvtph2ps converts exactly (subnormals included). A row holding a NaN
//     code (S.1111.111, seen as the largest magnitude byte, tracked on the way) is redone by
//     the decode-and-dot path so the NaN reaches the result. Where the CPU has VBMI and the
//     group is a multiple of 64, avx512vbmi::gemv_fp8 (table lookups, no conversion) runs instead.
// gemm_rows decodes kGemmRows rows into buf and runs a 12 x 32 register-blocked microkernel
// (24 accumulators): per k, two loads of the x panel and 12 broadcasts of W from a k-major
// chunk of 256 columns.
#include <immintrin.h>

#include <algorithm>
#include <type_traits>
#include <utility>
#include <vector>

#include "quantcore/fp8.h"
#include "quantcore/intq.h"
#include "quantcore/pack.h"
#include "quantcore/qmatmul.h"

namespace quantcore::avx512 {
namespace {

#include "qmatmul_ymm.h"

constexpr int kMaxM = 8;

float dot(const float* a, const float* b, std::size_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  std::size_t k = 0;
  for (; k + 32 <= n; k += 32) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + k), _mm512_loadu_ps(b + k), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + k + 16), _mm512_loadu_ps(b + k + 16), s1);
  }
  for (; k < n; k += 16) {
    const __mmask16 mask = n - k >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (n - k)) - 1);
    s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, a + k), _mm512_maskz_loadu_ps(mask, b + k), s0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

// The decode-and-dot path for any format.
void gemv_decoded(const QWeight& w, std::size_t r0, std::size_t r1, const QInput& in, float* y, std::size_t ldy) {
  std::vector<float> row(w.cols);
  for (std::size_t r = r0; r < r1; ++r) {
    scalar::decode_rows(w, r, 1, row.data());
    for (std::size_t i = 0; i < in.m; ++i) y[i * ldy + r] = dot(in.x + i * w.cols, row.data(), w.cols);
  }
}

// The 16 weights codes 0..15 stand for in group g (parameters p of the row).
inline __m512 table_4bit(const QWeight& w, const ymm::RowGroups& p, std::size_t g) {
  const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512 scale = _mm512_set1_ps(p.scale[g]);
  if (w.format == QWeightFormat::kQ4_1)  // c * d, rounded, then + m (no fused multiply-add)
    return _mm512_add_ps(_mm512_mul_ps(iota, scale), _mm512_set1_ps(p.offset[g]));
  if (w.scheme.kind == IntqKind::kNf4) return _mm512_mul_ps(_mm512_loadu_ps(kNf4Codebook), scale);
  return _mm512_mul_ps(_mm512_sub_ps(iota, _mm512_set1_ps(p.zero[g])), scale);
}

template <int M>
void gemv_4bit(const QWeight& w, std::size_t r0, std::size_t r1, const float* x, float* y, std::size_t ldy) {
  const std::size_t cols = w.cols, n_groups = cols / w.group_size, per_group = w.group_size / 32;
  ymm::RowGroups p(n_groups);
  for (std::size_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.codes + r * w.row_bytes;
    ymm::row_groups(w, r, p);
    __m512 acc[M][2];
    for (int i = 0; i < M; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (std::size_t g = 0; g < n_groups; ++g) {
      const __m512 table = table_4bit(w, p, g);
      for (std::size_t b = g * per_group; b < (g + 1) * per_group; ++b) {
        const __m512i bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 16 * b)));
        const __m512 even = _mm512_permutexvar_ps(bytes, table);  // vpermps reads index bits 0-3 only
        const __m512 odd = _mm512_permutexvar_ps(_mm512_srli_epi32(bytes, 4), table);
        for (int i = 0; i < M; ++i) {
          acc[i][0] = _mm512_fmadd_ps(even, _mm512_loadu_ps(x + i * cols + 32 * b), acc[i][0]);
          acc[i][1] = _mm512_fmadd_ps(odd, _mm512_loadu_ps(x + i * cols + 32 * b + 16), acc[i][1]);
        }
      }
    }
    for (int i = 0; i < M; ++i) y[i * ldy + r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[i][0], acc[i][1]));
  }
}

// acc[i] += scale * sum over the group [k0, k0 + n) of decode(k) * x[i, k], n a multiple of 16;
// decode(k) gives the 16 weights (less the scale) at k, decode_pair(k) the 32 at k. Two partial
// sums per batch row, kept in named registers (an array indexed in a loop went through the stack).
template <int M, class Decode, class DecodePair>
inline void group_dot(Decode decode, DecodePair decode_pair, const float* x, std::size_t cols, std::size_t k0,
                      std::size_t n, __m512 scale, __m512* acc) {
  __m512 p0[M], p1[M];
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i) p0[i] = p1[i] = _mm512_setzero_ps();
  std::size_t k = k0;
  const std::size_t end = k0 + n;
  for (; k + 32 <= end; k += 32) {
    const auto [v0, v1] = decode_pair(k);
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i) {
      p0[i] = _mm512_fmadd_ps(v0, _mm512_loadu_ps(x + i * cols + k), p0[i]);
      p1[i] = _mm512_fmadd_ps(v1, _mm512_loadu_ps(x + i * cols + k + 16), p1[i]);
    }
  }
  if (k < end) {  // a group of 16 (mod 32)
    const __m512 v0 = decode(k);
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i) p0[i] = _mm512_fmadd_ps(v0, _mm512_loadu_ps(x + i * cols + k), p0[i]);
  }
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i) acc[i] = _mm512_fmadd_ps(_mm512_add_ps(p0[i], p1[i]), scale, acc[i]);
}

// The 16 weights of table_4bit as two 256-bit halves (codes 0..7, 8..15) for vpermt2ps.
struct Table256 {
  __m256 lo, hi;
};

inline Table256 table_4bit_256(const QWeight& w, const ymm::RowGroups& p, std::size_t g) {
  const __m512 t = table_4bit(w, p, g);
  return {_mm512_castps512_ps256(t), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(t), 1))};
}

// vpermt2ps: index bits 0-2 pick the entry, bit 3 the half; higher bits are ignored.
inline __m256 lookup(const Table256& t, __m256i index) { return _mm256_permutex2var_ps(t.lo, index, t.hi); }

// x_wide order (in_features a multiple of 64): 32 bytes of a row are 8 words of 8 codes, word
// j holding codes 8j .. 8j + 7 of the 64 (code 8j + t in bits 4t..), and x comes as
// x_wide[64h + 8t + j] = x[64h + 8j + t]. 256-bit registers: Zen 4 runs 512-bit shuffles
// double-pumped, and measured here vpermt2ps on 256-bit registers decoded about 1.4x as many
// weights per second as vpermps on 512-bit ones (same shift + lookup + multiply-add per vector).

// Groups of a multiple of 64: each 64 codes lie in one group, whose 16 dequantized values are the
// table, so 8 weights cost one shift, one lookup and one multiply-add.
template <int M>
void gemv_4bit_halves(const QWeight& w, std::size_t r0, std::size_t r1, const float* x, float* y, std::size_t ldy) {
  // Independent sums per batch row, enough that the multiply-add latency never waits.
  constexpr int kChains = M == 1 ? 8 : M <= 3 ? 4 : 2;
  const std::size_t cols = w.cols, n_groups = cols / w.group_size, chunks_per_group = w.group_size / 64;
  ymm::RowGroups p(n_groups);
  for (std::size_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.codes + r * w.row_bytes;
    ymm::row_groups(w, r, p);
    __m256 acc[M][kChains];
    for (int i = 0; i < M; ++i)
      for (int c = 0; c < kChains; ++c) acc[i][c] = _mm256_setzero_ps();
    for (std::size_t g = 0; g < n_groups; ++g) {
      const Table256 table = table_4bit_256(w, p, g);
      for (std::size_t c = g * chunks_per_group; c < (g + 1) * chunks_per_group; ++c) {
        const __m256i words = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 32 * c));
        const float* xh = x + 64 * c;
#pragma GCC unroll 8
        for (int t = 0; t < 8; ++t) {
          const __m256 v = lookup(table, t == 0 ? words : _mm256_srli_epi32(words, 4 * t));
#pragma GCC unroll 8
          for (int i = 0; i < M; ++i)
            acc[i][t % kChains] = _mm256_fmadd_ps(v, _mm256_loadu_ps(xh + i * cols + 8 * t), acc[i][t % kChains]);
        }
      }
    }
    for (int i = 0; i < M; ++i) {
      __m256 sum = acc[i][0];
      for (int c = 1; c < kChains; ++c) sum = _mm256_add_ps(sum, acc[i][c]);
      y[i * ldy + r] = ymm::hsum(sum);
    }
  }
}

// Groups of 32 (q4_0, int4 / nf4 g32): word j of a 64-code chunk holds codes of its group j / 4.
// The table gives code - zero (symmetric; nf4: the code book entry) or the code itself
// (asymmetric: the word's zero point is subtracted, exactly); a chunk's 8 products per word
// are summed and the word's scale applied once per chunk.
template <int M>
void gemv_4bit_lanes(const QWeight& w, std::size_t r0, std::size_t r1, const float* x, float* y, std::size_t ldy) {
  constexpr int kChains = M == 1 ? 4 : 2;
  const std::size_t cols = w.cols, n_groups = cols / w.group_size;
  const bool asymmetric = w.scheme.kind == IntqKind::kAsymmetric;
  const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512 t = w.scheme.kind == IntqKind::kNf4 ? _mm512_loadu_ps(kNf4Codebook)
                   : asymmetric ? iota
                                : _mm512_sub_ps(iota, _mm512_set1_ps(static_cast<float>(1 << (w.scheme.bits - 1))));
  const Table256 table{_mm512_castps512_ps256(t), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(t), 1))};
  const __m256i word_group = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
  ymm::RowGroups p(n_groups);
  for (std::size_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.codes + r * w.row_bytes;
    ymm::row_groups(w, r, p);
    __m256 acc[M];
    for (int i = 0; i < M; ++i) acc[i] = _mm256_setzero_ps();
    for (std::size_t c = 0; c < cols / 64; ++c) {
      const std::size_t g0 = 2 * c;  // the chunk's two groups
      const __m256 word_scale = _mm256_permutexvar_ps(word_group, _mm256_castps128_ps256(_mm_castsi128_ps(
                                                                   _mm_loadl_epi64(reinterpret_cast<const __m128i*>(&p.scale[g0])))));
      const __m256 word_zero = _mm256_permutexvar_ps(word_group, _mm256_castps128_ps256(_mm_castsi128_ps(
                                                                 _mm_loadl_epi64(reinterpret_cast<const __m128i*>(&p.zero[g0])))));
      const __m256i words = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 32 * c));
      const float* xh = x + 64 * c;
      __m256 part[M][kChains];
      for (int i = 0; i < M; ++i)
        for (int c = 0; c < kChains; ++c) part[i][c] = _mm256_setzero_ps();
#pragma GCC unroll 8
      for (int t = 0; t < 8; ++t) {
        __m256 v = lookup(table, t == 0 ? words : _mm256_srli_epi32(words, 4 * t));
        if (asymmetric) v = _mm256_sub_ps(v, word_zero);
#pragma GCC unroll 8
        for (int i = 0; i < M; ++i)
          part[i][t % kChains] = _mm256_fmadd_ps(v, _mm256_loadu_ps(xh + i * cols + 8 * t), part[i][t % kChains]);
      }
      for (int i = 0; i < M; ++i) {
        __m256 sum = part[i][0];
        for (int c = 1; c < kChains; ++c) sum = _mm256_add_ps(sum, part[i][c]);
        acc[i] = _mm256_fmadd_ps(sum, word_scale, acc[i]);
      }
    }
    for (int i = 0; i < M; ++i) y[i * ldy + r] = ymm::hsum(acc[i]);
  }
}

template <int M>
void gemv_8bit(const QWeight& w, std::size_t r0, std::size_t r1, const float* x, float* y, std::size_t ldy) {
  const std::size_t cols = w.cols, n_groups = cols / w.group_size;
  ymm::RowGroups p(n_groups);
  for (std::size_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.codes + r * w.row_bytes;
    ymm::row_groups(w, r, p);
    __m512 acc[M];
    for (int i = 0; i < M; ++i) acc[i] = _mm512_setzero_ps();
    for (std::size_t g = 0; g < n_groups; ++g) {
      const __m512i zero = _mm512_set1_epi32(static_cast<int32_t>(p.zero[g]));
      auto code = [&](std::size_t k) {
        const __m512i c = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + k)));
        return _mm512_cvtepi32_ps(_mm512_sub_epi32(c, zero));
      };
      auto code_pair = [&](std::size_t k) { return std::pair{code(k), code(k + 16)}; };
      group_dot<M>(code, code_pair, x, cols, g * w.group_size, w.group_size, _mm512_set1_ps(p.scale[g]), acc);
    }
    for (int i = 0; i < M; ++i) y[i * ldy + r] = _mm512_reduce_add_ps(acc[i]);
  }
}

// 16 fp8 codes -> 16 floats, times 2^8 for e4m3fn (folded into the scale). magnitude keeps the
// largest magnitude code seen: 0x7F (NaN, the largest) means the row needs the exact path.
template <bool kE4m3fn>
__m512 fp8_to_float(const uint8_t* p, __m128i& magnitude) {
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m256i v = _mm256_cvtepu8_epi16(bytes);
  if (!kE4m3fn) return _mm512_cvtph_ps(_mm256_slli_epi16(v, 8));
  magnitude = _mm_max_epu8(magnitude, _mm_and_si128(bytes, _mm_set1_epi8(0x7F)));
  const __m256i t = _mm256_slli_epi16(v, 7);
  return _mm512_cvtph_ps(_mm256_add_epi16(t, _mm256_and_si256(t, _mm256_set1_epi16(0x4000))));
}

// The same for 32 codes: one widening to 32 words, two conversions.
template <bool kE4m3fn>
std::pair<__m512, __m512> fp8_to_float_pair(const uint8_t* p, __m256i& magnitude) {
  const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  __m512i v = _mm512_cvtepu8_epi16(bytes);
  if (kE4m3fn) {
    magnitude = _mm256_max_epu8(magnitude, _mm256_and_si256(bytes, _mm256_set1_epi8(0x7F)));
    const __m512i t = _mm512_slli_epi16(v, 7);
    v = _mm512_add_epi16(t, _mm512_and_si512(t, _mm512_set1_epi16(0x4000)));
  } else {
    v = _mm512_slli_epi16(v, 8);
  }
  return {_mm512_cvtph_ps(_mm512_castsi512_si256(v)), _mm512_cvtph_ps(_mm512_extracti64x4_epi64(v, 1))};
}

template <int M, bool kE4m3fn>
void gemv_fp8(const QWeight& w, std::size_t r0, std::size_t r1, const QInput& in, float* y, std::size_t ldy) {
  const std::size_t cols = w.cols, n_groups = cols / w.group_size;
  const float unit = kE4m3fn ? 256.0f : 1.0f;  // the float16 holds 2^-8 times the value; exact
  const float* x = in.x;
  ymm::RowGroups p(n_groups);
  for (std::size_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.codes + r * w.row_bytes;
    ymm::row_groups(w, r, p);
    __m128i magnitude = _mm_setzero_si128();
    __m512 acc[M];
    for (int i = 0; i < M; ++i) acc[i] = _mm512_setzero_ps();
    __m256i magnitude32 = _mm256_setzero_si256();
    for (std::size_t g = 0; g < n_groups; ++g) {
      auto code = [&](std::size_t k) { return fp8_to_float<kE4m3fn>(row + k, magnitude); };
      auto code_pair = [&](std::size_t k) { return fp8_to_float_pair<kE4m3fn>(row + k, magnitude32); };
      group_dot<M>(code, code_pair, x, cols, g * w.group_size, w.group_size, _mm512_set1_ps(p.scale[g] * unit), acc);
    }
    magnitude = _mm_max_epu8(magnitude, _mm_max_epu8(_mm256_castsi256_si128(magnitude32),
                                                     _mm256_extracti128_si256(magnitude32, 1)));
    if (kE4m3fn && _mm_movemask_epi8(_mm_cmpeq_epi8(magnitude, _mm_set1_epi8(0x7F))) != 0) {
      gemv_decoded(w, r, r + 1, in, y, ldy);  // a NaN code: decode exactly so the NaN propagates
      continue;
    }
    for (int i = 0; i < M; ++i) y[i * ldy + r] = _mm512_reduce_add_ps(acc[i]);
  }
}

// tile[r][0..32) += sum over kc steps of wt[k][r] * panel[k][0..32) for R rows (wt packed [kc][R]).
template <int R>
void micro_tile(const float* wt, std::size_t kc, const float* panel, float* tile) {
  __m512 acc[R][2];
  for (int r = 0; r < R; ++r) {
    acc[r][0] = _mm512_loadu_ps(tile + r * kPanel);
    acc[r][1] = _mm512_loadu_ps(tile + r * kPanel + 16);
  }
  for (std::size_t k = 0; k < kc; ++k) {
    const __m512 xa = _mm512_loadu_ps(panel + k * kPanel);
    const __m512 xb = _mm512_loadu_ps(panel + k * kPanel + 16);
    for (int r = 0; r < R; ++r) {
      const __m512 wv = _mm512_set1_ps(wt[k * R + r]);
      acc[r][0] = _mm512_fmadd_ps(wv, xa, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(wv, xb, acc[r][1]);
    }
  }
  for (int r = 0; r < R; ++r) {
    _mm512_storeu_ps(tile + r * kPanel, acc[r][0]);
    _mm512_storeu_ps(tile + r * kPanel + 16, acc[r][1]);
  }
}

constexpr int kMicroRows = 12;

}  // namespace

void gemv_rows(const QWeight& w, std::size_t r0, std::size_t r1, const QInput& in, float* y, std::size_t ldy) {
  const bool fp8 = w.format == QWeightFormat::kE4m3fn || w.format == QWeightFormat::kE5m2;
  for (std::size_t i0 = 0; i0 < in.m; i0 += kMaxM) {
    const std::size_t m = std::min<std::size_t>(kMaxM, in.m - i0);
    const QInput part{in.x + i0 * w.cols, in.x_pairs == nullptr ? nullptr : in.x_pairs + i0 * w.cols,
                      in.x_wide == nullptr ? nullptr : in.x_wide + i0 * w.cols, nullptr, m,
                      in.x_fp8 == nullptr ? nullptr : in.x_fp8 + i0 * w.cols};
    float* yp = y + i0 * ldy;
    static const bool vbmi = __builtin_cpu_supports("avx512vbmi");
    if (fp8 && vbmi && avx512vbmi::gemv_fp8(w, r0, r1, part, yp, ldy)) {
      continue;
    } else if (vbmi && avx512vbmi::gemv_lowbit(w, r0, r1, part, yp, ldy)) {
      continue;
    } else if (w.scheme.bits == 4 && part.x_wide != nullptr && w.group_size % 64 == 0) {
      ymm::with_m(m, [&](auto c) { gemv_4bit_halves<decltype(c)::value>(w, r0, r1, part.x_wide, yp, ldy); });
    } else if (w.format == QWeightFormat::kIntq && part.x_wide != nullptr && w.group_size == 32) {
      ymm::with_m(m, [&](auto c) { gemv_4bit_lanes<decltype(c)::value>(w, r0, r1, part.x_wide, yp, ldy); });
    } else if (w.scheme.bits == 4 && part.x_pairs != nullptr && w.group_size % 32 == 0) {
      ymm::with_m(m, [&](auto c) { gemv_4bit<decltype(c)::value>(w, r0, r1, part.x_pairs, yp, ldy); });
    } else if (w.format == QWeightFormat::kIntq && w.scheme.bits == 8 && w.group_size % 16 == 0) {
      ymm::with_m(m, [&](auto c) { gemv_8bit<decltype(c)::value>(w, r0, r1, part.x, yp, ldy); });
    } else if (fp8 && w.group_size % 16 == 0) {
      if (w.format == QWeightFormat::kE4m3fn)
        ymm::with_m(m, [&](auto c) { gemv_fp8<decltype(c)::value, true>(w, r0, r1, part, yp, ldy); });
      else
        ymm::with_m(m, [&](auto c) { gemv_fp8<decltype(c)::value, false>(w, r0, r1, part, yp, ldy); });
    } else {
      gemv_decoded(w, r0, r1, part, yp, ldy);
    }
  }
}

// Per block of 12 rows and chunk of kChunk columns: the rows are packed k-major (one stream of
// broadcasts, L1-resident) and run against every x panel, the 12 x 32 results accumulating in
// a per-panel tile.
void gemm_rows(const QWeight& w, std::size_t r0, std::size_t r1, const QInput& in, float* buf, float* y,
               std::size_t ldy) {
  constexpr std::size_t kChunk = 256;
  const std::size_t cols = w.cols, n = r1 - r0, n_panels = (in.m + kPanel - 1) / kPanel;
  scalar::decode_rows(w, r0, n, buf);
  std::vector<float> tiles(n_panels * kMicroRows * kPanel);
  alignas(64) float wt[kChunk * kMicroRows];
  for (std::size_t rb = 0; rb < n; rb += kMicroRows) {
    const std::size_t nr = std::min<std::size_t>(kMicroRows, n - rb);
    std::fill(tiles.begin(), tiles.end(), 0.0f);
    for (std::size_t k0 = 0; k0 < cols; k0 += kChunk) {
      const std::size_t kc = std::min(kChunk, cols - k0);
      for (std::size_t r = 0; r < nr; ++r)
        for (std::size_t k = 0; k < kc; ++k) wt[k * nr + r] = buf[(rb + r) * cols + k0 + k];
      for (std::size_t p = 0; p < n_panels; ++p) {
        const float* panel = in.x_panels + p * cols * kPanel + k0 * kPanel;
        float* tile = &tiles[p * kMicroRows * kPanel];
        switch (nr) {
          case 12: micro_tile<12>(wt, kc, panel, tile); break;
          case 11: micro_tile<11>(wt, kc, panel, tile); break;
          case 10: micro_tile<10>(wt, kc, panel, tile); break;
          case 9: micro_tile<9>(wt, kc, panel, tile); break;
          case 8: micro_tile<8>(wt, kc, panel, tile); break;
          case 7: micro_tile<7>(wt, kc, panel, tile); break;
          case 6: micro_tile<6>(wt, kc, panel, tile); break;
          case 5: micro_tile<5>(wt, kc, panel, tile); break;
          case 4: micro_tile<4>(wt, kc, panel, tile); break;
          case 3: micro_tile<3>(wt, kc, panel, tile); break;
          case 2: micro_tile<2>(wt, kc, panel, tile); break;
          default: micro_tile<1>(wt, kc, panel, tile); break;
        }
      }
    }
    for (std::size_t p = 0; p < n_panels; ++p) {
      const std::size_t valid = std::min(kPanel, in.m - p * kPanel);
      const float* tile = &tiles[p * kMicroRows * kPanel];
      for (std::size_t j = 0; j < valid; ++j) {  // row by row of y: the nr values are adjacent there
        float* yj = y + (p * kPanel + j) * ldy + r0 + rb;
        for (std::size_t r = 0; r < nr; ++r) yj[r] = tile[r * kPanel + j];
      }
    }
  }
}

// Bit-identical to scalar::quantize_int8: the same float32 absmax / 127, IEEE division and
// round-to-nearest-even.
void quantize_int8(const float* x, std::size_t cols, std::size_t block, int8_t* q, float* sx, int32_t* qsum) {
  if (block % 16 != 0) return scalar::quantize_int8(x, cols, block, q, sx, qsum);
  for (std::size_t b = 0, k0 = 0; k0 < cols; ++b, k0 += block) {
    const std::size_t n = std::min(block, cols - k0);
    auto mask = [&](std::size_t k) {
      return n - k >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (n - k)) - 1);
    };
    __m512 amax = _mm512_setzero_ps();
    for (std::size_t k = 0; k < n; k += 16) amax = _mm512_max_ps(amax, _mm512_abs_ps(_mm512_maskz_loadu_ps(mask(k), x + k0 + k)));
    const float s = _mm512_reduce_max_ps(amax) / 127.0f;
    sx[b] = s;
    if (s == 0.0f) {
      std::fill_n(q + k0, n, int8_t{0});
      qsum[b] = 0;
      continue;
    }
    const __m512 sv = _mm512_set1_ps(s), lim = _mm512_set1_ps(127.0f);
    __m512i sum = _mm512_setzero_si512();
    for (std::size_t k = 0; k < n; k += 16) {
      const __m512 v = _mm512_roundscale_ps(_mm512_div_ps(_mm512_maskz_loadu_ps(mask(k), x + k0 + k), sv),
                                            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      const __m512i iv = _mm512_cvtps_epi32(_mm512_min_ps(lim, _mm512_max_ps(_mm512_sub_ps(_mm512_setzero_ps(), lim), v)));
      sum = _mm512_add_epi32(sum, iv);  // masked-off lanes are 0
      _mm_mask_storeu_epi8(q + k0 + k, mask(k), _mm512_cvtepi32_epi8(iv));
    }
    qsum[b] = _mm512_reduce_add_epi32(sum);
  }
}

void qdot_rows_int8(const QWeight& w, std::size_t r0, std::size_t r1, const QInputInt8& in, uint8_t* buf, float* y,
                    std::size_t ldy) {
  static const bool vnni = __builtin_cpu_supports("avx512vnni");
  static const bool vnni_vbmi = vnni && __builtin_cpu_supports("avx512vbmi");
  if (vnni_vbmi && avx512vnnivbmi::qdot_rows_int8(w, r0, r1, in, y, ldy)) return;
  if (vnni && avx512vnni::qdot_rows_int8(w, r0, r1, in, y, ldy)) return;
  ymm::qdot_rows(w, r0, r1, in, buf, y, ldy);
}

}  // namespace quantcore::avx512
