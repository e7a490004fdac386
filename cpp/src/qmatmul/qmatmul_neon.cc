// NEON (AArch64 Advanced SIMD, no extension needed) quantized matmul.
//
// gemv_rows: 4- and 8-bit integer codes converted in registers (gemv_int); other schemes
// decoded by the shared decoders (scalar::decode_rows, bit-identical to dequantize) into an
// L1-sized buffer, then dotted with four 4-float accumulators (qmatmul_decoded.h); gemm_rows:
// kGemmRows rows decoded into buf and a 2 x 32 register-blocked microkernel (16 accumulators);
// qdot_rows_int8: 4-bit and 8-bit integer codes made signed per row (w = code - zero), then
// exact integer products summed pairwise into int32 lanes, as the AVX2 loops do; other schemes
// and shapes take the scalar reference. Float results differ from the reference only by
// summation order, the integer dot products not at all.
#include <arm_neon.h>

#include <algorithm>
#include <vector>

#include "quantcore/qmatmul.h"

namespace quantcore::neon {
namespace {

float dot(const float* a, const float* b, std::size_t n) {
  float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0, s2 = s0, s3 = s0;
  std::size_t k = 0;
  for (; k + 16 <= n; k += 16) {
    s0 = vfmaq_f32(s0, vld1q_f32(a + k), vld1q_f32(b + k));
    s1 = vfmaq_f32(s1, vld1q_f32(a + k + 4), vld1q_f32(b + k + 4));
    s2 = vfmaq_f32(s2, vld1q_f32(a + k + 8), vld1q_f32(b + k + 8));
    s3 = vfmaq_f32(s3, vld1q_f32(a + k + 12), vld1q_f32(b + k + 12));
  }
  for (; k + 4 <= n; k += 4) s0 = vfmaq_f32(s0, vld1q_f32(a + k), vld1q_f32(b + k));
  float sum = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
  for (; k < n; ++k) sum += a[k] * b[k];
  return sum;
}

// tile[r * kPanel + j] = sum_k W[r, k] * panel[k * kPanel + j] for r < R, j < kPanel.
template <int R>
void micro_tile(const float* wr, std::size_t cols, const float* panel, float* tile) {
  float32x4_t acc[R][kPanel / 4];
  for (int r = 0; r < R; ++r)
    for (std::size_t h = 0; h < kPanel / 4; ++h) acc[r][h] = vdupq_n_f32(0.0f);
  for (std::size_t k = 0; k < cols; ++k) {
    const float* xk = panel + k * kPanel;
    for (std::size_t h = 0; h < kPanel / 4; ++h) {
      const float32x4_t xv = vld1q_f32(xk + 4 * h);
      for (int r = 0; r < R; ++r) acc[r][h] = vfmaq_n_f32(acc[r][h], xv, wr[r * cols + k]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (std::size_t h = 0; h < kPanel / 4; ++h) vst1q_f32(tile + r * kPanel + 4 * h, acc[r][h]);
}

constexpr int kMicroRows = 2;
constexpr std::size_t kGemvRows = 4;  // rows decoded at a time by gemv_rows

// One row's groups in the int8 path's form, W = (code - zero) * scale + offset.
void row_groups(const QWeight& w, std::size_t r, std::vector<scalar::IntGroup>& g) {
  for (std::size_t i = 0; i < g.size(); ++i) g[i] = scalar::int_group(w, r, i);
}

// 16 codes (bytes) minus the zero point as four float vectors, in order.
inline void to_floats(uint8x16_t codes, int16x8_t zero, float32x4_t* f) {
  const int16x8_t a = vsubq_s16(vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(codes))), zero);
  const int16x8_t b = vsubq_s16(vreinterpretq_s16_u16(vmovl_high_u8(codes)), zero);
  f[0] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(a)));
  f[1] = vcvtq_f32_s32(vmovl_high_s16(a));
  f[2] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(b)));
  f[3] = vcvtq_f32_s32(vmovl_high_s16(b));
}

