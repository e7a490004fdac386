// Bindings for the GGUF block kernels: checks, GIL release, and the split over the thread pool.
// Types are named by their ggml type id (GGMLQuantizationType), as in GGUF files.
#include <algorithm>
#include <mutex>
#include <string>

#include "array_check.h"
#include "quantcore/gguf.h"
#include "quantcore/parallel.h"

namespace quantcore::bind {
namespace {

constexpr std::size_t kGrainBlocks = 2048;  // 64K values of the 32-value formats per task

using QuantizeKernel = std::size_t (*)(const float*, uint8_t*, std::size_t);
using DequantizeKernel = void (*)(const uint8_t*, float*, std::size_t);

struct TypeInfo {
  const char* name;
  std::size_t block_size;  // values per block
  std::size_t type_size;   // bytes per block
};

// ggml type ids of the types with C++ kernels.
TypeInfo type_info(int type) {
  switch (type) {
    case 2: return {"q4_0", kQK, sizeof(BlockQ4_0)};
    case 3: return {"q4_1", kQK, sizeof(BlockQ4_1)};
    case 6: return {"q5_0", kQK, sizeof(BlockQ5_0)};
    case 7: return {"q5_1", kQK, sizeof(BlockQ5_1)};
    case 8: return {"q8_0", kQK, sizeof(BlockQ8_0)};
    case 10: return {"q2_k", kQKK, sizeof(BlockQ2_K)};
    case 11: return {"q3_k", kQKK, sizeof(BlockQ3_K)};
    case 12: return {"q4_k", kQKK, sizeof(BlockQ4_K)};
    case 13: return {"q5_k", kQKK, sizeof(BlockQ5_K)};
    case 14: return {"q6_k", kQKK, sizeof(BlockQ6_K)};
    case 20: return {"iq4_nl", kQK, sizeof(BlockIq4Nl)};
    case 23: return {"iq4_xs", kQKK, sizeof(BlockIq4Xs)};
    case 39: return {"mxfp4", kQK, sizeof(BlockMxfp4)};
    default: throw std::invalid_argument("gguf: no C++ kernel for ggml type id " + std::to_string(type));
  }
}

QuantizeKernel quantize_kernel(int type) {
  const GgufKernels& k = gguf_kernels();
  switch (type) {
    case 2: return k.quantize_q4_0;
    case 3: return k.quantize_q4_1;
    case 8: return k.quantize_q8_0;
    default:
      throw std::invalid_argument("quantize_blocks: no quantizer for ggml type id " + std::to_string(type) +
                                  " (expected q4_0, q4_1 or q8_0)");
  }
}

DequantizeKernel dequantize_kernel(int type) {
  const GgufKernels& k = gguf_kernels();
  switch (type) {
    case 2: return k.dequantize_q4_0;
    case 3: return k.dequantize_q4_1;
    case 6: return k.dequantize_q5_0;
    case 7: return k.dequantize_q5_1;
    case 8: return k.dequantize_q8_0;
    case 10: return k.dequantize_q2_k;
    case 11: return k.dequantize_q3_k;
    case 12: return k.dequantize_q4_k;
    case 13: return k.dequantize_q5_k;
    case 14: return k.dequantize_q6_k;
    case 20: return k.dequantize_iq4_nl;
    case 23: return k.dequantize_iq4_xs;
    case 39: return k.dequantize_mxfp4;
    default: type_info(type);  // throws
  }
  return nullptr;
}

// w: float32 [rows, cols], cols a multiple of 32; out: uint8 [rows, cols / 32 * type_size].
void quantize(const py::array& w, int type, py::array& out) {
  check_buffer(w, "quantize_blocks", "w", 4, false);
  check_buffer(out, "quantize_blocks", "out", 1, true);
  require(w.ndim() == 2, "quantize_blocks: w must be 2-D");
  const QuantizeKernel kernel = quantize_kernel(type);
  const TypeInfo t = type_info(type);
  const std::size_t rows = w.shape(0), cols = w.shape(1);
  require(cols % t.block_size == 0, "quantize_blocks: cols must be a multiple of " + std::to_string(t.block_size) +
                                        " (got cols=" + std::to_string(cols) + ")");
  const std::size_t n_blocks = rows * (cols / t.block_size);
  require(static_cast<std::size_t>(out.size()) == n_blocks * t.type_size,
          "quantize_blocks: out must hold " + std::to_string(n_blocks * t.type_size) + " bytes");
  const float* src = cdata<float>(w);
  uint8_t* dst = mdata<uint8_t>(out);
  std::size_t first_bad = n_blocks;
  {
    py::gil_scoped_release release;
    std::mutex mu;
    parallel_for(n_blocks, kGrainBlocks, [&](std::size_t b, std::size_t e) {
      const std::size_t done = kernel(src + b * t.block_size, dst + b * t.type_size, e - b);
      if (b + done < e) {
        std::lock_guard<std::mutex> lock(mu);
        first_bad = std::min(first_bad, b + done);
      }
    });
  }
  if (first_bad < n_blocks) {
    const std::size_t per_row = cols / t.block_size;
    throw std::invalid_argument("quantize_blocks: w contains NaN or inf (in the block at row " +
                                std::to_string(first_bad / per_row) + ", columns " +
                                std::to_string(first_bad % per_row * t.block_size) + ".." +
                                std::to_string(first_bad % per_row * t.block_size + t.block_size - 1) + ")");
  }
}

// data: uint8 holding n blocks; out: float32 with n * block_size elements.
void dequantize(const py::array& data, int type, py::array& out) {
  check_buffer(data, "dequantize_blocks", "data", 1, false);
  check_buffer(out, "dequantize_blocks", "out", 4, true);
  const DequantizeKernel kernel = dequantize_kernel(type);
  const TypeInfo t = type_info(type);
  const std::size_t n = static_cast<std::size_t>(out.size());
  require(n % t.block_size == 0, std::string("dequantize_blocks: ") + t.name + " needs a multiple of " +
                                     std::to_string(t.block_size) + " values (got " + std::to_string(n) + ")");
  const std::size_t n_blocks = n / t.block_size;
  require(static_cast<std::size_t>(data.size()) == n_blocks * t.type_size,
          std::string("dequantize_blocks: ") + t.name + " data for " + std::to_string(n) + " values must be " +
              std::to_string(n_blocks * t.type_size) + " bytes (got " + std::to_string(data.size()) + ")");
  const uint8_t* src = cdata<uint8_t>(data);
  float* dst = mdata<float>(out);
  py::gil_scoped_release release;
  const std::size_t grain = std::max<std::size_t>(1, kGrainBlocks * kQK / t.block_size);
  parallel_for(n_blocks, grain, [&](std::size_t b, std::size_t e) {
    kernel(src + b * t.type_size, dst + b * t.block_size, e - b);
  });
}

}  // namespace

void bind_gguf(py::module_& m) {
  m.def("gguf_quantize", &quantize);
  m.def("gguf_dequantize", &dequantize);
}

}  // namespace quantcore::bind
