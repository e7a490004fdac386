// std::vector storage on 64-byte (cache line) boundaries, for the buffers SIMD kernels stream
// through with 512-bit loads: on Zen 4 an unaligned 64-byte load that crosses a line costs two
// load slots, and a kernel that loads its x vector and its codes once per 64 weights is load
// bound (fp8 GEMV in L2, 1 thread: 19 G weights/s with both 16 bytes off a line, 24 aligned).
#pragma once

#include <cstddef>
#include <new>
#include <vector>

namespace quantcore {

inline constexpr std::size_t kCacheLine = 64;

template <class T>
struct LineAllocator {
  using value_type = T;
  LineAllocator() = default;
  template <class U>
  LineAllocator(const LineAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) {
    return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{kCacheLine}));
  }
  void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, std::align_val_t{kCacheLine}); }
  template <class U>
  bool operator==(const LineAllocator<U>&) const noexcept { return true; }
  template <class U>
  bool operator!=(const LineAllocator<U>&) const noexcept { return false; }
};

template <class T>
using LineVector = std::vector<T, LineAllocator<T>>;

}  // namespace quantcore
