// The GPTQ kernel tables, one per ISA, and the choice among them.
#include "quantcore/dispatch.h"
#include "quantcore/gptq.h"

namespace quantcore {
namespace {

#define QUANTCORE_TABLE_ENTRY(ret, name, args) name,
#define QUANTCORE_GPTQ_TABLE(isa)                                                  \
  []() -> const GptqKernels& {                                                     \
    using namespace isa;                                                           \
    static const GptqKernels table{QUANTCORE_GPTQ_KERNELS(QUANTCORE_TABLE_ENTRY)}; \
    return table;                                                                  \
  }()

}  // namespace

const GptqKernels& gptq_kernels() {
  static const GptqKernels& scalar_table = QUANTCORE_GPTQ_TABLE(scalar);
#if defined(__x86_64__) || defined(_M_X64)
  static const GptqKernels& avx2_table = QUANTCORE_GPTQ_TABLE(avx2);
  static const GptqKernels& avx512_table = QUANTCORE_GPTQ_TABLE(avx512);
  return select_kernels(scalar_table, avx2_table, avx512_table, scalar_table);
#else
  // No NEON variant: the scalar reference serves every other architecture.
  return scalar_table;
#endif
}

#undef QUANTCORE_GPTQ_TABLE
#undef QUANTCORE_TABLE_ENTRY

}  // namespace quantcore
