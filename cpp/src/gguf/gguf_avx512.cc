// AVX-512 (F, BW, DQ, VL) GGUF kernels: one 32-value block is two 16-lane vectors; every
// float operation is the scalar reference's single float32 operation, in its order (mul then
// add, never FMA), so the bytes and floats are identical. Only this file is compiled with
// AVX-512 flags.
#include <immintrin.h>

#include <cstring>

#include "quantcore/gguf.h"

namespace quantcore::avx512 {
namespace {

constexpr uint32_t kInfBits = 0x7F800000u;

inline __m512i abs_bits(__m512 x) { return _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(0x7FFFFFFF)); }

// fp16 -> float32 is exact; the float32 -> fp16 conversions below (vcvtps2ph) round to
// nearest-even, as scalar::f32_to_fp16 does.
inline float from_fp16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
}

// Lane-wise reductions of 16 vectors at once, lane b of the result = op over all 16 lanes of
// one input: four levels of shuffle + op halve the lanes per input (16 -> 8 -> 4 -> 2 -> 1),
// about 3 instructions per input instead of a 9-instruction horizontal reduction each. The
// shuffles leave input p in result lane 4 * (p % 4) + p / 4, so callers place block b at
// input kTreeSlot[b] to get block b in lane b.
constexpr int kTreeSlot[16] = {0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15};

template <class Op>
inline __m512i reduce_lanes16(const __m512i v[16], Op op) {
  __m512i r8[8], r4[4], r2[2];
  for (int k = 0; k < 8; ++k)  // 128-bit chunks: [a0 a1 b0 b1] op [a2 a3 b2 b3]
    r8[k] = op(_mm512_shuffle_i32x4(v[2 * k], v[2 * k + 1], 0x44), _mm512_shuffle_i32x4(v[2 * k], v[2 * k + 1], 0xEE));
  for (int k = 0; k < 4; ++k)  // [a0 a2 b0 b2] op [a1 a3 b1 b3]: one chunk per input
    r4[k] = op(_mm512_shuffle_i32x4(r8[2 * k], r8[2 * k + 1], 0x88), _mm512_shuffle_i32x4(r8[2 * k], r8[2 * k + 1], 0xDD));
  for (int k = 0; k < 2; ++k)  // within chunks: 64-bit halves of two inputs
    r2[k] = op(_mm512_unpacklo_epi64(r4[2 * k], r4[2 * k + 1]), _mm512_unpackhi_epi64(r4[2 * k], r4[2 * k + 1]));
  const __m512 a = _mm512_castsi512_ps(r2[0]), b = _mm512_castsi512_ps(r2[1]);
  return op(_mm512_castps_si512(_mm512_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0))),
            _mm512_castps_si512(_mm512_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1))));
}

struct MaxEpu32 {
  __m512i operator()(__m512i a, __m512i b) const { return _mm512_max_epu32(a, b); }
};
struct MaxEpi32 {
  __m512i operator()(__m512i a, __m512i b) const { return _mm512_max_epi32(a, b); }
};
struct MinPs {
  __m512i operator()(__m512i a, __m512i b) const {
    return _mm512_castps_si512(_mm512_min_ps(_mm512_castsi512_ps(a), _mm512_castsi512_ps(b)));
  }
};
struct MaxPs {
  __m512i operator()(__m512i a, __m512i b) const {
    return _mm512_castps_si512(_mm512_max_ps(_mm512_castsi512_ps(a), _mm512_castsi512_ps(b)));
  }
};

// 4-bit codes: truncate (NaN and overflow give INT32_MIN, as scalar) and clamp to 0..15.
inline __m512i nibble_codes(__m512 v) {
  const __m512i t = _mm512_cvttps_epi32(v);
  return _mm512_max_epi32(_mm512_setzero_si512(), _mm512_min_epi32(t, _mm512_set1_epi32(15)));
}

// Values 0..15 take the low nibbles, 16..31 the high ones.
inline void store_nibbles(__m512i lo, __m512i hi, uint8_t* qs) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(qs), _mm512_cvtepi32_epi8(_mm512_or_si512(lo, _mm512_slli_epi32(hi, 4))));
}

