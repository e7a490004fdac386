// AVX2 (+F16C) GGUF kernels: one 32-value block is four 8-lane vectors; every float
// operation is the scalar reference's, in its order (mul then add, never FMA). Only this file
// is compiled with AVX2 flags.
#include <immintrin.h>

#include <cstring>

#include "quantcore/gguf.h"

namespace quantcore::avx2 {
namespace {

constexpr uint32_t kInfBits = 0x7F800000u;

inline __m256i set1(int v) { return _mm256_set1_epi32(v); }
inline __m256i abs_bits(__m256 x) { return _mm256_and_si256(_mm256_castps_si256(x), set1(0x7FFFFFFF)); }

// fp16 -> float32 is exact; the float32 -> fp16 conversions below (vcvtps2ph) round to
// nearest-even, as scalar::f32_to_fp16 does.
inline float from_fp16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
}

// Horizontal reductions of 8 lanes.
inline uint32_t reduce_max_epu32(__m256i v) {
  __m128i m = _mm_max_epu32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  m = _mm_max_epu32(m, _mm_shuffle_epi32(m, _MM_SHUFFLE(1, 0, 3, 2)));
  m = _mm_max_epu32(m, _mm_shuffle_epi32(m, _MM_SHUFFLE(2, 3, 0, 1)));
  return static_cast<uint32_t>(_mm_cvtsi128_si32(m));
}
// One block in four vectors: its values and their |x| bits.
struct Block32 {
  __m256 x[4];
  __m256i a[4];
  explicit Block32(const float* p) {
    for (int k = 0; k < 4; ++k) {
      x[k] = _mm256_loadu_ps(p + 8 * k);
      a[k] = abs_bits(x[k]);
    }
  }
  uint32_t amax() const {
    return reduce_max_epu32(_mm256_max_epu32(_mm256_max_epu32(a[0], a[1]), _mm256_max_epu32(a[2], a[3])));
  }
  // First index whose |x| bits equal `bits` (numpy's argmax).
  unsigned first_index_of(uint32_t bits) const {
    const __m256i m = set1(static_cast<int>(bits));
    uint32_t hits = 0;
    for (int k = 0; k < 4; ++k)
      hits |= static_cast<uint32_t>(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(a[k], m)))) << (8 * k);
    return static_cast<unsigned>(__builtin_ctz(hits));
  }
};

// 4-bit codes: truncate (NaN and overflow give INT32_MIN, as scalar) and clamp to 0..15.
inline __m256i nibble_codes(__m256 v) {
  return _mm256_max_epi32(_mm256_setzero_si256(), _mm256_min_epi32(_mm256_cvttps_epi32(v), set1(15)));
}

// Codes of values 0..15 (c[0], c[1]) in the low nibbles, 16..31 (c[2], c[3]) in the high ones.
inline void store_nibbles(const __m256i c[4], uint8_t* qs) {
  const __m256i b0 = _mm256_or_si256(c[0], _mm256_slli_epi32(c[2], 4));
  const __m256i b1 = _mm256_or_si256(c[1], _mm256_slli_epi32(c[3], 4));
  // packus works per 128-bit half: reorder the 64-bit quarters to get values 0..15 in order.
  const __m256i w = _mm256_permute4x64_epi64(_mm256_packus_epi32(b0, b1), _MM_SHUFFLE(3, 1, 2, 0));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(qs),
                   _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1)));
}

inline float reduce_min_ps(__m256 v) {
  __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_min_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_min_ss(m, _mm_movehdup_ps(m)));
}
inline float reduce_max_ps(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}

// A block's min or max as scalar finds it: the value is the vector reduction's; when it is
// zero, its sign is that of the block's first zero (minps / maxps leave the sign of a zero
// result to operand order).
inline float first_if_zero(float v, const Block32& blk, const float* x) {
  if (v != 0.0f) return v;
  uint32_t zeros = 0;
  for (int k = 0; k < 4; ++k)
    zeros |= static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(blk.x[k], _mm256_setzero_ps(), _CMP_EQ_OQ))) << (8 * k);
  return x[__builtin_ctz(zeros)];
}