// The float GEMV for 4-bit and 8-bit integer codes (int4 / int8 sym or asym, q4_0, q8_0) in
// groups of a multiple of 32, without a decode buffer: every 16 bytes become code - zero in
// int16 lanes, then floats (4-bit: the low nibbles, even codes, then the high nibbles, odd
// codes: the order of in.x_pairs), whose products with x are summed per group before one
// multiply by its scale.
template <int kBits>
void gemv_int(const QWeight& w, std::size_t r0, std::size_t r1, const QInput& in, float* y, std::size_t ldy) {
  constexpr std::size_t kMaxM = 8, kCodes = 128 / kBits;  // codes per 16 bytes
  const std::size_t cols = w.cols, n_groups = cols / w.group_size;
  const float* xs = kBits == 4 ? in.x_pairs : in.x;
  const uint8x16_t low = vdupq_n_u8(0x0F);
  std::vector<scalar::IntGroup> groups(n_groups);
  for (std::size_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.codes + r * w.row_bytes;
    row_groups(w, r, groups);
    float sum[kMaxM] = {};
    for (std::size_t g = 0; g < n_groups; ++g) {
      float32x4_t acc[kMaxM][2];
      for (std::size_t i = 0; i < in.m; ++i) acc[i][0] = acc[i][1] = vdupq_n_f32(0.0f);
      const int16x8_t z = vdupq_n_s16(static_cast<int16_t>(groups[g].zero));
      for (std::size_t k = g * w.group_size; k < (g + 1) * w.group_size; k += kCodes) {
        const uint8x16_t bytes = vld1q_u8(row + k * kBits / 8);
        float32x4_t c[kCodes / 4];
        if constexpr (kBits == 4) {
          to_floats(vandq_u8(bytes, low), z, c);
          to_floats(vshrq_n_u8(bytes, 4), z, c + 4);
        } else {
          to_floats(bytes, z, c);
        }
        for (std::size_t i = 0; i < in.m; ++i) {
          const float* x = xs + i * cols + k;
          for (std::size_t h = 0; h < kCodes / 4; ++h)
            acc[i][h & 1] = vfmaq_f32(acc[i][h & 1], c[h], vld1q_f32(x + 4 * h));
        }
      }
      for (std::size_t i = 0; i < in.m; ++i) sum[i] += groups[g].scale * vaddvq_f32(vaddq_f32(acc[i][0], acc[i][1]));
    }
    for (std::size_t i = 0; i < in.m; ++i) y[i * ldy + r] = sum[i];
  }
}

// The sum of one block's 32 products, exact: |w| <= 15 (4-bit) and |q| <= 127, so each int16
// product and each pairwise int32 sum are exact.
inline int32x4_t block_dot_s8(const int8_t* w, const int8_t* q) {
  const int8x16_t w0 = vld1q_s8(w), w1 = vld1q_s8(w + 16), q0 = vld1q_s8(q), q1 = vld1q_s8(q + 16);
  int32x4_t d = vpaddlq_s16(vmull_s8(vget_low_s8(w0), vget_low_s8(q0)));
  d = vpadalq_s16(d, vmull_high_s8(w0, q0));
  d = vpadalq_s16(d, vmull_s8(vget_low_s8(w1), vget_low_s8(q1)));
  return vpadalq_s16(d, vmull_high_s8(w1, q1));
}

// Rows of W [r0, r1), every batch row, 4-bit codes. buf holds one row's signed weights (cols
// bytes) in the q_pairs order: per block of 32, the 16 low nibbles (even codes), then the 16
// high nibbles (odd codes).
void rows_4bit(const QWeight& w, std::size_t r0, std::size_t r1, const QInputInt8& in, uint8_t* buf, float* y,
               std::size_t ldy) {
  const std::size_t cols = w.cols, n_blocks = cols / 32, per_group = w.group_size / 32, per_block = in.block / 32;
  const uint8x16_t low = vdupq_n_u8(0x0F);
  std::vector<scalar::IntGroup> groups(cols / w.group_size);
  auto* ws = reinterpret_cast<int8_t*>(buf);
  for (std::size_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.codes + r * w.row_bytes;
    row_groups(w, r, groups);
    for (std::size_t b = 0; b < n_blocks; ++b) {
      const uint8x16_t bytes = vld1q_u8(row + 16 * b);
      const int8x16_t z = vdupq_n_s8(static_cast<int8_t>(groups[b / per_group].zero));
      vst1q_s8(ws + 32 * b, vsubq_s8(vreinterpretq_s8_u8(vandq_u8(bytes, low)), z));
      vst1q_s8(ws + 32 * b + 16, vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(bytes, 4)), z));
    }
    for (std::size_t i = 0; i < in.m; ++i) {
      const int8_t* q = in.q_pairs + i * cols;
      const float* sx = in.sx + i * in.n_blocks;
      const int32_t* qsum = in.qsum + i * in.n_blocks;
      float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = acc0;
      float tail = 0.0f;
      for (std::size_t b = 0; b < n_blocks; ++b) {  // chunks of 32; activation block b / per_block
        const std::size_t a = b / per_block;
        const scalar::IntGroup& g = groups[b / per_group];
        const float32x4_t d = vcvtq_f32_s32(block_dot_s8(ws + 32 * b, q + 32 * b));
        if (b & 1)
          acc1 = vfmaq_n_f32(acc1, d, sx[a] * g.scale);
        else
          acc0 = vfmaq_n_f32(acc0, d, sx[a] * g.scale);
        if (b % per_block == 0) tail += sx[a] * (g.offset * static_cast<float>(qsum[a]));
      }
      y[i * ldy + r] = vaddvq_f32(vaddq_f32(acc0, acc1)) + tail;
    }
  }
}

