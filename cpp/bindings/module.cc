// The private extension quantcore._core. Users import quantcore, never this module.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "quantcore/dispatch.h"
#include "quantcore/parallel.h"

namespace py = pybind11;

namespace quantcore::bind {
void bind_act(py::module_& m);
void bind_fp8(py::module_& m);
void bind_gguf(py::module_& m);
void bind_gptq(py::module_& m);
void bind_intq(py::module_& m);
void bind_qmatmul(py::module_& m);
}

PYBIND11_MODULE(_core, m) {
  m.doc() = "quantcore's C++ kernels (private; use the quantcore package)";
  m.def("available_isas", &quantcore::available_isas);
  m.def("active_isa", [] { return std::string(quantcore::isa_name(quantcore::active_isa())); });
  m.def("force_isa", [](const std::string& name) { quantcore::force_isa(name); });
  m.def("get_num_threads", &quantcore::get_num_threads);
  m.def("set_num_threads", [](int n) {
    if (n < 1 || n > 1024)
      throw std::invalid_argument("set_num_threads: n must be in 1..1024 (got " + std::to_string(n) + ")");
    quantcore::set_num_threads(n);
  });
  quantcore::bind::bind_act(m);
  quantcore::bind::bind_fp8(m);
  quantcore::bind::bind_gguf(m);
  quantcore::bind::bind_gptq(m);
  quantcore::bind::bind_intq(m);
  quantcore::bind::bind_qmatmul(m);
}