// Round half away from zero, then to int32: trunc(v + copysign(0.49999997, v)); see the AVX-512
// file for why this equals scalar's rule. NaN and +-inf give INT32_MIN, as in scalar.
inline __m256i round_away(__m256 v) {
  const __m256i sign = _mm256_and_si256(_mm256_castps_si256(v), set1(INT32_MIN));
  const __m256 nudge = _mm256_castsi256_ps(_mm256_or_si256(sign, set1(0x3EFFFFFF)));  // 0.49999997
  return _mm256_cvttps_epi32(_mm256_add_ps(v, nudge));
}

// 8 nibbles (low or high half of 8 bytes of qs) as 8 int32 lanes.
inline __m256i unpack_nibbles8(__m128i qs8, bool high) {
  const __m128i n = high ? _mm_srli_epi16(qs8, 4) : qs8;
  return _mm256_cvtepu8_epi32(_mm_and_si128(n, _mm_set1_epi8(0x0F)));
}

// The four 8-value groups of a nibble block, in value order: q[k] holds values 8k..8k+7.
inline void unpack_block_nibbles(const uint8_t* qs, __m256i q[4]) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i upper = _mm_srli_si128(v, 8);
  q[0] = unpack_nibbles8(v, false);
  q[1] = unpack_nibbles8(upper, false);
  q[2] = unpack_nibbles8(v, true);
  q[3] = unpack_nibbles8(upper, true);
}

inline void store_fp16x8(__m256 v, uint16_t* out) {
  _mm_store_si128(reinterpret_cast<__m128i*>(out), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}

// 1 / d, or 0 where d == 0 (d is never NaN here).
inline __m256 inverse_or_zero(__m256 d) {
  const __m256 nonzero = _mm256_cmp_ps(d, _mm256_setzero_ps(), _CMP_NEQ_OQ);
  return _mm256_and_ps(nonzero, _mm256_div_ps(_mm256_set1_ps(1.0f), d));
}

// The quantizers work on groups of 8 blocks in three passes, as the AVX-512 ones do (see
// there): per-block statistics, then d, 1 / d and fp16 fields as one vector, then the codes.
// Leftover blocks, and a group holding NaN or inf, go to the scalar reference.
constexpr std::size_t kGroup = 8;

}  // namespace

std::size_t quantize_q4_0(const float* src, uint8_t* dst, std::size_t n_blocks) {
  std::size_t i = 0;
  for (; i + kGroup <= n_blocks; i += kGroup) {
    const float* x = src + i * kQK;
    alignas(32) float max[kGroup];
    uint32_t worst = 0;
    for (std::size_t b = 0; b < kGroup; ++b) {
      const Block32 blk(x + b * kQK);
      const uint32_t amax = blk.amax();
      worst = amax > worst ? amax : worst;
      max[b] = x[b * kQK + blk.first_index_of(amax)];
    }
    if (worst >= kInfBits) break;
    // max / -8 == max * -0.125 exactly (a power of two), including subnormal results.
    const __m256 d = _mm256_mul_ps(_mm256_load_ps(max), _mm256_set1_ps(-0.125f));
    alignas(32) float id[kGroup];
    _mm256_store_ps(id, inverse_or_zero(d));
    alignas(16) uint16_t dh[kGroup];
    store_fp16x8(d, dh);
    const __m256 bias = _mm256_set1_ps(8.5f);
    for (std::size_t b = 0; b < kGroup; ++b) {
      const __m256 vid = _mm256_set1_ps(id[b]);
      uint8_t* out = dst + (i + b) * sizeof(BlockQ4_0);
      std::memcpy(out + offsetof(BlockQ4_0, d), &dh[b], 2);
      __m256i c[4];
      for (int k = 0; k < 4; ++k)
        c[k] = nibble_codes(_mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(x + b * kQK + 8 * k), vid), bias));
      store_nibbles(c, out + offsetof(BlockQ4_0, qs));
    }
  }
  return i + scalar::quantize_q4_0(src + i * kQK, dst + i * sizeof(BlockQ4_0), n_blocks - i);
}

