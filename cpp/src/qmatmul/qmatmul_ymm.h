// 256-bit helpers shared by the AVX2 and AVX-512 files (each includes this inside its own ISA
// namespace, compiled with its own flags): one row's group parameters as float arrays, and the
// int8-activation inner loops.
//
// The int8 loops:
// Exactness: the weight is first made signed, w = code - zero (4-bit: an int8 in -15..15;
// 8-bit: an int16), so the integer dot sum(w * q) = idot - zero * sum(q) is formed in int32
// lanes with no cancellation: vpmaddubsw(|w|, sign(q, w)) cannot saturate (2 * 15 * 127 < 2^15)
// and vpmaddwd sums pairs into int32. Each block's 8 int32 lanes are converted to float and
// scaled by sx * scale; lanes are summed once per row. Only the float epilogue's summation order
// differs from scalar::qdot_rows_int8.
// Requires: in.block % 32 == 0, w.cols % 32 == 0, w.group_size % in.block == 0.
namespace ymm {

// A row's group parameters, converted once per row instead of once per group:
// W = (code - zero[g]) * scale[g] + offset[g] (zero as float; see scalar::int_group).
struct RowGroups {
  std::vector<float> scale, zero, offset;
  explicit RowGroups(std::size_t n) : scale(n), zero(n), offset(n) {}
};

inline void load_halves(const uint16_t* src, std::size_t n, bool bf16, float* dst) {
  std::size_t g = 0;
  for (; g + 8 <= n; g += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + g));
    _mm256_storeu_ps(dst + g, bf16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
                                   : _mm256_cvtph_ps(h));
  }
  for (; g < n; ++g) dst[g] = scalar::load_scale(src, g, bf16 ? ScaleType::kBFloat16 : ScaleType::kFloat16);
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
    std::fill_n(p.zero.data(), n, 0.0f);
    return;
  }
  std::fill_n(p.offset.data(), n, 0.0f);
  if (w.format == QWeightFormat::kIntq && w.scheme.kind == IntqKind::kAsymmetric) {
    const uint8_t* z = static_cast<const uint8_t*>(w.zeros) + first;
    for (std::size_t g = 0; g < n; ++g) p.zero[g] = static_cast<float>(z[g]);
  } else {
    const bool offset_binary = w.format == QWeightFormat::kIntq && w.scheme.kind == IntqKind::kSymmetric;
    std::fill_n(p.zero.data(), n, offset_binary ? static_cast<float>(1 << (w.scheme.bits - 1)) : 0.0f);
  }
}


inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Rows of W [r0, r1), every batch row. buf holds one row's signed weights (cols bytes, 4-bit)
// in the q_pairs order.
inline void rows_4bit(const QWeight& w, std::size_t r0, std::size_t r1, const QInputInt8& in, uint8_t* buf,
                      float* y, std::size_t ldy) {
  const std::size_t cols = w.cols, n_blocks = cols / 32, per_group = w.group_size / 32, per_block = in.block / 32;
  const __m128i low = _mm_set1_epi8(0x0F);
  const __m256i ones = _mm256_set1_epi16(1);
  std::vector<float> scale(n_blocks), offset(n_blocks);
  RowGroups p(w.cols / w.group_size);
  for (std::size_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.codes + r * w.row_bytes;
    auto* ws = reinterpret_cast<int8_t*>(buf);
    row_groups(w, r, p);
    for (std::size_t b = 0; b < n_blocks; ++b) {
      const std::size_t g = b / per_group;
      scale[b] = p.scale[g];
      offset[b] = p.offset[g];
      const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 16 * b));
      const __m128i z = _mm_set1_epi8(static_cast<char>(p.zero[g]));
      const __m128i lo = _mm_sub_epi8(_mm_and_si128(bytes, low), z);
      const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(bytes, 4), low), z);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(ws + 32 * b), _mm256_set_m128i(hi, lo));
    }
    for (std::size_t i = 0; i < in.m; ++i) {
      const int8_t* q = in.q_pairs + i * cols;
      const float* sx = in.sx + i * in.n_blocks;
      const int32_t* qsum = in.qsum + i * in.n_blocks;
      __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
      float tail = 0.0f;
      for (std::size_t b = 0; b < n_blocks; ++b) {  // chunks of 32; activation block b / per_block
        const std::size_t a = b / per_block;
        const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ws + 32 * b));
        const __m256i q0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * b));
        const __m256i d0 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(w0), _mm256_sign_epi8(q0, w0)), ones);
        acc[b & 1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d0), _mm256_set1_ps(sx[a] * scale[b]), acc[b & 1]);
        if (b % per_block == 0) tail += sx[a] * (offset[b] * static_cast<float>(qsum[a]));
      }
      y[i * ldy + r] = hsum(_mm256_add_ps(acc[0], acc[1])) + tail;
    }
  }
}

// 8-bit codes: w = code - zero as int16 (asymmetric int8 spans -255..255), vpmaddwd with q.
inline void rows_8bit(const QWeight& w, std::size_t r0, std::size_t r1, const QInputInt8& in, float* y,
                      std::size_t ldy) {
  const std::size_t cols = w.cols, n_blocks = cols / 32, per_group = w.group_size / 32, per_block = in.block / 32;
  std::vector<int16_t> ws(cols);
  std::vector<float> scale(n_blocks);
  RowGroups p(w.cols / w.group_size);
  for (std::size_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.codes + r * w.row_bytes;
    row_groups(w, r, p);
    for (std::size_t b = 0; b < n_blocks; ++b) {
      scale[b] = p.scale[b / per_group];
      const __m256i z = _mm256_set1_epi16(static_cast<int16_t>(p.zero[b / per_group]));
      for (std::size_t h = 0; h < 32; h += 16) {
        const __m256i c = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 32 * b + h)));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(&ws[32 * b + h]), _mm256_sub_epi16(c, z));
      }
    }
    for (std::size_t i = 0; i < in.m; ++i) {
      const int8_t* q = in.q + i * cols;
      const float* sx = in.sx + i * in.n_blocks;
      __m256 acc = _mm256_setzero_ps();
      for (std::size_t b = 0; b < n_blocks; ++b) {
        const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(&ws[32 * b]));
        const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(&ws[32 * b + 16]));
        const __m256i q0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 32 * b)));
        const __m256i q1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 32 * b + 16)));
        const __m256i d = _mm256_add_epi32(_mm256_madd_epi16(w0, q0), _mm256_madd_epi16(w1, q1));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), _mm256_set1_ps(sx[b / per_block] * scale[b]), acc);
      }
      y[i * ldy + r] = hsum(acc);
    }
  }
}

// The fast paths where they apply, else the scalar reference.
inline void qdot_rows(const QWeight& w, std::size_t r0, std::size_t r1, const QInputInt8& in, uint8_t* buf,
                      float* y, std::size_t ldy) {
  const bool aligned = in.block % 32 == 0 && w.cols % 32 == 0 && w.group_size % in.block == 0;
  if (aligned && w.scheme.bits == 4 && in.q_pairs != nullptr)
    return rows_4bit(w, r0, r1, in, buf, y, ldy);
  if (aligned && w.scheme.bits == 8 && w.format == QWeightFormat::kIntq)
    return rows_8bit(w, r0, r1, in, y, ldy);
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
