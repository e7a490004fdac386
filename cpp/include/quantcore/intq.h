// Group-wise integer and NF4 quantization of float32 weights.
//
// Contract. A weight matrix [rows, cols] is split along each row into groups of group_size
// consecutive values; each group gets one scale (and, asymmetric, one integer zero point).
// All arithmetic is float32, division is IEEE x / scale, rounding is to nearest, ties to even
// (the default MXCSR mode; nearbyint semantics in the scalar code, cvtps_epi32 in SIMD).
//
//   kSymmetric (b bits):   qmax = 2^(b-1) - 1, scale = absmax / qmax,
//                          q = clamp(rint(x / scale), -qmax, qmax), code = q + 2^(b-1)
//                          (offset binary, so codes are unsigned: 1 .. 2^b - 1; code 0 is
//                          unused, int2 uses 3 levels {-1, 0, 1}, int3 uses 7).
//                          x ~= (code - 2^(b-1)) * scale.
//   kAsymmetric (b bits):  lo = min(min(x), 0), hi = max(max(x), 0) (the range always holds 0,
//                          so 0 is exactly representable), scale = (hi - lo) / (2^b - 1),
//                          zero = clamp(rint(-lo / scale), 0, 2^b - 1),
//                          code = clamp(rint(x / scale) + zero, 0, 2^b - 1).
//                          x ~= (code - zero) * scale.
//   kNf4 (4 bits):         scale = absmax; code = the index of the nearest entry of the NF4
//                          code book (QLoRA, bitsandbytes) to x / scale: the number of
//                          midpoints between neighbouring entries that x / scale exceeds, so a
//                          tie goes to the lower entry, as in bitsandbytes. x ~= nf4[code] * scale.
//
// The scale is rounded to its storage type (float32, float16 or bfloat16; nearest-even, as
// numpy's astype and _mm512_cvtps_ph do) BEFORE the codes are computed, so dequantization with
// the stored scale is consistent: |x - dequantized| <= scale / 2 wherever no clamping occurs.
// Special groups:
//   all zero              scale = 1, every code decodes to exactly 0.
//   constant c != 0       scale = |c| (rounded), so the group decodes to exactly c whenever |c|
//                         is representable in the scale type (absmax / qmax would not be).
//   scale rounds to 0     (a range tiny for the scale type, e.g. below 2^-25 for float16):
//                         scale = the smallest positive value of the type; no clamping results.
//   scale not finite      (float16 overflow past 65504, or hi - lo overflowing float32):
//                         IntqStatus::kScaleOverflow; NaN or +-inf input: kNonFinite.
// Codes are packed per row in the bit order of quantcore.pack (see pack.h); every row starts on
// a byte boundary.
#pragma once

#include <cstddef>
#include <cstdint>

namespace quantcore {

enum class IntqKind : int { kSymmetric = 0, kAsymmetric = 1, kNf4 = 2 };
enum class ScaleType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };
enum class IntqStatus : int { kOk = 0, kNonFinite = 1, kScaleOverflow = 2 };

struct IntqScheme {
  IntqKind kind;
  int bits;  // 2..8 for the integer kinds, 4 for kNf4
  ScaleType scale_type;
};

// One group's parameters: x ~= (code - zero) * scale (kNf4: nf4[code] * scale). For kSymmetric
// zero is the offset 2^(b-1); for kNf4 it is 0. Codes are clamped to [code_min, code_max].
struct GroupParams {
  float scale;
  int32_t zero;
  int32_t code_min;
  int32_t code_max;
};

// min, max and whether every value is finite (no NaN, no +-inf).
struct Range {
  float lo;
  float hi;
  bool finite;
};

// The NF4 code book, exactly as bitsandbytes defines it (float32), and the float32 midpoints
// between neighbouring entries that encoding compares against.
extern const float kNf4Codebook[16];
extern const float kNf4Midpoints[15];

