// The GGUF kernel tables, one per ISA, and the choice among them.
#include "quantcore/dispatch.h"
#include "quantcore/gguf.h"

namespace quantcore {

#define QUANTCORE_TABLE_ENTRY(ret, name, args) name,
#define QUANTCORE_GGUF_TABLE(isa)                                                  \
  []() -> const GgufKernels& {                                                     \
    using namespace isa;                                                           \
    static const GgufKernels table{QUANTCORE_GGUF_KERNELS(QUANTCORE_TABLE_ENTRY)}; \
    return table;                                                                  \
  }()

const GgufKernels& gguf_kernels() {
  static const GgufKernels& scalar_table = QUANTCORE_GGUF_TABLE(scalar);
#if defined(__x86_64__) || defined(_M_X64)
  static const GgufKernels& avx2_table = QUANTCORE_GGUF_TABLE(avx2);
  static const GgufKernels& avx512_table = QUANTCORE_GGUF_TABLE(avx512);
  return select_kernels(scalar_table, avx2_table, avx512_table, scalar_table);
#else
  return scalar_table;
#endif
}

#undef QUANTCORE_GGUF_TABLE
#undef QUANTCORE_TABLE_ENTRY

}  // namespace quantcore
