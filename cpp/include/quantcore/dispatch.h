// Run-time selection of the instruction set.
//
// Every kernel variant is compiled into the one binary (each SIMD file with its own flags);
// which one runs is chosen here, once, on first use: QUANTCORE_ISA if set, else the best ISA
// this CPU supports. Tests switch ISAs with force_isa() to run every variant.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace quantcore {

enum class Isa : int { kScalar = 0, kAvx2 = 1, kAvx512 = 2, kNeon = 3 };

const char* isa_name(Isa isa);

// ISAs this CPU (and this build) can run, from the reference up: e.g. {"scalar", "avx2", "avx512"}.
std::vector<std::string> available_isas();

// The ISA kernels dispatch to now.
Isa active_isa();

// Select an ISA by name; throws std::invalid_argument if unknown or unsupported here.
void force_isa(std::string_view name);

// Pick the kernel table for the active ISA out of a per-ISA set. Tables an ISA lacks (NEON on
// x86, AVX on ARM) are never chosen, because force_isa refuses those ISAs.
template <class Table>
const Table& select_kernels(const Table& scalar_table, const Table& avx2_table,
                            const Table& avx512_table, const Table& neon_table) {
  switch (active_isa()) {
    case Isa::kAvx2: return avx2_table;
    case Isa::kAvx512: return avx512_table;
    case Isa::kNeon: return neon_table;
    default: return scalar_table;
  }
}

}  // namespace quantcore