std::size_t quantize_q4_1(const float* src, uint8_t* dst, std::size_t n_blocks) {
  std::size_t i = 0;
  for (; i + kGroup <= n_blocks; i += kGroup) {
    const float* x = src + i * kQK;
    alignas(32) float min[kGroup], max[kGroup];
    uint32_t worst = 0;
    for (std::size_t b = 0; b < kGroup; ++b) {
      const Block32 blk(x + b * kQK);
      const uint32_t amax = blk.amax();
      worst = amax > worst ? amax : worst;
      const __m256 lo = _mm256_min_ps(_mm256_min_ps(blk.x[0], blk.x[1]), _mm256_min_ps(blk.x[2], blk.x[3]));
      const __m256 hi = _mm256_max_ps(_mm256_max_ps(blk.x[0], blk.x[1]), _mm256_max_ps(blk.x[2], blk.x[3]));
      min[b] = first_if_zero(reduce_min_ps(lo), blk, x + b * kQK);
      max[b] = first_if_zero(reduce_max_ps(hi), blk, x + b * kQK);
    }
    if (worst >= kInfBits) break;
    const __m256 vmin = _mm256_load_ps(min);
    const __m256 d = _mm256_div_ps(_mm256_sub_ps(_mm256_load_ps(max), vmin), _mm256_set1_ps(15.0f));
    alignas(32) float id[kGroup];
    _mm256_store_ps(id, inverse_or_zero(d));
    alignas(16) uint16_t dh[kGroup], mh[kGroup];
    store_fp16x8(d, dh);
    store_fp16x8(vmin, mh);
    const __m256 half = _mm256_set1_ps(0.5f);
    for (std::size_t b = 0; b < kGroup; ++b) {
      const __m256 bmin = _mm256_set1_ps(min[b]), vid = _mm256_set1_ps(id[b]);
      uint8_t* out = dst + (i + b) * sizeof(BlockQ4_1);
      std::memcpy(out + offsetof(BlockQ4_1, d), &dh[b], 2);
      std::memcpy(out + offsetof(BlockQ4_1, m), &mh[b], 2);
      __m256i c[4];
      for (int k = 0; k < 4; ++k) {
        const __m256 v = _mm256_sub_ps(_mm256_loadu_ps(x + b * kQK + 8 * k), bmin);
        c[k] = nibble_codes(_mm256_add_ps(_mm256_mul_ps(v, vid), half));
      }
      store_nibbles(c, out + offsetof(BlockQ4_1, qs));
    }
  }
  return i + scalar::quantize_q4_1(src + i * kQK, dst + i * sizeof(BlockQ4_1), n_blocks - i);
}

std::size_t quantize_q8_0(const float* src, uint8_t* dst, std::size_t n_blocks) {
  std::size_t i = 0;
  for (; i + kGroup <= n_blocks; i += kGroup) {
    const float* x = src + i * kQK;
    alignas(32) uint32_t amax[kGroup];
    uint32_t worst = 0;
    for (std::size_t b = 0; b < kGroup; ++b) {
      amax[b] = Block32(x + b * kQK).amax();
      worst = amax[b] > worst ? amax[b] : worst;
    }
    if (worst >= kInfBits) break;
    const __m256 d = _mm256_div_ps(_mm256_castsi256_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(amax))),
                                   _mm256_set1_ps(127.0f));
    alignas(32) float id[kGroup];
    _mm256_store_ps(id, inverse_or_zero(d));
    alignas(16) uint16_t dh[kGroup];
    store_fp16x8(d, dh);
    for (std::size_t b = 0; b < kGroup; ++b) {
      const __m256 vid = _mm256_set1_ps(id[b]);
      uint8_t* out = dst + (i + b) * sizeof(BlockQ8_0);
      std::memcpy(out + offsetof(BlockQ8_0, d), &dh[b], 2);
      // Keep the low byte of each int32 (INT32_MIN from NaN becomes 0, as in scalar); after the
      // mask the unsigned saturating packs are exact.
      __m256i q[4];
      for (int k = 0; k < 4; ++k)
        q[k] = _mm256_and_si256(round_away(_mm256_mul_ps(_mm256_loadu_ps(x + b * kQK + 8 * k), vid)), set1(0xFF));
      const __m256i bytes = _mm256_packus_epi16(_mm256_packus_epi32(q[0], q[1]), _mm256_packus_epi32(q[2], q[3]));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + offsetof(BlockQ8_0, qs)),
                          _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    }
  }
  return i + scalar::quantize_q8_0(src + i * kQK, dst + i * sizeof(BlockQ8_0), n_blocks - i);
}

