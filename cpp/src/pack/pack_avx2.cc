// AVX2 + BMI2 bit packing: 64 codes per step for 4 bits (multiply-add merge), BMI2 pext/pdep
// for every other width below 8, the scalar reference for tails.
#include <immintrin.h>

#include <cstring>

#include "pack_bmi2.h"
#include "quantcore/pack.h"

namespace quantcore::avx2 {
namespace {

// 64 four-bit codes -> 32 bytes. maddubs with weights (1, 16) makes each 16-bit lane
// c[2k] | c[2k+1] << 4; packus narrows two vectors per 128-bit half, and the qword permute
// puts the halves back in order.
inline std::size_t pack4_simd(const uint8_t* codes, std::size_t n, uint8_t* dst, uint64_t* seen) {
  const __m256i weights = _mm256_set1_epi16(0x1001);
  __m256i acc = _mm256_setzero_si256();
  std::size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m256i c0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + i));
    const __m256i c1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + i + 32));
    acc = _mm256_or_si256(acc, _mm256_or_si256(c0, c1));
    const __m256i bytes = _mm256_packus_epi16(_mm256_maddubs_epi16(c0, weights),
                                              _mm256_maddubs_epi16(c1, weights));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i / 2),
                        _mm256_permute4x64_epi64(bytes, 0xD8));  // qwords 0, 2, 1, 3
  }
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc);
  for (uint64_t v : lanes) *seen |= v;
  return i;
}

// 32 bytes -> 64 four-bit codes: low nibble to the low byte, high nibble to the high byte of
// each 16-bit lane.
inline std::size_t unpack4_simd(const uint8_t* src, std::size_t n, uint8_t* codes) {
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i b = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i / 2)));
    const __m256i c = _mm256_and_si256(_mm256_or_si256(b, _mm256_slli_epi16(b, 4)), _mm256_set1_epi8(0x0F));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(codes + i), c);
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
  const std::size_t i = bits == 4 ? pack4_simd(codes, n, dst, &seen)
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
  const std::size_t i = bits == 4 ? unpack4_simd(src, n, codes) : unpack_bits_pdep(src, 0, n, bits, codes);
  scalar::unpack_bits(src + i / 8 * bits, n - i, bits, codes + i);
}

}  // namespace quantcore::avx2
