// Bindings for the elementwise activations: checks, GIL release, and the split over the pool.
#include <algorithm>
#include <string>

#include "array_check.h"
#include "quantcore/act.h"
#include "quantcore/parallel.h"

namespace quantcore::bind {
namespace {

// out = silu(gate) * up (up None: silu(gate)); float32 C-contiguous arrays of one size.
void swiglu(const py::array& gate, const py::object& up, py::array& out) {
  check_buffer(gate, "swiglu", "gate", 4, false);
  check_buffer(out, "swiglu", "out", 4, true);
  const std::size_t n = gate.size();
  require(static_cast<std::size_t>(out.size()) == n, "swiglu: out must have gate's size");
  const float* u = nullptr;
  if (!up.is_none()) {
    const auto up_array = up.cast<py::array>();
    check_buffer(up_array, "swiglu", "up", 4, false);
    require(static_cast<std::size_t>(up_array.size()) == n, "swiglu: up must have gate's size");
    u = cdata<float>(up_array);
  }
  const float* g = cdata<float>(gate);
  float* o = mdata<float>(out);
  const ActKernels& k = act_kernels();
  py::gil_scoped_release release;
  constexpr std::size_t kGrain = 1 << 15;  // 32 Ki values (~0.1 ms on one core) per task at least
  parallel_for((n + kGrain - 1) / kGrain, 1, [&](std::size_t c0, std::size_t c1) {
    const std::size_t b = c0 * kGrain, e = std::min(n, c1 * kGrain);
    k.swiglu(g + b, u == nullptr ? nullptr : u + b, o + b, e - b);
  });
}

}  // namespace

void bind_act(py::module_& m) { m.def("swiglu", &swiglu); }

}  // namespace quantcore::bind