void dequantize_q4_0(const uint8_t* src, float* dst, std::size_t n_blocks) {
  const __m256i eight = set1(8);
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const uint8_t* b = src + i * sizeof(BlockQ4_0);
    const __m256 d = _mm256_set1_ps(from_fp16(b + offsetof(BlockQ4_0, d)));
    __m256i q[4];
    unpack_block_nibbles(b + offsetof(BlockQ4_0, qs), q);
    for (int k = 0; k < 4; ++k)
      _mm256_storeu_ps(dst + i * kQK + 8 * k, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(q[k], eight))));
  }
}

void dequantize_q4_1(const uint8_t* src, float* dst, std::size_t n_blocks) {
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const uint8_t* b = src + i * sizeof(BlockQ4_1);
    const __m256 d = _mm256_set1_ps(from_fp16(b + offsetof(BlockQ4_1, d)));
    const __m256 m = _mm256_set1_ps(from_fp16(b + offsetof(BlockQ4_1, m)));
    __m256i q[4];
    unpack_block_nibbles(b + offsetof(BlockQ4_1, qs), q);
    for (int k = 0; k < 4; ++k)
      _mm256_storeu_ps(dst + i * kQK + 8 * k, _mm256_add_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(q[k])), m));
  }
}

void dequantize_q8_0(const uint8_t* src, float* dst, std::size_t n_blocks) {
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const uint8_t* b = src + i * sizeof(BlockQ8_0);
    const __m256 d = _mm256_set1_ps(from_fp16(b + offsetof(BlockQ8_0, d)));
    const uint8_t* qs = b + offsetof(BlockQ8_0, qs);
    for (int k = 0; k < 4; ++k) {
      const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(qs + 8 * k));
      _mm256_storeu_ps(dst + i * kQK + 8 * k, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q))));
    }
  }
}

namespace {

// 8 int32 lanes -> float32, times d (then minus m where given): the scalar expressions.
inline void store_scaled(float* y, __m256i q, __m256 d) { _mm256_storeu_ps(y, _mm256_mul_ps(d, _mm256_cvtepi32_ps(q))); }
inline void store_scaled_minus(float* y, __m256i q, __m256 d, __m256 m) {
  _mm256_storeu_ps(y, _mm256_sub_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(q)), m));
}

inline __m128i load16(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }

// 16 bytes (unsigned or signed) as 16 floats times d (then minus m where given).
inline void store16_u8(float* y, __m128i v, __m256 d, __m256 m) {
  store_scaled_minus(y, _mm256_cvtepu8_epi32(v), d, m);
  store_scaled_minus(y + 8, _mm256_cvtepu8_epi32(_mm_srli_si128(v, 8)), d, m);
}
inline void store16_s8(float* y, __m128i v, __m256 d) {
  store_scaled(y, _mm256_cvtepi8_epi32(v), d);
  store_scaled(y + 8, _mm256_cvtepi8_epi32(_mm_srli_si128(v, 8)), d);
}

// Bit j (j = 0..7) of `word` in lane j, as 0 or 16: bit 4 of a q5 value.
inline __m256i fifth_bits(uint32_t word) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i bit = _mm256_and_si256(_mm256_srlv_epi32(set1(static_cast<int>(word)), lane), set1(1));
  return _mm256_slli_epi32(bit, 4);
}

// The 32 values of a q5 block as four groups of 8 int32 (value 8k + j in group k, lane j).
inline void unpack_q5(const uint8_t* qs, uint32_t qh, __m256i q[4]) {
  unpack_block_nibbles(qs, q);
  for (int k = 0; k < 4; ++k) q[k] = _mm256_or_si256(q[k], fifth_bits(qh >> (8 * k)));
}

