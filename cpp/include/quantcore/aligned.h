// std::vector storage on 64-byte (cache line) boundaries, for the buffers SIMD kernels stream
// through with 512-bit loads: on Zen 4 an unaligned 64-byte load that crosses a line costs two
// load slots (fp8 GEMV in cache, 1 thread: 18.6 G weights/s with x and the codes 16 bytes off
// a line, 22.1 with both aligned).
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
