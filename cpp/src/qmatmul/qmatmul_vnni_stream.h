// The streaming GEMV of the int8-activation path on AVX-512 VNNI, shared by
// qmatmul_avx512vnni.cc (4- and 8-bit codes) and qmatmul_avx512vnnivbmi.cc (2- and 3-bit codes,
// unpacked in registers with VBMI): each file includes it inside its own namespace, compiled
// with its own flags.
//
// A few batch rows (in.m <= 8), integer codes straight from the packed rows, nothing buffered:
// memory traffic is the codes and their group parameters. `Codes` says what a chunk c of a row
// is: codes.load(row, c) gives either 64 bytes of 128 4-bit codes (kNibbles: vpand / vpsrlw
// give the low and the high nibbles, matched by q in q_nib order) or 64 codes as unsigned bytes
// in order (q in order); two or one vpdpbusd, and int32 lane l holds the sum over 8 (4) codes
// of code * q. Blocks of a chunk or more (kBig): lanes are summed over the block's chunks,
// zero * sum(q) comes off lane 0 (all still exact integers below 2^24), then one multiply-add by
// sx * scale (blocks of one chunk: four at a time, folded as below). Blocks smaller than a
// chunk (32 or 64 codes; group a multiple of the block): the chunks' lanes are summed per block
// in integers, 16 blocks at a time (four or eight chunks folded), then corrected and scaled as
// one vector; chunks left over (and a half chunk) go lane by lane: each lane converted to float,
// its block's zero * sum(q) (an exact float, < 2^24) taken off the block's first lane, and
// scaled by its block's sx * scale.
// q4_1 (nibbles, zero 0) adds m * sx * sum(q) per block. A row of 4-bit codes may end in half a
// chunk (64 codes, w.cols = 128k + 64, e.g. 576; blocks smaller than a chunk only): its 32 bytes
// and 64 q are read with masked loads and the other lanes of the chunk hold zeros. Requires:
// w.cols a multiple of the chunk (of 64 codes for nibbles), integer codes (kIntq but not nf4, or
// kQ4_1), in.q_nib set for nibbles.

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

