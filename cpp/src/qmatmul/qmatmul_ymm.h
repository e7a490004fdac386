// 256-bit helpers shared by the AVX2 and AVX-512 files (each includes this inside its own ISA
// namespace, compiled with its own flags): one row's group parameters as float arrays, and the
// int8-activation inner loops.
//
// The int8 loops (rows_stream, rows_tile): exactness: sum(code * q) over a block is formed in
// int32 lanes and zero * sum(q) taken off before any conversion, so idot - zero * sum(q) is
// exact; each block's int32 lanes are then converted to float and scaled by sx * scale, and
// lanes are summed once per row. Only the float epilogue's summation order differs from
// scalar::qdot_rows_int8.
// Requires: in.block % 32 == 0, w.cols % 32 == 0, w.group_size % in.block == 0.
namespace ymm {

// A row's group parameters, converted once per row instead of once per group:
// W = (code - zero[g]) * scale[g] + offset[g] (zero as float; see scalar::int_group). One
// RowGroups serves one weight: zero and offset, where they are the same for every row, are
// written by the first row_groups call only.
struct RowGroups {
  std::vector<float> scale, zero, offset;
  bool constants_set = false;
  explicit RowGroups(std::size_t n) : scale(n), zero(n), offset(n) {}
};

// dst[0, n) = the float16 (or bfloat16) values src[0, n), 8 at a time, the last few one by one.
// (A zero-padded copy through the stack for the last few cost the fp8 GEMV with a scale per row
// a third of its speed from DRAM: 3.4-3.6x -> 2.2-2.3x numpy, same-machine A/B.)
inline void load_halves(const uint16_t* src, std::size_t n, bool bf16, float* dst) {
  std::size_t g = 0;
  for (; g + 8 <= n; g += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + g));
    _mm256_storeu_ps(dst + g, bf16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
                                   : _mm256_cvtph_ps(h));
  }
  for (; g < n; ++g) {
    dst[g] = bf16 ? _mm_cvtss_f32(_mm_castsi128_ps(_mm_cvtsi32_si128(static_cast<int>(src[g]) << 16)))
                  : _cvtsh_ss(src[g]);
  }
}

// dst[0, n) = the uint8 values src[0, n) as floats.
inline void load_bytes(const uint8_t* src, std::size_t n, float* dst) {
  std::size_t g = 0;
  for (; g + 8 <= n; g += 8) {
    const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + g));
    _mm256_storeu_ps(dst + g, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes)));
  }
  for (; g < n; ++g) dst[g] = static_cast<float>(src[g]);
}

