// The int8-activation GEMV for 2- and 3-bit codes on AVX-512 VNNI + VBMI (Zen 4, Ice Lake and
// later), compiled with -mavx512vnni -mavx512vbmi; called by avx512::qdot_rows_int8 when the CPU
// has both.
//
// 64 codes of b bits fill 8b bytes, 8 codes to each b bytes. vpermb gives each 64-bit lane j the
// 8 bytes from byte bj on, so code 8j + t starts at bit bt of lane j; vpmultishiftqb moves bits
// bt .. bt + 7 of lane j into byte t, and an AND keeps the code's b bits. The 64 codes come out
// as unsigned bytes in order, which is what the 8-bit streaming loop (qmatmul_vnni_stream.h)
// multiplies with q in vpdpbusd: the same integer sums, with no row buffer.
#include <immintrin.h>

#include <algorithm>
#include <type_traits>
#include <utility>
#include <vector>

#include "quantcore/intq.h"
#include "quantcore/pack.h"
#include "quantcore/qmatmul.h"

namespace quantcore::avx512vnnivbmi {
namespace {

#include "qmatmul_ymm.h"

#include "qmatmul_vnni_stream.h"

template <int kBits>
struct Packed {
  static constexpr bool kNibbles = false;
  __m512i spread, shifts, mask;
  Packed() {
    alignas(64) uint8_t idx[64], sh[64];
    for (int j = 0; j < 8; ++j)
      for (int t = 0; t < 8; ++t) {
        idx[8 * j + t] = static_cast<uint8_t>(kBits * j + t);
        sh[8 * j + t] = static_cast<uint8_t>(kBits * t);
      }
    spread = _mm512_load_si512(idx);
    shifts = _mm512_load_si512(sh);
    mask = _mm512_set1_epi8(static_cast<char>((1 << kBits) - 1));
  }
  static_assert(kBits == 2 || kBits == 3, "64 codes must fit 32 bytes");
  // Codes 64c .. 64c + 63 of the row: its 8 kBits bytes from 8 kBits c (a masked load: nothing
  // read past them)
  __m512i load(const uint8_t* row, std::size_t c) const {
    const __m512i raw = _mm512_castsi256_si512(_mm256_maskz_loadu_epi8((1u << (8 * kBits)) - 1, row + 8 * kBits * c));
    return _mm512_and_si512(_mm512_multishift_epi64_epi8(shifts, _mm512_permutexvar_epi8(spread, raw)), mask);
  }
};

}  // namespace

bool qdot_rows_int8(const QWeight& w, std::size_t r0, std::size_t r1, const QInputInt8& in, float* y,
                    std::size_t ldy) {
  const int bits = w.scheme.bits;
  if (!plain_integer_codes(w) || (bits != 2 && bits != 3)) return false;
  if (in.m > 8 || w.cols % 64 != 0 || w.cols % in.block != 0 || in.block % 32 != 0) return false;
  return bits == 3 ? stream_rows<Packed<3>>(w, r0, r1, in, y, ldy) : stream_rows<Packed<2>>(w, r0, r1, in, y, ldy);
}

}  // namespace quantcore::avx512vnnivbmi
