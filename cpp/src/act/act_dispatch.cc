// The activation kernel tables, one per ISA, and the choice among them.
#include "quantcore/act.h"
#include "quantcore/dispatch.h"

namespace quantcore {
namespace {

#define QUANTCORE_TABLE_ENTRY(ret, name, args) name,
#define QUANTCORE_ACT_TABLE(isa)                                                 \
  []() -> const ActKernels& {                                                    \
    using namespace isa;                                                         \
    static const ActKernels table{QUANTCORE_ACT_KERNELS(QUANTCORE_TABLE_ENTRY)}; \
    return table;                                                                \
  }()

}  // namespace

const ActKernels& act_kernels() {
  static const ActKernels& scalar_table = QUANTCORE_ACT_TABLE(scalar);
#if defined(__x86_64__) || defined(_M_X64)
  static const ActKernels& avx2_table = QUANTCORE_ACT_TABLE(avx2);
  static const ActKernels& avx512_table = QUANTCORE_ACT_TABLE(avx512);
  return select_kernels(scalar_table, avx2_table, avx512_table, scalar_table);
#else
  // No NEON variant: the scalar reference serves every other architecture.
  return scalar_table;
#endif
}

#undef QUANTCORE_ACT_TABLE
#undef QUANTCORE_TABLE_ENTRY

}  // namespace quantcore