// The first zero of a 32-value block that holds one, with its sign.
inline float first_zero(const float* x) {
  const __m512 zero = _mm512_setzero_ps();
  const uint32_t hits = static_cast<uint32_t>(_mm512_cmp_ps_mask(_mm512_loadu_ps(x), zero, _CMP_EQ_OQ)) |
                        (static_cast<uint32_t>(_mm512_cmp_ps_mask(_mm512_loadu_ps(x + 16), zero, _CMP_EQ_OQ)) << 16);
  return x[__builtin_ctz(hits)];
}

// Round half away from zero, then to int32: trunc(v + copysign(0.49999997, v)). With the
// largest float below 0.5 the sum never rounds up across an integer, so this equals scalar's
// floor-based rule for every float32 (checked exhaustively for 0 <= v < 129, negative v by
// symmetry; q8_0 has |v| <= 127 + ulps); NaN and +-inf give INT32_MIN, as in scalar.
inline __m512i round_away(__m512 v) {
  const __m512i sign = _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(INT32_MIN));
  const __m512 nudge = _mm512_castsi512_ps(_mm512_or_si512(sign, _mm512_set1_epi32(0x3EFFFFFF)));  // 0.49999997
  return _mm512_cvttps_epi32(_mm512_add_ps(v, nudge));
}

// 16 nibbles of qs (low or high half) as 16 int32 lanes.
inline __m512i unpack_nibbles(__m128i qs, bool high) {
  const __m128i n = high ? _mm_srli_epi16(qs, 4) : qs;
  return _mm512_cvtepu8_epi32(_mm_and_si128(n, _mm_set1_epi8(0x0F)));
}

// The quantizers work on groups of 16 blocks in three passes: (1) the statistics of all 16
// blocks (largest |x| and its signed value, or min and max) as one vector each, through
// reduce_lanes16; (2) d, 1 / d and the fp16 fields, again one vector each; (3) per block, the
// codes. This replaces a block-at-a-time loop's long reduce -> divide -> encode dependency
// chain. Leftover blocks, and a group holding NaN or inf, go to the scalar reference (which
// stops at the bad block).
constexpr std::size_t kGroup = 16;

}  // namespace

