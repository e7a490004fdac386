// Scalar reference for the GGUF block formats: one block, one value at a time, in the order of
// ggml's reference code and gguf-py's numpy expressions. The SIMD variants must produce the
// same bytes and floats.
#include <cmath>
#include <cstring>

#include "quantcore/float_bits.h"
#include "quantcore/gguf.h"

namespace quantcore {
namespace {

template <class Block>
Block load_block(const uint8_t* p) {
  Block b;
  std::memcpy(&b, p, sizeof(Block));
  return b;
}

template <class Block>
void store_block(const Block& b, uint8_t* p) {
  std::memcpy(p, &b, sizeof(Block));
}

// float -> int32 as x86's cvttss2si does (and so numpy's and ggml's casts on x86): truncate
// toward zero; NaN and values outside int32 give INT32_MIN.
int32_t truncate_x86(float v) {
  if (v > -2147483648.0f && v < 2147483648.0f) return static_cast<int32_t>(v);
  return INT32_MIN;
}

// A 4-bit code: numpy's trunc(v).astype(uint8).clip(0, 15) and ggml's MIN(15, (int8_t)v) agree
// on every v these kernels can produce (v > -1, or non-finite).
uint8_t nibble_code(float v) {
  const int32_t t = truncate_x86(v);
  return static_cast<uint8_t>(t < 0 ? 0 : t > 15 ? 15 : t);
}

// Largest |x| of a block as float32 bits, and the first index holding it (numpy's argmax).
// NaN and inf compare above every finite value, so the caller spots them from the bits.
uint32_t amax_bits(const float* x, std::size_t n, std::size_t* first_index) {
  uint32_t best = 0;
  std::size_t at = 0;
  for (std::size_t j = 0; j < n; ++j) {
    const uint32_t a = float_bits(x[j]) & 0x7FFFFFFFu;
    if (a > best) {
      best = a;
      at = j;
    }
  }
  *first_index = at;
  return best;
}

constexpr uint32_t kInfBits = 0x7F800000u;

// Nibble q of value j of a 32-value block packed as q4_0 / q4_1 / q5_* / iq4_nl: low nibbles
// hold values 0..15, high nibbles 16..31.
inline int low_or_high_nibble(const uint8_t* qs, std::size_t j) {
  return j < kQK / 2 ? (qs[j] & 0x0F) : (qs[j - kQK / 2] >> 4);
}

}  // namespace

namespace scalar {

float fp16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exponent = (h >> 10) & 0x1F;
  const uint32_t mantissa = h & 0x3FF;
  if (exponent == 0x1F) return bits_float(sign | kInfBits | (mantissa << 13));
  if (exponent == 0) {
    // subnormal (or zero): mantissa * 2^-24, exact in float32
    const float v = static_cast<float>(mantissa) * bits_float(static_cast<uint32_t>(127 - 24) << 23);
    return bits_float(sign | float_bits(v));
  }
  return bits_float(sign | ((exponent + 127 - 15) << 23) | (mantissa << 13));
}

uint16_t f32_to_fp16(float x) {
  const uint32_t b = float_bits(x);
  const uint16_t sign = static_cast<uint16_t>((b >> 16) & 0x8000);
  const uint32_t abs = b & 0x7FFFFFFFu;
  if (abs > kInfBits) return sign | 0x7E00 | static_cast<uint16_t>((abs & 0x7FFFFF) >> 13);
  if (abs == kInfBits) return sign | 0x7C00;
  if (abs < 0x00800000u) return sign;  // float32 subnormals are far below half of 2^-24
  const int e = static_cast<int>(abs >> 23) - 127;
  const uint32_t m = (abs & 0x7FFFFF) | 0x800000;  // 24 significant bits
  // fp16 normals keep 11 bits (shift 13); below 2^-14 the step is 2^-24 (shift 13 + more).
  const int shift = e >= -14 ? 13 : 13 + (-14 - e);
  if (shift > 24) return sign;  // below 2^-25: rounds to zero
  const uint32_t half = 1u << (shift - 1);
  const uint32_t rest = m & ((1u << shift) - 1);
  uint32_t rounded = m >> shift;
  if (rest > half || (rest == half && (rounded & 1))) ++rounded;
  // For normals the implicit bit in `rounded` adds the last exponent step, and a carry out of
  // the mantissa moves to the exponent; past 65504 this lands on or beyond the inf code.
  const uint32_t code = e >= -14 ? (static_cast<uint32_t>(e + 14) << 10) + rounded : rounded;
  return sign | static_cast<uint16_t>(code >= 0x7C00 ? 0x7C00 : code);
}

void k_scale_min(const uint8_t* s, int g, uint8_t* sc, uint8_t* mn) {
  // Groups 0..3 keep 6 bits in bytes g and g + 4; groups 4..7 take 4 low bits from byte g + 4
  // and their top 2 bits from the spare top bits of bytes g - 4 and g.
  if (g < 4) {
    *sc = s[g] & 63;
    *mn = s[g + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((s[g + 4] & 0x0F) | ((s[g - 4] >> 2) & 0x30));
    *mn = static_cast<uint8_t>((s[g + 4] >> 4) | ((s[g] >> 2) & 0x30));
  }
}

int q3_k_scale(const uint8_t* s, int g) {
  // Low 4 bits: nibble g / 8 of byte g % 8; high 2 bits: bits 2 * (g / 4) of byte 8 + g % 4.
  const int lo = (s[g % 8] >> (4 * (g / 8))) & 0x0F;
  const int hi = (s[8 + g % 4] >> (2 * (g / 4))) & 0x03;
  return (lo | (hi << 4)) - 32;
}

int iq4_xs_scale(uint16_t scales_h, const uint8_t* scales_l, int g) {
  const int lo = (scales_l[g / 2] >> (4 * (g % 2))) & 0x0F;
  const int hi = (scales_h >> (2 * g)) & 0x03;
  return (lo | (hi << 4)) - 32;
}

float e8m0_half(uint8_t e) {
  // 2^(e - 128): a normal float32 from e = 2 up; below, the subnormals 2^-127 and 2^-126.
  return bits_float(e < 2 ? 0x00200000u << e : static_cast<uint32_t>(e - 1) << 23);
}

std::size_t quantize_q4_0(const float* src, uint8_t* dst, std::size_t n_blocks) {
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const float* x = src + i * kQK;
    std::size_t at;
    if (amax_bits(x, kQK, &at) >= kInfBits) return i;
    const float max = x[at];
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ4_0 b;
    b.d = f32_to_fp16(d);
    for (std::size_t j = 0; j < kQK / 2; ++j) {
      const uint8_t lo = nibble_code(x[j] * id + 8.5f);
      const uint8_t hi = nibble_code(x[j + kQK / 2] * id + 8.5f);
      b.qs[j] = static_cast<uint8_t>(lo | (hi << 4));
    }
    store_block(b, dst + i * sizeof(BlockQ4_0));
  }
  return n_blocks;
}

std::size_t quantize_q4_1(const float* src, uint8_t* dst, std::size_t n_blocks) {
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const float* x = src + i * kQK;
    std::size_t at;
    if (amax_bits(x, kQK, &at) >= kInfBits) return i;
    // ggml's loop: of the values equal to the minimum (maximum) the first wins, which settles
    // the sign of a zero min or max (numpy's min/max in gguf-py leave it to the data order).
    float min = x[0], max = x[0];
    for (std::size_t j = 1; j < kQK; ++j) {
      if (x[j] < min) min = x[j];
      if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / 15.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ4_1 b;
    b.d = f32_to_fp16(d);
    b.m = f32_to_fp16(min);
    for (std::size_t j = 0; j < kQK / 2; ++j) {
      const uint8_t lo = nibble_code((x[j] - min) * id + 0.5f);
      const uint8_t hi = nibble_code((x[j + kQK / 2] - min) * id + 0.5f);
      b.qs[j] = static_cast<uint8_t>(lo | (hi << 4));
    }
    store_block(b, dst + i * sizeof(BlockQ4_1));
  }
  return n_blocks;
}

std::size_t quantize_q8_0(const float* src, uint8_t* dst, std::size_t n_blocks) {
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const float* x = src + i * kQK;
    std::size_t at;
    const uint32_t a = amax_bits(x, kQK, &at);
    if (a >= kInfBits) return i;
    const float d = bits_float(a) / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ8_0 b;
    b.d = f32_to_fp16(d);
    for (std::size_t j = 0; j < kQK; ++j) {
      // Round half away from zero without the error of floor(|v| + 0.5): the fraction
      // |v| - floor(|v|) is exact, so the comparison with 0.5 is too.
      const float v = x[j] * id;
      const float mag = std::fabs(v);
      const float whole = std::floor(mag);
      const float r = std::copysign(whole + (mag - whole >= 0.5f ? 1.0f : 0.0f), v);
      // NaN (0 * inf when 1 / d overflowed) converts to INT32_MIN, whose low byte is 0.
      b.qs[j] = static_cast<int8_t>(static_cast<uint8_t>(truncate_x86(r) & 0xFF));
    }
    store_block(b, dst + i * sizeof(BlockQ8_0));
  }
  return n_blocks;
}

