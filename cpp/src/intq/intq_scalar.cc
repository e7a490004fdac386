// Scalar reference for group-wise integer and NF4 quantization: one element at a time, the
// arithmetic exactly as intq.h states it. The SIMD variants must produce the same bytes; they
// call these functions for their tails and share group_params, so per-group decisions match.
#include <cmath>
#include <cstring>

#include "intq_rows.h"
#include "quantcore/float_bits.h"
#include "quantcore/intq.h"
#include "quantcore/pack.h"

namespace quantcore {

// bitsandbytes' NF4 table (QLoRA, Dettmers et al. 2023, appendix E; csrc/kernels.cu nf4_data).
const float kNf4Codebook[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};

namespace {
// Midpoints computed in double from the float32 entries and rounded once to float32.
constexpr float midpoint(float a, float b) {
  return static_cast<float>((static_cast<double>(a) + static_cast<double>(b)) / 2.0);
}
}  // namespace

const float kNf4Midpoints[15] = {
    midpoint(-1.0f, -0.6961928009986877f),
    midpoint(-0.6961928009986877f, -0.5250730514526367f),
    midpoint(-0.5250730514526367f, -0.39491748809814453f),
    midpoint(-0.39491748809814453f, -0.28444138169288635f),
    midpoint(-0.28444138169288635f, -0.18477343022823334f),
    midpoint(-0.18477343022823334f, -0.09105003625154495f),
    midpoint(-0.09105003625154495f, 0.0f),
    midpoint(0.0f, 0.07958029955625534f),
    midpoint(0.07958029955625534f, 0.16093020141124725f),
    midpoint(0.16093020141124725f, 0.24611230194568634f),
    midpoint(0.24611230194568634f, 0.33791524171829224f),
    midpoint(0.33791524171829224f, 0.44070982933044434f),
    midpoint(0.44070982933044434f, 0.5626170039176941f),
    midpoint(0.5626170039176941f, 0.7229568362236023f),
    midpoint(0.7229568362236023f, 1.0f)};

namespace {

// Keep the top (24 - drop) significant bits of a positive normal float32, nearest-even. A carry
// out of the mantissa bumps the exponent, and past the largest exponent gives +inf: both are
// what adding the rounding bias to the bit pattern does.
float round_mantissa(float x, int drop) {
  const uint32_t b = float_bits(x);
  const uint32_t lsb = (b >> drop) & 1u;
  const uint32_t rounded = (b + ((1u << (drop - 1)) - 1u) + lsb) & ~((1u << drop) - 1u);
  return bits_float(rounded);
}

// Nearest integer, ties to even (the default rounding mode), as std::nearbyint but inlined: for
// |x| < 2^22, x + 1.5 * 2^23 lands in [2^23, 2^24) where the float32 step is 1, so the addition
// itself rounds x; subtracting the constant back is exact. (std::nearbyint, fmin and fmax are
// libm calls in this file, which is built without SSE4.1; they cost more than a group's SIMD work.)
inline float round_even(float x) {
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23
  if (!(std::fabs(x) < 4194304.0f)) return std::nearbyint(x);  // 2^22 and up, inf, NaN
  return (x + kMagic) - kMagic;
}

inline float min_f(float a, float b) { return b < a ? b : a; }
inline float max_f(float a, float b) { return b > a ? b : a; }

// The smallest positive value of each scale type: 2^-149 (float32 subnormal), 2^-24 (float16
// subnormal), 2^-133 (bfloat16 subnormal: float32's exponent range with a 7-bit mantissa).
float smallest_positive(ScaleType t) {
  switch (t) {
    case ScaleType::kFloat16: return bits_float(0x33800000u);  // 2^-24
    case ScaleType::kBFloat16: return bits_float(0x00010000u);  // 2^-133
    default: return bits_float(0x00000001u);                    // 2^-149
  }
}

}  // namespace

namespace scalar {

float round_scale(float x, ScaleType t) {
  switch (t) {
    case ScaleType::kFloat32:
      return x;
    case ScaleType::kBFloat16:
      // bfloat16 is float32 with 16 fewer mantissa bits, subnormals included.
      return round_mantissa(x, 16);
    case ScaleType::kFloat16: {
      // float16: 11 significant bits for x >= 2^-14, a fixed step of 2^-24 below; the largest
      // finite is 65504 = (2 - 2^-10) * 2^15, and from the midpoint 65520 up x rounds to inf.
      if (x >= 65520.0f) return INFINITY;
      if (x < 6.103515625e-05f) {  // 2^-14: scaling by 2^24 and back is exact
        return round_even(x * 16777216.0f) * 5.9604644775390625e-08f;
      }
      return round_mantissa(x, 13);
    }
  }
  return x;
}

IntqStatus group_params(float lo, float hi, const IntqScheme& s, GroupParams* p) {
  const bool constant = lo == hi && lo != 0.0f;
  const float absmax = max_f(-lo, hi);
  float exact;  // the unrounded scale
  switch (s.kind) {
    case IntqKind::kSymmetric: {
      const int32_t qmax = (1 << (s.bits - 1)) - 1;
      p->zero = 1 << (s.bits - 1);
      p->code_min = p->zero - qmax;
      p->code_max = p->zero + qmax;
      exact = constant ? absmax : absmax / static_cast<float>(qmax);
      break;
    }
    case IntqKind::kAsymmetric: {
      const int32_t levels = (1 << s.bits) - 1;
      const float range = max_f(hi, 0.0f) - min_f(lo, 0.0f);
      p->code_min = 0;
      p->code_max = levels;
      exact = constant ? absmax : range / static_cast<float>(levels);
      break;
    }
    default: {  // kNf4
      p->zero = 0;
      p->code_min = 0;
      p->code_max = 15;
      exact = absmax;
      break;
    }
  }
  float scale;
  if (absmax == 0.0f) {
    scale = 1.0f;
  } else {
    scale = round_scale(exact, s.scale_type);
    if (!std::isfinite(scale)) return IntqStatus::kScaleOverflow;
    if (scale == 0.0f) scale = smallest_positive(s.scale_type);
  }
  p->scale = scale;
  if (s.kind == IntqKind::kAsymmetric) {
    const float z = round_even(-min_f(lo, 0.0f) / scale);
    p->zero = static_cast<int32_t>(min_f(z, static_cast<float>(p->code_max)));
  }
  return IntqStatus::kOk;
}

uint8_t encode_one(float x, const IntqScheme& s, const GroupParams& p) {
  const float y = x / p.scale;
  if (s.kind == IntqKind::kNf4) {
    int code = 0;
    for (float m : kNf4Midpoints) code += y > m ? 1 : 0;
    return static_cast<uint8_t>(code);
  }
  int32_t code = static_cast<int32_t>(round_even(y)) + p.zero;
  code = code < p.code_min ? p.code_min : code;
  code = code > p.code_max ? p.code_max : code;
  return static_cast<uint8_t>(code);
}

float decode_one(uint8_t code, const IntqScheme& s, const GroupParams& p) {
  if (s.kind == IntqKind::kNf4) return kNf4Codebook[code & 15] * p.scale;
  return static_cast<float>(static_cast<int32_t>(code) - p.zero) * p.scale;
}

void store_scale(void* scales, std::size_t i, float value, ScaleType t) {
  switch (t) {
    case ScaleType::kFloat32:
      static_cast<float*>(scales)[i] = value;
      return;
    case ScaleType::kBFloat16:
      static_cast<uint16_t*>(scales)[i] = static_cast<uint16_t>(float_bits(value) >> 16);
      return;
    case ScaleType::kFloat16: {
      // value is a non-negative float16 value: re-bias a normal, or count 2^-24 steps.
      const uint32_t b = float_bits(value);
      const int exponent = static_cast<int>(b >> 23) - 127;
      const uint16_t bits = exponent >= -14
                                ? static_cast<uint16_t>(((exponent + 15) << 10) | ((b & 0x7FFFFFu) >> 13))
                                : static_cast<uint16_t>(value * 16777216.0f);
      static_cast<uint16_t*>(scales)[i] = bits;
      return;
    }
  }
}

float load_scale(const void* scales, std::size_t i, ScaleType t) {
  switch (t) {
    case ScaleType::kBFloat16:
      return bits_float(static_cast<uint32_t>(static_cast<const uint16_t*>(scales)[i]) << 16);
    case ScaleType::kFloat16: {
      const uint32_t h = static_cast<const uint16_t*>(scales)[i];
      const uint32_t sign = (h & 0x8000u) << 16, exponent = (h >> 10) & 0x1Fu, mantissa = h & 0x3FFu;
      if (exponent == 0) {
        const float v = static_cast<float>(mantissa) * 5.9604644775390625e-08f;  // 2^-24
        return bits_float(sign | float_bits(v));
      }
      if (exponent == 31) return bits_float(sign | 0x7F800000u | (mantissa << 13));  // inf, NaN
      return bits_float(sign | ((exponent + 127 - 15) << 23) | (mantissa << 13));
    }
    default:
      return static_cast<const float*>(scales)[i];
  }
}

Range range_f32(const float* src, std::size_t n) {
  float lo = INFINITY, hi = -INFINITY;
  uint32_t abs_max = 0;  // as integer bits: NaN > inf > every finite magnitude
  for (std::size_t i = 0; i < n; ++i) {
    lo = src[i] < lo ? src[i] : lo;
    hi = src[i] > hi ? src[i] : hi;
    const uint32_t a = float_bits(src[i]) & 0x7FFFFFFFu;
    abs_max = a > abs_max ? a : abs_max;
  }
  return Range{lo, hi, abs_max < 0x7F800000u};
}

IntqStatus params_f32(const float* src, std::size_t group_size, std::size_t n_groups,
                      const IntqScheme& s, GroupParams* p, std::size_t* bad_group) {
  for (std::size_t g = 0; g < n_groups; ++g) {
    const Range r = range_f32(src + g * group_size, group_size);
    const IntqStatus status = r.finite ? group_params(r.lo, r.hi, s, p + g) : IntqStatus::kNonFinite;
    if (status != IntqStatus::kOk) {
      *bad_group = g;
      return status;
    }
  }
  return IntqStatus::kOk;
}

void encode_group(const float* src, std::size_t n, const IntqScheme& s, const GroupParams& p,
                  uint8_t* codes) {
  for (std::size_t i = 0; i < n; ++i) codes[i] = encode_one(src[i], s, p);
}

void decode_group(const uint8_t* codes, std::size_t n, const IntqScheme& s, const GroupParams& p,
                  float* dst) {
  for (std::size_t i = 0; i < n; ++i) dst[i] = decode_one(codes[i], s, p);
}

namespace {
constexpr RowKernels kRowKernels{params_f32, encode_group, decode_group, pack_bits, unpack_bits};
}  // namespace

IntqStatus quantize_rows(const float* src, std::size_t rows, std::size_t cols,
                         std::size_t group_size, const IntqScheme& s, const GroupParams* fixed,
                         uint8_t* codes, void* scales, uint8_t* zeros, std::size_t* bad_group) {
  return quantize_rows_with(kRowKernels, src, rows, cols, group_size, s, fixed, codes, scales,
                            zeros, bad_group);
}

void dequantize_rows(const uint8_t* codes, std::size_t rows, std::size_t cols,
                     std::size_t group_size, const IntqScheme& s, const void* scales,
                     const uint8_t* zeros, std::size_t scale_row_stride, float* dst) {
  dequantize_rows_with(kRowKernels, codes, rows, cols, group_size, s, scales, zeros,
                       scale_row_stride, dst);
}

}  // namespace scalar
}  // namespace quantcore
