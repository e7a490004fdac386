// Bindings for GPTQ's per-group parameters and per-column loop: checks, GIL release, and the
// split of rows over the thread pool (rows are independent inside a block).
#include <algorithm>
#include <mutex>
#include <string>
#include <vector>

#include "array_check.h"
#include "quantcore/gptq.h"
#include "quantcore/parallel.h"

namespace quantcore::bind {
namespace {

GptqScheme to_scheme(const char* fn, int grid, int bits, int scale_type) {
  require(grid >= 0 && grid <= 4, std::string(fn) + ": grid must be in 0..4 (got " + std::to_string(grid) + ")");
  require(bits >= 2 && bits <= 8, std::string(fn) + ": bits must be in 2..8 (got " + std::to_string(bits) + ")");
  require(scale_type >= 0 && scale_type <= 2,
          std::string(fn) + ": scale_type must be 0, 1 or 2 (got " + std::to_string(scale_type) + ")");
  const GptqGrid g = static_cast<GptqGrid>(grid);
  const IntqKind kind = g == GptqGrid::kAsymmetric ? IntqKind::kAsymmetric : IntqKind::kSymmetric;
  return GptqScheme{g, IntqScheme{kind, bits, static_cast<ScaleType>(scale_type)}};
}

// x float32 [rows, n] -> params (GptqParams as 32 bytes) [rows], stored scale and zero float32 [rows].
// Returns -1, or the first row whose scale overflows the scale type.
py::ssize_t params(const py::array& x, int grid, int bits, int scale_type, py::array& out, py::array& scale,
                   py::array& zero) {
  const GptqScheme s = to_scheme("gptq_params", grid, bits, scale_type);
  check_buffer(x, "gptq_params", "x", 4, false);
  check_buffer(out, "gptq_params", "out", 1, true);
  check_buffer(scale, "gptq_params", "scale", 4, true);
  check_buffer(zero, "gptq_params", "zero", 4, true);
  require(x.ndim() == 2 && x.shape(0) > 0 && x.shape(1) > 0, "gptq_params: x must be 2-D and not empty");
  const std::size_t rows = x.shape(0), n = x.shape(1);
  require(static_cast<std::size_t>(out.size()) == rows * sizeof(GptqParams), "gptq_params: out has the wrong size");
  require(static_cast<std::size_t>(scale.size()) == rows && static_cast<std::size_t>(zero.size()) == rows,
          "gptq_params: scale and zero must hold one value per row");
  const float* xp = cdata<float>(x);
  auto* pp = reinterpret_cast<GptqParams*>(mdata<uint8_t>(out));
  float* sp = mdata<float>(scale);
  float* zp = mdata<float>(zero);
  std::size_t bad = rows;
  {
    py::gil_scoped_release release;
    std::mutex mu;
    parallel_for(rows, std::max<std::size_t>(1, (1 << 16) / n), [&](std::size_t r0, std::size_t r1) {
      for (std::size_t r = r0; r < r1; ++r) {
        if (scalar::gptq_params(xp + r * n, n, s, pp + r, sp + r, zp + r) != IntqStatus::kOk) {
          std::lock_guard<std::mutex> lock(mu);
          bad = std::min(bad, r);
          return;
        }
      }
    });
  }
  return bad == rows ? -1 : static_cast<py::ssize_t>(bad);
}

// x float32 [rows, n], weight float32 [n] or None, shrinks float32 [k] -> as params, and the
// factor chosen per row float32 [rows]. Returns -1, or the first row whose scale overflows.
py::ssize_t clip_params(const py::array& x, const py::object& weight_obj, const py::array& shrinks,
                        int grid, int bits, int scale_type, py::array& out, py::array& scale, py::array& zero,
                        py::array& chosen) {
  const GptqScheme s = to_scheme("gptq_clip_params", grid, bits, scale_type);
  check_buffer(x, "gptq_clip_params", "x", 4, false);
  check_buffer(shrinks, "gptq_clip_params", "shrinks", 4, false);
  check_buffer(out, "gptq_clip_params", "out", 1, true);
  check_buffer(scale, "gptq_clip_params", "scale", 4, true);
  check_buffer(zero, "gptq_clip_params", "zero", 4, true);
  check_buffer(chosen, "gptq_clip_params", "chosen", 4, true);
  require(x.ndim() == 2 && x.shape(0) > 0 && x.shape(1) > 0, "gptq_clip_params: x must be 2-D and not empty");
  const std::size_t rows = x.shape(0), n = x.shape(1);
  require(shrinks.size() > 0, "gptq_clip_params: shrinks must not be empty");
  const float* wp = nullptr;
  py::array weight;
  if (!weight_obj.is_none()) {
    weight = py::cast<py::array>(weight_obj);
    check_buffer(weight, "gptq_clip_params", "weight", 4, false);
    require(static_cast<std::size_t>(weight.size()) == n, "gptq_clip_params: weight must hold n values");
    wp = cdata<float>(weight);
  }
  require(static_cast<std::size_t>(out.size()) == rows * sizeof(GptqParams),
          "gptq_clip_params: out has the wrong size");
  require(static_cast<std::size_t>(scale.size()) == rows && static_cast<std::size_t>(zero.size()) == rows &&
              static_cast<std::size_t>(chosen.size()) == rows,
          "gptq_clip_params: scale, zero and chosen must hold one value per row");
  const float* xp = cdata<float>(x);
  const float* kp = cdata<float>(shrinks);
  const std::size_t n_shrinks = static_cast<std::size_t>(shrinks.size());
  auto* pp = reinterpret_cast<GptqParams*>(mdata<uint8_t>(out));
  float* sp = mdata<float>(scale);
  float* zp = mdata<float>(zero);
  float* cp = mdata<float>(chosen);
  std::size_t bad = rows;
  {
    py::gil_scoped_release release;
    std::mutex mu;
    parallel_for(rows, std::max<std::size_t>(1, (1 << 14) / (n * n_shrinks) + 1), [&](std::size_t r0, std::size_t r1) {
      std::vector<float> scratch(std::max<std::size_t>(n, 2));
      for (std::size_t r = r0; r < r1; ++r) {
        if (scalar::gptq_clip_params(xp + r * n, n, wp, kp, n_shrinks, s, scratch.data(), pp + r, sp + r,
                                     zp + r, cp + r) != IntqStatus::kOk) {
          std::lock_guard<std::mutex> lock(mu);
          bad = std::min(bad, r);
          return;
        }
      }
    });
  }
  return bad == rows ? -1 : static_cast<py::ssize_t>(bad);
}

// w float32 [rows, cols] (updated in place), columns [b0, b0 + block) form the block and
// [b0 + c0, b0 + c1) are quantized now; hinv float32 [block, block]; params [n_groups, rows] of
// GptqParams; group_of int32 [cols] (by position); codes uint8 [rows, cols]; err float32
// [rows, block]; losses float64 [rows].
void columns(py::array& w, py::ssize_t b0, py::ssize_t block, py::ssize_t c0, py::ssize_t c1, const py::array& hinv,
             int grid, int bits, int scale_type, const py::array& params_arr, const py::array& group_of,
             py::array& codes, py::array& err, py::array& losses) {
  const GptqScheme s = to_scheme("gptq_columns", grid, bits, scale_type);
  check_buffer(w, "gptq_columns", "w", 4, true);
  check_buffer(hinv, "gptq_columns", "hinv", 4, false);
  check_buffer(params_arr, "gptq_columns", "params", 1, false);
  check_buffer(group_of, "gptq_columns", "group_of", 4, false);
  check_buffer(codes, "gptq_columns", "codes", 1, true);
  check_buffer(err, "gptq_columns", "err", 4, true);
  check_buffer(losses, "gptq_columns", "losses", 8, true);
  require(w.ndim() == 2 && w.shape(0) > 0 && w.shape(1) > 0, "gptq_columns: w must be 2-D and not empty");
  const std::size_t rows = w.shape(0), cols = w.shape(1);
  require(block > 0 && b0 >= 0 && static_cast<std::size_t>(b0 + block) <= cols, "gptq_columns: bad block");
  require(c0 >= 0 && c0 <= c1 && c1 <= block, "gptq_columns: bad column range");
  const std::size_t bs = static_cast<std::size_t>(block);
  require(static_cast<std::size_t>(hinv.size()) == bs * bs, "gptq_columns: hinv must be [block, block]");
  require(static_cast<std::size_t>(group_of.size()) == cols, "gptq_columns: group_of must hold cols entries");
  require(static_cast<std::size_t>(codes.size()) == rows * cols, "gptq_columns: codes must be [rows, cols]");
  require(static_cast<std::size_t>(err.size()) == rows * bs, "gptq_columns: err must be [rows, block]");
  require(static_cast<std::size_t>(losses.size()) == rows, "gptq_columns: losses must be [rows]");
  const std::size_t n_params = static_cast<std::size_t>(params_arr.size()) / sizeof(GptqParams);
  require(n_params * sizeof(GptqParams) == static_cast<std::size_t>(params_arr.size()) && n_params % rows == 0,
          "gptq_columns: params must be [n_groups, rows] of 32-byte entries");
  const int32_t* gp = cdata<int32_t>(group_of) + b0;
  for (std::size_t i = static_cast<std::size_t>(c0); i < static_cast<std::size_t>(c1); ++i)
    require(gp[i] >= 0 && static_cast<std::size_t>(gp[i]) < n_params / rows, "gptq_columns: group_of out of range");
  float* wp = mdata<float>(w) + b0;
  const float* hp = cdata<float>(hinv);
  const auto* pp = reinterpret_cast<const GptqParams*>(cdata<uint8_t>(params_arr));
  uint8_t* cp = mdata<uint8_t>(codes) + b0;
  float* ep = mdata<float>(err);
  double* lp = mdata<double>(losses);
  py::gil_scoped_release release;
  // about 64K float updates per task; multiples of 4 rows keep the SIMD row tiles full
  const std::size_t grain = std::max<std::size_t>(4, ((1 << 16) / (bs * std::max<py::ssize_t>(1, c1 - c0)) + 3) / 4 * 4);
  parallel_for((rows + 3) / 4, grain / 4, [&](std::size_t t0, std::size_t t1) {
    const std::size_t r0 = t0 * 4, r1 = std::min(rows, t1 * 4);
    gptq_kernels().gptq_columns(wp + r0 * cols, cols, r1 - r0, bs, c0, c1, hp, s, pp + r0, rows, gp,
                                cp + r0 * cols, cols, ep + r0 * bs, lp + r0);
  });
}

}  // namespace

void bind_gptq(py::module_& m) {
  m.def("gptq_params", &params);
  m.def("gptq_clip_params", &clip_params);
  m.def("gptq_columns", &columns);
}

}  // namespace quantcore::bind
