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
#include <utility>
#include <vector>

#include "quantcore/intq.h"
#include "quantcore/qmatmul.h"

namespace quantcore::avx512vnni {
namespace {

constexpr std::size_t kTileRows = 4;

#include "qmatmul_ymm.h"

// A few batch rows (in.m <= 8), integer codes straight from the packed rows, nothing buffered:
// memory traffic is the codes and their group parameters. A chunk is 64 bytes: 128 4-bit codes
// (vpand / vpsrlw give the low and the high nibbles, matched by q in q_nib order) or 64 8-bit
// codes (q in order); two or one vpdpbusd, and int32 lane l holds the sum over 8 (4) codes
// of code * q. Blocks of a chunk or more (kBig): lanes are summed over the block's chunks,
// zero * sum(q) comes off lane 0 (all still exact integers below 2^24), then one multiply-add by
// sx * scale. Blocks smaller than a chunk (32 or 64 codes; group == block): each lane is
// converted to float, its block's zero * sum(q) (an exact float, < 2^24) is taken off the
// block's first lane, and it is scaled by its block's sx * scale.
// Four 16-lane int32 vectors folded into one: lane 4L + j = the sum of lanes 4L .. 4L + 3 of
// d_j (the 4 lanes of its 128-bit lane L).
inline __m512i fold4(__m512i d0, __m512i d1, __m512i d2, __m512i d3) {
  const __m512i t01 = _mm512_add_epi32(_mm512_unpacklo_epi32(d0, d1), _mm512_unpackhi_epi32(d0, d1));
  const __m512i t23 = _mm512_add_epi32(_mm512_unpacklo_epi32(d2, d3), _mm512_unpackhi_epi32(d2, d3));
  return _mm512_add_epi32(_mm512_unpacklo_epi64(t01, t23), _mm512_unpackhi_epi64(t01, t23));
}

// acc0 / acc1 += value * scale for the terms i of [begin, end) (term(i) -> {value, scale}),
// alternating between the two sums, kept in named registers (a reference choosing between them
// would put both on the stack).
template <class Term>
inline void add_terms(std::size_t begin, std::size_t end, const Term& term, __m512& acc0, __m512& acc1) {
  std::size_t i = begin;
  for (; i + 2 <= end; i += 2) {
    const auto [d0, s0] = term(i);
    const auto [d1, s1] = term(i + 1);
    acc0 = _mm512_fmadd_ps(d0, s0, acc0);
    acc1 = _mm512_fmadd_ps(d1, s1, acc1);
  }
  if (i < end) {
    const auto [d0, s0] = term(i);
    acc0 = _mm512_fmadd_ps(d0, s0, acc0);
  }
}

template <int kBits, bool kBig, bool kOneChunk = false>
void gemv_stream(const QWeight& w, std::size_t r0, std::size_t r1, const QInputInt8& in, float* y, std::size_t ldy) {
  constexpr std::size_t kChunk = kBits == 4 ? 128 : 64, kLaneCodes = kChunk / 16;
  const std::size_t cols = w.cols, n_chunks = cols / kChunk, block = in.block;
  const std::size_t chunks_per_block = kBig ? block / kChunk : 1, blocks_per_chunk = kBig ? 1 : kChunk / block;
  const std::size_t n_groups = cols / w.group_size, blocks_per_group = w.group_size / block;
  const int8_t* q_all = kBits == 4 ? in.q_nib : in.q;
  const __m512i low = _mm512_set1_epi8(0x0F);
  __m512i lane_block = _mm512_setzero_si512();
  __mmask16 first_lane = 1;
  if (!kBig) {
    alignas(64) int32_t idx[16];
    first_lane = 0;
    for (int l = 0; l < 16; ++l) {
      idx[l] = static_cast<int32_t>(l * kLaneCodes / block);
      if (l * kLaneCodes % block == 0) first_lane = static_cast<__mmask16>(first_lane | (1u << l));
    }
    lane_block = _mm512_load_si512(idx);
  }
  const __mmask16 chunk_blocks = static_cast<__mmask16>((1u << blocks_per_chunk) - 1);
  // 8-bit codes in blocks of 32, eight chunks at a time: in fold f (chunks 4f .. 4f + 3), lane
  // 4L + j is half L % 2 of block 2j + L / 2 of chunk 4f + j, so block k = 2j + h (of the 16)
  // is lane 8h + j % 4 plus lane 8h + j % 4 + 4 of fold j / 4 (permutex2var: fold 1 is +16)
  alignas(64) int32_t first[16], second[16];
  for (int k = 0; k < 16; ++k) {
    const int j = k / 2, h = k % 2;
    first[k] = (j < 4 ? 0 : 16) + 8 * h + j % 4;
    second[k] = first[k] + 4;
  }
  const __m512i pair_a = _mm512_load_si512(first), pair_b = _mm512_load_si512(second);
  ymm::RowGroups p(n_groups);
  std::vector<int32_t> zq(kBig && !kOneChunk ? in.n_blocks : 0);
  std::vector<float> sxs(kBig && !kOneChunk ? in.n_blocks : 0);
  // Blocks of 32 (four 4-bit or two 8-bit blocks per chunk) are folded kFold chunks at a time.
  // With every chunk folded, float16 scales and uint8 zero points are read straight from the
  // tensor, 16 blocks at a time: converting a row's parameters up front (row_groups) was about
  // a quarter of the time with 128 groups per row.
  constexpr std::size_t kFold = kBits == 4 ? 4 : 8;
  const bool folded = !kBig && blocks_per_chunk == 16 / kFold;
  const bool direct = folded && n_chunks % kFold == 0 && w.scheme.scale_type == ScaleType::kFloat16 &&
                      w.scale_stride != 0;
  const bool asymmetric = w.scheme.kind == IntqKind::kAsymmetric;
  const __m512i fixed_zero = _mm512_set1_epi32(asymmetric ? 0 : 1 << (kBits - 1));
  for (std::size_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.codes + r * w.row_bytes;
    const uint16_t* row_scales = static_cast<const uint16_t*>(w.scales) + r * w.scale_stride;
    const uint8_t* row_zeros = asymmetric ? static_cast<const uint8_t*>(w.zeros) + r * w.scale_stride : nullptr;
    if (!direct) ymm::row_groups(w, r, p);
    for (std::size_t i = 0; i < in.m; ++i) {
      const int8_t* q = q_all + i * cols;
      const float* sx = in.sx + i * in.n_blocks;
      const int32_t* qsum = in.qsum + i * in.n_blocks;
      __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
      auto chunk_dot = [&](std::size_t c, __m512i d) {
        const __m512i bytes = _mm512_loadu_si512(row + 64 * c);
        if (kBits == 8) return _mm512_dpbusd_epi32(d, bytes, _mm512_loadu_si512(q + 64 * c));
        const __m512i hi = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(_mm512_srli_epi16(bytes, 4), low),
                                               _mm512_loadu_si512(q + 128 * c + 64));
        return _mm512_add_epi32(_mm512_dpbusd_epi32(d, _mm512_and_si512(bytes, low), _mm512_loadu_si512(q + 128 * c)), hi);
      };
      // a chunk on its own (the folded paths: chunks are independent, so the two vpdpbusd may
      // chain without an add)
      auto chunk_alone = [&](std::size_t c) {
        if (kBits == 8) return chunk_dot(c, _mm512_setzero_si512());
        const __m512i bytes = _mm512_loadu_si512(row + 64 * c);
        const __m512i lo = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(bytes, low),
                                               _mm512_loadu_si512(q + 128 * c));
        return _mm512_dpbusd_epi32(lo, _mm512_and_si512(_mm512_srli_epi16(bytes, 4), low), _mm512_loadu_si512(q + 128 * c + 64));
      };
      if (kOneChunk) {  // block == group == chunk: one pass, nothing precomputed
        auto block_term = [&](std::size_t b) {
          const __m512i d = chunk_dot(b, _mm512_setzero_si512());
          const __m512i dz = _mm512_mask_sub_epi32(d, first_lane, d, _mm512_set1_epi32(static_cast<int32_t>(p.zero[b]) * qsum[b]));
          return std::pair{_mm512_cvtepi32_ps(dz), _mm512_set1_ps(sx[b] * p.scale[b])};
        };
        add_terms(0, in.n_blocks, block_term, acc0, acc1);
      } else if (kBig) {
        // per block: zero * sum(q) and sx * scale (no division in the loop: it was a fifth of
        // the time)
        for (std::size_t g = 0, b = 0; g < n_groups; ++g) {
          const int32_t z = static_cast<int32_t>(p.zero[g]);
          for (std::size_t j = 0; j < blocks_per_group; ++j, ++b) {
            zq[b] = z * qsum[b];
            sxs[b] = sx[b] * p.scale[g];
          }
        }
        auto block_term = [&](std::size_t b) {
          __m512i d = chunk_dot(b * chunks_per_block, _mm512_setzero_si512());
          for (std::size_t c = b * chunks_per_block + 1; c < (b + 1) * chunks_per_block; ++c) d = chunk_dot(c, d);
          d = _mm512_mask_sub_epi32(d, first_lane, d, _mm512_set1_epi32(zq[b]));
          return std::pair{_mm512_cvtepi32_ps(d), _mm512_set1_ps(sxs[b])};
        };
        add_terms(0, in.n_blocks, block_term, acc0, acc1);
      } else {
        auto chunk_term = [&](std::size_t c) {
          const std::size_t b0 = c * blocks_per_chunk;
          const __m512 d = _mm512_cvtepi32_ps(chunk_dot(c, _mm512_setzero_si512()));
          auto lanes = [&](const float* v) {
            return _mm512_permutexvar_ps(lane_block, _mm512_maskz_loadu_ps(chunk_blocks, v + b0));
          };
          const __m512 qs = _mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(chunk_blocks, qsum + b0));
          const __m512 correction = _mm512_maskz_permutexvar_ps(
              first_lane, lane_block, _mm512_mul_ps(qs, _mm512_maskz_loadu_ps(chunk_blocks, &p.zero[b0])));
          return std::pair{_mm512_sub_ps(d, correction), _mm512_mul_ps(lanes(sx), lanes(p.scale.data()))};
        };
        std::size_t c = 0;
        // blocks of 32: 16 blocks at a time, each block's lanes summed in integers first
        // (fold4), so the correction, conversion and scaling run once per block instead of
        // once per lane; sums holds blocks b0 .. b0 + 15 in their natural order (one FMA per
        // 16 blocks: a single accumulator chain keeps up)
        auto add_blocks = [&](__m512i sums, std::size_t b0) {
          __m512i zero;
          __m512 scale;
          if (direct) {
            scale = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row_scales + b0)));
            zero = asymmetric ? _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row_zeros + b0)))
                              : fixed_zero;
          } else {
            scale = _mm512_loadu_ps(&p.scale[b0]);
            zero = _mm512_cvtps_epi32(_mm512_loadu_ps(&p.zero[b0]));
          }
          const __m512i zq = _mm512_mullo_epi32(zero, _mm512_loadu_si512(qsum + b0));
          const __m512 sxs = _mm512_mul_ps(_mm512_loadu_ps(sx + b0), scale);
          acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(sums, zq)), sxs, acc0);
        };
        if (folded && kBits == 4) {
          // four chunks: lane 4L + j of the fold is block L of chunk j; transposed to 4j + L
          const __m512i transpose = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
          for (; c + 4 <= n_chunks; c += 4) {
            const __m512i d0 = chunk_alone(c), d1 = chunk_alone(c + 1), d2 = chunk_alone(c + 2), d3 = chunk_alone(c + 3);
            add_blocks(_mm512_permutexvar_epi32(transpose, fold4(d0, d1, d2, d3)), c * 4);
          }
        } else if (folded) {
          // eight chunks, two folds (see pair_a)
          for (; c + 8 <= n_chunks; c += 8) {
            __m512i d[8];
            for (std::size_t j = 0; j < 8; ++j) d[j] = chunk_alone(c + j);
            const __m512i f0 = fold4(d[0], d[1], d[2], d[3]), f1 = fold4(d[4], d[5], d[6], d[7]);
            add_blocks(_mm512_add_epi32(_mm512_permutex2var_epi32(f0, pair_a, f1), _mm512_permutex2var_epi32(f0, pair_b, f1)),
                       c * 2);
          }
        }
        add_terms(c, n_chunks, chunk_term, acc0, acc1);
      }
      y[i * ldy + r] = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    }
  }
}

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
  const std::size_t chunk = w.scheme.bits == 4 ? 128 : 64;
  if (plain_codes && in.m <= 8 && cols % in.block == 0 && in.block % 32 == 0 &&
      ((w.scheme.bits == 4 && in.q_nib != nullptr) || (w.scheme.bits == 8 && cols % 64 == 0))) {
    const bool big = in.block % chunk == 0 && w.group_size % in.block == 0;
    const bool small = in.block < chunk && w.group_size == in.block;
    if (big || small) {
      const bool one_chunk = in.block == chunk && w.group_size == chunk;
      if (w.scheme.bits == 4) {
        one_chunk ? gemv_stream<4, true, true>(w, r0, r1, in, y, ldy)
        : big     ? gemv_stream<4, true>(w, r0, r1, in, y, ldy)
                  : gemv_stream<4, false>(w, r0, r1, in, y, ldy);
      } else {
        one_chunk ? gemv_stream<8, true, true>(w, r0, r1, in, y, ldy)
        : big     ? gemv_stream<8, true>(w, r0, r1, in, y, ldy)
                  : gemv_stream<8, false>(w, r0, r1, in, y, ldy);
      }
      return true;
    }
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