inline void row_groups(const QWeight& w, std::size_t r, RowGroups& p) {
  const std::size_t n = w.cols / w.group_size, first = w.scale_stride == 0 ? 0 : r * w.scale_stride;
  if (w.scheme.scale_type == ScaleType::kFloat32)
    std::copy_n(static_cast<const float*>(w.scales) + first, n, p.scale.data());
  else
    load_halves(static_cast<const uint16_t*>(w.scales) + first, n, w.scheme.scale_type == ScaleType::kBFloat16,
                p.scale.data());
  if (w.format == QWeightFormat::kQ4_1) {
    load_halves(static_cast<const uint16_t*>(w.zeros) + first, n, false, p.offset.data());
  } else if (w.format == QWeightFormat::kIntq && w.scheme.kind == IntqKind::kAsymmetric) {
    load_bytes(static_cast<const uint8_t*>(w.zeros) + first, n, p.zero.data());
  } else if (!p.constants_set) {
    const bool offset_binary = w.format == QWeightFormat::kIntq && w.scheme.kind == IntqKind::kSymmetric;
    std::fill_n(p.zero.data(), n, offset_binary ? static_cast<float>(1 << (w.scheme.bits - 1)) : 0.0f);
  }
  p.constants_set = true;  // offset (but for q4_1) and q4_1's zero keep the 0 they were built with
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Rows of W [r0, r1), every batch row, the codes read straight from the packed row (an L1-sized
// run of bytes, read again for each batch row) as unsigned integers: 4-bit codes in units of 32
// (16 bytes: the low nibbles then the high ones, matching q_pairs) through vpmaddubsw, whose
// pairwise sums cannot saturate (2 * 15 * 127 < 2^15); 8-bit codes widened to int16 for
// vpmaddwd. Per block the int32 lanes are summed over its units, zero * sum(q) comes off lane 0
// (exact integers, below 2^24), and one conversion and multiply-add by sx * scale follow; q4_1's
// m * sx * sum(q) is added per block. A row buffer of signed weights, with a conversion and a
// multiply-add per 32 codes, ran at about half this speed.
template <bool kNibbles>
inline void rows_stream(const QWeight& w, std::size_t r0, std::size_t r1, const QInputInt8& in, float* y,
                        std::size_t ldy) {
  const std::size_t cols = w.cols, n_units = cols / 32, per_block = in.block / 32;
  const std::size_t blocks_per_group = w.group_size / in.block;
  const bool has_offset = w.format == QWeightFormat::kQ4_1;
  const __m128i low = _mm_set1_epi8(0x0F);
  const __m256i ones = _mm256_set1_epi16(1);
  const int8_t* q_all = kNibbles ? in.q_pairs : in.q;
  RowGroups p(w.cols / w.group_size);
  for (std::size_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.codes + r * w.row_bytes;
    row_groups(w, r, p);
    for (std::size_t i = 0; i < in.m; ++i) {
      const int8_t* q = q_all + i * cols;
      const float* sx = in.sx + i * in.n_blocks;
      const int32_t* qsum = in.qsum + i * in.n_blocks;
      auto unit = [&](std::size_t u) {  // int32 lanes of sum(code * q) over codes 32u .. 32u + 31
        if (kNibbles) {
          const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 16 * u));
          const __m256i c = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(bytes, 4), low), _mm_and_si128(bytes, low));
          return _mm256_madd_epi16(
              _mm256_maddubs_epi16(c, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * u))), ones);
        }
        auto half = [&](std::size_t k) {
          const __m256i c = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + k)));
          return _mm256_madd_epi16(c, _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + k))));
        };
        return _mm256_add_epi32(half(32 * u), half(32 * u + 16));
      };
      __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
      float tail = 0.0f;
      std::size_t b0 = 0;
      // Eight blocks at a time: their 8-lane sums folded by vphaddd into one vector (lane k:
      // block b0 + k), so the correction, conversion and scaling run once per 8 blocks (one at a
      // time they were about a third of the time with blocks of 32; int4 g64 in cache on one
      // thread took 1.4x the time of g32 and g128 before blocks of 64 were folded too). kUnits:
      // units of 32 codes per block (1, 2, 4 or 8), a constant so the unit loop unrolls.
      const bool by_block = blocks_per_group == 1, by_row = blocks_per_group % 8 == 0;
      auto fold8 = [&](auto units_c) {
        constexpr std::size_t kUnits = decltype(units_c)::value;
        for (; (by_block || by_row) && b0 + 8 <= in.n_blocks; b0 += 8) {
          __m256i d[8];
          for (std::size_t k = 0; k < 8; ++k) {
            d[k] = unit((b0 + k) * kUnits);
            for (std::size_t u = 1; u < kUnits; ++u) d[k] = _mm256_add_epi32(d[k], unit((b0 + k) * kUnits + u));
          }
          const __m256i h0 = _mm256_hadd_epi32(_mm256_hadd_epi32(d[0], d[1]), _mm256_hadd_epi32(d[2], d[3]));
          const __m256i h1 = _mm256_hadd_epi32(_mm256_hadd_epi32(d[4], d[5]), _mm256_hadd_epi32(d[6], d[7]));
          const __m256i sums = _mm256_add_epi32(_mm256_permute2x128_si256(h0, h1, 0x20), _mm256_permute2x128_si256(h0, h1, 0x31));
          const std::size_t g = b0 / blocks_per_group;
          const __m256 scale = by_block ? _mm256_loadu_ps(&p.scale[b0]) : _mm256_set1_ps(p.scale[g]);
          const __m256 zero = by_block ? _mm256_loadu_ps(&p.zero[b0]) : _mm256_set1_ps(p.zero[g]);
          const __m256i qs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qsum + b0));
          const __m256 sxv = _mm256_loadu_ps(sx + b0);
          const __m256i zq = _mm256_mullo_epi32(_mm256_cvtps_epi32(zero), qs);
          acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(sums, zq)), _mm256_mul_ps(sxv, scale), acc0);
          if (has_offset) {
            const __m256 offset = by_block ? _mm256_loadu_ps(&p.offset[b0]) : _mm256_set1_ps(p.offset[g]);
            acc1 = _mm256_fmadd_ps(_mm256_mul_ps(sxv, _mm256_cvtepi32_ps(qs)), offset, acc1);
          }
        }
      };
      if (per_block == 1) fold8(std::integral_constant<std::size_t, 1>{});
      if (per_block == 2) fold8(std::integral_constant<std::size_t, 2>{});
      if (per_block == 4) fold8(std::integral_constant<std::size_t, 4>{});
      if (per_block == 8) fold8(std::integral_constant<std::size_t, 8>{});
      // the rest one block at a time (b0 is a multiple of blocks_per_group)
      for (std::size_t b = b0, g = b0 / blocks_per_group, left = blocks_per_group; b < in.n_blocks; ++b, --left) {
        if (left == 0) {
          ++g;
          left = blocks_per_group;
        }
        __m256i isum = _mm256_setzero_si256();
        for (std::size_t u = b * per_block; u < std::min(n_units, (b + 1) * per_block); ++u)
          isum = _mm256_add_epi32(isum, unit(u));
        const int32_t zq = static_cast<int32_t>(p.zero[g]) * qsum[b];
        const __m256 d = _mm256_cvtepi32_ps(_mm256_sub_epi32(isum, _mm256_setr_epi32(zq, 0, 0, 0, 0, 0, 0, 0)));
        const __m256 s = _mm256_set1_ps(sx[b] * p.scale[g]);
        if (b & 1)
          acc1 = _mm256_fmadd_ps(d, s, acc1);
        else
          acc0 = _mm256_fmadd_ps(d, s, acc0);
        if (has_offset) tail += sx[b] * (p.offset[g] * static_cast<float>(qsum[b]));
      }
      y[i * ldy + r] = hsum(_mm256_add_ps(acc0, acc1)) + tail;
    }
  }
}

