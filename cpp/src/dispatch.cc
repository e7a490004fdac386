#include "quantcore/dispatch.h"

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <stdexcept>

namespace quantcore {
namespace {

bool cpu_supports(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return true;
#if defined(__x86_64__) || defined(_M_X64)
    case Isa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("f16c") && __builtin_cpu_supports("bmi2");
    case Isa::kAvx512:
      // The AVX-512 kernels use F, BW, DQ and VL (Skylake-SP and later, Zen 4).
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
             cpu_supports(Isa::kAvx2);
#endif
#if defined(__aarch64__)
    case Isa::kNeon: return true;  // Advanced SIMD is mandatory on AArch64.
#endif
    default: return false;
  }
}

constexpr Isa kAllIsas[] = {Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kNeon};

Isa best_isa() {
  Isa best = Isa::kScalar;
  for (Isa isa : kAllIsas)
    if (cpu_supports(isa)) best = isa;
  return best;
}

Isa parse_isa(std::string_view name) {
  for (Isa isa : kAllIsas)
    if (name == isa_name(isa)) {
      if (!cpu_supports(isa))
        throw std::invalid_argument("isa: '" + std::string(name) +
                                    "' is not supported by this CPU or build");
      return isa;
    }
  throw std::invalid_argument("isa: unknown instruction set '" + std::string(name) +
                              "' (expected one of scalar, avx2, avx512, neon)");
}

std::atomic<int> g_active{-1};
std::once_flag g_init;

void init_from_environment() {
  const char* env = std::getenv("QUANTCORE_ISA");
  Isa isa = (env != nullptr && *env != '\0') ? parse_isa(env) : best_isa();
  int expected = -1;
  g_active.compare_exchange_strong(expected, static_cast<int>(isa));
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return "scalar";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512: return "avx512";
    case Isa::kNeon: return "neon";
  }
  return "unknown";
}

std::vector<std::string> available_isas() {
  std::vector<std::string> names;
  for (Isa isa : kAllIsas)
    if (cpu_supports(isa)) names.emplace_back(isa_name(isa));
  return names;
}

Isa active_isa() {
  int isa = g_active.load(std::memory_order_relaxed);
  if (isa < 0) {
    std::call_once(g_init, init_from_environment);
    isa = g_active.load(std::memory_order_relaxed);
  }
  return static_cast<Isa>(isa);
}

void force_isa(std::string_view name) {
  g_active.store(static_cast<int>(parse_isa(name)), std::memory_order_relaxed);
}

}  // namespace quantcore
