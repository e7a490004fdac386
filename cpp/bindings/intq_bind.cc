// Bindings for group quantization and bit packing: checks, GIL release, and the split over the
// thread pool (by rows; a row is quantized, packed and dequantized in one pass).
#include <algorithm>
#include <cmath>
#include <mutex>
#include <string>

#include "array_check.h"
#include "quantcore/intq.h"
#include "quantcore/pack.h"
#include "quantcore/parallel.h"

namespace quantcore::bind {
namespace {

constexpr std::size_t kGrain = 1 << 16;  // elements per task: large enough to hide dispatch cost

IntqScheme to_scheme(const char* fn, int kind, int bits, int scale_type) {
  require(kind >= 0 && kind <= 2, std::string(fn) + ": kind must be 0, 1 or 2 (got " + std::to_string(kind) + ")");
  const IntqKind k = static_cast<IntqKind>(kind);
  const bool bits_ok = k == IntqKind::kNf4 ? bits == 4 : (bits >= 2 && bits <= 8);
  require(bits_ok, std::string(fn) + ": bits must be in 2..8 (4 for nf4) (got " + std::to_string(bits) + ")");
  require(scale_type >= 0 && scale_type <= 2,
          std::string(fn) + ": scale_type must be 0, 1 or 2 (got " + std::to_string(scale_type) + ")");
  return IntqScheme{k, bits, static_cast<ScaleType>(scale_type)};
}

py::ssize_t scale_itemsize(ScaleType t) { return t == ScaleType::kFloat32 ? 4 : 2; }

const char* scale_type_name(ScaleType t) {
  switch (t) {
    case ScaleType::kFloat16: return "float16";
    case ScaleType::kBFloat16: return "bfloat16";
    default: return "float32";
  }
}

// Global range of a float32 buffer over all threads.
Range range_parallel(const float* p, std::size_t n) {
  std::mutex mu;
  Range total{INFINITY, -INFINITY, true};
  parallel_for(n, kGrain, [&](std::size_t b, std::size_t e) {
    const Range r = intq_kernels().range_f32(p + b, e - b);
    std::lock_guard<std::mutex> lock(mu);
    total.lo = std::min(total.lo, r.lo);
    total.hi = std::max(total.hi, r.hi);
    total.finite = total.finite && r.finite;
  });
  return total;
}

[[noreturn]] void throw_status(IntqStatus status, const float* src, std::size_t cols, std::size_t row,
                               std::size_t col0, std::size_t col1, ScaleType t) {
  if (status == IntqStatus::kNonFinite) {
    const std::size_t at = col0 + first_nonfinite(src + row * cols + col0, col1 - col0);
    throw std::invalid_argument("quantize: w contains NaN or inf (first at row " + std::to_string(row) +
                                ", column " + std::to_string(at) + ")");
  }
  throw std::invalid_argument("quantize: the scale of the group at row " + std::to_string(row) + ", columns " +
                              std::to_string(col0) + ".." + std::to_string(col1 - 1) + " is not finite in " +
                              scale_type_name(t) + " (the group's range is too large; use scale_dtype=np.float32)");
}

// w [rows, cols] float32 -> codes [rows, packed_bytes(cols, bits)], scales [rows, n_groups] in the
// scale type (float32, or float16 / bfloat16 as 2-byte items), zeros uint8 like scales (asymmetric
// only).
// group_size 0 quantizes the whole tensor with one scale: scales (and zeros) hold one value.
void quantize(const py::array& w, int kind, int bits, py::ssize_t group_size, int scale_type, py::array& codes,
              py::array& scales, const py::object& zeros_obj) {
  const IntqScheme s = to_scheme("quantize", kind, bits, scale_type);
  check_buffer(w, "quantize", "w", 4, false);
  check_buffer(codes, "quantize", "codes", 1, true);
  check_buffer(scales, "quantize", "scales", scale_itemsize(s.scale_type), true);
  require(w.ndim() == 2, "quantize: w must be 2-D");
  const std::size_t rows = w.shape(0), cols = w.shape(1);
  require(rows > 0 && cols > 0, "quantize: w must not be empty");
  require(group_size >= 0 && (group_size == 0 || cols % group_size == 0),
          "quantize: group_size must divide in_features (got in_features=" + std::to_string(cols) +
              ", group_size=" + std::to_string(group_size) + ")");
  const bool whole = group_size == 0;
  const std::size_t gs = whole ? cols : static_cast<std::size_t>(group_size);
  const std::size_t n_scales = whole ? 1 : rows * (cols / gs);
  require(static_cast<std::size_t>(codes.size()) == rows * packed_bytes(cols, bits),
          "quantize: codes has the wrong size");
  require(static_cast<std::size_t>(scales.size()) == n_scales, "quantize: scales has the wrong size");
  const bool asymmetric = s.kind == IntqKind::kAsymmetric;
  require(asymmetric != zeros_obj.is_none(), "quantize: zeros must be given exactly for asymmetric schemes");
  uint8_t* zp = nullptr;
  if (asymmetric) {
    py::array zeros = zeros_obj.cast<py::array>();
    check_buffer(zeros, "quantize", "zeros", 1, true);
    require(static_cast<std::size_t>(zeros.size()) == n_scales, "quantize: zeros has the wrong size");
    zp = mdata<uint8_t>(zeros);
  }
  const float* src = cdata<float>(w);
  uint8_t* cp = mdata<uint8_t>(codes);
  uint8_t* sp = mdata<uint8_t>(scales);
  const std::size_t scale_bytes = static_cast<std::size_t>(scales.itemsize());
  const std::size_t row_bytes = packed_bytes(cols, bits);
  const std::size_t n_groups = cols / gs;

  IntqStatus status = IntqStatus::kOk;
  std::size_t bad = 0;
  GroupParams fixed{};
  {
    py::gil_scoped_release release;
    if (whole) {
      const Range r = range_parallel(src, rows * cols);
      status = r.finite ? scalar::group_params(r.lo, r.hi, s, &fixed) : IntqStatus::kNonFinite;
      if (status == IntqStatus::kOk) {
        scalar::store_scale(sp, 0, fixed.scale, s.scale_type);
        if (asymmetric) zp[0] = static_cast<uint8_t>(fixed.zero);
      }
    }
    if (status == IntqStatus::kOk) {
      std::mutex mu;
      parallel_for(rows, std::max<std::size_t>(1, kGrain / cols), [&](std::size_t r0, std::size_t r1) {
        std::size_t chunk_bad = 0;
        const IntqStatus st = intq_kernels().quantize_rows(
            src + r0 * cols, r1 - r0, cols, gs, s, whole ? &fixed : nullptr, cp + r0 * row_bytes,
            whole ? nullptr : sp + r0 * n_groups * scale_bytes, (whole || !asymmetric) ? nullptr : zp + r0 * n_groups, &chunk_bad);
        if (st != IntqStatus::kOk) {
          std::lock_guard<std::mutex> lock(mu);
          const std::size_t global = r0 * n_groups + chunk_bad;
          if (status == IntqStatus::kOk || global < bad) {
            status = st;
            bad = global;
          }
        }
      });
    }
  }
  if (status == IntqStatus::kOk) return;
  if (whole) {
    if (status == IntqStatus::kNonFinite) {
      const std::size_t at = first_nonfinite(src, rows * cols);
      throw_status(status, src, cols, at / cols, 0, cols, s.scale_type);
    }
    throw_status(status, src, cols, 0, 0, cols, s.scale_type);
  }
  const std::size_t row = bad / n_groups, g = bad % n_groups;
  throw_status(status, src, cols, row, g * gs, (g + 1) * gs, s.scale_type);
}

// The inverse: codes [rows, packed_bytes(cols, bits)] -> out float32 [rows, cols].
void dequantize(const py::array& codes, int kind, int bits, py::ssize_t group_size, int scale_type,
                const py::array& scales, const py::object& zeros_obj, py::array& out) {
  const IntqScheme s = to_scheme("dequantize", kind, bits, scale_type);
  check_buffer(codes, "dequantize", "codes", 1, false);
  check_buffer(scales, "dequantize", "scales", scale_itemsize(s.scale_type), false);
  check_buffer(out, "dequantize", "out", 4, true);
  require(out.ndim() == 2, "dequantize: out must be 2-D");
  const std::size_t rows = out.shape(0), cols = out.shape(1);
  require(rows > 0 && cols > 0, "dequantize: out must not be empty");
  require(group_size >= 0 && (group_size == 0 || cols % group_size == 0),
          "dequantize: group_size must divide in_features (got in_features=" + std::to_string(cols) +
              ", group_size=" + std::to_string(group_size) + ")");
  const bool whole = group_size == 0;
  const std::size_t gs = whole ? cols : static_cast<std::size_t>(group_size);
  const std::size_t n_groups = cols / gs;
  const std::size_t n_scales = whole ? 1 : rows * n_groups;
  require(static_cast<std::size_t>(codes.size()) == rows * packed_bytes(cols, bits),
          "dequantize: codes has the wrong size");
  require(static_cast<std::size_t>(scales.size()) == n_scales, "dequantize: scales has the wrong size");
  const bool asymmetric = s.kind == IntqKind::kAsymmetric;
  require(asymmetric != zeros_obj.is_none(), "dequantize: zeros must be given exactly for asymmetric schemes");
  const uint8_t* zp = nullptr;
  py::array zeros;
  if (asymmetric) {
    zeros = zeros_obj.cast<py::array>();
    check_buffer(zeros, "dequantize", "zeros", 1, false);
    require(static_cast<std::size_t>(zeros.size()) == n_scales, "dequantize: zeros has the wrong size");
    zp = cdata<uint8_t>(zeros);
  }
  const uint8_t* cp = cdata<uint8_t>(codes);
  const uint8_t* sp = cdata<uint8_t>(scales);
  const std::size_t scale_bytes = static_cast<std::size_t>(scales.itemsize());
  float* dp = mdata<float>(out);
  const std::size_t row_bytes = packed_bytes(cols, bits);
  const std::size_t stride = whole ? 0 : n_groups;
  py::gil_scoped_release release;
  parallel_for(rows, std::max<std::size_t>(1, kGrain / cols), [&](std::size_t r0, std::size_t r1) {
    intq_kernels().dequantize_rows(cp + r0 * row_bytes, r1 - r0, cols, gs, s, sp + r0 * stride * scale_bytes,
                                   zp != nullptr ? zp + r0 * stride : nullptr, stride, dp + r0 * cols);
  });
}

void check_bits(const char* fn, int bits) {
  require(bits >= 1 && bits <= 8, std::string(fn) + ": bits must be in 1..8 (got " + std::to_string(bits) + ")");
}

// Chunks of whole octets of codes, so every chunk starts on a byte boundary of the stream.
void pack(const py::array& codes, int bits, py::array& out) {
  check_bits("pack_bits", bits);
  check_buffer(codes, "pack_bits", "codes", 1, false);
  check_buffer(out, "pack_bits", "out", 1, true);
  const std::size_t n = static_cast<std::size_t>(codes.size());
  require(static_cast<std::size_t>(out.size()) == packed_bytes(n, bits), "pack_bits: out has the wrong size");
  const uint8_t* cp = cdata<uint8_t>(codes);
  uint8_t* op = mdata<uint8_t>(out);
  bool ok = true;
  {
    py::gil_scoped_release release;
    std::mutex mu;
    parallel_for((n + 7) / 8, kGrain / 8, [&](std::size_t b, std::size_t e) {
      const std::size_t first = b * 8, last = std::min(n, e * 8);
      const bool chunk_ok = pack_kernels().pack_bits(cp + first, last - first, bits, op + b * bits);
      if (!chunk_ok) {
        std::lock_guard<std::mutex> lock(mu);
        ok = false;
      }
    });
  }
  require(ok, "pack_bits: codes must be in 0.." + std::to_string((1 << bits) - 1) + " for bits=" +
                  std::to_string(bits));
}

void unpack(const py::array& packed, int bits, py::ssize_t count, py::array& out) {
  check_bits("unpack_bits", bits);
  check_buffer(packed, "unpack_bits", "packed", 1, false);
  check_buffer(out, "unpack_bits", "out", 1, true);
  require(count >= 0 && static_cast<py::ssize_t>(out.size()) == count, "unpack_bits: out has the wrong size");
  const std::size_t n = static_cast<std::size_t>(count);
  require(static_cast<std::size_t>(packed.size()) >= packed_bytes(n, bits),
          "unpack_bits: packed is too short for count codes");
  const uint8_t* pp = cdata<uint8_t>(packed);
  uint8_t* op = mdata<uint8_t>(out);
  py::gil_scoped_release release;
  parallel_for((n + 7) / 8, kGrain / 8, [&](std::size_t b, std::size_t e) {
    const std::size_t first = b * 8, last = std::min(n, e * 8);
    pack_kernels().unpack_bits(pp + b * bits, last - first, bits, op + first);
  });
}

}  // namespace

void bind_intq(py::module_& m) {
  m.def("intq_quantize", &quantize);
  m.def("intq_dequantize", &dequantize);
  m.def("pack_bits", &pack);
  m.def("unpack_bits", &unpack);
  m.def("intq_nf4_codebook", [] { return py::array_t<float>(16, kNf4Codebook); });
}

}  // namespace quantcore::bind