template <class Codes, bool kBig, bool kOneChunk = false>
void gemv_stream(const QWeight& w, std::size_t r0, std::size_t r1, const QInputInt8& in, float* y, std::size_t ldy) {
  constexpr bool kNib = Codes::kNibbles;
  constexpr std::size_t kChunk = kNib ? 128 : 64, kLaneCodes = kChunk / 16;
  const std::size_t cols = w.cols, n_chunks = cols / kChunk, block = in.block;
  const bool half_chunk = cols % kChunk != 0;  // the row's last 64 4-bit codes (see above)
  const std::size_t chunks_per_block = kBig ? block / kChunk : 1, blocks_per_chunk = kBig ? 1 : kChunk / block;
  const std::size_t n_groups = cols / w.group_size, blocks_per_group = w.group_size / block;
  const int8_t* q_all = kNib ? in.q_nib : in.q;
  const Codes codes{};
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
  const __mmask16 half_blocks = static_cast<__mmask16>((1u << (blocks_per_chunk / 2)) - 1);
  // Two blocks per chunk (8-bit codes in blocks of 32, 4-bit codes in blocks of 64: a block is
  // 32 bytes, 128-bit lanes 0-1 or 2-3), eight chunks at a time: in fold f (chunks 4f .. 4f + 3),
  // lane 4L + j is half L % 2 of block L / 2 of chunk 4f + j, so block k = 2j + h (of the 16)
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
  // Blocks smaller than a chunk (four 4-bit blocks of 32 per chunk, or two blocks: 4-bit of 64,
  // 8-bit of 32) are folded 16 blocks at a time: four or eight chunks. With every chunk folded,
  // float16 scales and uint8 zero points are read straight from the tensor, 16 blocks at a
  // time: converting a row's parameters up front (row_groups) was about a quarter of the time
  // with 128 groups per row. (Blocks of 64 went through chunk_lanes until the eight-chunk fold
  // served them too: int4 g64, 256 x 4096 in cache, one thread, took 1.8x int4 g128's time.)
  const bool folded = !kBig && (blocks_per_chunk == 4 || blocks_per_chunk == 2);
  // every chunk folded: by fours (four blocks per chunk), or by eights and a last four (two)
  const bool all_folded = folded && !half_chunk && n_chunks % 4 == 0;
  const bool direct = all_folded && w.scheme.scale_type == ScaleType::kFloat16 &&
                      w.scale_stride != 0 && blocks_per_group == 1;
  const bool has_offset = w.format == QWeightFormat::kQ4_1;
  const bool asymmetric = w.format == QWeightFormat::kIntq && w.scheme.kind == IntqKind::kAsymmetric;
  // the zero point where it is the same on every row: 2^fixed_shift (q4_1: 0)
  const __m128i fixed_shift = _mm_cvtsi32_si128(asymmetric || has_offset ? 32 : w.scheme.bits - 1);
  // Blocks smaller than their group (a scale per row or tensor, groups over 256): the group
  // parameters repeated per block, once per row, unless every 16 blocks of the folded loop lie
  // in one group (whole rows folded, groups of 512k): then they are broadcast.
  const bool spread = !kBig && blocks_per_group > 1;
  const bool broadcast = spread && all_folded && blocks_per_group % 16 == 0;
  std::vector<float> block_scale(spread ? in.n_blocks : 0), block_zero(spread ? in.n_blocks : 0);
  const float* ps = spread ? block_scale.data() : p.scale.data();
  const float* pz = spread ? block_zero.data() : p.zero.data();
  // q4_1's term m * sx * sum(q) per block: sx * sum(q) once per call (sxq), then per row a dot
  // product with the row's m
  std::vector<float> sxq(has_offset ? in.m * in.n_blocks : 0);
  for (std::size_t b = 0; b < sxq.size(); ++b) sxq[b] = in.sx[b] * static_cast<float>(in.qsum[b]);
  for (std::size_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.codes + r * w.row_bytes;
    const uint16_t* row_scales = static_cast<const uint16_t*>(w.scales) + r * w.scale_stride;
    const uint8_t* row_zeros = asymmetric ? static_cast<const uint8_t*>(w.zeros) + r * w.scale_stride : nullptr;
    const uint16_t* row_offsets = has_offset ? static_cast<const uint16_t*>(w.zeros) + r * w.scale_stride : nullptr;
    if (!direct) ymm::row_groups(w, r, p);
    for (std::size_t g = 0; spread && !broadcast && g < n_groups; ++g) {
      std::fill_n(&block_scale[g * blocks_per_group], blocks_per_group, p.scale[g]);
      std::fill_n(&block_zero[g * blocks_per_group], blocks_per_group, p.zero[g]);
    }
    for (std::size_t i = 0; i < in.m; ++i) {
      const int8_t* q = q_all + i * cols;
      const float* sx = in.sx + i * in.n_blocks;
      const int32_t* qsum = in.qsum + i * in.n_blocks;
      __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
      // the low nibbles of `bytes` times q_lo plus the high nibbles times q_hi, one chain of two
      // vpdpbusd
      auto nibbles_dot = [&](__m512i bytes, __m512i q_lo, __m512i q_hi) {
        const __m512i lo = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(bytes, low), q_lo);
        return _mm512_dpbusd_epi32(lo, _mm512_and_si512(_mm512_srli_epi16(bytes, 4), low), q_hi);
      };
      // chunk c's int32 lanes on their own
      auto chunk_alone = [&](std::size_t c) {
        const __m512i bytes = codes.load(row, c);
        if (!kNib) return _mm512_dpbusd_epi32(_mm512_setzero_si512(), bytes, _mm512_loadu_si512(q + 64 * c));
        return nibbles_dot(bytes, _mm512_loadu_si512(q + 128 * c), _mm512_loadu_si512(q + 128 * c + 64));
      };
      // d plus chunk c's lanes (nibbles: d's chain waits on one add, not on the vpdpbusd chain)
      auto chunk_dot = [&](std::size_t c, __m512i d) {
        if (!kNib) return _mm512_dpbusd_epi32(d, codes.load(row, c), _mm512_loadu_si512(q + 64 * c));
        return _mm512_add_epi32(d, chunk_alone(c));
      };
      if (kOneChunk) {  // block == group == chunk: one pass, nothing precomputed
        auto block_term = [&](std::size_t b) {
          const __m512i d = chunk_alone(b);
          const __m512i dz = _mm512_mask_sub_epi32(d, first_lane, d, _mm512_set1_epi32(static_cast<int32_t>(p.zero[b]) * qsum[b]));
          return std::pair{_mm512_cvtepi32_ps(dz), _mm512_set1_ps(sx[b] * p.scale[b])};
        };
        // four blocks at a time: after fold4, lane 4L + j holds block b + j's share of 128-bit
        // lane L, so the blocks' zero * sum(q) come off 128-bit lane 0 and their sx * scale
        // multiply every 128-bit lane (one conversion and one multiply-add per four blocks; in
        // cache, one thread: int4 g128 about 7% faster than block by block, int8 g64 15%)
        std::size_t b = 0;
        for (; b + 4 <= in.n_blocks; b += 4) {
          const __m512i sums = fold4(chunk_alone(b), chunk_alone(b + 1), chunk_alone(b + 2), chunk_alone(b + 3));
          const __m128i zq = _mm_mullo_epi32(_mm_cvtps_epi32(_mm_loadu_ps(&p.zero[b])),
                                             _mm_loadu_si128(reinterpret_cast<const __m128i*>(qsum + b)));
          const __m128 sxs = _mm_mul_ps(_mm_loadu_ps(sx + b), _mm_loadu_ps(&p.scale[b]));
          acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(sums, _mm512_zextsi128_si512(zq))),
                                 _mm512_broadcast_f32x4(sxs), acc0);
        }
        add_terms(b, in.n_blocks, block_term, acc0, acc1);
      } else if (kBig) {
        // per block: zero * sum(q) and sx * scale, from the group's parameters (no division in
        // the loop: it was a fifth of the time); with one block per group (activation_block's
        // choice) straight from p, a pass over the blocks first cost a fifth of int8 g128's time
        const bool per_group = blocks_per_group == 1;
        for (std::size_t g = 0, b = 0; !per_group && g < n_groups; ++g) {
          const int32_t z = static_cast<int32_t>(p.zero[g]);
          for (std::size_t j = 0; j < blocks_per_group; ++j, ++b) {
            zq[b] = z * qsum[b];
            sxs[b] = sx[b] * p.scale[g];
          }
        }
        auto block_term = [&](std::size_t b) {
          // two chains of vpdpbusd: one chain waited on the instruction's latency
          const std::size_t c0 = b * chunks_per_block, c1 = c0 + chunks_per_block;
          __m512i d = chunk_alone(c0), e = _mm512_setzero_si512();
          std::size_t c = c0 + 1;
          for (; c + 2 <= c1; c += 2) {
            e = chunk_dot(c, e);
            d = chunk_dot(c + 1, d);
          }
          if (c < c1) e = chunk_dot(c, e);
          d = _mm512_add_epi32(d, e);
          const int32_t zqb = per_group ? static_cast<int32_t>(p.zero[b]) * qsum[b] : zq[b];
          d = _mm512_mask_sub_epi32(d, first_lane, d, _mm512_set1_epi32(zqb));
          return std::pair{_mm512_cvtepi32_ps(d), _mm512_set1_ps(per_group ? sx[b] * p.scale[b] : sxs[b])};
        };
        add_terms(0, in.n_blocks, block_term, acc0, acc1);
      } else {
        // chunk c's int32 lanes `sums` corrected and scaled per block; `blocks` masks the chunk's
        // blocks that exist (the lanes of the others are 0)
        auto chunk_lanes = [&](std::size_t c, __m512i sums, __mmask16 blocks) {
          const std::size_t b0 = c * blocks_per_chunk;
          const __m512 d = _mm512_cvtepi32_ps(sums);
          auto lanes = [&](const float* v) {
            return _mm512_permutexvar_ps(lane_block, _mm512_maskz_loadu_ps(blocks, v + b0));
          };
          const __m512 qs = _mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(blocks, qsum + b0));
          const __m512 correction = _mm512_maskz_permutexvar_ps(
              first_lane, lane_block, _mm512_mul_ps(qs, _mm512_maskz_loadu_ps(blocks, pz + b0)));
          return std::pair{_mm512_sub_ps(d, correction), _mm512_mul_ps(lanes(sx), lanes(ps))};
        };
        auto chunk_term = [&](std::size_t c) {
          return chunk_lanes(c, chunk_alone(c), chunk_blocks);
        };
        std::size_t c = 0;
        // blocks of 32: 16 blocks at a time, each block's lanes summed in integers first
        // (fold4), so the correction, conversion and scaling run once per block instead of
        // once per lane; sums holds blocks b0 .. b0 + 15 in their natural order (one FMA per
        // 16 blocks: a single accumulator chain keeps up)
        // (`live` masks the blocks that exist: all 16, or the first 8 of the last fold)
        auto add_blocks = [&](__m512i sums, std::size_t b0, __mmask16 live) {
          const __m512i qs = _mm512_maskz_loadu_epi32(live, qsum + b0);
          __m512i zq;  // zero * sum(q)
          __m512 scale;
          if (direct) {
            scale = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(live, row_scales + b0));
            // a zero point the same on every row is a power of two (or 0: a shift by 32 gives 0),
            // so a shift, not a vpmulld (in cache, one thread: q4_0 about 5% faster)
            if (asymmetric) {
              const __m128i z8 = _mm_maskz_loadu_epi8(live, row_zeros + b0);
              zq = _mm512_mullo_epi32(_mm512_cvtepu8_epi32(z8), qs);
            } else {
              zq = _mm512_sll_epi32(qs, fixed_shift);
            }
          } else {
            scale = broadcast ? _mm512_set1_ps(p.scale[b0 / blocks_per_group]) : _mm512_maskz_loadu_ps(live, ps + b0);
            zq = _mm512_mullo_epi32(
                _mm512_cvtps_epi32(broadcast ? _mm512_set1_ps(p.zero[b0 / blocks_per_group]) : _mm512_maskz_loadu_ps(live, pz + b0)),
                qs);
          }
          const __m512 sxs = _mm512_mul_ps(_mm512_maskz_loadu_ps(live, sx + b0), scale);
          acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(sums, zq)), sxs, acc0);
        };
        if (folded && blocks_per_chunk == 4) {
          // four chunks: lane 4L + j of the fold is block L of chunk j; transposed to 4j + L
          const __m512i transpose = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
          for (; c + 4 <= n_chunks; c += 4) {
            const __m512i d0 = chunk_alone(c), d1 = chunk_alone(c + 1), d2 = chunk_alone(c + 2), d3 = chunk_alone(c + 3);
            add_blocks(_mm512_permutexvar_epi32(transpose, fold4(d0, d1, d2, d3)), c * 4, 0xFFFF);
          }
        } else if (folded) {
          // eight chunks, two folds (see pair_a)
          for (; c + 8 <= n_chunks; c += 8) {
            __m512i d[8];
            for (std::size_t j = 0; j < 8; ++j) d[j] = chunk_alone(c + j);
            const __m512i f0 = fold4(d[0], d[1], d[2], d[3]), f1 = fold4(d[4], d[5], d[6], d[7]);
            add_blocks(_mm512_add_epi32(_mm512_permutex2var_epi32(f0, pair_a, f1), _mm512_permutex2var_epi32(f0, pair_b, f1)),
                       c * 2, 0xFFFF);
          }
          // four chunks left: one fold, its 8 blocks in lanes 0-7 (permutexvar reads 4 index
          // bits, so lanes 8-15 repeat them; `live` leaves them out)
          if (c + 4 <= n_chunks) {
            const __m512i f = fold4(chunk_alone(c), chunk_alone(c + 1), chunk_alone(c + 2), chunk_alone(c + 3));
            add_blocks(_mm512_add_epi32(_mm512_permutexvar_epi32(pair_a, f), _mm512_permutexvar_epi32(pair_b, f)), c * 2, 0x00FF);
            c += 4;
          }
        }
        add_terms(c, n_chunks, chunk_term, acc0, acc1);
        if (half_chunk) {  // 32 bytes of codes, their 32 low-nibble then 32 high-nibble q
          const __mmask64 half = 0xFFFFFFFFull;
          const int8_t* qh = q + 128 * n_chunks;
          const __m512i d = nibbles_dot(_mm512_maskz_loadu_epi8(half, row + 64 * n_chunks),
                                        _mm512_maskz_loadu_epi8(half, qh), _mm512_maskz_loadu_epi8(half, qh + 32));
          const auto [v, scale] = chunk_lanes(n_chunks, d, half_blocks);
          acc0 = _mm512_fmadd_ps(v, scale, acc0);
        }
      }
      for (std::size_t b = 0; has_offset && b < in.n_blocks; b += 16) {
        const __mmask16 mask = in.n_blocks - b >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (in.n_blocks - b)) - 1);
        const __m512 m16 = direct ? _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, row_offsets + b))
                                  : _mm512_maskz_loadu_ps(mask, &p.offset[b]);
        acc1 = _mm512_fmadd_ps(m16, _mm512_maskz_loadu_ps(mask, &sxq[i * in.n_blocks + b]), acc1);
      }
      y[i * ldy + r] = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    }
  }
}