void dequantize_q4_0(const uint8_t* src, float* dst, std::size_t n_blocks) {
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const auto b = load_block<BlockQ4_0>(src + i * sizeof(BlockQ4_0));
    const float d = fp16_to_f32(b.d);
    for (std::size_t j = 0; j < kQK; ++j)
      dst[i * kQK + j] = d * static_cast<float>(low_or_high_nibble(b.qs, j) - 8);
  }
}

void dequantize_q4_1(const uint8_t* src, float* dst, std::size_t n_blocks) {
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const auto b = load_block<BlockQ4_1>(src + i * sizeof(BlockQ4_1));
    const float d = fp16_to_f32(b.d), m = fp16_to_f32(b.m);
    for (std::size_t j = 0; j < kQK; ++j)
      dst[i * kQK + j] = d * static_cast<float>(low_or_high_nibble(b.qs, j)) + m;
  }
}

void dequantize_q8_0(const uint8_t* src, float* dst, std::size_t n_blocks) {
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const auto b = load_block<BlockQ8_0>(src + i * sizeof(BlockQ8_0));
    const float d = fp16_to_f32(b.d);
    for (std::size_t j = 0; j < kQK; ++j) dst[i * kQK + j] = d * static_cast<float>(b.qs[j]);
  }
}

void dequantize_q5_0(const uint8_t* src, float* dst, std::size_t n_blocks) {
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const auto b = load_block<BlockQ5_0>(src + i * sizeof(BlockQ5_0));
    const float d = fp16_to_f32(b.d);
    uint32_t qh;
    std::memcpy(&qh, b.qh, 4);
    for (std::size_t j = 0; j < kQK; ++j) {
      const int q = low_or_high_nibble(b.qs, j) | static_cast<int>(((qh >> j) & 1) << 4);
      dst[i * kQK + j] = d * static_cast<float>(q - 16);
    }
  }
}