std::size_t quantize_q4_0(const float* src, uint8_t* dst, std::size_t n_blocks) {
  const __m512i abs_mask = _mm512_set1_epi32(0x7FFFFFFF);
  std::size_t i = 0;
  for (; i + kGroup <= n_blocks; i += kGroup) {
    const float* x = src + i * kQK;
    // The signed max of each block from two integer maxima of the raw bits: as int32 the
    // largest is the largest non-negative value (or, with none, the negative of largest |x|);
    // as uint32 it is the negative of largest |x| (or, with none, the largest value).
    __m512i smax[kGroup], umax[kGroup];
    for (std::size_t b = 0; b < kGroup; ++b) {
      const __m512i x0 = _mm512_loadu_si512(x + b * kQK), x1 = _mm512_loadu_si512(x + b * kQK + 16);
      smax[kTreeSlot[b]] = _mm512_max_epi32(x0, x1);
      umax[kTreeSlot[b]] = _mm512_max_epu32(x0, x1);
    }
    const __m512i s = reduce_lanes16(smax, MaxEpi32{}), u = reduce_lanes16(umax, MaxEpu32{});
    const __m512i s_abs = _mm512_and_si512(s, abs_mask), u_abs = _mm512_and_si512(u, abs_mask);
    if (_mm512_cmpge_epu32_mask(_mm512_max_epu32(s_abs, u_abs), _mm512_set1_epi32(kInfBits))) break;
    // The negative candidate wins when strictly larger in magnitude; +a and -a together (s != u
    // with equal magnitudes, e.g. +0.0 and -0.0) need the first index: rare, done per block.
    const __mmask16 negative = _mm512_cmpgt_epu32_mask(u_abs, s_abs);
    const __mmask16 tie = _mm512_cmpeq_epi32_mask(s_abs, u_abs) & _mm512_cmpneq_epi32_mask(s, u);
    alignas(64) float max[kGroup];
    _mm512_store_si512(max, _mm512_mask_blend_epi32(negative, s, u));
    for (unsigned ties = tie; ties != 0; ties &= ties - 1) {
      const unsigned b = static_cast<unsigned>(__builtin_ctz(ties));
      uint32_t amax;
      std::memcpy(&amax, &max[b], 4);
      amax &= 0x7FFFFFFFu;
      const float* xb = x + b * kQK;
      for (std::size_t j = 0; j < kQK; ++j) {
        uint32_t bits;
        std::memcpy(&bits, &xb[j], 4);
        if ((bits & 0x7FFFFFFFu) == amax) {
          max[b] = xb[j];
          break;
        }
      }
    }
    // max / -8 == max * -0.125 exactly (a power of two), including subnormal results.
    const __m512 d = _mm512_mul_ps(_mm512_load_ps(max), _mm512_set1_ps(-0.125f));
    const __mmask16 nonzero = _mm512_cmp_ps_mask(d, _mm512_setzero_ps(), _CMP_NEQ_OQ);
    alignas(64) float id[kGroup];
    _mm512_store_ps(id, _mm512_maskz_div_ps(nonzero, _mm512_set1_ps(1.0f), d));
    alignas(32) uint16_t dh[kGroup];
    _mm256_store_si256(reinterpret_cast<__m256i*>(dh), _mm512_cvtps_ph(d, _MM_FROUND_TO_NEAREST_INT));
    const __m512 bias = _mm512_set1_ps(8.5f);
    for (std::size_t b = 0; b < kGroup; ++b) {
      const __m512 vid = _mm512_set1_ps(id[b]);
      uint8_t* out = dst + (i + b) * sizeof(BlockQ4_0);
      std::memcpy(out + offsetof(BlockQ4_0, d), &dh[b], 2);
      store_nibbles(nibble_codes(_mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(x + b * kQK), vid), bias)),
                    nibble_codes(_mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(x + b * kQK + 16), vid), bias)),
                    out + offsetof(BlockQ4_0, qs));
    }
  }
  return i + scalar::quantize_q4_0(src + i * kQK, dst + i * sizeof(BlockQ4_0), n_blocks - i);
}

