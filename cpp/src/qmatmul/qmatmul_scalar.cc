// The reference: decode a row exactly as QuantizedTensor.dequantize does, then dot it. Written
// for clarity; the SIMD files must match it within float summation-order error (float paths)
// or exactly in the integer dot products (int8 path).
#include <algorithm>
#include <cmath>
#include <vector>

#include "quantcore/fp8.h"
#include "quantcore/intq.h"
#include "quantcore/pack.h"
#include "quantcore/qmatmul.h"

namespace quantcore::scalar {
namespace {

std::size_t scale_index(const QWeight& w, std::size_t r, std::size_t g) {
  return w.scale_stride == 0 ? 0 : r * w.scale_stride + g;
}

std::size_t scale_bytes(ScaleType t) { return t == ScaleType::kFloat32 ? 4 : 2; }

}  // namespace

void decode_rows(const QWeight& w, std::size_t r0, std::size_t n, float* dst) {
  const std::size_t cols = w.cols;
  const std::size_t n_groups = cols / w.group_size;
  switch (w.format) {
    case QWeightFormat::kIntq: {
      const auto* sp = static_cast<const uint8_t*>(w.scales) + r0 * w.scale_stride * scale_bytes(w.scheme.scale_type);
      const auto* zp = w.zeros == nullptr ? nullptr : static_cast<const uint8_t*>(w.zeros) + r0 * w.scale_stride;
      intq_kernels().dequantize_rows(w.codes + r0 * w.row_bytes, n, cols, w.group_size, w.scheme, sp, zp,
                                     w.scale_stride, dst);
      return;
    }
    case QWeightFormat::kQ4_1:
      for (std::size_t i = 0; i < n; ++i) {
        const uint8_t* row = w.codes + (r0 + i) * w.row_bytes;
        for (std::size_t g = 0; g < n_groups; ++g) {
          const float d = load_scale(w.scales, scale_index(w, r0 + i, g), w.scheme.scale_type);
          const float m = load_scale(w.zeros, scale_index(w, r0 + i, g), ScaleType::kFloat16);
          // a byte's two codes per step (a loop the compiler vectorizes; per code it ran at a
          // tenth of numpy's GEMM in q4_1's float GEMM); code * d rounded, then + m: gguf's order
          const uint8_t* bytes = row + g * w.group_size / 2;
          float* out = dst + i * cols + g * w.group_size;
          for (std::size_t j = 0; j < w.group_size / 2; ++j) {
            out[2 * j] = static_cast<float>(bytes[j] & 15) * d + m;
            out[2 * j + 1] = static_cast<float>(bytes[j] >> 4) * d + m;
          }
        }
      }
      return;
    case QWeightFormat::kE4m3fn:
    case QWeightFormat::kE5m2: {
      const Fp8Format fmt = w.format == QWeightFormat::kE4m3fn ? Fp8Format::kE4M3FN : Fp8Format::kE5M2;
      for (std::size_t i = 0; i < n; ++i) {
        float* out = dst + i * cols;
        fp8_kernels().decode_f32(w.codes + (r0 + i) * w.row_bytes, out, cols, fmt);
        for (std::size_t g = 0; g < n_groups; ++g) {
          const float s = load_scale(w.scales, scale_index(w, r0 + i, g), w.scheme.scale_type);
          for (std::size_t k = g * w.group_size; k < (g + 1) * w.group_size; ++k) out[k] *= s;
        }
      }
      return;
    }
  }
}

void unpack_row(const QWeight& w, std::size_t r, uint8_t* codes) {
  pack_kernels().unpack_bits(w.codes + r * w.row_bytes, w.cols, w.scheme.bits, codes);
}

IntGroup int_group(const QWeight& w, std::size_t r, std::size_t g) {
  const std::size_t i = scale_index(w, r, g);
  const float scale = load_scale(w.scales, i, w.scheme.scale_type);
  if (w.format == QWeightFormat::kQ4_1) return {scale, 0, load_scale(w.zeros, i, ScaleType::kFloat16)};
  if (w.scheme.kind == IntqKind::kAsymmetric) return {scale, static_cast<const uint8_t*>(w.zeros)[i], 0.0f};
  return {scale, 1 << (w.scheme.bits - 1), 0.0f};
}

void gemv_rows(const QWeight& w, std::size_t r0, std::size_t r1, const QInput& in, float* y, std::size_t ldy) {
  std::vector<float> row(w.cols);
  for (std::size_t r = r0; r < r1; ++r) {
    decode_rows(w, r, 1, row.data());
    for (std::size_t i = 0; i < in.m; ++i) {
      const float* x = in.x + i * w.cols;
      float sum = 0.0f;
      for (std::size_t k = 0; k < w.cols; ++k) sum += x[k] * row[k];
      y[i * ldy + r] = sum;
    }
  }
}

void gemm_rows(const QWeight& w, std::size_t r0, std::size_t r1, const QInput& in, float* buf, float* y,
               std::size_t ldy) {
  decode_rows(w, r0, r1 - r0, buf);
  for (std::size_t i = 0; i < in.m; ++i) {
    const float* x = in.x + i * w.cols;
    for (std::size_t r = r0; r < r1; ++r) {
      const float* wr = buf + (r - r0) * w.cols;
      float sum = 0.0f;
      for (std::size_t k = 0; k < w.cols; ++k) sum += x[k] * wr[k];
      y[i * ldy + r] = sum;
    }
  }
}

void quantize_int8(const float* x, std::size_t cols, std::size_t block, int8_t* q, float* sx, int32_t* qsum) {
  for (std::size_t b = 0, k0 = 0; k0 < cols; ++b, k0 += block) {
    const std::size_t k1 = std::min(cols, k0 + block);
    float amax = 0.0f;
    for (std::size_t k = k0; k < k1; ++k) amax = std::max(amax, std::fabs(x[k]));
    const float s = amax / 127.0f;
    int32_t sum = 0;
    for (std::size_t k = k0; k < k1; ++k) {
      const float v = s == 0.0f ? 0.0f : std::nearbyint(x[k] / s);
      q[k] = static_cast<int8_t>(std::min(127.0f, std::max(-127.0f, v)));
      sum += q[k];
    }
    sx[b] = s;
    qsum[b] = sum;
  }
}

void qdot_rows_int8(const QWeight& w, std::size_t r0, std::size_t r1, const QInputInt8& in, uint8_t* buf, float* y,
                    std::size_t ldy) {
  for (std::size_t r = r0; r < r1; ++r) {
    unpack_row(w, r, buf);
    for (std::size_t i = 0; i < in.m; ++i) {
      const int8_t* q = in.q + i * w.cols;
      float acc = 0.0f;
      for (std::size_t b = 0; b < in.n_blocks; ++b) {
        const std::size_t k0 = b * in.block, k1 = std::min(w.cols, k0 + in.block);
        int32_t idot = 0;
        for (std::size_t k = k0; k < k1; ++k) idot += static_cast<int32_t>(buf[k]) * q[k];
        const IntGroup g = int_group(w, r, k0 / w.group_size);
        const int32_t qs = in.qsum[i * in.n_blocks + b];
        const float t = g.scale * static_cast<float>(idot - g.zero * qs) + g.offset * static_cast<float>(qs);
        acc += in.sx[i * in.n_blocks + b] * t;
      }
      y[i * ldy + r] = acc;
    }
  }
}

}  // namespace quantcore::scalar