// 16 nibbles through a 16-entry int8 code book (pshufb is a 16-entry byte table lookup),
// stored as 16 scaled floats.
inline void store_book(float* y, const int8_t* book, __m128i nibbles, __m256 d) {
  const __m128i v = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(book)), nibbles);
  store_scaled(y, _mm256_cvtepi8_epi32(v), d);
  store_scaled(y + 8, _mm256_cvtepi8_epi32(_mm_srli_si128(v, 8)), d);
}
inline void store_iq4(float* y, __m128i nibbles, __m256 d) { store_book(y, kIq4nlValues, nibbles, d); }

}  // namespace

void dequantize_q5_0(const uint8_t* src, float* dst, std::size_t n_blocks) {
  const __m256i sixteen = set1(16);
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const uint8_t* b = src + i * sizeof(BlockQ5_0);
    const __m256 d = _mm256_set1_ps(from_fp16(b + offsetof(BlockQ5_0, d)));
    uint32_t qh;
    std::memcpy(&qh, b + offsetof(BlockQ5_0, qh), 4);
    __m256i q[4];
    unpack_q5(b + offsetof(BlockQ5_0, qs), qh, q);
    for (int k = 0; k < 4; ++k) store_scaled(dst + i * kQK + 8 * k, _mm256_sub_epi32(q[k], sixteen), d);
  }
}

void dequantize_q5_1(const uint8_t* src, float* dst, std::size_t n_blocks) {
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const uint8_t* b = src + i * sizeof(BlockQ5_1);
    const __m256 d = _mm256_set1_ps(from_fp16(b + offsetof(BlockQ5_1, d)));
    const __m256 m = _mm256_set1_ps(from_fp16(b + offsetof(BlockQ5_1, m)));
    uint32_t qh;
    std::memcpy(&qh, b + offsetof(BlockQ5_1, qh), 4);
    __m256i q[4];
    unpack_q5(b + offsetof(BlockQ5_1, qs), qh, q);
    for (int k = 0; k < 4; ++k)
      _mm256_storeu_ps(dst + i * kQK + 8 * k, _mm256_add_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(q[k])), m));
  }
}

void dequantize_q2_k(const uint8_t* src, float* dst, std::size_t n_blocks) {
  const __m128i low2 = _mm_set1_epi8(0x03);
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const uint8_t* b = src + i * sizeof(BlockQ2_K);
    const float d = from_fp16(b + offsetof(BlockQ2_K, d)), dmin = from_fp16(b + offsetof(BlockQ2_K, dmin));
    const uint8_t* scales = b + offsetof(BlockQ2_K, scales);
    float* y = dst + i * kQKK;
    // Value h * 128 + s * 32 + l at bits 2s of qs[h * 32 + l]; see scalar.
    for (int h = 0; h < 2; ++h)
      for (int s = 0; s < 4; ++s)
        for (int half = 0; half < 2; ++half) {
          const uint8_t sc = scales[h * 8 + s * 2 + half];
          const __m256 dl = _mm256_set1_ps(d * static_cast<float>(sc & 0x0F));
          const __m256 ml = _mm256_set1_ps(dmin * static_cast<float>(sc >> 4));
          const __m128i q = _mm_and_si128(_mm_srl_epi16(load16(b + offsetof(BlockQ2_K, qs) + h * 32 + half * 16),
                                                        _mm_cvtsi32_si128(2 * s)), low2);
          store16_u8(y + h * 128 + s * 32 + half * 16, q, dl, ml);
        }
  }
}

void dequantize_q3_k(const uint8_t* src, float* dst, std::size_t n_blocks) {
  const __m128i low2 = _mm_set1_epi8(0x03), one = _mm_set1_epi8(1), four = _mm_set1_epi8(4);
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const uint8_t* b = src + i * sizeof(BlockQ3_K);
    const float d = from_fp16(b + offsetof(BlockQ3_K, d));
    const uint8_t* sc = b + offsetof(BlockQ3_K, scales);
    float* y = dst + i * kQKK;
    for (int h = 0; h < 2; ++h)
      for (int s = 0; s < 4; ++s) {
        const __m128i plane = _mm_cvtsi32_si128(h * 4 + s);  // hmask bit of these 32 values
        for (int half = 0; half < 2; ++half) {
          const int g = h * 8 + s * 2 + half;
          const __m256 dl = _mm256_set1_ps(d * static_cast<float>(scalar::q3_k_scale(sc, g)));
          const __m128i q = _mm_and_si128(_mm_srl_epi16(load16(b + offsetof(BlockQ3_K, qs) + h * 32 + half * 16),
                                                        _mm_cvtsi32_si128(2 * s)), low2);
          const __m128i m = _mm_and_si128(_mm_srl_epi16(load16(b + offsetof(BlockQ3_K, hmask) + half * 16), plane), one);
          // A clear hmask bit subtracts 4.
          const __m128i v = _mm_sub_epi8(q, _mm_andnot_si128(_mm_cmpeq_epi8(m, one), four));
          store16_s8(y + h * 128 + s * 32 + half * 16, v, dl);
        }
      }
  }
}