constexpr std::size_t kTileRows = 4;

// The tile kernels' batch loop: rows(i, std::true_type) for batch rows i and i + 1, and
// rows(i, std::false_type) for the last row of an odd batch alone.
template <class Rows>
void batch_pairs(std::size_t m, const Rows& rows) {
  std::size_t i = 0;
  for (; i + 2 <= m; i += 2) rows(i, std::true_type{});
  if (i < m) rows(i, std::false_type{});
}

// y[i][t0 + j] = a[j] (and y[i + 1][t0 + j] = b[j] for two rows) for the tile's nr rows.
inline void store_tile(float* y, std::size_t ldy, std::size_t i, std::size_t t0, std::size_t nr, __m128 a, __m128 b,
                       bool two) {
  alignas(16) float ya[4], yb[4];
  _mm_store_ps(ya, a);
  _mm_store_ps(yb, b);
  for (std::size_t j = 0; j < nr; ++j) {
    y[i * ldy + t0 + j] = ya[j];
    if (two) y[(i + 1) * ldy + t0 + j] = yb[j];
  }
}

// Row j (W's row r) of a tile of the int8 path (rows_tile here, avx512vnni's rows_unsigned): its
// group parameters for activation block b at [b * kTileRows + j], and, for codes under 8 bits,
// its codes as unsigned bytes in `bytes` (4-bit in the q_pairs order, 2- and 3-bit in order).
inline void tile_row(const QWeight& w, std::size_t r, std::size_t j, std::size_t block, std::size_t n_blocks,
                     RowGroups& p, float* scale, int32_t* zero, float* offset, uint8_t* bytes) {
  row_groups(w, r, p);
  for (std::size_t b = 0, g = 0, left = w.group_size / block; b < n_blocks; ++b, --left) {
    if (left == 0) {
      ++g;
      left = w.group_size / block;
    }
    scale[b * kTileRows + j] = p.scale[g];
    zero[b * kTileRows + j] = static_cast<int32_t>(p.zero[g]);
    offset[b * kTileRows + j] = p.offset[g];
  }
  const uint8_t* row = w.codes + r * w.row_bytes;
  if (w.scheme.bits == 4) {
    const __m128i low = _mm_set1_epi8(0x0F);
    for (std::size_t u = 0; u < w.cols / 32; ++u) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 16 * u));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(bytes + 32 * u), _mm_and_si128(v, low));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(bytes + 32 * u + 16), _mm_and_si128(_mm_srli_epi16(v, 4), low));
    }
  } else if (w.scheme.bits < 8) {
    pack_kernels().unpack_bits(row, w.cols, w.scheme.bits, bytes);
  }
}

