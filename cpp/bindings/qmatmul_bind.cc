// Bindings for the quantized matmul: buffer checks (python/quantcore/matmul.py gives the
// friendly messages first), then the kernels with the GIL released.
#include <string>

#include "array_check.h"
#include "quantcore/pack.h"
#include "quantcore/qmatmul.h"

namespace quantcore::bind {
namespace {

// x float32 [m, cols] -> out float32 [m, rows]. format: QWeightFormat; kind, bits, scale_type as
// in intq_quantize; group_size 0 = one scale for the whole tensor. zeros: uint8 (asymmetric
// kIntq), float16 bits (kQ4_1) or None. bias: float32 [rows] or None.
void qmatmul(const py::array& x, int format, int kind, int bits, int scale_type, py::ssize_t group_size,
             const py::array& codes, const py::array& scales, const py::object& zeros_obj,
             const py::object& bias_obj, py::array& out, bool int8_activations, py::ssize_t block) {
  const char* fn = "matmul";
  if (format < 0 || format > 3)
    throw std::invalid_argument("matmul: format must be 0..3 (got " + std::to_string(format) + ")");
  require(kind >= 0 && kind <= 2, "matmul: kind must be 0, 1 or 2");
  require(scale_type >= 0 && scale_type <= 2, "matmul: scale_type must be 0, 1 or 2");
  const auto fmt = static_cast<QWeightFormat>(format);
  const IntqScheme s{static_cast<IntqKind>(kind), bits, static_cast<ScaleType>(scale_type)};
  const bool bits_ok = fmt == QWeightFormat::kIntq ? (s.kind == IntqKind::kNf4 ? bits == 4 : bits >= 2 && bits <= 8)
                                                   : bits == (fmt == QWeightFormat::kQ4_1 ? 4 : 8);
  if (!bits_ok) throw std::invalid_argument("matmul: bits do not match the format (got " + std::to_string(bits) + ")");
  check_buffer(x, fn, "x", 4, false);
  check_buffer(codes, fn, "codes", 1, false);
  check_buffer(scales, fn, "scales", s.scale_type == ScaleType::kFloat32 ? 4 : 2, false);
  check_buffer(out, fn, "out", 4, true);
  require(x.ndim() == 2 && codes.ndim() == 2 && out.ndim() == 2, "matmul: x, codes and out must be 2-D");
  const std::size_t m = x.shape(0), cols = x.shape(1), rows = codes.shape(0);
  require(cols > 0 && rows > 0, "matmul: empty weight");
  require(static_cast<std::size_t>(codes.shape(1)) == packed_bytes(cols, bits), "matmul: codes has the wrong row size");
  require(static_cast<std::size_t>(out.shape(0)) == m && static_cast<std::size_t>(out.shape(1)) == rows,
          "matmul: out has the wrong shape");
  require(group_size >= 0 && (group_size == 0 || cols % group_size == 0), "matmul: group_size must divide in_features");
  const bool whole = group_size == 0;
  const std::size_t gs = whole ? cols : static_cast<std::size_t>(group_size);
  const std::size_t stride = whole ? 0 : cols / gs;
  const std::size_t n_scales = whole ? 1 : rows * stride;
  require(static_cast<std::size_t>(scales.size()) == n_scales, "matmul: scales has the wrong size");
  const bool need_zeros = (fmt == QWeightFormat::kIntq && s.kind == IntqKind::kAsymmetric) || fmt == QWeightFormat::kQ4_1;
  require(need_zeros != zeros_obj.is_none(), "matmul: zeros must be given exactly for asymmetric schemes and q4_1");
  py::array zeros;
  if (need_zeros) {
    zeros = zeros_obj.cast<py::array>();
    check_buffer(zeros, fn, "zeros", fmt == QWeightFormat::kQ4_1 ? 2 : 1, false);
    require(static_cast<std::size_t>(zeros.size()) == n_scales, "matmul: zeros has the wrong size");
  }
  py::array bias;
  if (!bias_obj.is_none()) {
    bias = bias_obj.cast<py::array>();
    check_buffer(bias, fn, "bias", 4, false);
    require(static_cast<std::size_t>(bias.size()) == rows, "matmul: bias has the wrong size");
  }
  if (int8_activations) {
    require(block >= 1 && block <= 256 && (gs == cols || gs % block == 0),
            "matmul: block must be in 1..256 and divide the group");
    require(fmt == QWeightFormat::kQ4_1 || (fmt == QWeightFormat::kIntq && s.kind != IntqKind::kNf4),
            "matmul: activations='int8' needs integer codes");
  }
  const QWeight w{fmt, s, cdata<uint8_t>(codes), rows, cols, packed_bytes(cols, bits), gs, stride, scales.data(),
                  need_zeros ? zeros.data() : nullptr};
  const float* xp = cdata<float>(x);
  const float* bp = bias_obj.is_none() ? nullptr : cdata<float>(bias);
  float* yp = mdata<float>(out);
  if (m == 0) return;
  // here rather than in matmul.py: numpy's isfinite(x).all() took 58 us of a GEMV's time right
  // after another large GEMV had evicted its code from the caches (4 us when warm)
  require(!int8_activations || first_nonfinite(xp, m * cols) == m * cols,
          "matmul: x must be finite with activations='int8' (got NaN or inf)");
  py::gil_scoped_release release;
  quantcore::qmatmul(w, xp, m, bp, int8_activations, static_cast<std::size_t>(block), yp);
}

}  // namespace

void bind_qmatmul(py::module_& m) { m.def("qmatmul", &qmatmul); }

}  // namespace quantcore::bind
