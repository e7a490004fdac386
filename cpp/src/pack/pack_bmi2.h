// Bit packing 8 codes at a time with BMI2 pext/pdep: 8 code bytes, read as one little-endian
// uint64, hold code k in byte k; pext with the low `bits` of every byte selected gathers them
// into bits [k*bits, (k+1)*bits), which is exactly pack.h's stream for those 8 codes (`bits`
// bytes). pdep is the inverse. One instruction per 8 codes, for any width (3, 5, 6, 7 bits
// included), on Zen 3+ and Haswell+ where both run in one cycle.
//
// Included by the AVX2 and AVX-512 files (both built with -mbmi2); the anonymous namespace
// gives each its own copy, compiled with its own flags.
#pragma once

#include <immintrin.h>

#include <cstring>

#include "quantcore/pack.h"

namespace quantcore {
namespace {

// The low `bits` bits of each of the 8 bytes.
inline uint64_t byte_field_mask(int bits) {
  return 0x0101010101010101ull * ((1u << bits) - 1u);
}

// Packs codes [i, ...) in steps of 8 while an 8-byte store stays inside the
// packed_bytes(n, bits) output; returns the first code not packed (a multiple of 8).
// `seen` accumulates the OR of every code read, for the range check.
inline std::size_t pack_bits_pext(const uint8_t* codes, std::size_t i, std::size_t n, int bits,
                                  uint8_t* dst, uint64_t* seen) {
  const uint64_t mask = byte_field_mask(bits);
  const std::size_t total = packed_bytes(n, bits);
  uint64_t acc = 0;
  for (; i + 8 <= n && i / 8 * bits + 8 <= total; i += 8) {
    uint64_t v;
    std::memcpy(&v, codes + i, 8);
    acc |= v;
    const uint64_t packed = _pext_u64(v, mask);
    std::memcpy(dst + i / 8 * bits, &packed, 8);  // the high 8 - bits bytes are rewritten next
  }
  *seen |= acc;
  return i;
}

// Unpacks codes [i, ...) in steps of 8 while an 8-byte load stays inside the input; returns the
// first code not unpacked (a multiple of 8).
inline std::size_t unpack_bits_pdep(const uint8_t* src, std::size_t i, std::size_t n, int bits,
                                    uint8_t* codes) {
  const uint64_t mask = byte_field_mask(bits);
  const std::size_t total = packed_bytes(n, bits);
  for (; i + 8 <= n && i / 8 * bits + 8 <= total; i += 8) {
    uint64_t v;
    std::memcpy(&v, src + i / 8 * bits, 8);
    const uint64_t c = _pdep_u64(v, mask);
    std::memcpy(codes + i, &c, 8);
  }
  return i;
}

}  // namespace
}  // namespace quantcore