void dequantize_q5_1(const uint8_t* src, float* dst, std::size_t n_blocks) {
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const auto b = load_block<BlockQ5_1>(src + i * sizeof(BlockQ5_1));
    const float d = fp16_to_f32(b.d), m = fp16_to_f32(b.m);
    uint32_t qh;
    std::memcpy(&qh, b.qh, 4);
    for (std::size_t j = 0; j < kQK; ++j) {
      const int q = low_or_high_nibble(b.qs, j) | static_cast<int>(((qh >> j) & 1) << 4);
      dst[i * kQK + j] = d * static_cast<float>(q) + m;
    }
  }
}

// The k-quants' 2-bit and nibble planes: value h * 128 + s * 32 + l (h = half, s = 0..3,
// l = 0..31) sits at bits 2s of byte h * 32 + l of a 2-bit plane; value g * 32 + l of a nibble
// plane at bits 4 * (g % 2) of byte (g / 2) * 32 + l. The loops run in that order, so the
// innermost loop reads consecutive bytes with a fixed shift.

void dequantize_q2_k(const uint8_t* src, float* dst, std::size_t n_blocks) {
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const auto b = load_block<BlockQ2_K>(src + i * sizeof(BlockQ2_K));
    const float d = fp16_to_f32(b.d), dmin = fp16_to_f32(b.dmin);
    float* y = dst + i * kQKK;
    for (int h = 0; h < 2; ++h)
      for (int s = 0; s < 4; ++s)
        for (int half = 0; half < 2; ++half) {  // groups of 16 share a scale and a min
          const uint8_t sc = b.scales[h * 8 + s * 2 + half];
          const float dl = d * static_cast<float>(sc & 0x0F), ml = dmin * static_cast<float>(sc >> 4);
          const uint8_t* q = b.qs + h * 32 + half * 16;
          float* out = y + h * 128 + s * 32 + half * 16;
          for (int l = 0; l < 16; ++l) out[l] = dl * static_cast<float>((q[l] >> (2 * s)) & 3) - ml;
        }
  }
}

