// The row loop shared by every ISA's quantize_rows / dequantize_rows: per batch of groups, the
// parameters (params_f32), then the codes into a row buffer (L1-resident); then one pack of the
// whole row. Each ISA file instantiates it with its own kernels.
//
// The anonymous namespace gives each including file its own copy, compiled with that file's
// flags (a shared inline definition could be merged across ISAs by the linker).
#pragma once

#include <vector>

#include "quantcore/intq.h"
#include "quantcore/pack.h"

namespace quantcore {
namespace {

struct RowKernels {
  IntqStatus (*params_f32)(const float*, std::size_t, std::size_t, const IntqScheme&, GroupParams*,
                          std::size_t*);
  void (*encode_group)(const float*, std::size_t, const IntqScheme&, const GroupParams&, uint8_t*);
  void (*decode_group)(const uint8_t*, std::size_t, const IntqScheme&, const GroupParams&, float*);
  bool (*pack_bits)(const uint8_t*, std::size_t, int, uint8_t*);
  void (*unpack_bits)(const uint8_t*, std::size_t, int, uint8_t*);
};

// Groups are handled in batches of about 16 KB of floats (L1-resident): first the parameters
// of the whole batch, then its codes. A batch lets the parameter kernel work on many groups at
// once (SIMD across groups) and keeps the floats in L1 for the second pass.
constexpr std::size_t kBatchFloats = 4096;

inline IntqStatus quantize_rows_with(const RowKernels& k, const float* src, std::size_t rows,
                                     std::size_t cols, std::size_t group_size, const IntqScheme& s,
                                     const GroupParams* fixed, uint8_t* codes, void* scales,
                                     uint8_t* zeros, std::size_t* bad_group) {
  const std::size_t n_groups = cols / group_size;
  const std::size_t row_bytes = packed_bytes(cols, s.bits);
  const std::size_t batch = group_size >= kBatchFloats ? 1 : kBatchFloats / group_size;
  std::vector<GroupParams> params(fixed != nullptr ? 0 : batch);
  // 8-bit codes are their own packed form: write them straight into the output row.
  std::vector<uint8_t> buffer(s.bits == 8 ? 0 : cols);
  for (std::size_t r = 0; r < rows; ++r) {
    const float* row = src + r * cols;
    uint8_t* packed = codes + r * row_bytes;
    uint8_t* row_codes = s.bits == 8 ? packed : buffer.data();
    for (std::size_t g0 = 0; g0 < n_groups; g0 += batch) {
      const std::size_t count = g0 + batch < n_groups ? batch : n_groups - g0;
      const float* x = row + g0 * group_size;
      if (fixed == nullptr) {
        std::size_t bad = 0;
        const IntqStatus status = k.params_f32(x, group_size, count, s, params.data(), &bad);
        if (status != IntqStatus::kOk) {
          *bad_group = r * n_groups + g0 + bad;
          return status;
        }
        for (std::size_t g = 0; g < count; ++g) {
          scalar::store_scale(scales, r * n_groups + g0 + g, params[g].scale, s.scale_type);
          if (s.kind == IntqKind::kAsymmetric) zeros[r * n_groups + g0 + g] = static_cast<uint8_t>(params[g].zero);
        }
      }
      // While this batch is encoded from L1, prefetch the next one (the following floats in
      // memory, across the row end too) so DRAM keeps streaming instead of idling; a prefetch
      // past the end of the input is harmless (it never faults).
      const char* next = reinterpret_cast<const char*>(x + count * group_size);
      const std::size_t lines_per_group = (group_size * sizeof(float) + 63) / 64;
      for (std::size_t g = 0; g < count; ++g) {
        for (std::size_t l = 0; l < lines_per_group; ++l)
          __builtin_prefetch(next + (g * lines_per_group + l) * 64);
        k.encode_group(x + g * group_size, group_size, s, fixed != nullptr ? *fixed : params[g],
                       row_codes + (g0 + g) * group_size);
      }
    }
    // Codes come out of encode_group within [0, 2^bits), so packing cannot fail here.
    if (s.bits != 8) k.pack_bits(row_codes, cols, s.bits, packed);
  }
  return IntqStatus::kOk;
}

inline void dequantize_rows_with(const RowKernels& k, const uint8_t* codes, std::size_t rows,
                                 std::size_t cols, std::size_t group_size, const IntqScheme& s,
                                 const void* scales, const uint8_t* zeros,
                                 std::size_t scale_row_stride, float* dst) {
  const std::size_t n_groups = cols / group_size;
  const std::size_t row_bytes = packed_bytes(cols, s.bits);
  const int32_t default_zero = s.kind == IntqKind::kSymmetric ? (1 << (s.bits - 1)) : 0;
  std::vector<uint8_t> buffer(s.bits == 8 ? 0 : cols);
  for (std::size_t r = 0; r < rows; ++r) {
    const uint8_t* packed = codes + r * row_bytes;
    const uint8_t* row_codes = packed;
    if (s.bits != 8) {
      k.unpack_bits(packed, cols, s.bits, buffer.data());
      row_codes = buffer.data();
    }
    for (std::size_t g = 0; g < n_groups; ++g) {
      const std::size_t at = r * scale_row_stride + g;
      const GroupParams p{scalar::load_scale(scales, at, s.scale_type), zeros != nullptr ? zeros[at] : default_zero,
                          0, 0};
      k.decode_group(row_codes + g * group_size, group_size, s, p, dst + r * cols + g * group_size);
    }
  }
}

}  // namespace
}  // namespace quantcore