std::size_t quantize_q4_1(const float* src, uint8_t* dst, std::size_t n_blocks) {
  const __m512i exponent = _mm512_set1_epi32(kInfBits);
  std::size_t i = 0;
  for (; i + kGroup <= n_blocks; i += kGroup) {
    const float* x = src + i * kQK;
    __m512i block_min[kGroup], block_max[kGroup];
    __mmask16 nonfinite = 0;  // an all-ones exponent: inf or NaN
    for (std::size_t b = 0; b < kGroup; ++b) {
      const __m512 x0 = _mm512_loadu_ps(x + b * kQK), x1 = _mm512_loadu_ps(x + b * kQK + 16);
      nonfinite |= _mm512_cmpeq_epi32_mask(_mm512_and_si512(_mm512_castps_si512(x0), exponent), exponent) |
                   _mm512_cmpeq_epi32_mask(_mm512_and_si512(_mm512_castps_si512(x1), exponent), exponent);
      block_min[kTreeSlot[b]] = _mm512_castps_si512(_mm512_min_ps(x0, x1));
      block_max[kTreeSlot[b]] = _mm512_castps_si512(_mm512_max_ps(x0, x1));
    }
    if (nonfinite) break;
    alignas(64) float min[kGroup], max[kGroup];
    _mm512_store_si512(min, reduce_lanes16(block_min, MinPs{}));
    _mm512_store_si512(max, reduce_lanes16(block_max, MaxPs{}));
    // vminps / vmaxps leave the sign of a zero result to operand order; scalar takes the
    // block's first zero (rare: only blocks whose min or max is zero).
    const __mmask16 zero_min = _mm512_cmp_ps_mask(_mm512_load_ps(min), _mm512_setzero_ps(), _CMP_EQ_OQ);
    const __mmask16 zero_max = _mm512_cmp_ps_mask(_mm512_load_ps(max), _mm512_setzero_ps(), _CMP_EQ_OQ);
    for (unsigned zeros = zero_min | zero_max; zeros != 0; zeros &= zeros - 1) {
      const unsigned b = static_cast<unsigned>(__builtin_ctz(zeros));
      const float z = first_zero(x + b * kQK);
      if (zero_min & (1u << b)) min[b] = z;
      if (zero_max & (1u << b)) max[b] = z;
    }
    const __m512 vmin = _mm512_load_ps(min);
    const __m512 d = _mm512_div_ps(_mm512_sub_ps(_mm512_load_ps(max), vmin), _mm512_set1_ps(15.0f));
    const __mmask16 nonzero = _mm512_cmp_ps_mask(d, _mm512_setzero_ps(), _CMP_NEQ_OQ);
    alignas(64) float id[kGroup];
    _mm512_store_ps(id, _mm512_maskz_div_ps(nonzero, _mm512_set1_ps(1.0f), d));
    alignas(32) uint16_t dh[kGroup], mh[kGroup];
    _mm256_store_si256(reinterpret_cast<__m256i*>(dh), _mm512_cvtps_ph(d, _MM_FROUND_TO_NEAREST_INT));
    _mm256_store_si256(reinterpret_cast<__m256i*>(mh), _mm512_cvtps_ph(vmin, _MM_FROUND_TO_NEAREST_INT));
    const __m512 half = _mm512_set1_ps(0.5f);
    for (std::size_t b = 0; b < kGroup; ++b) {
      const __m512 bmin = _mm512_set1_ps(min[b]), vid = _mm512_set1_ps(id[b]);
      uint8_t* out = dst + (i + b) * sizeof(BlockQ4_1);
      std::memcpy(out + offsetof(BlockQ4_1, d), &dh[b], 2);
      std::memcpy(out + offsetof(BlockQ4_1, m), &mh[b], 2);
      const __m512 x0 = _mm512_loadu_ps(x + b * kQK), x1 = _mm512_loadu_ps(x + b * kQK + 16);
      store_nibbles(nibble_codes(_mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(x0, bmin), vid), half)),
                    nibble_codes(_mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(x1, bmin), vid), half)),
                    out + offsetof(BlockQ4_1, qs));
    }
  }
  return i + scalar::quantize_q4_1(src + i * kQK, dst + i * sizeof(BlockQ4_1), n_blocks - i);
}

std::size_t quantize_q8_0(const float* src, uint8_t* dst, std::size_t n_blocks) {
  std::size_t i = 0;
  for (; i + kGroup <= n_blocks; i += kGroup) {
    const float* x = src + i * kQK;
    __m512i block_max[kGroup];
    for (std::size_t b = 0; b < kGroup; ++b) {
      const __m512 x0 = _mm512_loadu_ps(x + b * kQK), x1 = _mm512_loadu_ps(x + b * kQK + 16);
      block_max[kTreeSlot[b]] = _mm512_max_epu32(abs_bits(x0), abs_bits(x1));
    }
    const __m512i amax = reduce_lanes16(block_max, MaxEpu32{});
    if (_mm512_cmpge_epu32_mask(amax, _mm512_set1_epi32(kInfBits))) break;
    const __m512 d = _mm512_div_ps(_mm512_castsi512_ps(amax), _mm512_set1_ps(127.0f));
    const __mmask16 nonzero = _mm512_cmp_ps_mask(d, _mm512_setzero_ps(), _CMP_NEQ_OQ);
    alignas(64) float id[kGroup];
    _mm512_store_ps(id, _mm512_maskz_div_ps(nonzero, _mm512_set1_ps(1.0f), d));
    alignas(32) uint16_t dh[kGroup];
    _mm256_store_si256(reinterpret_cast<__m256i*>(dh), _mm512_cvtps_ph(d, _MM_FROUND_TO_NEAREST_INT));
    for (std::size_t b = 0; b < kGroup; ++b) {
      const __m512 vid = _mm512_set1_ps(id[b]);
      uint8_t* out = dst + (i + b) * sizeof(BlockQ8_0);
      std::memcpy(out + offsetof(BlockQ8_0, d), &dh[b], 2);
      // vpmovdb keeps the low byte: INT32_MIN (from NaN) becomes 0, as in scalar.
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + offsetof(BlockQ8_0, qs)),
                       _mm512_cvtepi32_epi8(round_away(_mm512_mul_ps(_mm512_loadu_ps(x + b * kQK), vid))));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + offsetof(BlockQ8_0, qs) + 16),
                       _mm512_cvtepi32_epi8(round_away(_mm512_mul_ps(_mm512_loadu_ps(x + b * kQK + 16), vid))));
    }
  }
  return i + scalar::quantize_q8_0(src + i * kQK, dst + i * sizeof(BlockQ8_0), n_blocks - i);
}

