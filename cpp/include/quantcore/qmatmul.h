// Quantized matmul: y = x @ W.T straight from a QuantizedTensor's packed codes.
//
// Contract. W is [rows = out_features, cols = in_features], held as in quantcore.quantize:
// codes packed per row (pack.h's bit order, each row starting on a byte boundary), one scale per
// group of group_size consecutive values along cols. The value of a weight is exactly what
// QuantizedTensor.dequantize computes (float32):
//   kIntq    (code - zero) * scale (intq.h: symmetric zero = 2^(b-1), asymmetric stored zero),
//            nf4[code] * scale for kNf4. q4_0 / q8_0 are kIntq symmetric, 4 / 8 bits, group 32.
//   kQ4_1    code * d + m (two float32 roundings, gguf's order), m float16 in `zeros`.
//   kE4m3fn / kE5m2   fp8 decode(code) * scale.
// The dequantized weight is never materialized: GEMV decodes codes in registers; GEMM decodes
// a tile of rows (a few rows x cols) into a float32 buffer that stays in L2, then runs an fp32
// register-blocked microkernel over all batch rows. Float paths differ from a float64 reference
// only by summation order.
//
// The int8-activation path (activations="int8"): every row of x is cut into blocks of
// `block` values (at most 256, within one weight group: see python/quantcore/matmul.py), each
// quantized as sx = absmax / 127 (float32), q = clamp(rint(x / sx), -127, 127) (q = 0 when
// absmax = 0). Per block and weight row: idot = sum(code * q) exactly in int32, and
//   y += sx * (scale * (idot - zero * sum(q)) + offset * sum(q))
// with offset = m for q4_1 (zero = 0 there) and 0 otherwise; the integer part is exact on every
// ISA, only the float epilogue's summation order may differ.
#pragma once

#include <cstddef>
#include <cstdint>

#include "quantcore/intq.h"

