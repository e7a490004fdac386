// GGUF (llama.cpp / ggml) block formats: quantization to q4_0, q4_1, q8_0 and dequantization
// of those and of the k-quants.
//
// Contract: the bytes are llama.cpp's blocks (ggml-common.h), little-endian, fp16 fields are
// IEEE binary16 bits. A row of `cols` values is cols / block_size consecutive blocks.
//   q4_0  (32 values, 18 bytes)  d:fp16, qs[16]: value j in the low nibble of qs[j], value
//         j + 16 in the high nibble.  x = d * (q - 8).
//   q4_1  (32, 20)  d:fp16, m:fp16, qs[16] as q4_0.  x = d * q + m.
//   q5_0  (32, 22)  d, qh[4] (bit j of the little-endian uint32 = bit 4 of value j), qs[16].
//         x = d * (q - 16).
//   q5_1  (32, 24)  d, m, qh[4], qs[16].  x = d * q + m.
//   q8_0  (32, 34)  d:fp16, qs[32]:int8.  x = d * q.
//   q2_k, q3_k, q4_k, q5_k, q6_k (256 values, 84/110/144/176/210 bytes), iq4_nl (32, 18),
//   iq4_xs (256, 136), mxfp4 (32, 17): see the block structs below and the scalar reference.
// (The i-quants with grids, tq*, mxfp4 and nvfp4 are decoded in Python: quantcore/gguf.py.)
//
// Quantization follows ggml's reference quantize_row_*_ref, which the gguf Python package
// mirrors; results are bit-exact with gguf.quants.quantize:
//   q4_0  max = the first value of largest |x| in the block; d = max / -8; id = 1 / d (0 when
//         d == 0); q = min(15, trunc(x * id + 8.5)).
//   q4_1  d = (max - min) / 15; id as above; q = min(15, trunc((x - min) * id + 0.5)); m = min.
//         min and max are the first values holding them (this fixes the sign of a zero).
//   q8_0  d = amax / 127; id as above; q = round half away from zero (x * id).
// Every product and sum is one float32 rounding (no FMA contraction); d and m are rounded to
// fp16 nearest-even after they were used in float32. A code conversion whose input is NaN or
// infinite (possible only when 1 / d overflows, i.e. for blocks of denormals) yields 0, as the
// x86 conversion numpy and ggml rely on does.
// Dequantization evaluates exactly gguf-py's float32 expressions, in its order.
#pragma once

#include <cstddef>
#include <cstdint>

