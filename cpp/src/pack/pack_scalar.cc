// Scalar reference for bit packing (layout in pack.h): a bit accumulator, one code at a time.
// The SIMD variants must produce the same bytes and call these functions for their tails.
#include "quantcore/pack.h"

namespace quantcore::scalar {

bool pack_bits(const uint8_t* codes, std::size_t n, int bits, uint8_t* dst) {
  uint32_t seen = 0;   // every code OR-ed together, to find out-of-range ones
  uint32_t acc = 0;    // pending bits, LSB first; never more than 7 + 8 of them
  int acc_bits = 0;
  std::size_t out = 0;
  for (std::size_t i = 0; i < n; ++i) {
    seen |= codes[i];
    acc |= static_cast<uint32_t>(codes[i]) << acc_bits;
    acc_bits += bits;
    while (acc_bits >= 8) {
      dst[out++] = static_cast<uint8_t>(acc);
      acc >>= 8;
      acc_bits -= 8;
    }
  }
  if (acc_bits > 0) dst[out] = static_cast<uint8_t>(acc & ((1u << acc_bits) - 1u));
  return (seen >> bits) == 0;
}

void unpack_bits(const uint8_t* src, std::size_t n, int bits, uint8_t* codes) {
  const uint32_t mask = (1u << bits) - 1u;
  uint32_t acc = 0;
  int acc_bits = 0;
  std::size_t in = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (acc_bits < bits) {
      acc |= static_cast<uint32_t>(src[in++]) << acc_bits;
      acc_bits += 8;
    }
    codes[i] = static_cast<uint8_t>(acc & mask);
    acc >>= bits;
    acc_bits -= bits;
  }
}

}  // namespace quantcore::scalar
