// The int8-activation path on AVX-512 VNNI (vpdpbusd), compiled with -mavx512vnni; used by the
// AVX-512 table when the CPU has VNNI (Zen 4, Ice Lake and later).
//
// Blocks of 32 with 4-bit integer codes (int4 sym/asym, q4_0; cols % 64 == 0): a tile of 4 weight rows
// is prepared once as w = code - zero (int8, -15..15, in the q_pairs order) with a per-lane
// weight scale. vpdpbusd multiplies unsigned by signed bytes, so it takes |w| and q with w's
// sign (a masked 0 - q where w < 0): each int32 lane sums 4 exact products, |lane| < 2^13.
// Lanes 0-7 of a 64-byte step are block b, lanes 8-15 block b + 1, so each lane is converted to
// float once per step and scaled by its own sx * scale. Two batch rows share each weight load.
#include <immintrin.h>

#include <algorithm>
#include <type_traits>
#include <utility>
#include <vector>

#include "quantcore/intq.h"
#include "quantcore/qmatmul.h"

namespace quantcore::avx512vnni {
namespace {

constexpr std::size_t kTileRows = 4;

#include "qmatmul_ymm.h"

#include "qmatmul_vnni_stream.h"

float hsum(__m512 v) { return _mm512_reduce_add_ps(v); }

// Blocks of 64 or more (block % 64 == 0): unsigned codes straight into vpdpbusd (4-bit codes
// split into the q_pairs order once per tile; 8-bit codes read in place), int32 lanes summed
// over the whole block; per block the tile's four 16-lane sums are folded into one vector
// (lane 4L + j: row j's 4 lanes of 128-bit lane L), zero * sum(q) of each row comes off lane L
// = 0 (all still integers below 2^24, so they convert to float exactly), and one multiply-add
// by sx * scale serves all four rows: the per-block work was most of the time when done per row
// (measured: 4096 x 11008 int4 g128 at batch 128 went from about 50 ms to about 30 ms).
void rows_unsigned(const QWeight& w, std::size_t r0, std::size_t r1, const QInputInt8& in, float* y,
                   std::size_t ldy) {
  const std::size_t cols = w.cols, n_groups = cols / w.group_size;
  const bool nibbles = w.scheme.bits == 4, has_offset = w.format == QWeightFormat::kQ4_1;
  std::vector<uint8_t> cbuf(nibbles ? kTileRows * cols : 0);
  // per group g, the tile's 4 rows side by side: [g * 4 + j]
  std::vector<float> scale(kTileRows * n_groups), offset(kTileRows * n_groups);
  std::vector<int32_t> zero(kTileRows * n_groups);
  const uint8_t* codes[kTileRows];
  const __m128i low = _mm_set1_epi8(0x0F);
  for (std::size_t t0 = r0; t0 < r1; t0 += kTileRows) {
    const std::size_t nr = std::min(kTileRows, r1 - t0);
    for (std::size_t j = 0; j < kTileRows; ++j) {
      const std::size_t r = t0 + std::min(j, nr - 1);  // a short tile repeats its last row
      for (std::size_t g = 0; g < n_groups; ++g) {
        const scalar::IntGroup p = scalar::int_group(w, r, g);
        scale[g * kTileRows + j] = p.scale;
        zero[g * kTileRows + j] = p.zero;
        offset[g * kTileRows + j] = p.offset;
      }
      const uint8_t* row = w.codes + r * w.row_bytes;
      if (!nibbles) {
        codes[j] = row;
        continue;
      }
      uint8_t* c = &cbuf[j * cols];
      for (std::size_t b = 0; b < cols / 32; ++b) {
        const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 16 * b));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(c + 32 * b), _mm_and_si128(bytes, low));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(c + 32 * b + 16), _mm_and_si128(_mm_srli_epi16(bytes, 4), low));
      }
      codes[j] = c;
    }
    const int8_t* q_all = nibbles ? in.q_pairs : in.q;
    for (std::size_t i = 0; i < in.m; i += 2) {
      const bool two = i + 1 < in.m;
      const int8_t* qa = q_all + i * cols;
      const int8_t* qb = two ? qa + cols : qa;
      const std::size_t ib = two ? i + 1 : i;
      // lane 4L + j of acc holds row j's share of 128-bit lane L; tail: q4_1's offset terms
      __m512 acc_a = _mm512_setzero_ps(), acc_b = _mm512_setzero_ps();
      __m128 tail_a = _mm_setzero_ps(), tail_b = _mm_setzero_ps();
      for (std::size_t b = 0; b < in.n_blocks; ++b) {
        const std::size_t k0 = b * in.block, g = k0 / w.group_size;
        __m512i da[kTileRows], db[kTileRows];
        for (std::size_t j = 0; j < kTileRows; ++j) da[j] = db[j] = _mm512_setzero_si512();
        for (std::size_t k = k0; k < k0 + in.block; k += 64) {
          const __m512i xa = _mm512_loadu_si512(qa + k);
          const __m512i xb = _mm512_loadu_si512(qb + k);
#pragma GCC unroll 4
          for (std::size_t j = 0; j < kTileRows; ++j) {
            const __m512i c = _mm512_loadu_si512(codes[j] + k);
            da[j] = _mm512_dpbusd_epi32(da[j], c, xa);
            db[j] = _mm512_dpbusd_epi32(db[j], c, xb);
          }
        }
        const int32_t qsa = in.qsum[i * in.n_blocks + b], qsb = in.qsum[ib * in.n_blocks + b];
        const float sxa = in.sx[i * in.n_blocks + b], sxb = in.sx[ib * in.n_blocks + b];
        const __m128i z = _mm_loadu_si128(reinterpret_cast<const __m128i*>(&zero[g * kTileRows]));
        const __m128 s = _mm_loadu_ps(&scale[g * kTileRows]);
        // the four rows' 16-lane sums folded to 4 lanes each (exact integers), zero * sum(q)
        // taken off 128-bit lane 0, then one conversion and one multiply-add per block
        auto fold = [&](const __m512i* d, int32_t qs, float sxv, __m512& acc) {
          const __m512i u = fold4(d[0], d[1], d[2], d[3]);
          const __m512i corrected = _mm512_sub_epi32(u, _mm512_zextsi128_si512(_mm_mullo_epi32(z, _mm_set1_epi32(qs))));
          acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(corrected), _mm512_broadcast_f32x4(_mm_mul_ps(s, _mm_set1_ps(sxv))),
                                acc);
        };
        fold(da, qsa, sxa, acc_a);
        fold(db, qsb, sxb, acc_b);
        if (has_offset) {
          const __m128 o = _mm_loadu_ps(&offset[g * kTileRows]);
          tail_a = _mm_add_ps(tail_a, _mm_mul_ps(_mm_set1_ps(sxa), _mm_mul_ps(o, _mm_set1_ps(static_cast<float>(qsa)))));
          tail_b = _mm_add_ps(tail_b, _mm_mul_ps(_mm_set1_ps(sxb), _mm_mul_ps(o, _mm_set1_ps(static_cast<float>(qsb)))));
        }
      }
      auto rows4 = [](__m512 acc, __m128 tail) {  // sum of the four 128-bit lanes, plus the tail
        const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(acc),
                                       _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc), 1)));
        return _mm_add_ps(_mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)), tail);
      };
      alignas(16) float ya[4], yb[4];
      _mm_store_ps(ya, rows4(acc_a, tail_a));
      _mm_store_ps(yb, rows4(acc_b, tail_b));
      for (std::size_t j = 0; j < nr; ++j) {
        y[i * ldy + t0 + j] = ya[j];
        if (two) y[(i + 1) * ldy + t0 + j] = yb[j];
      }
    }
  }
}

}  // namespace

