// AVX-512 (F, BW, DQ, VL) bit packing: 64 codes per step for 1, 2, 4 and 8 bits with
// multiply-add merges, BMI2 pext/pdep for 3, 5, 6 and 7 bits, the scalar reference for tails.
#include <immintrin.h>

#include <cstring>

#include "pack_bmi2.h"
#include "quantcore/pack.h"

namespace quantcore::avx512 {
namespace {

// 64 codes -> 64 * bits / 8 bytes for bits in {1, 2, 4}. maddubs multiplies unsigned code
// bytes by signed byte weights and adds neighbours: with weights (1, 2^bits) each 16-bit lane
// becomes c[2k] | c[2k+1] << bits, already in stream order, so merging neighbours again (madd
// with (1, 2^(2*bits))) keeps the order and the narrowing stores write the stream.
inline std::size_t pack_simd(const uint8_t* codes, std::size_t n, int bits, uint8_t* dst,
                             uint64_t* seen) {
  __m512i acc = _mm512_setzero_si512();
  std::size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m512i c = _mm512_loadu_si512(codes + i);
    acc = _mm512_or_si512(acc, c);
    uint8_t* out = dst + i / 8 * bits;
    if (bits == 1) {
      const uint64_t m = _mm512_test_epi8_mask(c, _mm512_set1_epi8(1));
      std::memcpy(out, &m, 8);
    } else if (bits == 2) {
      const __m512i pairs = _mm512_maddubs_epi16(c, _mm512_set1_epi16(0x0401));
      const __m512i quads = _mm512_madd_epi16(pairs, _mm512_set1_epi32(0x00100001));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm512_cvtepi32_epi8(quads));
    } else {  // 4
      const __m512i pairs = _mm512_maddubs_epi16(c, _mm512_set1_epi16(0x1001));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), _mm512_cvtepi16_epi8(pairs));
    }
  }
  alignas(64) uint64_t lanes[8];
  _mm512_store_si512(lanes, acc);
  for (uint64_t v : lanes) *seen |= v;
  return i;
}

// The inverse for bits in {1, 2, 4}: widen each packed byte to the lanes of its codes, shift
// every code to the bottom of its own byte, mask.
inline std::size_t unpack_simd(const uint8_t* src, std::size_t n, int bits, uint8_t* codes) {
  std::size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const uint8_t* in = src + i / 8 * bits;
    __m512i c;
    if (bits == 1) {
      uint64_t m;
      std::memcpy(&m, in, 8);
      c = _mm512_maskz_set1_epi8(m, 1);
    } else if (bits == 2) {
      // 32-bit lane k holds packed byte k: codes 4k..4k+3 sit at bit offsets 0, 2, 4, 6 and
      // must land at 0, 8, 16, 24; the OR-ed shifts put each there, the mask drops the rest.
      const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in)));
      const __m512i spread = _mm512_or_si512(_mm512_or_si512(b, _mm512_slli_epi32(b, 6)),
                                             _mm512_or_si512(_mm512_slli_epi32(b, 12), _mm512_slli_epi32(b, 18)));
      c = _mm512_and_si512(spread, _mm512_set1_epi8(0x03));
    } else {  // 4: low nibble -> low byte, high nibble -> high byte of each 16-bit lane
      const __m512i b = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(in)));
      c = _mm512_and_si512(_mm512_or_si512(b, _mm512_slli_epi16(b, 4)), _mm512_set1_epi8(0x0F));
    }
    _mm512_storeu_si512(codes + i, c);
  }
  return i;
}

}  // namespace

bool pack_bits(const uint8_t* codes, std::size_t n, int bits, uint8_t* dst) {
  if (bits == 8) {
    std::memcpy(dst, codes, n);
    return true;
  }
  uint64_t seen = 0;
  const std::size_t i = (bits == 1 || bits == 2 || bits == 4)
                            ? pack_simd(codes, n, bits, dst, &seen)
                            : pack_bits_pext(codes, 0, n, bits, dst, &seen);
  const bool head_ok = (seen & ~byte_field_mask(bits)) == 0;
  const bool tail_ok = scalar::pack_bits(codes + i, n - i, bits, dst + i / 8 * bits);
  return head_ok && tail_ok;
}

void unpack_bits(const uint8_t* src, std::size_t n, int bits, uint8_t* codes) {
  if (bits == 8) {
    std::memcpy(codes, src, n);
    return;
  }
  const std::size_t i = (bits == 1 || bits == 2 || bits == 4)
                            ? unpack_simd(src, n, bits, codes)
                            : unpack_bits_pdep(src, 0, n, bits, codes);
  scalar::unpack_bits(src + i / 8 * bits, n - i, bits, codes + i);
}

}  // namespace quantcore::avx512