void dequantize_q4_0(const uint8_t* src, float* dst, std::size_t n_blocks) {
  const __m512i eight = _mm512_set1_epi32(8);
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const uint8_t* b = src + i * sizeof(BlockQ4_0);
    const __m512 d = _mm512_set1_ps(from_fp16(b + offsetof(BlockQ4_0, d)));
    const __m128i qs = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + offsetof(BlockQ4_0, qs)));
    float* y = dst + i * kQK;
    _mm512_storeu_ps(y, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_sub_epi32(unpack_nibbles(qs, false), eight))));
    _mm512_storeu_ps(y + 16, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_sub_epi32(unpack_nibbles(qs, true), eight))));
  }
}

void dequantize_q4_1(const uint8_t* src, float* dst, std::size_t n_blocks) {
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const uint8_t* b = src + i * sizeof(BlockQ4_1);
    const __m512 d = _mm512_set1_ps(from_fp16(b + offsetof(BlockQ4_1, d)));
    const __m512 m = _mm512_set1_ps(from_fp16(b + offsetof(BlockQ4_1, m)));
    const __m128i qs = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + offsetof(BlockQ4_1, qs)));
    float* y = dst + i * kQK;
    _mm512_storeu_ps(y, _mm512_add_ps(_mm512_mul_ps(d, _mm512_cvtepi32_ps(unpack_nibbles(qs, false))), m));
    _mm512_storeu_ps(y + 16, _mm512_add_ps(_mm512_mul_ps(d, _mm512_cvtepi32_ps(unpack_nibbles(qs, true))), m));
  }
}

void dequantize_q8_0(const uint8_t* src, float* dst, std::size_t n_blocks) {
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const uint8_t* b = src + i * sizeof(BlockQ8_0);
    const __m512 d = _mm512_set1_ps(from_fp16(b + offsetof(BlockQ8_0, d)));
    const uint8_t* qs = b + offsetof(BlockQ8_0, qs);
    float* y = dst + i * kQK;
    for (int h = 0; h < 2; ++h) {
      const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs + 16 * h));
      _mm512_storeu_ps(y + 16 * h, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q))));
    }
  }
}

namespace {

// 16 int32 lanes -> float32, times d (then minus m where given): the scalar expressions.
inline void store_scaled(float* y, __m512i q, __m512 d) { _mm512_storeu_ps(y, _mm512_mul_ps(d, _mm512_cvtepi32_ps(q))); }
inline void store_scaled_minus(float* y, __m512i q, __m512 d, __m512 m) {
  _mm512_storeu_ps(y, _mm512_sub_ps(_mm512_mul_ps(d, _mm512_cvtepi32_ps(q)), m));
}

inline __m128i load16(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }

// q5: nibbles plus bit 4 from the qh mask (one mask bit per lane).
inline __m512i five_bit(__m128i qs, bool high, __mmask16 qh) {
  const __m512i q = unpack_nibbles(qs, high);
  return _mm512_mask_or_epi32(q, qh, q, _mm512_set1_epi32(16));
}

// 16 nibbles through a 16-entry int8 code book (pshufb is a 16-entry byte table lookup).
inline __m512i book_values(const int8_t* book, __m128i nibbles) {
  return _mm512_cvtepi8_epi32(_mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(book)), nibbles));
}
inline __m512i iq4_values(__m128i nibbles) { return book_values(kIq4nlValues, nibbles); }

}  // namespace

