// AVX-512 (F, BW, DQ, VL) GGUF kernels: one 32-value block is two 16-lane vectors; every
// float operation is the scalar reference's, in its order (mul then add, never FMA). The
// per-block d and 1 / d are computed once per block, as in the reference. Only this file is
// compiled with AVX-512 flags.
#include <immintrin.h>

#include <cstring>

#include "quantcore/gguf.h"

namespace quantcore::avx512 {
namespace {

constexpr uint32_t kInfBits = 0x7F800000u;

inline __m512i abs_bits(__m512 x) { return _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(0x7FFFFFFF)); }

// The fp16 conversions F16C does in hardware round to nearest-even, as scalar::f32_to_fp16.
inline uint16_t to_fp16(float x) {
  return static_cast<uint16_t>(_mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(x), _MM_FROUND_TO_NEAREST_INT), 0));
}
inline float from_fp16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
}

// Largest |x| of the block x0:x1 as bits, and the first index holding it.
inline uint32_t block_amax(__m512i a0, __m512i a1, unsigned* first) {
  const uint32_t amax = _mm512_reduce_max_epu32(_mm512_max_epu32(a0, a1));
  const __m512i m = _mm512_set1_epi32(static_cast<int>(amax));
  const uint32_t hits = static_cast<uint32_t>(_mm512_cmpeq_epi32_mask(a0, m)) |
                        (static_cast<uint32_t>(_mm512_cmpeq_epi32_mask(a1, m)) << 16);
  *first = static_cast<unsigned>(__builtin_ctz(hits));
  return amax;
}

// 4-bit codes: truncate (NaN and overflow give INT32_MIN, as scalar) and clamp to 0..15.
inline __m512i nibble_codes(__m512 v) {
  const __m512i t = _mm512_cvttps_epi32(v);
  return _mm512_max_epi32(_mm512_setzero_si512(), _mm512_min_epi32(t, _mm512_set1_epi32(15)));
}

// Values 0..15 take the low nibbles, 16..31 the high ones.
inline void store_nibbles(__m512i lo, __m512i hi, uint8_t* qs) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(qs), _mm512_cvtepi32_epi8(_mm512_or_si512(lo, _mm512_slli_epi32(hi, 4))));
}

// Ordered integer keys (see scalar): -0.0 sorts below +0.0.
inline __m512i ordered_key(__m512 x) {
  const __m512i b = _mm512_castps_si512(x);
  return _mm512_xor_si512(b, _mm512_and_si512(_mm512_srai_epi32(b, 31), _mm512_set1_epi32(0x7FFFFFFF)));
}
inline float key_to_float(int32_t k) {
  const uint32_t b = static_cast<uint32_t>(k ^ ((k >> 31) & 0x7FFFFFFF));
  float x;
  std::memcpy(&x, &b, 4);
  return x;
}

// Round half away from zero, then to int32 (NaN and inf give INT32_MIN); see scalar.
inline __m512i round_away(__m512 v) {
  const __m512 sign = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(INT32_MIN)));
  const __m512 mag = _mm512_abs_ps(v);
  const __m512 whole = _mm512_roundscale_ps(mag, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  const __mmask16 up = _mm512_cmp_ps_mask(_mm512_sub_ps(mag, whole), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
  const __m512 r = _mm512_mask_add_ps(whole, up, whole, _mm512_set1_ps(1.0f));
  return _mm512_cvttps_epi32(_mm512_or_ps(r, sign));
}

// 16 nibbles of qs (low or high half) as 16 int32 lanes.
inline __m512i unpack_nibbles(__m128i qs, bool high) {
  const __m128i n = high ? _mm_srli_epi16(qs, 4) : qs;
  return _mm512_cvtepu8_epi32(_mm_and_si128(n, _mm_set1_epi8(0x0F)));
}

}  // namespace

std::size_t quantize_q4_0(const float* src, uint8_t* dst, std::size_t n_blocks) {
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const float* x = src + i * kQK;
    const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
    unsigned at;
    if (block_amax(abs_bits(x0), abs_bits(x1), &at) >= kInfBits) return i;
    const float d = x[at] / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    uint8_t* b = dst + i * sizeof(BlockQ4_0);
    const uint16_t dh = to_fp16(d);
    std::memcpy(b + offsetof(BlockQ4_0, d), &dh, 2);
    const __m512 vid = _mm512_set1_ps(id), bias = _mm512_set1_ps(8.5f);
    store_nibbles(nibble_codes(_mm512_add_ps(_mm512_mul_ps(x0, vid), bias)),
                  nibble_codes(_mm512_add_ps(_mm512_mul_ps(x1, vid), bias)), b + offsetof(BlockQ4_0, qs));
  }
  return n_blocks;
}

std::size_t quantize_q4_1(const float* src, uint8_t* dst, std::size_t n_blocks) {
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const float* x = src + i * kQK;
    const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
    const uint32_t amax = _mm512_reduce_max_epu32(_mm512_max_epu32(abs_bits(x0), abs_bits(x1)));
    if (amax >= kInfBits) return i;
    const __m512i k0 = ordered_key(x0), k1 = ordered_key(x1);
    const float min = key_to_float(_mm512_reduce_min_epi32(_mm512_min_epi32(k0, k1)));
    const float max = key_to_float(_mm512_reduce_max_epi32(_mm512_max_epi32(k0, k1)));
    const float d = (max - min) / 15.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    uint8_t* b = dst + i * sizeof(BlockQ4_1);
    const uint16_t dh = to_fp16(d), mh = to_fp16(min);
    std::memcpy(b + offsetof(BlockQ4_1, d), &dh, 2);
    std::memcpy(b + offsetof(BlockQ4_1, m), &mh, 2);
    const __m512 vmin = _mm512_set1_ps(min), vid = _mm512_set1_ps(id), half = _mm512_set1_ps(0.5f);
    store_nibbles(nibble_codes(_mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(x0, vmin), vid), half)),
                  nibble_codes(_mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(x1, vmin), vid), half)),
                  b + offsetof(BlockQ4_1, qs));
  }
  return n_blocks;
}

std::size_t quantize_q8_0(const float* src, uint8_t* dst, std::size_t n_blocks) {
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const float* x = src + i * kQK;
    const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
    const uint32_t amax = _mm512_reduce_max_epu32(_mm512_max_epu32(abs_bits(x0), abs_bits(x1)));
    if (amax >= kInfBits) return i;
    float amax_f;
    std::memcpy(&amax_f, &amax, 4);
    const float d = amax_f / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    uint8_t* b = dst + i * sizeof(BlockQ8_0);
    const uint16_t dh = to_fp16(d);
    std::memcpy(b + offsetof(BlockQ8_0, d), &dh, 2);
    const __m512 vid = _mm512_set1_ps(id);
    // vpmovdb keeps the low byte: INT32_MIN (from NaN) becomes 0, as in scalar.
    _mm_storeu_si128(reinterpret_cast<__m128i*>(b + offsetof(BlockQ8_0, qs)),
                     _mm512_cvtepi32_epi8(round_away(_mm512_mul_ps(x0, vid))));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(b + offsetof(BlockQ8_0, qs) + 16),
                     _mm512_cvtepi32_epi8(round_away(_mm512_mul_ps(x1, vid))));
  }
  return n_blocks;
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

}  // namespace quantcore::avx512