void dequantize_q3_k(const uint8_t* src, float* dst, std::size_t n_blocks) {
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const auto b = load_block<BlockQ3_K>(src + i * sizeof(BlockQ3_K));
    const float d = fp16_to_f32(b.d);
    float dl[16];
    for (int g = 0; g < 16; ++g) dl[g] = d * static_cast<float>(q3_k_scale(b.scales, g));
    float* y = dst + i * kQKK;
    for (int h = 0; h < 2; ++h)
      for (int s = 0; s < 4; ++s) {
        const int plane = h * 4 + s;  // hmask bit of these 32 values
        for (int half = 0; half < 2; ++half) {
          const float scale = dl[h * 8 + s * 2 + half];
          const uint8_t* q = b.qs + h * 32 + half * 16;
          const uint8_t* m = b.hmask + half * 16;
          float* out = y + h * 128 + s * 32 + half * 16;
          for (int l = 0; l < 16; ++l) {
            // A clear hmask bit subtracts 4.
            const int v = ((q[l] >> (2 * s)) & 3) - (((m[l] >> plane) & 1) ? 0 : 4);
            out[l] = scale * static_cast<float>(v);
          }
        }
      }
  }
}

void dequantize_q4_k(const uint8_t* src, float* dst, std::size_t n_blocks) {
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const auto b = load_block<BlockQ4_K>(src + i * sizeof(BlockQ4_K));
    const float d = fp16_to_f32(b.d), dmin = fp16_to_f32(b.dmin);
    float* y = dst + i * kQKK;
    for (int g = 0; g < 8; g += 2) {  // groups g (low nibbles) and g + 1 (high) share 32 bytes
      uint8_t sc0, mn0, sc1, mn1;
      k_scale_min(b.scales, g, &sc0, &mn0);
      k_scale_min(b.scales, g + 1, &sc1, &mn1);
      const float dl0 = d * static_cast<float>(sc0), ml0 = dmin * static_cast<float>(mn0);
      const float dl1 = d * static_cast<float>(sc1), ml1 = dmin * static_cast<float>(mn1);
      const uint8_t* q = b.qs + (g / 2) * 32;
      for (int l = 0; l < 32; ++l) y[g * 32 + l] = dl0 * static_cast<float>(q[l] & 0x0F) - ml0;
      for (int l = 0; l < 32; ++l) y[g * 32 + 32 + l] = dl1 * static_cast<float>(q[l] >> 4) - ml1;
    }
  }
}

