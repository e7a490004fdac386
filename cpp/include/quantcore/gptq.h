// GPTQ's per-column loop (Frantar et al., 2022, Algorithm 1, the inner loop of one block).
//
// Contract. W1 is one block of `block` columns of the weight (float32, rows of stride ldw), Hinv1
// the matching [block, block] float32 slice of the upper Cholesky factor of H^-1. For each
// column i in [c0, c1) and every row r, in this order:
//     q      = the code of W1[r, i] under the parameters of row r's group for column i
//     dq     = the value q decodes to (exactly what QuantizedTensor.dequantize gives)
//     err    = (W1[r, i] - dq) / Hinv1[i, i]                 (two float32 roundings)
//     W1[r, j] -= err * Hinv1[i, j]  for j in (i, block)     (a float32 product, then a float32
//                                                             difference: no FMA contraction)
//     codes[r, i] = q, Err1[r, i] = err, losses[r] += err^2 / 2 (in double)
// Rows are independent, so kernels split them across threads and SIMD lanes run along j. Every
// ISA produces the same bits as the scalar reference.
//
// The grids and their parameters are those of quantcore.quantize, computed by the same rules:
//   kSymmetric / kAsymmetric  intq.h's group_params (scale rounded to the scale type first) and
//                             encode_one / decode_one.
//   kQ4_0, kQ4_1, kQ8_0       ggml's reference quantizers as restated in gguf.h: the code is
//                             computed with the float32 d (id = 1 / d), the decoded value with d
//                             (and m) rounded to fp16. GPTQ's updated weights can leave the
//                             block's range, so codes are clamped to the format's range (0..15;
//                             -128..127 for q8_0); a non-finite x * id gives code 0 (q8_0: q = 0)
//                             as ggml's conversion does on x86.
#pragma once

#include <cstddef>
#include <cstdint>

#include "quantcore/intq.h"

namespace quantcore {

enum class GptqGrid : int { kSymmetric = 0, kAsymmetric = 1, kQ4_0 = 2, kQ4_1 = 3, kQ8_0 = 4 };

// One group's parameters for one row, in the form the column loop uses.
struct GptqParams {
  float scale;      // int grids: the stored (rounded) scale; GGUF: the float32 d
  float inv;        // GGUF: id = 1 / d (0 when d == 0)
  float min;        // q4_1: the float32 minimum the codes are measured from
  float dq_scale;   // the decoding scale: int grids = scale, GGUF = fp16(d)
  float dq_offset;  // q4_1: fp16(m); else 0
  int32_t zero;     // int grids: the zero point (symmetric: the offset 2^(b-1))
  int32_t code_min;
  int32_t code_max;
};
static_assert(sizeof(GptqParams) == 32, "GptqParams is 8 words (the bindings hold it in bytes)");

struct GptqScheme {
  GptqGrid grid;
  IntqScheme intq;  // kind, bits and scale type of the int grids (unused for GGUF)
};

// One signature per kernel; every ISA namespace provides it.
//   w      W1's first element (row r, column 0 at w[r * ldw]); rows `rows`, `block` columns.
//   hinv   Hinv1 [block, block], row stride `block`.
//   params group g of row r at params[g * params_stride + r]; group_of[i] = g of column i.
//   codes  row r, column i at codes[r * ldc + i] (one byte per code).
//   err    Err1 [rows, block] at err[r * block + i].  losses [rows].
#define QUANTCORE_GPTQ_KERNELS(X)                                                            \
  X(void, gptq_columns,                                                                      \
    (float* w, std::size_t ldw, std::size_t rows, std::size_t block, std::size_t c0,         \
     std::size_t c1, const float* hinv, const GptqScheme& s, const GptqParams* params,       \
     std::size_t params_stride, const int32_t* group_of, uint8_t* codes, std::size_t ldc,    \
     float* err, double* losses))

#define QUANTCORE_DECLARE_KERNEL(ret, name, args) ret name args;
namespace scalar { QUANTCORE_GPTQ_KERNELS(QUANTCORE_DECLARE_KERNEL) }
namespace avx2 { QUANTCORE_GPTQ_KERNELS(QUANTCORE_DECLARE_KERNEL) }
namespace avx512 { QUANTCORE_GPTQ_KERNELS(QUANTCORE_DECLARE_KERNEL) }
#undef QUANTCORE_DECLARE_KERNEL

#define QUANTCORE_KERNEL_POINTER(ret, name, args) ret(*name) args;
struct GptqKernels {
  QUANTCORE_GPTQ_KERNELS(QUANTCORE_KERNEL_POINTER)
};
#undef QUANTCORE_KERNEL_POINTER

// The table for the ISA currently selected (see dispatch.h).
const GptqKernels& gptq_kernels();

// Scalar helpers shared by every ISA and the bindings.
namespace scalar {
// The parameters of one group of n values x (all finite) under s, and what QuantizedTensor
// stores for it: *stored_scale (the scale / d as a value of its storage type) and *stored_zero
// (the integer zero point, q4_1's fp16 m, else 0). Returns kScaleOverflow when the int grid's
// scale does not fit the scale type, or a GGUF d or m does not fit fp16.
IntqStatus gptq_params(const float* x, std::size_t n, const GptqScheme& s, GptqParams* p,
                       float* stored_scale, float* stored_zero);
// The code of x under p, and in *dq the value it decodes to.
uint8_t gptq_encode(float x, const GptqScheme& s, const GptqParams& p, float* dq);
// The clipping search of the reference quantizer (IST-DASLab quant.py, mse=True): for each
// factor shrinks[k] (in order), the parameters gptq_params finds for the n values shrinks[k] * x,
// scored by sum_j weight[j] * (x_j - dq_j)^2 (weight nullptr: all 1; the reference uses
// |x_j - dq_j|^2.4 unweighted; GPTQ weighs by diag(H)). Keeps the first factor of least error:
// its parameters in *p, *stored_scale, *stored_zero and the factor in *chosen. scratch holds
// max(n, 2) floats. kScaleOverflow as gptq_params (for any factor tried).
IntqStatus gptq_clip_params(const float* x, std::size_t n, const float* weight, const float* shrinks,
                            std::size_t n_shrinks, const GptqScheme& s, float* scratch,
                            GptqParams* p, float* stored_scale, float* stored_zero, float* chosen);
}  // namespace scalar

}  // namespace quantcore
