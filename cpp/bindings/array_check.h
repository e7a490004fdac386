// Argument checks shared by the bindings. The Python layer validates user input with friendly
// messages first; these checks keep the private _core from ever touching memory it should not,
// whoever calls it. Failures throw std::invalid_argument (ValueError in Python).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cfloat>
#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>

namespace quantcore::bind {

namespace py = pybind11;

inline void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}
// The same for a fixed message: no std::string is built unless the check fails (the checks run on
// every kernel call; a message built from values is worth an explicit `if` at its call site).
inline void require(bool ok, const char* message) {
  if (!ok) throw std::invalid_argument(message);
}

// A C-contiguous array whose items are `itemsize` bytes; writable when `writable`. The messages
// are built only for an array that fails (every kernel call checks its arrays).
inline void check_buffer(const py::array& a, const char* fn, const char* arg, py::ssize_t itemsize,
                         bool writable) {
  if (a.itemsize() != itemsize)
    throw std::invalid_argument(std::string(fn) + ": " + arg + " must have " + std::to_string(itemsize) +
                                "-byte items (got " + std::to_string(a.itemsize()) + ")");
  if ((a.flags() & py::array::c_style) == 0)
    throw std::invalid_argument(std::string(fn) + ": " + arg + " must be C-contiguous");
  if (writable && !a.writeable()) throw std::invalid_argument(std::string(fn) + ": " + arg + " must be writable");
}

// The index of the first NaN or infinity of p[0, n), n if there is none. Whole blocks are
// checked without an early exit, a loop of fixed length that the compiler vectorizes at -O2 (the
// element-wise loop with its exit took 1.4-2.3 us per 4096 floats, 9% of an in-cache 256 x 4096
// int8-path GEMV; blocks: 0.4-0.6 us); the element loop finds the index from the first block
// with one.
inline std::size_t first_nonfinite(const float* p, std::size_t n) {
  constexpr std::size_t kBlock = 256;
  std::size_t i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    int finite = 1;
    for (std::size_t j = 0; j < kBlock; ++j) finite &= std::fabs(p[i + j]) <= FLT_MAX;  // false for NaN
    if (!finite) break;
  }
  for (; i < n; ++i)
    if (!std::isfinite(p[i])) return i;
  return n;
}

template <class T>
const T* cdata(const py::array& a) {
  return static_cast<const T*>(a.data());
}
template <class T>
T* mdata(py::array& a) {
  return static_cast<T*>(a.mutable_data());
}

}  // namespace quantcore::bind