void dequantize_q5_k(const uint8_t* src, float* dst, std::size_t n_blocks) {
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const auto b = load_block<BlockQ5_K>(src + i * sizeof(BlockQ5_K));
    const float d = fp16_to_f32(b.d), dmin = fp16_to_f32(b.dmin);
    float* y = dst + i * kQKK;
    for (int g = 0; g < 8; ++g) {
      uint8_t sc, mn;
      k_scale_min(b.scales, g, &sc, &mn);
      const float dl = d * static_cast<float>(sc), ml = dmin * static_cast<float>(mn);
      const uint8_t* q = b.qs + (g / 2) * 32;
      const int shift = 4 * (g % 2);
      for (int l = 0; l < 32; ++l) {
        const int v = ((q[l] >> shift) & 0x0F) | (((b.qh[l] >> g) & 1) << 4);
        y[g * 32 + l] = dl * static_cast<float>(v) - ml;
      }
    }
  }
}

void dequantize_q6_k(const uint8_t* src, float* dst, std::size_t n_blocks) {
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const auto b = load_block<BlockQ6_K>(src + i * sizeof(BlockQ6_K));
    const float d = fp16_to_f32(b.d);
    float* y = dst + i * kQKK;
    // Value h * 128 + s * 32 + l: low 4 bits at bits 4 * (s / 2) of ql[h * 64 + (s % 2) * 32 + l],
    // high 2 bits at bits 2s of qh[h * 32 + l]; one int8 scale per 16 values.
    for (int h = 0; h < 2; ++h)
      for (int s = 0; s < 4; ++s)
        for (int half = 0; half < 2; ++half) {
          const float dl = d * static_cast<float>(b.scales[h * 8 + s * 2 + half]);
          const uint8_t* lo = b.ql + h * 64 + (s % 2) * 32 + half * 16;
          const uint8_t* hi = b.qh + h * 32 + half * 16;
          const int lo_shift = 4 * (s / 2), hi_shift = 2 * s;
          float* out = y + h * 128 + s * 32 + half * 16;
          for (int l = 0; l < 16; ++l) {
            const int v = ((lo[l] >> lo_shift) & 0x0F) | (((hi[l] >> hi_shift) & 3) << 4);
            out[l] = dl * static_cast<float>(v - 32);
          }
        }
  }
}

void dequantize_iq4_nl(const uint8_t* src, float* dst, std::size_t n_blocks) {
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const auto b = load_block<BlockIq4Nl>(src + i * sizeof(BlockIq4Nl));
    const float d = fp16_to_f32(b.d);
    for (std::size_t j = 0; j < kQK; ++j)
      dst[i * kQK + j] = d * static_cast<float>(kIq4nlValues[low_or_high_nibble(b.qs, j)]);
  }
}

void dequantize_iq4_xs(const uint8_t* src, float* dst, std::size_t n_blocks) {
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const auto b = load_block<BlockIq4Xs>(src + i * sizeof(BlockIq4Xs));
    const float d = fp16_to_f32(b.d);
    float* y = dst + i * kQKK;
    for (int g = 0; g < 8; ++g) {
      const float dl = d * static_cast<float>(iq4_xs_scale(b.scales_h, b.scales_l, g));
      for (std::size_t l = 0; l < 32; ++l) {
        const int q = (b.qs[g * 16 + l % 16] >> (4 * (l / 16))) & 0x0F;
        y[g * 32 + l] = dl * static_cast<float>(kIq4nlValues[q]);
      }
    }
  }
}

void dequantize_mxfp4(const uint8_t* src, float* dst, std::size_t n_blocks) {
  for (std::size_t i = 0; i < n_blocks; ++i) {
    const auto b = load_block<BlockMxfp4>(src + i * sizeof(BlockMxfp4));
    const float d = e8m0_half(b.e);
    for (std::size_t j = 0; j < kQK; ++j)
      dst[i * kQK + j] = d * static_cast<float>(kMxfp4Values[low_or_high_nibble(b.qs, j)]);
  }
}

}  // namespace scalar
}  // namespace quantcore