void dequantize_q5_0(const uint8_t* src, float* dst, std::size_t n_blocks) {
  const __m512i sixteen = _mm512_set1_epi32(16);
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const uint8_t* b = src + i * sizeof(BlockQ5_0);
    const __m512 d = _mm512_set1_ps(from_fp16(b + offsetof(BlockQ5_0, d)));
    uint32_t qh;
    std::memcpy(&qh, b + offsetof(BlockQ5_0, qh), 4);
    const __m128i qs = load16(b + offsetof(BlockQ5_0, qs));
    float* y = dst + i * kQK;
    store_scaled(y, _mm512_sub_epi32(five_bit(qs, false, static_cast<__mmask16>(qh)), sixteen), d);
    store_scaled(y + 16, _mm512_sub_epi32(five_bit(qs, true, static_cast<__mmask16>(qh >> 16)), sixteen), d);
  }
}

void dequantize_q5_1(const uint8_t* src, float* dst, std::size_t n_blocks) {
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const uint8_t* b = src + i * sizeof(BlockQ5_1);
    const __m512 d = _mm512_set1_ps(from_fp16(b + offsetof(BlockQ5_1, d)));
    const __m512 m = _mm512_set1_ps(from_fp16(b + offsetof(BlockQ5_1, m)));
    uint32_t qh;
    std::memcpy(&qh, b + offsetof(BlockQ5_1, qh), 4);
    const __m128i qs = load16(b + offsetof(BlockQ5_1, qs));
    float* y = dst + i * kQK;
    const __m512i lo = five_bit(qs, false, static_cast<__mmask16>(qh));
    const __m512i hi = five_bit(qs, true, static_cast<__mmask16>(qh >> 16));
    _mm512_storeu_ps(y, _mm512_add_ps(_mm512_mul_ps(d, _mm512_cvtepi32_ps(lo)), m));
    _mm512_storeu_ps(y + 16, _mm512_add_ps(_mm512_mul_ps(d, _mm512_cvtepi32_ps(hi)), m));
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
          const __m512 dl = _mm512_set1_ps(d * static_cast<float>(sc & 0x0F));
          const __m512 ml = _mm512_set1_ps(dmin * static_cast<float>(sc >> 4));
          const __m128i q = _mm_and_si128(_mm_srl_epi16(load16(b + offsetof(BlockQ2_K, qs) + h * 32 + half * 16),
                                                        _mm_cvtsi32_si128(2 * s)), low2);
          store_scaled_minus(y + h * 128 + s * 32 + half * 16, _mm512_cvtepu8_epi32(q), dl, ml);
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
          const __m512 dl = _mm512_set1_ps(d * static_cast<float>(scalar::q3_k_scale(sc, g)));
          const __m128i q = _mm_and_si128(_mm_srl_epi16(load16(b + offsetof(BlockQ3_K, qs) + h * 32 + half * 16),
                                                        _mm_cvtsi32_si128(2 * s)), low2);
          const __m128i m = _mm_and_si128(_mm_srl_epi16(load16(b + offsetof(BlockQ3_K, hmask) + half * 16), plane), one);
          // A clear hmask bit subtracts 4.
          const __m128i v = _mm_sub_epi8(q, _mm_andnot_si128(_mm_cmpeq_epi8(m, one), four));
          store_scaled(y + h * 128 + s * 32 + half * 16, _mm512_cvtepi8_epi32(v), dl);
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
      const __m512 dl0 = _mm512_set1_ps(d * static_cast<float>(sc0)), ml0 = _mm512_set1_ps(dmin * static_cast<float>(mn0));
      const __m512 dl1 = _mm512_set1_ps(d * static_cast<float>(sc1)), ml1 = _mm512_set1_ps(dmin * static_cast<float>(mn1));
      const uint8_t* q = b + offsetof(BlockQ4_K, qs) + (g / 2) * 32;
      for (int h = 0; h < 2; ++h) {
        const __m128i bytes = load16(q + 16 * h);
        store_scaled_minus(y + g * 32 + 16 * h, unpack_nibbles(bytes, false), dl0, ml0);
        store_scaled_minus(y + g * 32 + 32 + 16 * h, unpack_nibbles(bytes, true), dl1, ml1);
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
      const __m512 dl = _mm512_set1_ps(d * static_cast<float>(sc)), ml = _mm512_set1_ps(dmin * static_cast<float>(mn));
      for (int half = 0; half < 2; ++half) {
        __m128i q = load16(b + offsetof(BlockQ5_K, qs) + (g / 2) * 32 + half * 16);
        if (g % 2) q = _mm_srli_epi16(q, 4);
        const __m128i qh = load16(b + offsetof(BlockQ5_K, qh) + half * 16);
        const __m128i h = _mm_and_si128(_mm_srl_epi16(qh, _mm_cvtsi32_si128(g)), one);
        const __m128i v = _mm_or_si128(_mm_and_si128(q, low4), _mm_slli_epi16(h, 4));
        store_scaled_minus(y + g * 32 + half * 16, _mm512_cvtepu8_epi32(v), dl, ml);
      }
    }
  }
}