// 4-bit codes, two to a byte; 8-bit codes, one to a byte: the chunk as it is stored.
struct Nibbles {
  static constexpr bool kNibbles = true;
  __m512i load(const uint8_t* row, std::size_t c) const { return _mm512_loadu_si512(row + 64 * c); }
};
struct Bytes {
  static constexpr bool kNibbles = false;
  __m512i load(const uint8_t* row, std::size_t c) const { return _mm512_loadu_si512(row + 64 * c); }
};

// Rows [r0, r1) through gemv_stream when the activation block fits its loops (a whole number of
// chunks within a group, or a block smaller than a chunk within a group); false, nothing
// written, otherwise.
template <class Codes>
bool stream_rows(const QWeight& w, std::size_t r0, std::size_t r1, const QInputInt8& in, float* y, std::size_t ldy) {
  constexpr std::size_t chunk = Codes::kNibbles ? 128 : 64;
  const bool big = in.block % chunk == 0 && w.group_size % in.block == 0;
  const bool small = in.block < chunk && w.group_size % in.block == 0;
  if (big && in.block == chunk && w.group_size == chunk)
    gemv_stream<Codes, true, true>(w, r0, r1, in, y, ldy);
  else if (big)
    gemv_stream<Codes, true>(w, r0, r1, in, y, ldy);
  else if (small)
    gemv_stream<Codes, false>(w, r0, r1, in, y, ldy);
  return big || small;
}
