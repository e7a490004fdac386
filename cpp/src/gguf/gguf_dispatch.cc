// The GGUF kernel tables, one per ISA, and the choice among them. Kernels without a SIMD
// variant yet take their entry from the scalar reference in every table.
#include "quantcore/dispatch.h"
#include "quantcore/gguf.h"

namespace quantcore {

#define QUANTCORE_SIMD_ENTRY(ret, name, args) isa::name,
#define QUANTCORE_SCALAR_ENTRY(ret, name, args) scalar::name,

const GgufKernels& gguf_kernels() {
#define QUANTCORE_GGUF_TABLE(isa_ns)                                        \
  []() -> const GgufKernels& {                                              \
    namespace isa = isa_ns;                                                 \
    static const GgufKernels table{                                         \
        QUANTCORE_GGUF_SIMD_KERNELS(QUANTCORE_SIMD_ENTRY)                   \
            QUANTCORE_GGUF_SCALAR_KERNELS(QUANTCORE_SCALAR_ENTRY)};         \
    return table;                                                           \
  }()
  static const GgufKernels& scalar_table = QUANTCORE_GGUF_TABLE(scalar);
#if defined(__x86_64__) || defined(_M_X64)
  static const GgufKernels& avx2_table = QUANTCORE_GGUF_TABLE(avx2);
  static const GgufKernels& avx512_table = QUANTCORE_GGUF_TABLE(avx512);
  return select_kernels(scalar_table, avx2_table, avx512_table, scalar_table);
#else
  return select_kernels(scalar_table, scalar_table, scalar_table, scalar_table);
#endif
#undef QUANTCORE_GGUF_TABLE
}

#undef QUANTCORE_SCALAR_ENTRY
#undef QUANTCORE_SIMD_ENTRY

}  // namespace quantcore