namespace quantcore {

enum class QWeightFormat : int { kIntq = 0, kQ4_1 = 1, kE4m3fn = 2, kE5m2 = 3 };

struct QWeight {
  QWeightFormat format;
  IntqScheme scheme;         // kind and bits (kIntq), bits 4 (kQ4_1) or 8 (fp8); scale type
  const uint8_t* codes;      // [rows, row_bytes]
  std::size_t rows, cols, row_bytes;
  std::size_t group_size;    // divides cols; a per-row or whole-tensor scale has group_size = cols
  std::size_t scale_stride;  // scales per row (cols / group_size), or 0: one scale for the tensor
  const void* scales;        // scale_type storage (float, or float16 / bfloat16 bits)
  const void* zeros;         // kIntq asymmetric: uint8; kQ4_1: float16 bits of m; else null
};

// Codes that are integers the int8 path can multiply: kIntq but not nf4 ("plain": the value is
// (code - zero) * scale), and kQ4_1 (code * d + m, an offset term besides).
inline bool plain_integer_codes(const QWeight& w) {
  return w.format == QWeightFormat::kIntq && w.scheme.kind != IntqKind::kNf4;
}
inline bool integer_codes(const QWeight& w) { return plain_integer_codes(w) || w.format == QWeightFormat::kQ4_1; }

// x of one call, prepared once by the caller (qmatmul_dispatch.cc).
struct QInput {
  const float* x;         // [m, cols] row-major (gathered through perm, float32)
  const float* x_pairs;   // null, or (bits 4, cols % 32 == 0) x with each block of 32 reordered
                          // as the 16 even then the 16 odd positions (the nibble order of a byte)
  const float* x_wide;    // null, or (bits 4, cols % 64 == 0) x with each block of 64 in the
                          // order 8j + t -> 8t + j (t, j < 8): 4-bit code 8j + t sits in bits
                          // 4t.. of 32-bit word j of the block's 32 bytes
  const float* x_panels;  // null, or x in panels of kPanel rows: panel p holds [cols][kPanel]
                          // (rows p*kPanel.., zero-padded), for the GEMM microkernel
  std::size_t m;
  const float* x_fp8 = nullptr;  // null, or (fp8, cols % 64 == 0) x with each block of 64 in the
                                 // order of avx512vbmi::gemv_fp8's unpacked words: position
                                 // 16k + 4L + d holds 16L + 8(k / 2) + 2d + k % 2 (k, L, d < 4)
};

constexpr std::size_t kPanel = 32;

// The int8-quantized x (activations="int8").
struct QInputInt8 {
  const int8_t* q;       // [m, cols]
  const int8_t* q_pairs; // null, or reordered like QInput::x_pairs
  const float* sx;       // [m, n_blocks] block scales
  const int32_t* qsum;   // [m, n_blocks] sum of q per block
  std::size_t m, block, n_blocks;
  const int8_t* q_nib = nullptr;  // null, or (bits 4, cols % 64 == 0) q with each block of 128
                                  // as its 64 even then its 64 odd positions: the low and the high
                                  // nibbles of the block's 64 bytes (a last block of 64: 32 and 32)
};

// One signature per kernel; every ISA namespace (scalar, avx2, avx512, neon) provides all. Rows
// [r0, r1) of W; y[i * ldy + r] for batch row i.
#define QUANTCORE_QMATMUL_KERNELS(X)                                                          \
  /* Small batches: y[i, r] = sum_k x[i, k] * W[r, k] for i < in.m (in.m <= 8). */            \
  X(void, gemv_rows, (const QWeight& w, std::size_t r0, std::size_t r1, const QInput& in,     \
                      float* y, std::size_t ldy))                                             \
  /* Large batches: the same from x_panels, W rows decoded into buf (a few rows * cols). */   \
  X(void, gemm_rows, (const QWeight& w, std::size_t r0, std::size_t r1, const QInput& in,     \
                      float* buf, float* y, std::size_t ldy))                                 \
  /* x [cols] -> q, sx, qsum in blocks of `block` (the last may be shorter): see above. */   \
  X(void, quantize_int8, (const float* x, std::size_t cols, std::size_t block, int8_t* q,     \
                          float* sx, int32_t* qsum))                                          \
  /* The int8-activation path (integer schemes only: kIntq but not kNf4, kQ4_1). */          \
  X(void, qdot_rows_int8, (const QWeight& w, std::size_t r0, std::size_t r1,                 \
                           const QInputInt8& in, uint8_t* buf, float* y, std::size_t ldy))

#define QUANTCORE_DECLARE_KERNEL(ret, name, args) ret name args;
namespace scalar { QUANTCORE_QMATMUL_KERNELS(QUANTCORE_DECLARE_KERNEL) }
namespace avx2 { QUANTCORE_QMATMUL_KERNELS(QUANTCORE_DECLARE_KERNEL) }
namespace avx512 { QUANTCORE_QMATMUL_KERNELS(QUANTCORE_DECLARE_KERNEL) }
namespace neon { QUANTCORE_QMATMUL_KERNELS(QUANTCORE_DECLARE_KERNEL) }
#undef QUANTCORE_DECLARE_KERNEL

#define QUANTCORE_KERNEL_POINTER(ret, name, args) ret(*name) args;
struct QmatmulKernels {
  QUANTCORE_QMATMUL_KERNELS(QUANTCORE_KERNEL_POINTER)
};
#undef QUANTCORE_KERNEL_POINTER

const QmatmulKernels& qmatmul_kernels();

// AVX-512 VNNI variant of the int8 path for integer codes (qmatmul_avx512vnni.cc), called by
// avx512::qdot_rows_int8 when the CPU has VNNI; returns false (nothing written) where it does
// not apply.
namespace avx512vnni {
bool qdot_rows_int8(const QWeight& w, std::size_t r0, std::size_t r1, const QInputInt8& in, float* y,
                    std::size_t ldy);
}

// AVX-512 VNNI + VBMI variant for 2- and 3-bit codes at in.m <= 8 (qmatmul_avx512vnnivbmi.cc),
// called by avx512::qdot_rows_int8 when the CPU has both; returns false (nothing written) where
// it does not apply.
namespace avx512vnnivbmi {
bool qdot_rows_int8(const QWeight& w, std::size_t r0, std::size_t r1, const QInputInt8& in, float* y,
                    std::size_t ldy);
}

// AVX-512 VBMI fp8 GEMV (qmatmul_avx512vbmi.cc), called by avx512::gemv_rows when the CPU has
// VBMI; returns false (nothing written) where it does not apply (in.m <= 8, group % 64 == 0,
// in.x_fp8 set).
namespace avx512vbmi {
bool gemv_fp8(const QWeight& w, std::size_t r0, std::size_t r1, const QInput& in, float* y, std::size_t ldy);
// 2- and 3-bit integer codes (in.m <= 8, cols % 64 == 0, group % 16 == 0).
bool gemv_lowbit(const QWeight& w, std::size_t r0, std::size_t r1, const QInput& in, float* y, std::size_t ldy);
}

// Rows per GEMM task (the decode buffer holds kGemmRows * cols floats) and the size of the
// code buffer of qdot_rows_int8 (cols bytes).
constexpr std::size_t kGemmRows = 24;

// Shared scalar helpers (the reference, and the SIMD tails / fallbacks).
namespace scalar {
// dst[i * cols + k] = W[r0 + i, k] for i < n, bit-identical to QuantizedTensor.dequantize.
void decode_rows(const QWeight& w, std::size_t r0, std::size_t n, float* dst);
// codes[k] = the unpacked code of W[r, k].
void unpack_row(const QWeight& w, std::size_t r, uint8_t* codes);
// Group g of row r in the integer form of the int8 path: W = (code - zero) * scale + offset.
struct IntGroup {
  float scale;
  int32_t zero;
  float offset;
};
IntGroup int_group(const QWeight& w, std::size_t r, std::size_t g);
}  // namespace scalar

// The whole call (bindings): y [m, rows] = x [m, cols] @ W.T (+ bias), over the thread pool.
// int8_activations selects the integer path (block as above). bias may be null.
void qmatmul(const QWeight& w, const float* x, std::size_t m, const float* bias, bool int8_activations,
             std::size_t block, float* y);

}  // namespace quantcore