// A tile of 4 weight rows against every batch row, two at a time (the GEMM): each row's codes
// are unpacked once per tile (4-bit in the q_pairs order, 2- and 3-bit by the pack kernels, all
// unsigned bytes for vpmaddubsw; 8-bit widened to int16 for vpmaddwd) and reused over the batch.
// Per block the four rows' 8-lane int32 sums are folded by three vphaddd into one vector (lane
// 4h + j: row j's sum over 128-bit half h), zero * sum(q) comes off half 0 (exact integers), and
// one conversion and multiply-add by sx * scale serve the four rows; q4_1 adds m * sx * sum(q).
// Row by row (rows_stream), a batch of 128 ran at a fifth to a half of numpy's float32 GEMM.
inline void rows_tile(const QWeight& w, std::size_t r0, std::size_t r1, const QInputInt8& in, float* y,
                      std::size_t ldy) {
  const std::size_t cols = w.cols, block = in.block, n_blocks = in.n_blocks, n_units = cols / 32;
  const int bits = w.scheme.bits;
  const bool wide = bits == 8, has_offset = w.format == QWeightFormat::kQ4_1;
  std::vector<uint8_t> bytes(wide ? 0 : kTileRows * cols);
  std::vector<int16_t> words(wide ? kTileRows * cols : 0);
  // per block b, the tile's rows side by side: [b * 4 + j]
  std::vector<float> scale(kTileRows * n_blocks), offset(kTileRows * n_blocks);
  std::vector<int32_t> zero(kTileRows * n_blocks);
  RowGroups p(cols / w.group_size);
  const __m256i ones = _mm256_set1_epi16(1);
  const int8_t* q_all = bits == 4 ? in.q_pairs : in.q;
  for (std::size_t t0 = r0; t0 < r1; t0 += kTileRows) {
    const std::size_t nr = std::min(kTileRows, r1 - t0);
    for (std::size_t j = 0; j < kTileRows; ++j) {
      const std::size_t r = t0 + std::min(j, nr - 1);  // a short tile repeats its last row
      tile_row(w, r, j, block, n_blocks, p, scale.data(), zero.data(), offset.data(), wide ? nullptr : &bytes[j * cols]);
      const uint8_t* row = w.codes + r * w.row_bytes;
      for (std::size_t k = 0; wide && k < cols; k += 16)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(&words[j * cols + k]),
                            _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + k))));
    }
    // batch rows i and i + 1 (kTwo) or i alone (a GEMV does half the work); see batch_pairs
    auto rows = [&](std::size_t i, auto two_c) {
      constexpr bool kTwo = decltype(two_c)::value;
      const std::size_t ib = kTwo ? i + 1 : i;
      const int8_t* qa = q_all + i * cols;
      const int8_t* qb = q_all + ib * cols;
      __m256 acc_a = _mm256_setzero_ps(), acc_b = _mm256_setzero_ps();
      for (std::size_t b = 0; b < n_blocks; ++b) {
        __m256i da[kTileRows], db[kTileRows];
        for (std::size_t j = 0; j < kTileRows; ++j) da[j] = db[j] = _mm256_setzero_si256();
        for (std::size_t u = b * block / 32; u < std::min(n_units, (b + 1) * block / 32); ++u) {
          if (wide) {
            for (std::size_t k = 32 * u; k < 32 * u + 32; k += 16) {
              const __m256i xa = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qa + k)));
              const __m256i xb = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qb + k)));
              for (std::size_t j = 0; j < kTileRows; ++j) {
                const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(&words[j * cols + k]));
                da[j] = _mm256_add_epi32(da[j], _mm256_madd_epi16(c, xa));
                if (kTwo) db[j] = _mm256_add_epi32(db[j], _mm256_madd_epi16(c, xb));
              }
            }
          } else {
            const __m256i xa = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qa + 32 * u));
            const __m256i xb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qb + 32 * u));
            for (std::size_t j = 0; j < kTileRows; ++j) {
              const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(&bytes[j * cols + 32 * u]));
              da[j] = _mm256_add_epi32(da[j], _mm256_madd_epi16(_mm256_maddubs_epi16(c, xa), ones));
              if (kTwo) db[j] = _mm256_add_epi32(db[j], _mm256_madd_epi16(_mm256_maddubs_epi16(c, xb), ones));
            }
          }
        }
        const __m128i z = _mm_loadu_si128(reinterpret_cast<const __m128i*>(&zero[b * kTileRows]));
        const __m128 s = _mm_loadu_ps(&scale[b * kTileRows]);
        auto fold = [&](const __m256i* d, std::size_t row_i, __m256& acc) {
          const int32_t qs = in.qsum[row_i * n_blocks + b];
          const float sx = in.sx[row_i * n_blocks + b];
          const __m256i u = _mm256_hadd_epi32(_mm256_hadd_epi32(d[0], d[1]), _mm256_hadd_epi32(d[2], d[3]));
          const __m256i zq = _mm256_inserti128_si256(_mm256_setzero_si256(), _mm_mullo_epi32(z, _mm_set1_epi32(qs)), 0);
          const __m128 sxs = _mm_mul_ps(s, _mm_set1_ps(sx));
          acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(u, zq)), _mm256_set_m128(sxs, sxs), acc);
          if (has_offset) {
            const __m128 o = _mm_mul_ps(_mm_loadu_ps(&offset[b * kTileRows]), _mm_set1_ps(sx * static_cast<float>(qs)));
            acc = _mm256_add_ps(acc, _mm256_insertf128_ps(_mm256_setzero_ps(), o, 0));
          }
        };
        fold(da, i, acc_a);
        if (kTwo) fold(db, ib, acc_b);
      }
      auto halves = [](__m256 acc) { return _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1)); };
      store_tile(y, ldy, i, t0, nr, halves(acc_a), halves(acc_b), kTwo);
    };
    batch_pairs(in.m, rows);
  }
}

