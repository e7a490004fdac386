// Scalar reference for GPTQ's per-column loop (gptq.h): one row, one column, one element at a
// time. The SIMD variants run the same float32 operations in the same order per element, so
// they produce the same bits; they call gptq_encode for the codes.
#include <cmath>
#include <cstring>

#include "quantcore/float_bits.h"
#include "quantcore/gguf.h"
#include "quantcore/gptq.h"

namespace quantcore {
namespace {

uint32_t abs_bits(float x) { return float_bits(x) & 0x7FFFFFFFu; }

float fp16_round(float x) { return scalar::fp16_to_f32(scalar::f32_to_fp16(x)); }

// A 4-bit GGUF code from v = x * id + 8.5 (q4_0) or (x - min) * id + 0.5 (q4_1): ggml truncates
// toward zero and keeps at most 15 (min(15, (int8_t)v)); inside the block's range v > -1, so
// that is the clamp below. A non-finite v converts to INT32_MIN on x86, which ends as code 0.
int32_t nibble(float v) {
  if (!std::isfinite(v)) return 0;
  if (v >= 15.0f) return 15;
  if (v <= 0.0f) return 0;
  return static_cast<int32_t>(v);
}

// q8_0's round half away from zero (gguf_scalar.cc), clamped to int8; non-finite gives 0.
int32_t q8_code(float v) {
  if (!std::isfinite(v)) return 0;
  const float mag = std::fabs(v);
  const float whole = std::floor(mag);
  const float r = std::copysign(whole + (mag - whole >= 0.5f ? 1.0f : 0.0f), v);
  if (r >= 127.0f) return 127;
  if (r <= -128.0f) return -128;
  return static_cast<int32_t>(r);
}

}  // namespace

namespace scalar {

IntqStatus gptq_params(const float* x, std::size_t n, const GptqScheme& s, GptqParams* p,
                       float* stored_scale, float* stored_zero) {
  *p = GptqParams{};
  *stored_zero = 0.0f;
  switch (s.grid) {
    case GptqGrid::kSymmetric:
    case GptqGrid::kAsymmetric: {
      const Range r = range_f32(x, n);
      GroupParams g;
      const IntqStatus status = group_params(r.lo, r.hi, s.intq, &g);
      if (status != IntqStatus::kOk) return status;
      p->scale = g.scale;
      p->dq_scale = g.scale;
      p->zero = g.zero;
      p->code_min = g.code_min;
      p->code_max = g.code_max;
      *stored_scale = g.scale;
      *stored_zero = static_cast<float>(g.zero);
      return IntqStatus::kOk;
    }
    case GptqGrid::kQ4_0: {
      // ggml: max = the first value of largest |x|; d = max / -8
      std::size_t at = 0;
      for (std::size_t j = 1; j < n; ++j)
        if (abs_bits(x[j]) > abs_bits(x[at])) at = j;
      p->scale = x[at] / -8.0f;
      p->zero = 8;
      p->code_max = 15;
      break;
    }
    case GptqGrid::kQ4_1: {
      // ggml: min and max are the first values holding them; d = (max - min) / 15; m = min
      float lo = x[0], hi = x[0];
      for (std::size_t j = 1; j < n; ++j) {
        if (x[j] < lo) lo = x[j];
        if (x[j] > hi) hi = x[j];
      }
      p->scale = (hi - lo) / 15.0f;
      p->min = lo;
      p->dq_offset = fp16_round(lo);
      p->code_max = 15;
      *stored_zero = p->dq_offset;
      break;
    }
    case GptqGrid::kQ8_0: {
      uint32_t a = 0;
      for (std::size_t j = 0; j < n; ++j) a = abs_bits(x[j]) > a ? abs_bits(x[j]) : a;
      float amax;
      std::memcpy(&amax, &a, 4);
      p->scale = amax / 127.0f;
      p->zero = 128;
      p->code_max = 255;
      break;
    }
  }
  p->inv = p->scale != 0.0f ? 1.0f / p->scale : 0.0f;
  p->dq_scale = fp16_round(p->scale);
  *stored_scale = p->dq_scale;
  // fp16 d or m past 65504: llama.cpp would store inf; GPTQ's error feedback cannot use it
  if (!std::isfinite(p->dq_scale) || !std::isfinite(p->dq_offset)) return IntqStatus::kScaleOverflow;
  return IntqStatus::kOk;
}

uint8_t gptq_encode(float x, const GptqScheme& s, const GptqParams& p, float* dq) {
  switch (s.grid) {
    case GptqGrid::kQ4_0: {
      const int32_t code = nibble(x * p.inv + 8.5f);
      *dq = p.dq_scale * static_cast<float>(code - 8);
      return static_cast<uint8_t>(code);
    }
    case GptqGrid::kQ4_1: {
      const int32_t code = nibble((x - p.min) * p.inv + 0.5f);
      *dq = static_cast<float>(code) * p.dq_scale + p.dq_offset;
      return static_cast<uint8_t>(code);
    }
    case GptqGrid::kQ8_0: {
      const int32_t q = q8_code(x * p.inv);
      *dq = p.dq_scale * static_cast<float>(q);
      return static_cast<uint8_t>(q + 128);
    }
    default: {
      // Error feedback can carry x far outside the range its group's scale was found from, so
      // far that x / scale would not fit the int32 conversion inside encode_one (which would
      // then clamp to the wrong end). Past 2^24 steps every code saturates anyway, and
      // 2^24 * scale is exact, so clamping x there changes no code that fits.
      const float limit = 16777216.0f * p.scale;
      x = x > limit ? limit : (x < -limit ? -limit : x);
      const GroupParams g{p.scale, p.zero, p.code_min, p.code_max};
      const uint8_t code = encode_one(x, s.intq, g);
      *dq = decode_one(code, s.intq, g);
      return code;
    }
  }
}

namespace {
// sum_j weight[j] * (x_j - dq_j)^2 of the n values x under p (weight nullptr: all 1). Int
// grids: encode_one / decode_one's arithmetic restated inline (x / scale, round half to even,
// clamp) so that the loop vectorizes; the values are the same.
double clip_error(const float* x, std::size_t n, const float* weight, const GptqScheme& s, const GptqParams& p) {
  double error = 0.0;
  if (s.grid == GptqGrid::kSymmetric || s.grid == GptqGrid::kAsymmetric) {
    constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23: (y + kMagic) - kMagic rounds half to even
    constexpr float kLimit = 4194304.0f;   // 2^22: past it every code saturates anyway
    for (std::size_t j = 0; j < n; ++j) {
      float y = x[j] / p.scale;
      y = y > kLimit ? kLimit : (y < -kLimit ? -kLimit : y);
      int32_t code = static_cast<int32_t>((y + kMagic) - kMagic) + p.zero;
      code = code < p.code_min ? p.code_min : (code > p.code_max ? p.code_max : code);
      const double d = static_cast<double>(x[j]) - static_cast<double>(static_cast<float>(code - p.zero) * p.scale);
      error += (weight != nullptr ? static_cast<double>(weight[j]) : 1.0) * (d * d);
    }
    return error;
  }
  for (std::size_t j = 0; j < n; ++j) {
    float dq;
    gptq_encode(x[j], s, p, &dq);
    const double d = static_cast<double>(x[j]) - static_cast<double>(dq);
    error += (weight != nullptr ? static_cast<double>(weight[j]) : 1.0) * (d * d);
  }
  return error;
}
}  // namespace

IntqStatus gptq_clip_params(const float* x, std::size_t n, const float* weight, const float* shrinks,
                            std::size_t n_shrinks, const GptqScheme& s, float* scratch,
                            GptqParams* p, float* stored_scale, float* stored_zero, float* chosen) {
  // Int grids' parameters depend only on the range, and shrink * min(x) = min(shrink * x)
  // (rounding is monotone): two values stand for the shrunk group.
  const bool int_grid = s.grid == GptqGrid::kSymmetric || s.grid == GptqGrid::kAsymmetric;
  const Range r = int_grid ? range_f32(x, n) : Range{0.0f, 0.0f, true};
  double best = 0.0;
  for (std::size_t k = 0; k < n_shrinks; ++k) {
    std::size_t m = n;
    if (int_grid) {
      scratch[0] = shrinks[k] * r.lo;
      scratch[1] = shrinks[k] * r.hi;
      m = 2;
    } else {
      for (std::size_t j = 0; j < n; ++j) scratch[j] = shrinks[k] * x[j];
    }
    GptqParams trial;
    float trial_scale, trial_zero;
    const IntqStatus status = gptq_params(scratch, m, s, &trial, &trial_scale, &trial_zero);
    if (status != IntqStatus::kOk) return status;
    const double error = clip_error(x, n, weight, s, trial);
    if (k == 0 || error < best) {
      best = error;
      *p = trial;
      *stored_scale = trial_scale;
      *stored_zero = trial_zero;
      *chosen = shrinks[k];
    }
  }
  return IntqStatus::kOk;
}

void gptq_columns(float* w, std::size_t ldw, std::size_t rows, std::size_t block, std::size_t c0,
                  std::size_t c1, const float* hinv, const GptqScheme& s, const GptqParams* params,
                  std::size_t params_stride, const int32_t* group_of, uint8_t* codes,
                  std::size_t ldc, float* err, double* losses) {
  for (std::size_t r = 0; r < rows; ++r) {
    float* wr = w + r * ldw;
    for (std::size_t i = c0; i < c1; ++i) {
      const GptqParams& p = params[static_cast<std::size_t>(group_of[i]) * params_stride + r];
      float dq;
      codes[r * ldc + i] = gptq_encode(wr[i], s, p, &dq);
      const float e = (wr[i] - dq) / hinv[i * block + i];
      err[r * block + i] = e;
      losses[r] += 0.5 * static_cast<double>(e) * static_cast<double>(e);
      const float* h = hinv + i * block;
      for (std::size_t j = i + 1; j < block; ++j) wr[j] -= e * h[j];
    }
  }
}

}  // namespace scalar
}  // namespace quantcore