bool qdot_rows_int8(const QWeight& w, std::size_t r0, std::size_t r1, const QInputInt8& in, float* y,
                    std::size_t ldy) {
  const std::size_t cols = w.cols;
  // Streaming GEMV: integer codes (not q4_1, whose offsets need a float term), whole blocks.
  const bool plain_codes = w.format == QWeightFormat::kIntq && w.scheme.kind != IntqKind::kNf4;
  if (plain_codes && in.m <= 8 && cols % in.block == 0 && in.block % 32 == 0) {
    if (w.scheme.bits == 4 && in.q_nib != nullptr && stream_rows<Nibbles>(w, r0, r1, in, y, ldy)) return true;
    if (w.scheme.bits == 8 && cols % 64 == 0 && stream_rows<Bytes>(w, r0, r1, in, y, ldy)) return true;
  }
  const bool integer_codes = w.format == QWeightFormat::kQ4_1 ||
                             (w.format == QWeightFormat::kIntq && w.scheme.kind != IntqKind::kNf4);
  if (integer_codes && in.block % 64 == 0 && w.group_size % in.block == 0 &&
      ((w.scheme.bits == 4 && in.q_pairs != nullptr) || (w.scheme.bits == 8 && w.format == QWeightFormat::kIntq))) {
    rows_unsigned(w, r0, r1, in, y, ldy);
    return true;
  }
  const bool ok = w.format == QWeightFormat::kIntq && w.scheme.kind != IntqKind::kNf4 && w.scheme.bits == 4 &&
                  in.q_pairs != nullptr && in.block == 32 && cols % 64 == 0 && w.group_size % 32 == 0;
  if (!ok) return false;
  const std::size_t n_steps = cols / 64, n_groups = cols / w.group_size, per_group = w.group_size / 32;
  std::vector<int8_t> wbuf(kTileRows * cols);
  std::vector<uint64_t> negative(kTileRows * n_steps);
  std::vector<float> lane_scale(kTileRows * cols / 4);  // per 4 bytes: the scale of their group
  std::vector<float> scale(n_groups), zero(n_groups);
  const __m128i low = _mm_set1_epi8(0x0F);
  for (std::size_t t0 = r0; t0 < r1; t0 += kTileRows) {
    const std::size_t nr = std::min(kTileRows, r1 - t0);
    for (std::size_t j = 0; j < kTileRows; ++j) {
      int8_t* ws = &wbuf[j * cols];
      float* ls = &lane_scale[j * cols / 4];
      if (j >= nr) {  // a short tile: zero weights, no effect
        std::fill_n(ws, cols, int8_t{0});
        std::fill_n(ls, cols / 4, 0.0f);
        for (std::size_t s = 0; s < n_steps; ++s) negative[j * n_steps + s] = 0;
        continue;
      }
      const std::size_t r = t0 + j;
      for (std::size_t g = 0; g < n_groups; ++g) {
        const scalar::IntGroup p = scalar::int_group(w, r, g);
        scale[g] = p.scale;
        zero[g] = static_cast<float>(p.zero);
      }
      const uint8_t* row = w.codes + r * w.row_bytes;
      for (std::size_t b = 0; b < cols / 32; ++b) {
        const std::size_t g = b / per_group;
        const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 16 * b));
        const __m128i z = _mm_set1_epi8(static_cast<char>(zero[g]));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(ws + 32 * b), _mm_sub_epi8(_mm_and_si128(bytes, low), z));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(ws + 32 * b + 16),
                         _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(bytes, 4), low), z));
        std::fill_n(ls + 8 * b, 8, scale[g]);
      }
      for (std::size_t s = 0; s < n_steps; ++s)
        negative[j * n_steps + s] = _mm512_movepi8_mask(_mm512_loadu_si512(ws + 64 * s));
      for (std::size_t k = 0; k < cols; k += 64)
        _mm512_storeu_si512(ws + k, _mm512_abs_epi8(_mm512_loadu_si512(ws + k)));
    }
    const __m512i zero_v = _mm512_setzero_si512();
    std::size_t i = 0;
    for (; i < in.m; i += 2) {
      const bool two = i + 1 < in.m;
      const int8_t* qa = in.q_pairs + i * cols;
      const int8_t* qb = two ? qa + cols : qa;
      const float* sa = in.sx + i * in.n_blocks;
      const float* sb = two ? sa + in.n_blocks : sa;
      __m512 acc[kTileRows][2];
      for (std::size_t j = 0; j < kTileRows; ++j) acc[j][0] = acc[j][1] = _mm512_setzero_ps();
      for (std::size_t s = 0; s < n_steps; ++s) {
        const __m512i xa = _mm512_loadu_si512(qa + 64 * s);
        const __m512i xb = _mm512_loadu_si512(qb + 64 * s);
        const __m512 sxa = _mm512_insertf32x8(_mm512_set1_ps(sa[2 * s]), _mm256_set1_ps(sa[2 * s + 1]), 1);
        const __m512 sxb = _mm512_insertf32x8(_mm512_set1_ps(sb[2 * s]), _mm256_set1_ps(sb[2 * s + 1]), 1);
#pragma GCC unroll 4
        for (std::size_t j = 0; j < kTileRows; ++j) {
          const __m512i mag = _mm512_loadu_si512(&wbuf[j * cols + 64 * s]);
          const __mmask64 neg = negative[j * n_steps + s];
          const __m512 ls = _mm512_loadu_ps(&lane_scale[j * cols / 4 + 16 * s]);
          const __m512i da = _mm512_dpbusd_epi32(zero_v, mag, _mm512_mask_sub_epi8(xa, neg, zero_v, xa));
          const __m512i db = _mm512_dpbusd_epi32(zero_v, mag, _mm512_mask_sub_epi8(xb, neg, zero_v, xb));
          acc[j][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(da), _mm512_mul_ps(sxa, ls), acc[j][0]);
          acc[j][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(db), _mm512_mul_ps(sxb, ls), acc[j][1]);
        }
      }
      for (std::size_t j = 0; j < nr; ++j) {
        y[i * ldy + t0 + j] = hsum(acc[j][0]);
        if (two) y[(i + 1) * ldy + t0 + j] = hsum(acc[j][1]);
      }
    }
  }
  return true;
}

}  // namespace quantcore::avx512vnni
