// The bit-packing kernel tables, one per ISA, and the choice among them.
#include "quantcore/dispatch.h"
#include "quantcore/pack.h"

namespace quantcore {
namespace {

#define QUANTCORE_TABLE_ENTRY(ret, name, args) name,
#define QUANTCORE_PACK_TABLE(isa)                                                  \
  []() -> const PackKernels& {                                                     \
    using namespace isa;                                                           \
    static const PackKernels table{QUANTCORE_PACK_KERNELS(QUANTCORE_TABLE_ENTRY)}; \
    return table;                                                                  \
  }()

}  // namespace

const PackKernels& pack_kernels() {
  static const PackKernels& scalar_table = QUANTCORE_PACK_TABLE(scalar);
#if defined(__x86_64__) || defined(_M_X64)
  static const PackKernels& avx2_table = QUANTCORE_PACK_TABLE(avx2);
  static const PackKernels& avx512_table = QUANTCORE_PACK_TABLE(avx512);
  return select_kernels(scalar_table, avx2_table, avx512_table, scalar_table);
#else
  // No NEON variant yet: the scalar reference serves every other architecture.
  return scalar_table;
#endif
}

#undef QUANTCORE_PACK_TABLE
#undef QUANTCORE_TABLE_ENTRY

}  // namespace quantcore
