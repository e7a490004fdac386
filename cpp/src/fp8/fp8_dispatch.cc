// The FP8 kernel tables, one per ISA, and the choice among them.
#include "quantcore/dispatch.h"
#include "quantcore/fp8.h"

namespace quantcore {
namespace {

#define QUANTCORE_TABLE_ENTRY(ret, name, args) name,
#define QUANTCORE_FP8_TABLE(isa)                                             \
  []() -> const Fp8Kernels& {                                                \
    using namespace isa;                                                     \
    static const Fp8Kernels table{QUANTCORE_FP8_KERNELS(QUANTCORE_TABLE_ENTRY)}; \
    return table;                                                            \
  }()

}  // namespace

const Fp8Kernels& fp8_kernels() {
  static const Fp8Kernels& scalar_table = QUANTCORE_FP8_TABLE(scalar);
#if defined(__x86_64__) || defined(_M_X64)
  static const Fp8Kernels& avx2_table = QUANTCORE_FP8_TABLE(avx2);
  static const Fp8Kernels& avx512_table = QUANTCORE_FP8_TABLE(avx512);
  return select_kernels(scalar_table, avx2_table, avx512_table, scalar_table);
#elif defined(__aarch64__)
  static const Fp8Kernels& neon_table = QUANTCORE_FP8_TABLE(neon);
  return select_kernels(scalar_table, scalar_table, scalar_table, neon_table);
#else
  return scalar_table;
#endif
}

#undef QUANTCORE_FP8_TABLE
#undef QUANTCORE_TABLE_ENTRY

}  // namespace quantcore