// One signature per kernel; every ISA namespace (scalar, avx2, avx512, neon) provides all.
#define QUANTCORE_INTQ_KERNELS(X)                                                             \
  X(Range, range_f32, (const float* src, std::size_t n))                                      \
  /* p[g] = the parameters of group g of n_groups consecutive groups of group_size floats at  \
     src. On failure returns the status of the first failing group and sets *bad_group. */   \
  X(IntqStatus, params_f32, (const float* src, std::size_t group_size, std::size_t n_groups,  \
                             const IntqScheme& s, GroupParams* p, std::size_t* bad_group))    \
  /* codes[i] = the unpacked code of src[i] under p (one byte per code). */                    \
  X(void, encode_group, (const float* src, std::size_t n, const IntqScheme& s,                \
                         const GroupParams& p, uint8_t* codes))                               \
  /* dst[i] = the value codes[i] (one byte per code) stands for under p. */                    \
  X(void, decode_group, (const uint8_t* codes, std::size_t n, const IntqScheme& s,            \
                         const GroupParams& p, float* dst))                                   \
  /* Fused quantize + pack of `rows` rows of `cols` floats in groups of group_size (which    \
     divides cols). Row r's packed codes go to codes + r * packed_bytes(cols, bits); group g  \
     of row r writes scales[r * cols/group_size + g] in s.scale_type's storage format (float, \
     or uint16_t bits for float16 / bfloat16) and zeros[same] when kAsymmetric. With `fixed`  \
     non-null every group uses *fixed and scales/zeros are not written (a scale for the whole \
     tensor). On failure returns the status and sets *bad_group (r * n_groups + g). */        \
  X(IntqStatus, quantize_rows, (const float* src, std::size_t rows, std::size_t cols,         \
                                std::size_t group_size, const IntqScheme& s,                  \
                                const GroupParams* fixed, uint8_t* codes, void* scales,       \
                                uint8_t* zeros, std::size_t* bad_group))                      \
  /* The inverse: unpack + dequantize into dst [rows, cols]. Group g of row r uses            \
     scales[r * scale_row_stride + g] (storage format as above) and zeros[same] (zeros null   \
     unless kAsymmetric); a stride of 0 gives every row the same scales. */                  \
  X(void, dequantize_rows, (const uint8_t* codes, std::size_t rows, std::size_t cols,         \
                            std::size_t group_size, const IntqScheme& s, const void* scales,  \
                            const uint8_t* zeros, std::size_t scale_row_stride, float* dst))

#define QUANTCORE_DECLARE_KERNEL(ret, name, args) ret name args;
namespace scalar { QUANTCORE_INTQ_KERNELS(QUANTCORE_DECLARE_KERNEL) }
namespace avx2 { QUANTCORE_INTQ_KERNELS(QUANTCORE_DECLARE_KERNEL) }
namespace avx512 { QUANTCORE_INTQ_KERNELS(QUANTCORE_DECLARE_KERNEL) }
namespace neon { QUANTCORE_INTQ_KERNELS(QUANTCORE_DECLARE_KERNEL) }
#undef QUANTCORE_DECLARE_KERNEL

#define QUANTCORE_KERNEL_POINTER(ret, name, args) ret(*name) args;
struct IntqKernels {
  QUANTCORE_INTQ_KERNELS(QUANTCORE_KERNEL_POINTER)
};
#undef QUANTCORE_KERNEL_POINTER

// The table for the ISA currently selected (see dispatch.h).
const IntqKernels& intq_kernels();

// Scalar helpers shared by every ISA and the bindings. The SIMD params_f32 restate group_params
// lane for lane for blocks of groups and hand every special case (NaN, inf, scale overflow)
// back to the scalar code, so all ISAs produce the same parameters (tested bit for bit).
namespace scalar {
// x rounded to the scale type, nearest-even, returned as the float32 holding that value
// (+inf past the type's range). x >= 0 and finite.
float round_scale(float x, ScaleType t);
// The parameters of a group whose values span [lo, hi] (both finite).
IntqStatus group_params(float lo, float hi, const IntqScheme& s, GroupParams* p);
uint8_t encode_one(float x, const IntqScheme& s, const GroupParams& p);
// Scale i of an array in the storage format of `t`; store_scale needs a value of type t.
void store_scale(void* scales, std::size_t i, float value, ScaleType t);
float load_scale(const void* scales, std::size_t i, ScaleType t);
float decode_one(uint8_t code, const IntqScheme& s, const GroupParams& p);
}  // namespace scalar

}  // namespace quantcore