void dequantize_q4_k(const uint8_t* src, float* dst, std::size_t n_blocks) {
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const uint8_t* b = src + i * sizeof(BlockQ4_K);
    const float d = from_fp16(b + offsetof(BlockQ4_K, d)), dmin = from_fp16(b + offsetof(BlockQ4_K, dmin));
    const uint8_t* s = b + offsetof(BlockQ4_K, scales);
    float* y = dst + i * kQKK;
    for (int g = 0; g < 8; g += 2) {
      // Groups g (low nibbles) and g + 1 (high nibbles) share 32 bytes.
      uint8_t sc0, mn0, sc1, mn1;
      scalar::k_scale_min(s, g, &sc0, &mn0);
      scalar::k_scale_min(s, g + 1, &sc1, &mn1);
      const __m256 dl0 = _mm256_set1_ps(d * static_cast<float>(sc0)), ml0 = _mm256_set1_ps(dmin * static_cast<float>(mn0));
      const __m256 dl1 = _mm256_set1_ps(d * static_cast<float>(sc1)), ml1 = _mm256_set1_ps(dmin * static_cast<float>(mn1));
      const uint8_t* q = b + offsetof(BlockQ4_K, qs) + (g / 2) * 32;
      for (int k = 0; k < 4; ++k) {
        const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + 8 * k));
        store_scaled_minus(y + g * 32 + 8 * k, unpack_nibbles8(bytes, false), dl0, ml0);
        store_scaled_minus(y + g * 32 + 32 + 8 * k, unpack_nibbles8(bytes, true), dl1, ml1);
      }
    }
  }
}

void dequantize_q5_k(const uint8_t* src, float* dst, std::size_t n_blocks) {
  const __m128i low4 = _mm_set1_epi8(0x0F), one = _mm_set1_epi8(1);
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const uint8_t* b = src + i * sizeof(BlockQ5_K);
    const float d = from_fp16(b + offsetof(BlockQ5_K, d)), dmin = from_fp16(b + offsetof(BlockQ5_K, dmin));
    const uint8_t* s = b + offsetof(BlockQ5_K, scales);
    float* y = dst + i * kQKK;
    for (int g = 0; g < 8; ++g) {
      uint8_t sc, mn;
      scalar::k_scale_min(s, g, &sc, &mn);
      const __m256 dl = _mm256_set1_ps(d * static_cast<float>(sc)), ml = _mm256_set1_ps(dmin * static_cast<float>(mn));
      for (int half = 0; half < 2; ++half) {
        __m128i q = load16(b + offsetof(BlockQ5_K, qs) + (g / 2) * 32 + half * 16);
        if (g % 2) q = _mm_srli_epi16(q, 4);
        const __m128i qh = load16(b + offsetof(BlockQ5_K, qh) + half * 16);
        const __m128i h = _mm_and_si128(_mm_srl_epi16(qh, _mm_cvtsi32_si128(g)), one);
        const __m128i v = _mm_or_si128(_mm_and_si128(q, low4), _mm_slli_epi16(h, 4));
        store16_u8(y + g * 32 + half * 16, v, dl, ml);
      }
    }
  }
}