// Batch rows up to which rows_stream runs for 4- and 8-bit codes (above: rows_tile).
constexpr std::size_t kStreamRows = 2;

// The fast paths where they apply, else the scalar reference.
inline void qdot_rows(const QWeight& w, std::size_t r0, std::size_t r1, const QInputInt8& in, uint8_t* buf,
                      float* y, std::size_t ldy) {
  const bool aligned = in.block % 32 == 0 && w.cols % 32 == 0 && w.group_size % in.block == 0;
  const bool streams = w.scheme.bits == 8 || w.scheme.bits == 4;  // 2- and 3-bit codes need unpacking
  if (aligned && integer_codes(w) && (in.m > kStreamRows || !streams) && (w.scheme.bits != 4 || in.q_pairs != nullptr))
    return rows_tile(w, r0, r1, in, y, ldy);
  if (aligned && w.scheme.bits == 4 && in.q_pairs != nullptr) return rows_stream<true>(w, r0, r1, in, y, ldy);
  if (aligned && w.scheme.bits == 8 && w.format == QWeightFormat::kIntq)
    return rows_stream<false>(w, r0, r1, in, y, ldy);
  scalar::qdot_rows_int8(w, r0, r1, in, buf, y, ldy);
}

// f(std::integral_constant<int, M>) for the runtime batch size m in 1..8 (the GEMV kernels'
// template parameter M).
template <class F>
void with_m(std::size_t m, F&& f) {
  switch (m) {
    case 1: return f(std::integral_constant<int, 1>{});
    case 2: return f(std::integral_constant<int, 2>{});
    case 3: return f(std::integral_constant<int, 3>{});
    case 4: return f(std::integral_constant<int, 4>{});
    case 5: return f(std::integral_constant<int, 5>{});
    case 6: return f(std::integral_constant<int, 6>{});
    case 7: return f(std::integral_constant<int, 7>{});
    default: return f(std::integral_constant<int, 8>{});
  }
}

}  // namespace ymm
