// The integer quantization kernel tables, one per ISA, and the choice among them.
#include "quantcore/dispatch.h"
#include "quantcore/intq.h"

namespace quantcore {
namespace {

#define QUANTCORE_TABLE_ENTRY(ret, name, args) name,
#define QUANTCORE_INTQ_TABLE(isa)                                                  \
  []() -> const IntqKernels& {                                                     \
    using namespace isa;                                                           \
    static const IntqKernels table{QUANTCORE_INTQ_KERNELS(QUANTCORE_TABLE_ENTRY)}; \
    return table;                                                                  \
  }()

}  // namespace

const IntqKernels& intq_kernels() {
  static const IntqKernels& scalar_table = QUANTCORE_INTQ_TABLE(scalar);
#if defined(__x86_64__) || defined(_M_X64)
  static const IntqKernels& avx2_table = QUANTCORE_INTQ_TABLE(avx2);
  static const IntqKernels& avx512_table = QUANTCORE_INTQ_TABLE(avx512);
  return select_kernels(scalar_table, avx2_table, avx512_table, scalar_table);
#else
  // No NEON variant yet: the scalar reference serves every other architecture.
  return scalar_table;
#endif
}

#undef QUANTCORE_INTQ_TABLE
#undef QUANTCORE_TABLE_ENTRY

}  // namespace quantcore
