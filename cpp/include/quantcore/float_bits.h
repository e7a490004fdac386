// The bits of a float32 and back, without undefined behaviour (memcpy compiles to a move).
#pragma once

#include <cstdint>
#include <cstring>

namespace quantcore {

inline uint32_t float_bits(float x) {
  uint32_t b;
  std::memcpy(&b, &x, 4);
  return b;
}

inline float bits_float(uint32_t b) {
  float x;
  std::memcpy(&x, &b, 4);
  return x;
}

}  // namespace quantcore