namespace quantcore {

// Block layouts, byte for byte as in ggml-common.h. fp16 fields are raw bits. Kernels take
// byte pointers (numpy buffers need not be 2-byte aligned) and copy a block into these.
constexpr std::size_t kQK = 32;    // values per block of the "legacy" formats
constexpr std::size_t kQKK = 256;  // values per super-block of the k-quants

struct BlockQ4_0 { uint16_t d; uint8_t qs[kQK / 2]; };
struct BlockQ4_1 { uint16_t d, m; uint8_t qs[kQK / 2]; };
struct BlockQ5_0 { uint16_t d; uint8_t qh[4]; uint8_t qs[kQK / 2]; };
struct BlockQ5_1 { uint16_t d, m; uint8_t qh[4]; uint8_t qs[kQK / 2]; };
struct BlockQ8_0 { uint16_t d; int8_t qs[kQK]; };
// 16 groups of 16: scales[g] = (4-bit min << 4) | 4-bit scale; 2-bit q.
struct BlockQ2_K { uint8_t scales[kQKK / 16]; uint8_t qs[kQKK / 4]; uint16_t d, dmin; };
// 16 groups of 16 with 6-bit signed scales (offset 32); 2 low bits in qs, the third in hmask.
struct BlockQ3_K { uint8_t hmask[kQKK / 8]; uint8_t qs[kQKK / 4]; uint8_t scales[12]; uint16_t d; };
// 8 groups of 32 with 6-bit scales and mins packed in 12 bytes.
struct BlockQ4_K { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[kQKK / 2]; };
struct BlockQ5_K { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[kQKK / 8]; uint8_t qs[kQKK / 2]; };
// 16 groups of 16 with int8 scales; 6-bit q = 4 bits in ql, 2 in qh, offset 32.
struct BlockQ6_K { uint8_t ql[kQKK / 2]; uint8_t qh[kQKK / 4]; int8_t scales[kQKK / 16]; uint16_t d; };
// Non-linear 4-bit: q indexes kIq4nlValues.
struct BlockIq4Nl { uint16_t d; uint8_t qs[kQK / 2]; };
struct BlockIq4Xs { uint16_t d; uint16_t scales_h; uint8_t scales_l[kQKK / 64]; uint8_t qs[kQKK / 2]; };
// OCP MX fp4: an e8m0 scale byte and 32 e2m1 codes, nibbles as q4_0.
struct BlockMxfp4 { uint8_t e; uint8_t qs[kQK / 2]; };

static_assert(sizeof(BlockQ4_0) == 18, "q4_0 block is 18 bytes");
static_assert(sizeof(BlockQ4_1) == 20, "q4_1 block is 20 bytes");
static_assert(sizeof(BlockQ5_0) == 22, "q5_0 block is 22 bytes");
static_assert(sizeof(BlockQ5_1) == 24, "q5_1 block is 24 bytes");
static_assert(sizeof(BlockQ8_0) == 34, "q8_0 block is 34 bytes");
static_assert(sizeof(BlockQ2_K) == 84, "q2_k block is 84 bytes");
static_assert(sizeof(BlockQ3_K) == 110, "q3_k block is 110 bytes");
static_assert(sizeof(BlockQ4_K) == 144, "q4_k block is 144 bytes");
static_assert(sizeof(BlockQ5_K) == 176, "q5_k block is 176 bytes");
static_assert(sizeof(BlockQ6_K) == 210, "q6_k block is 210 bytes");
static_assert(sizeof(BlockIq4Nl) == 18, "iq4_nl block is 18 bytes");
static_assert(sizeof(BlockIq4Xs) == 136, "iq4_xs block is 136 bytes");
static_assert(sizeof(BlockMxfp4) == 17, "mxfp4 block is 17 bytes");

// The iq4_nl / iq4_xs code book (ggml's kvalues_iq4nl).
constexpr int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                     1,    13,   25,  38,  53,  69,  89,  113};
// The e2m1 values doubled (ggml's kvalues_mxfp4), so the e8m0 scale is applied at half:
// x = 2^(e - 128) * kMxfp4Values[q].
constexpr int8_t kMxfp4Values[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

// One signature per kernel; every ISA namespace (scalar, avx2, avx512) provides all.
// quantize_*: n_blocks blocks of 32 float32 values -> blocks of bytes. Returns the number of
// leading blocks written; it stops early, at the first block holding a NaN or an infinity.
// dequantize_*: n_blocks blocks -> n_blocks * block_size float32 values.
#define QUANTCORE_GGUF_KERNELS(X)                                                    \
  X(std::size_t, quantize_q4_0, (const float* src, uint8_t* dst, std::size_t n_blocks)) \
  X(std::size_t, quantize_q4_1, (const float* src, uint8_t* dst, std::size_t n_blocks)) \
  X(std::size_t, quantize_q8_0, (const float* src, uint8_t* dst, std::size_t n_blocks)) \
  X(void, dequantize_q4_0, (const uint8_t* src, float* dst, std::size_t n_blocks))      \
  X(void, dequantize_q4_1, (const uint8_t* src, float* dst, std::size_t n_blocks))      \
  X(void, dequantize_q8_0, (const uint8_t* src, float* dst, std::size_t n_blocks))      \
  X(void, dequantize_q5_0, (const uint8_t* src, float* dst, std::size_t n_blocks))      \
  X(void, dequantize_q5_1, (const uint8_t* src, float* dst, std::size_t n_blocks))      \
  X(void, dequantize_q2_k, (const uint8_t* src, float* dst, std::size_t n_blocks))      \
  X(void, dequantize_q3_k, (const uint8_t* src, float* dst, std::size_t n_blocks))      \
  X(void, dequantize_q4_k, (const uint8_t* src, float* dst, std::size_t n_blocks))      \
  X(void, dequantize_q5_k, (const uint8_t* src, float* dst, std::size_t n_blocks))      \
  X(void, dequantize_q6_k, (const uint8_t* src, float* dst, std::size_t n_blocks))      \
  X(void, dequantize_iq4_nl, (const uint8_t* src, float* dst, std::size_t n_blocks))    \
  X(void, dequantize_iq4_xs, (const uint8_t* src, float* dst, std::size_t n_blocks))    \
  X(void, dequantize_mxfp4, (const uint8_t* src, float* dst, std::size_t n_blocks))

#define QUANTCORE_DECLARE_KERNEL(ret, name, args) ret name args;
namespace scalar { QUANTCORE_GGUF_KERNELS(QUANTCORE_DECLARE_KERNEL) }
namespace avx2 { QUANTCORE_GGUF_KERNELS(QUANTCORE_DECLARE_KERNEL) }
namespace avx512 { QUANTCORE_GGUF_KERNELS(QUANTCORE_DECLARE_KERNEL) }
#undef QUANTCORE_DECLARE_KERNEL

#define QUANTCORE_KERNEL_POINTER(ret, name, args) ret(*name) args;
struct GgufKernels {
  QUANTCORE_GGUF_KERNELS(QUANTCORE_KERNEL_POINTER)
};
#undef QUANTCORE_KERNEL_POINTER

// The table for the ISA currently selected (see dispatch.h).
const GgufKernels& gguf_kernels();

// Scalar helpers shared with the SIMD files (defined in gguf_scalar.cc, so that no ISA's copy of
// them can be picked by the linker for another).
namespace scalar {
float fp16_to_f32(uint16_t h);   // exact
uint16_t f32_to_fp16(float x);   // nearest-even; overflow -> inf; NaN -> quiet NaN
// q4_k / q5_k: the 6-bit scale and min of group g (0..7) from the 12 packed bytes.
void k_scale_min(const uint8_t* scales, int g, uint8_t* sc, uint8_t* mn);
// q3_k: the signed scale (-32..31) of group g (0..15) from the 12 packed bytes.
int q3_k_scale(const uint8_t* scales, int g);
// iq4_xs: the signed scale (-32..31) of group g (0..7).
int iq4_xs_scale(uint16_t scales_h, const uint8_t* scales_l, int g);
// mxfp4: half the e8m0 scale, 2^(e - 128), exact (ggml's ggml_e8m0_to_fp32_half).
float e8m0_half(uint8_t e);
}  // namespace scalar

}  // namespace quantcore