void dequantize_q6_k(const uint8_t* src, float* dst, std::size_t n_blocks) {
  const __m128i low4 = _mm_set1_epi8(0x0F), low2 = _mm_set1_epi8(0x03);
  const __m256i thirty_two = set1(32);
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const uint8_t* b = src + i * sizeof(BlockQ6_K);
    const float d = from_fp16(b + offsetof(BlockQ6_K, d));
    const int8_t* scales = reinterpret_cast<const int8_t*>(b + offsetof(BlockQ6_K, scales));
    float* y = dst + i * kQKK;
    // Value h * 128 + s * 32 + l: low bits from ql[h * 64 + (s % 2) * 32 + l] >> 4 * (s / 2),
    // high bits from qh[h * 32 + l] >> 2s; see scalar.
    for (int h = 0; h < 2; ++h)
      for (int s = 0; s < 4; ++s)
        for (int half = 0; half < 2; ++half) {
          const __m256 dl = _mm256_set1_ps(d * static_cast<float>(scales[h * 8 + s * 2 + half]));
          __m128i lo = load16(b + offsetof(BlockQ6_K, ql) + h * 64 + (s % 2) * 32 + half * 16);
          if (s >= 2) lo = _mm_srli_epi16(lo, 4);
          __m128i hi = load16(b + offsetof(BlockQ6_K, qh) + h * 32 + half * 16);
          hi = _mm_srl_epi16(hi, _mm_cvtsi32_si128(2 * s));
          const __m128i v = _mm_or_si128(_mm_and_si128(lo, low4), _mm_slli_epi16(_mm_and_si128(hi, low2), 4));
          float* out = y + h * 128 + s * 32 + half * 16;
          store_scaled(out, _mm256_sub_epi32(_mm256_cvtepu8_epi32(v), thirty_two), dl);
          store_scaled(out + 8, _mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_srli_si128(v, 8)), thirty_two), dl);
        }
  }
}

void dequantize_iq4_nl(const uint8_t* src, float* dst, std::size_t n_blocks) {
  const __m128i low4 = _mm_set1_epi8(0x0F);
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const uint8_t* b = src + i * sizeof(BlockIq4Nl);
    const __m256 d = _mm256_set1_ps(from_fp16(b + offsetof(BlockIq4Nl, d)));
    const __m128i qs = load16(b + offsetof(BlockIq4Nl, qs));
    store_iq4(dst + i * kQK, _mm_and_si128(qs, low4), d);
    store_iq4(dst + i * kQK + 16, _mm_and_si128(_mm_srli_epi16(qs, 4), low4), d);
  }
}

void dequantize_iq4_xs(const uint8_t* src, float* dst, std::size_t n_blocks) {
  const __m128i low4 = _mm_set1_epi8(0x0F);
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const uint8_t* b = src + i * sizeof(BlockIq4Xs);
    const float d = from_fp16(b + offsetof(BlockIq4Xs, d));
    uint16_t scales_h;
    std::memcpy(&scales_h, b + offsetof(BlockIq4Xs, scales_h), 2);
    const uint8_t* scales_l = b + offsetof(BlockIq4Xs, scales_l);
    float* y = dst + i * kQKK;
    for (int g = 0; g < 8; ++g) {
      const __m256 dl = _mm256_set1_ps(d * static_cast<float>(scalar::iq4_xs_scale(scales_h, scales_l, g)));
      const __m128i qs = load16(b + offsetof(BlockIq4Xs, qs) + g * 16);
      store_iq4(y + g * 32, _mm_and_si128(qs, low4), dl);
      store_iq4(y + g * 32 + 16, _mm_and_si128(_mm_srli_epi16(qs, 4), low4), dl);
    }
  }
}

void dequantize_mxfp4(const uint8_t* src, float* dst, std::size_t n_blocks) {
  const __m128i low4 = _mm_set1_epi8(0x0F);
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const uint8_t* b = src + i * sizeof(BlockMxfp4);
    const __m256 d = _mm256_set1_ps(scalar::e8m0_half(b[offsetof(BlockMxfp4, e)]));
    const __m128i qs = load16(b + offsetof(BlockMxfp4, qs));
    store_book(dst + i * kQK, kMxfp4Values, _mm_and_si128(qs, low4), d);
    store_book(dst + i * kQK + 16, kMxfp4Values, _mm_and_si128(_mm_srli_epi16(qs, 4), low4), d);
  }
}

}  // namespace quantcore::avx2
