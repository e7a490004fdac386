// Bindings for the FP8 kernels: checks, GIL release, and the split over the thread pool.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <string>

#include "array_check.h"
#include "quantcore/float_bits.h"
#include "quantcore/fp8.h"
#include "quantcore/parallel.h"

namespace quantcore::bind {
namespace {

constexpr std::size_t kGrain = 1 << 16;  // elements per task: large enough to hide dispatch cost

Fp8Format to_format(int fmt) {
  require(fmt == 0 || fmt == 1, "fp8: format code must be 0 (e4m3fn) or 1 (e5m2) (got " + std::to_string(fmt) + ")");
  return static_cast<Fp8Format>(fmt);
}

template <class Src>
void encode_parallel(void (*kernel)(const Src*, uint8_t*, std::size_t, Fp8Format, Overflow), const py::array& src,
                     py::array& dst, int fmt, bool saturate, py::ssize_t src_itemsize) {
  check_buffer(src, "encode", "src", src_itemsize, false);
  check_buffer(dst, "encode", "out", 1, true);
  require(src.size() == dst.size(), "encode: out must have as many elements as x");
  const Fp8Format f = to_format(fmt);
  const Overflow ov = saturate ? Overflow::kSaturate : Overflow::kNonFinite;
  const Src* s = cdata<Src>(src);
  uint8_t* d = mdata<uint8_t>(dst);
  py::gil_scoped_release release;
  parallel_for(static_cast<std::size_t>(src.size()), kGrain,
               [&](std::size_t b, std::size_t e) { kernel(s + b, d + b, e - b, f, ov); });
}

template <class Dst>
void decode_parallel(void (*kernel)(const uint8_t*, Dst*, std::size_t, Fp8Format), const py::array& src,
                     py::array& dst, int fmt, py::ssize_t dst_itemsize) {
  check_buffer(src, "decode", "codes", 1, false);
  check_buffer(dst, "decode", "out", dst_itemsize, true);
  require(src.size() == dst.size(), "decode: out must have as many elements as codes");
  const Fp8Format f = to_format(fmt);
  const uint8_t* s = cdata<uint8_t>(src);
  Dst* d = mdata<Dst>(dst);
  py::gil_scoped_release release;
  parallel_for(static_cast<std::size_t>(src.size()), kGrain,
               [&](std::size_t b, std::size_t e) { kernel(s + b, d + b, e - b, f); });
}

// Largest |x| of a float32 buffer, over all threads; NaN and inf are reported as such.
float amax_f32(const float* p, std::size_t n) {
  std::mutex mu;
  uint32_t result = 0;
  parallel_for(n, kGrain, [&](std::size_t b, std::size_t e) {
    uint32_t m = fp8_kernels().amax_bits_f32(p + b, e - b);
    std::lock_guard<std::mutex> lock(mu);
    result = std::max(result, m);
  });
  return bits_float(result);
}

// Scaled FP8 quantization of a [rows, cols] float32 matrix in blocks of [bh, bw]: one scale
// per block, scale = amax / max_finite (1 for an all-zero block), codes = encode_sat(x / scale).
// With bh == 1 each row is read from memory once: its groups' amax and encode hit cache.
void quantize_blocks(const py::array& x, py::ssize_t bh, py::ssize_t bw, int fmt, py::array& codes,
                     py::array& scales) {
  check_buffer(x, "quantize", "x", 4, false);
  check_buffer(codes, "quantize", "codes", 1, true);
  check_buffer(scales, "quantize", "scales", 4, true);
  require(x.ndim() == 2, "quantize: x must be 2-D");
  const std::size_t rows = x.shape(0), cols = x.shape(1);
  require(bh >= 1 && bw >= 1 && rows % bh == 0 && cols % bw == 0,
          "quantize: block shape must divide the matrix shape");
  const std::size_t n_br = rows / bh, n_bc = cols / bw;
  require(static_cast<std::size_t>(codes.size()) == rows * cols, "quantize: codes has the wrong size");
  require(static_cast<std::size_t>(scales.size()) == n_br * n_bc, "quantize: scales has the wrong size");
  const Fp8Format f = to_format(fmt);
  const float max_finite = fp8_traits(f).max_value;
  const float* src = cdata<float>(x);
  uint8_t* dst = mdata<uint8_t>(codes);
  float* sc = mdata<float>(scales);
  py::gil_scoped_release release;
  const Fp8Kernels& k = fp8_kernels();
  const std::size_t grain = std::max<std::size_t>(1, kGrain / (bh * cols));
  parallel_for(n_br, grain, [&](std::size_t br0, std::size_t br1) {
    for (std::size_t br = br0; br < br1; ++br) {
      for (std::size_t bc = 0; bc < n_bc; ++bc) {
        uint32_t amax_bits = 0;
        for (std::size_t r = br * bh; r < (br + 1) * bh; ++r)
          amax_bits = std::max(amax_bits, k.amax_bits_f32(src + r * cols + bc * bw, bw));
        if (amax_bits >= 0x7F800000u)
          throw std::invalid_argument("quantize: x contains NaN or inf (in the block at row " +
                                      std::to_string(br * bh) + ", column " + std::to_string(bc * bw) + ")");
        const float amax = bits_float(amax_bits);
        const float scale = amax > 0.0f ? amax / max_finite : 1.0f;
        // A tiny amax can give a subnormal or zero quotient; fall back to 1 to stay finite.
        const float safe = (scale > 0.0f && std::isfinite(scale)) ? scale : 1.0f;
        sc[br * n_bc + bc] = safe;
        for (std::size_t r = br * bh; r < (br + 1) * bh; ++r)
          k.encode_scaled_f32(src + r * cols + bc * bw, dst + r * cols + bc * bw, bw, safe, f);
      }
    }
  });
}

// The inverse: out = decode(codes) * scale per block, float32.
void dequantize_blocks(const py::array& codes, const py::array& scales, py::ssize_t bh, py::ssize_t bw, int fmt,
                       py::array& out) {
  check_buffer(codes, "dequantize", "codes", 1, false);
  check_buffer(scales, "dequantize", "scales", 4, false);
  check_buffer(out, "dequantize", "out", 4, true);
  require(out.ndim() == 2, "dequantize: out must be 2-D");
  const std::size_t rows = out.shape(0), cols = out.shape(1);
  require(bh >= 1 && bw >= 1 && rows % bh == 0 && cols % bw == 0,
          "dequantize: block shape must divide the matrix shape");
  const std::size_t n_bc = cols / bw;
  require(static_cast<std::size_t>(codes.size()) == rows * cols, "dequantize: codes has the wrong size");
  require(static_cast<std::size_t>(scales.size()) == (rows / bh) * n_bc, "dequantize: scales has the wrong size");
  const Fp8Format f = to_format(fmt);
  const uint8_t* src = cdata<uint8_t>(codes);
  const float* sc = cdata<float>(scales);
  float* dst = mdata<float>(out);
  py::gil_scoped_release release;
  const Fp8Kernels& k = fp8_kernels();
  parallel_for(rows, std::max<std::size_t>(1, kGrain / cols), [&](std::size_t r0, std::size_t r1) {
    for (std::size_t r = r0; r < r1; ++r) {
      k.decode_f32(src + r * cols, dst + r * cols, cols, f);
      const float* row_scales = sc + (r / bh) * n_bc;
      float* row = dst + r * cols;
      for (std::size_t c = 0; c < cols; ++c) row[c] *= row_scales[c / bw];
    }
  });
}

}  // namespace

void bind_fp8(py::module_& m) {
  m.def("fp8_encode_f32", [](const py::array& s, py::array& d, int f, bool sat) {
    encode_parallel<float>(fp8_kernels().encode_f32, s, d, f, sat, 4);
  });
  m.def("fp8_encode_f64", [](const py::array& s, py::array& d, int f, bool sat) {
    encode_parallel<double>(fp8_kernels().encode_f64, s, d, f, sat, 8);
  });
  m.def("fp8_encode_f16", [](const py::array& s, py::array& d, int f, bool sat) {
    encode_parallel<uint16_t>(fp8_kernels().encode_f16, s, d, f, sat, 2);
  });
  m.def("fp8_encode_bf16", [](const py::array& s, py::array& d, int f, bool sat) {
    encode_parallel<uint16_t>(fp8_kernels().encode_bf16, s, d, f, sat, 2);
  });
  m.def("fp8_decode_f32", [](const py::array& s, py::array& d, int f) {
    decode_parallel<float>(fp8_kernels().decode_f32, s, d, f, 4);
  });
  m.def("fp8_decode_f16", [](const py::array& s, py::array& d, int f) {
    decode_parallel<uint16_t>(fp8_kernels().decode_f16, s, d, f, 2);
  });
  m.def("fp8_decode_bf16", [](const py::array& s, py::array& d, int f) {
    decode_parallel<uint16_t>(fp8_kernels().decode_bf16, s, d, f, 2);
  });
  m.def("amax_f32", [](const py::array& x) {
    check_buffer(x, "amax", "x", 4, false);
    const float* p = cdata<float>(x);
    const std::size_t n = static_cast<std::size_t>(x.size());
    py::gil_scoped_release release;
    return amax_f32(p, n);
  });
  m.def("fp8_encode_scaled_f32", [](const py::array& s, py::array& d, float scale, int f) {
    check_buffer(s, "encode_scaled", "x", 4, false);
    check_buffer(d, "encode_scaled", "out", 1, true);
    require(s.size() == d.size(), "encode_scaled: out must have as many elements as x");
    require(scale > 0.0f && std::isfinite(scale), "encode_scaled: scale must be positive and finite");
    const Fp8Format fmt = to_format(f);
    const float* sp = cdata<float>(s);
    uint8_t* dp = mdata<uint8_t>(d);
    py::gil_scoped_release release;
    parallel_for(static_cast<std::size_t>(s.size()), kGrain, [&](std::size_t b, std::size_t e) {
      fp8_kernels().encode_scaled_f32(sp + b, dp + b, e - b, scale, fmt);
    });
  });
  m.def("fp8_quantize_blocks", &quantize_blocks);
  m.def("fp8_dequantize_blocks", &dequantize_blocks);
}

}  // namespace quantcore::bind