// 8-bit codes: w = code - zero as int16 (asymmetric int8 spans -255..255), products with q
// widened to int16, accumulated in int32 (|sum| <= 32 * 255 * 127 per block).
void rows_8bit(const QWeight& w, std::size_t r0, std::size_t r1, const QInputInt8& in, float* y, std::size_t ldy) {
  const std::size_t cols = w.cols, n_blocks = cols / 32, per_group = w.group_size / 32, per_block = in.block / 32;
  std::vector<int16_t> ws(cols);
  std::vector<scalar::IntGroup> groups(cols / w.group_size);
  for (std::size_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.codes + r * w.row_bytes;
    row_groups(w, r, groups);
    for (std::size_t b = 0; b < n_blocks; ++b) {
      const int16x8_t z = vdupq_n_s16(static_cast<int16_t>(groups[b / per_group].zero));
      for (std::size_t h = 0; h < 32; h += 16) {
        const uint8x16_t c = vld1q_u8(row + 32 * b + h);
        vst1q_s16(&ws[32 * b + h], vsubq_s16(vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(c))), z));
        vst1q_s16(&ws[32 * b + h + 8], vsubq_s16(vreinterpretq_s16_u16(vmovl_high_u8(c)), z));
      }
    }
    for (std::size_t i = 0; i < in.m; ++i) {
      const int8_t* q = in.q + i * cols;
      const float* sx = in.sx + i * in.n_blocks;
      float32x4_t acc = vdupq_n_f32(0.0f);
      for (std::size_t b = 0; b < n_blocks; ++b) {
        int32x4_t d = vdupq_n_s32(0);
        for (std::size_t h = 0; h < 32; h += 16) {
          const int8x16_t qv = vld1q_s8(q + 32 * b + h);
          const int16x8_t q0 = vmovl_s8(vget_low_s8(qv)), q1 = vmovl_high_s8(qv);
          const int16x8_t w0 = vld1q_s16(&ws[32 * b + h]), w1 = vld1q_s16(&ws[32 * b + h + 8]);
          d = vmlal_s16(d, vget_low_s16(w0), vget_low_s16(q0));
          d = vmlal_high_s16(d, w0, q0);
          d = vmlal_s16(d, vget_low_s16(w1), vget_low_s16(q1));
          d = vmlal_high_s16(d, w1, q1);
        }
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(d), sx[b / per_block] * groups[b / per_group].scale);
      }
      y[i * ldy + r] = vaddvq_f32(acc);
    }
  }
}

}  // namespace

#include "qmatmul_decoded.h"

void gemv_rows(const QWeight& w, std::size_t r0, std::size_t r1, const QInput& in, float* y, std::size_t ldy) {
  const bool integer = plain_integer_codes(w) && w.group_size % 32 == 0 && in.m <= 8;
  if (integer && w.scheme.bits == 4 && in.x_pairs != nullptr) return gemv_int<4>(w, r0, r1, in, y, ldy);
  if (integer && w.scheme.bits == 8) return gemv_int<8>(w, r0, r1, in, y, ldy);
  decoded::gemv_rows(w, r0, r1, in, y, ldy);
}

void quantize_int8(const float* x, std::size_t cols, std::size_t block, int8_t* q, float* sx, int32_t* qsum) {
  scalar::quantize_int8(x, cols, block, q, sx, qsum);  // a small share of the work: the reference serves
}

void qdot_rows_int8(const QWeight& w, std::size_t r0, std::size_t r1, const QInputInt8& in, uint8_t* buf, float* y,
                    std::size_t ldy) {
  const bool aligned = in.block % 32 == 0 && w.cols % 32 == 0 && w.group_size % in.block == 0;
  if (aligned && w.scheme.bits == 4 && in.q_pairs != nullptr) return rows_4bit(w, r0, r1, in, buf, y, ldy);
  if (aligned && w.scheme.bits == 8 && w.format == QWeightFormat::kIntq) return rows_8bit(w, r0, r1, in, y, ldy);
  scalar::qdot_rows_int8(w, r0, r1, in, buf, y, ldy);
}

}  // namespace quantcore::neon
