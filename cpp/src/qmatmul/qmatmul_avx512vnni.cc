// The int8-activation path on AVX-512 VNNI (vpdpbusd), compiled with -mavx512vnni; used by the
// AVX-512 table when the CPU has VNNI (Zen 4, Ice Lake and later).
//
// Two kernels: the streaming GEMV for 4- and 8-bit codes at batch <= 8 (qmatmul_vnni_stream.h)
// and a 4-row tile kernel for every integer code width and any batch (rows_unsigned). The
// 2- and 3-bit streaming GEMV is in qmatmul_avx512vnnivbmi.cc.
#include <immintrin.h>

#include <algorithm>
#include <type_traits>
#include <utility>
#include <vector>

#include "quantcore/intq.h"
#include "quantcore/pack.h"
#include "quantcore/qmatmul.h"

namespace quantcore::avx512vnni {
namespace {

#include "qmatmul_ymm.h"

#include "qmatmul_vnni_stream.h"

// A tile of 4 weight rows against every batch row (any m; the GEMM): the rows' codes as
// unsigned bytes (8-bit codes read in place; 4-bit codes split once per tile into the q_pairs
// order; 2- and 3-bit codes unpacked once per tile by the pack kernels) go straight into
// vpdpbusd with q, two batch rows sharing each load of the codes. fold4 turns the tile's four
// 16-lane sums into one vector, lane 4L + j holding row j's share of 128-bit lane L; zero * sum(q)
// comes off (all exact integers below 2^24, so they convert to float exactly), and one
// multiply-add by sx * scale serves all four rows: the per-block work was most of the time when
// done per row (measured: 4096 x 11008 int4 g128 at batch 128 went from about 50 ms to about
// 30 ms).
//   Blocks of 64 or more: the int32 lanes sum over the whole block, then one fold per block.
//   Blocks of 32: a 64-byte step holds blocks b (lanes 0-7 of each row's vector, 128-bit lanes
//   0-1 after the fold) and b + 1 (lanes 2-3); adding the fold to itself with its 128-bit lanes
//   swapped pairwise puts each block's total in lanes 0 and 2, and only those are accumulated.
// q4_1's offset term m * sx * sum(q) is accumulated the same way, in float.
void rows_unsigned(const QWeight& w, std::size_t r0, std::size_t r1, const QInputInt8& in, float* y,
                   std::size_t ldy) {
  const std::size_t cols = w.cols, block = in.block, n_blocks = in.n_blocks;
  const std::size_t n_groups = cols / w.group_size;
  const int bits = w.scheme.bits;
  const bool has_offset = w.format == QWeightFormat::kQ4_1, in_place = bits == 8;
  std::vector<uint8_t> cbuf(in_place ? 0 : ymm::kTileRows * cols);
  // per block b, the tile's 4 rows side by side: [b * 4 + j]
  std::vector<float> scale(ymm::kTileRows * n_blocks), offset(ymm::kTileRows * n_blocks);
  std::vector<int32_t> zero(ymm::kTileRows * n_blocks);
  ymm::RowGroups p(n_groups);
  const uint8_t* codes[ymm::kTileRows];
  const int8_t* q_all = bits == 4 ? in.q_pairs : in.q;
  // blocks of 32: lanes 4L + j <- [b * 4 + j] for L = 0, 1 and [(b + 1) * 4 + j] for L = 2, 3
  const __m512i pick = _mm512_setr_epi32(0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7);
  constexpr __mmask16 kEven = 0x0F0F;  // 128-bit lanes 0 and 2
  for (std::size_t t0 = r0; t0 < r1; t0 += ymm::kTileRows) {
    const std::size_t nr = std::min(ymm::kTileRows, r1 - t0);
    for (std::size_t j = 0; j < ymm::kTileRows; ++j) {
      const std::size_t r = t0 + std::min(j, nr - 1);  // a short tile repeats its last row
      uint8_t* c = in_place ? nullptr : &cbuf[j * cols];
      ymm::tile_row(w, r, j, block, n_blocks, p, scale.data(), zero.data(), offset.data(), c);
      codes[j] = in_place ? w.codes + r * w.row_bytes : c;
    }
    // batch rows i and i + 1 (kTwo) or i alone (a GEMV does half the work); see ymm::batch_pairs
    auto rows = [&](std::size_t i, auto two_c) {
      constexpr bool kTwo = decltype(two_c)::value;
      const int8_t* qa = q_all + i * cols;
      const int8_t* qb = kTwo ? qa + cols : qa;
      const std::size_t ib = kTwo ? i + 1 : i;
      const int32_t* qsa = in.qsum + i * n_blocks;
      const int32_t* qsb = in.qsum + ib * n_blocks;
      const float* sxa = in.sx + i * n_blocks;
      const float* sxb = in.sx + ib * n_blocks;
      __m512 acc_a = _mm512_setzero_ps(), acc_b = _mm512_setzero_ps();
      auto dots = [&](std::size_t k, __m512i* da, __m512i* db) {
        const __m512i xa = _mm512_loadu_si512(qa + k);
        const __m512i xb = _mm512_loadu_si512(qb + k);
#pragma GCC unroll 4
        for (std::size_t j = 0; j < ymm::kTileRows; ++j) {
          const __m512i c = _mm512_loadu_si512(codes[j] + k);
          da[j] = _mm512_dpbusd_epi32(da[j], c, xa);
          if (kTwo) db[j] = _mm512_dpbusd_epi32(db[j], c, xb);
        }
      };
      if (block == 32) {
        for (std::size_t b = 0; b < n_blocks; b += 2) {
          __m512i da[ymm::kTileRows], db[ymm::kTileRows];
          for (std::size_t j = 0; j < ymm::kTileRows; ++j) da[j] = db[j] = _mm512_setzero_si512();
          dots(32 * b, da, db);
          const __m512i z = _mm512_permutexvar_epi32(pick, _mm512_castsi256_si512(_mm256_loadu_si256(
                                                               reinterpret_cast<const __m256i*>(&zero[b * ymm::kTileRows]))));
          const __m512 s = _mm512_permutexvar_ps(pick, _mm512_castps256_ps512(_mm256_loadu_ps(&scale[b * ymm::kTileRows])));
          const __m512 o = has_offset ? _mm512_permutexvar_ps(pick, _mm512_castps256_ps512(_mm256_loadu_ps(&offset[b * ymm::kTileRows])))
                                      : _mm512_setzero_ps();
          auto fold = [&](const __m512i* d, const int32_t* qs, const float* sx, __m512& acc) {
            __m512i u = fold4(d[0], d[1], d[2], d[3]);
            u = _mm512_add_epi32(u, _mm512_shuffle_i32x4(u, u, _MM_SHUFFLE(2, 3, 0, 1)));
            // block b's values in 256-bit half 0, block b + 1's in half 1
            const __m512i qsv = _mm512_inserti32x8(_mm512_set1_epi32(qs[b]), _mm256_set1_epi32(qs[b + 1]), 1);
            const __m512 sxv = _mm512_insertf32x8(_mm512_set1_ps(sx[b]), _mm256_set1_ps(sx[b + 1]), 1);
            const __m512i corrected = _mm512_sub_epi32(u, _mm512_mullo_epi32(z, qsv));
            acc = _mm512_mask3_fmadd_ps(_mm512_cvtepi32_ps(corrected), _mm512_mul_ps(s, sxv), acc, kEven);
            if (has_offset) acc = _mm512_mask3_fmadd_ps(o, _mm512_mul_ps(sxv, _mm512_cvtepi32_ps(qsv)), acc, kEven);
          };
          fold(da, qsa, sxa, acc_a);
          if (kTwo) fold(db, qsb, sxb, acc_b);
        }
      } else {
        for (std::size_t b = 0; b < n_blocks; ++b) {
          const std::size_t k0 = b * block;
          __m512i da[ymm::kTileRows], db[ymm::kTileRows];
          for (std::size_t j = 0; j < ymm::kTileRows; ++j) da[j] = db[j] = _mm512_setzero_si512();
          for (std::size_t k = k0; k < k0 + block; k += 64) dots(k, da, db);
          const __m128i z = _mm_loadu_si128(reinterpret_cast<const __m128i*>(&zero[b * ymm::kTileRows]));
          const __m128 s = _mm_loadu_ps(&scale[b * ymm::kTileRows]);
          const __m128 o = _mm_loadu_ps(&offset[b * ymm::kTileRows]);
          // the four rows' 16-lane sums folded to 4 lanes each (exact integers), zero * sum(q)
          // taken off 128-bit lane 0, then one conversion and one multiply-add per block
          auto fold = [&](const __m512i* d, int32_t qs, float sxv, __m512& acc) {
            const __m512i u = fold4(d[0], d[1], d[2], d[3]);
            const __m512i corrected = _mm512_sub_epi32(u, _mm512_zextsi128_si512(_mm_mullo_epi32(z, _mm_set1_epi32(qs))));
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(corrected), _mm512_broadcast_f32x4(_mm_mul_ps(s, _mm_set1_ps(sxv))),
                                  acc);
            if (has_offset)
              acc = _mm512_add_ps(acc, _mm512_zextps128_ps512(_mm_mul_ps(o, _mm_set1_ps(sxv * static_cast<float>(qs)))));
          };
          fold(da, qsa[b], sxa[b], acc_a);
          if (kTwo) fold(db, qsb[b], sxb[b], acc_b);
        }
      }
      auto rows4 = [](__m512 acc) {  // sum of the four 128-bit lanes
        const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(acc),
                                       _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc), 1)));
        return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
      };
      ymm::store_tile(y, ldy, i, t0, nr, rows4(acc_a), rows4(acc_b), kTwo);
    };
    ymm::batch_pairs(in.m, rows);
  }
}

}  // namespace