void dequantize_q6_k(const uint8_t* src, float* dst, std::size_t n_blocks) {
  const __m128i low4 = _mm_set1_epi8(0x0F), low2 = _mm_set1_epi8(0x03);
  const __m512i thirty_two = _mm512_set1_epi32(32);
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
          const __m512 dl = _mm512_set1_ps(d * static_cast<float>(scales[h * 8 + s * 2 + half]));
          __m128i lo = load16(b + offsetof(BlockQ6_K, ql) + h * 64 + (s % 2) * 32 + half * 16);
          if (s >= 2) lo = _mm_srli_epi16(lo, 4);
          __m128i hi = load16(b + offsetof(BlockQ6_K, qh) + h * 32 + half * 16);
          hi = _mm_srl_epi16(hi, _mm_cvtsi32_si128(2 * s));
          const __m128i v = _mm_or_si128(_mm_and_si128(lo, low4), _mm_slli_epi16(_mm_and_si128(hi, low2), 4));
          store_scaled(y + h * 128 + s * 32 + half * 16, _mm512_sub_epi32(_mm512_cvtepu8_epi32(v), thirty_two), dl);
        }
  }
}

void dequantize_iq4_nl(const uint8_t* src, float* dst, std::size_t n_blocks) {
  const __m128i low4 = _mm_set1_epi8(0x0F);
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const uint8_t* b = src + i * sizeof(BlockIq4Nl);
    const __m512 d = _mm512_set1_ps(from_fp16(b + offsetof(BlockIq4Nl, d)));
    const __m128i qs = load16(b + offsetof(BlockIq4Nl, qs));
    float* y = dst + i * kQK;
    store_scaled(y, iq4_values(_mm_and_si128(qs, low4)), d);
    store_scaled(y + 16, iq4_values(_mm_and_si128(_mm_srli_epi16(qs, 4), low4)), d);
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
      const __m512 dl = _mm512_set1_ps(d * static_cast<float>(scalar::iq4_xs_scale(scales_h, scales_l, g)));
      const __m128i qs = load16(b + offsetof(BlockIq4Xs, qs) + g * 16);
      store_scaled(y + g * 32, iq4_values(_mm_and_si128(qs, low4)), dl);
      store_scaled(y + g * 32 + 16, iq4_values(_mm_and_si128(_mm_srli_epi16(qs, 4), low4)), dl);
    }
  }
}

void dequantize_mxfp4(const uint8_t* src, float* dst, std::size_t n_blocks) {
  const __m128i low4 = _mm_set1_epi8(0x0F);
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const uint8_t* b = src + i * sizeof(BlockMxfp4);
    const __m512 d = _mm512_set1_ps(scalar::e8m0_half(b[offsetof(BlockMxfp4, e)]));
    const __m128i qs = load16(b + offsetof(BlockMxfp4, qs));
    float* y = dst + i * kQK;
    store_scaled(y, book_values(kMxfp4Values, _mm_and_si128(qs, low4)), d);
    store_scaled(y + 16, book_values(kMxfp4Values, _mm_and_si128(_mm_srli_epi16(qs, 4), low4)), d);
  }
}

}  // namespace quantcore::avx512