bool qdot_rows_int8(const QWeight& w, std::size_t r0, std::size_t r1, const QInputInt8& in, float* y,
                    std::size_t ldy) {
  const std::size_t cols = w.cols;
  // Streaming GEMV: whole blocks.
  if (integer_codes(w) && in.m <= 8 && cols % in.block == 0 && in.block % 32 == 0) {
    // rows ending in half a chunk too (blocks of 32 or 64, folded before the masked last step:
    // 1536 x 576 int4 g64, one thread, 55 us through the tile kernel, 40 us here)
    if (w.scheme.bits == 4 && in.q_nib != nullptr && stream_rows<Nibbles>(w, r0, r1, in, y, ldy))
      return true;
    if (w.scheme.bits == 8 && cols % 64 == 0 && stream_rows<Bytes>(w, r0, r1, in, y, ldy)) return true;
  }
  // The tile kernel: blocks of 32 (cols a multiple of 64) or of whole chunks of 64 within a group.
  const bool blocks = (in.block == 32 && cols % 64 == 0) || in.block % 64 == 0;
  if (!integer_codes(w) || !blocks || w.group_size % in.block != 0 || (w.scheme.bits == 4 && in.q_pairs == nullptr))
    return false;
  rows_unsigned(w, r0, r1, in, y, ldy);
  return true;
}

}  // namespace quantcore::avx512vnni
