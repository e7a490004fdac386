// The fp8 GEMV on AVX-512 VBMI (vpermi2b), compiled with -mavx512vbmi; used by the AVX-512
// table when the CPU has VBMI (Ice Lake, Zen 4 and later) and the group is a multiple of 64.
//
// Every e4m3fn and e5m2 value is exactly a bfloat16 (3 or 2 mantissa bits, exponents well
// inside bfloat16's range; subnormals become normal numbers, inf and NaN stay inf and NaN), and
// a float32 is a bfloat16 in the high half of its 32 bits. So: a code's 7 magnitude bits index
// two 128-byte tables (vpermi2b reads 7 index bits) for the low and the high byte of that
// bfloat16, the sign bit is copied into the high byte, two byte unpacks make 64 bfloat16
// words, and the words of each 32-bit lane become two floats, the even one shifted up by 16,
// the odd one masked. No conversion instruction, no exponent fix-up, no NaN tracking: the exact
// weights (less the group scale) meet x in the matching order (QInput::x_fp8) in plain FMAs.
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "quantcore/fp8.h"
#include "quantcore/qmatmul.h"

namespace quantcore::avx512vbmi {
namespace {

#include "qmatmul_ymm.h"

struct Tables {
  __m512i lo0, lo1, hi0, hi1;  // bytes of the bfloat16 of magnitude code c: lo[c], hi[c]
};

Tables make_tables(Fp8Format fmt) {
  alignas(64) uint8_t lo[128], hi[128];
  for (int c = 0; c < 128; ++c) {
    const float v = scalar::decode_one_f32(static_cast<uint8_t>(c), fmt);
    uint32_t bits;
    __builtin_memcpy(&bits, &v, 4);
    lo[c] = static_cast<uint8_t>(bits >> 16);  // the low 16 bits are zero: exact
    hi[c] = static_cast<uint8_t>(bits >> 24);
  }
  return {_mm512_load_si512(lo), _mm512_load_si512(lo + 64), _mm512_load_si512(hi), _mm512_load_si512(hi + 64)};
}

// The 64 weights of codes p[0..64) as four vectors: element 4L + d of vector k (L < 4, d < 4)
// is code 16L + 8(k / 2) + 2d + k % 2 (see to_fp8_order).
struct Four {
  __m512 v[4];
};

inline Four decode64(const uint8_t* p, const Tables& t) {
  const __m512i c = _mm512_loadu_si512(p);
  const __m512i lo = _mm512_permutex2var_epi8(t.lo0, c, t.lo1);
  // high byte from the table, bit 7 from the code: (table & ~0x80) | (c & 0x80)
  const __m512i hi = _mm512_ternarylogic_epi32(_mm512_permutex2var_epi8(t.hi0, c, t.hi1), c,
                                               _mm512_set1_epi8(static_cast<char>(0x80)), 0xD8);
  const __m512i w0 = _mm512_unpacklo_epi8(lo, hi), w1 = _mm512_unpackhi_epi8(lo, hi);
  const __m512i odd = _mm512_set1_epi32(static_cast<int>(0xFFFF0000u));
  return {{_mm512_castsi512_ps(_mm512_slli_epi32(w0, 16)), _mm512_castsi512_ps(_mm512_and_si512(w0, odd)),
           _mm512_castsi512_ps(_mm512_slli_epi32(w1, 16)), _mm512_castsi512_ps(_mm512_and_si512(w1, odd))}};
}

// kAcc partial sums per batch row: four for one or two rows (a chain of one FMA per 16 codes
// would wait on the FMA latency), two for more.
template <int M>
void gemv(const QWeight& w, std::size_t r0, std::size_t r1, const float* x, float* y, std::size_t ldy,
          const Tables& t) {
  constexpr int kAcc = M <= 2 ? 4 : 2;
  const std::size_t cols = w.cols, n_groups = cols / w.group_size;
  ymm::RowGroups p(n_groups);
  for (std::size_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.codes + r * w.row_bytes;
    ymm::row_groups(w, r, p);
    __m512 acc[M];
    for (int i = 0; i < M; ++i) acc[i] = _mm512_setzero_ps();
    for (std::size_t g = 0; g < n_groups; ++g) {
      __m512 part[M][kAcc];
#pragma GCC unroll 8
      for (int i = 0; i < M; ++i)
        for (int a = 0; a < kAcc; ++a) part[i][a] = _mm512_setzero_ps();
      for (std::size_t k = g * w.group_size; k < (g + 1) * w.group_size; k += 64) {
        const Four f = decode64(row + k, t);
#pragma GCC unroll 8
        for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
          for (int j = 0; j < 4; ++j)
            part[i][j % kAcc] = _mm512_fmadd_ps(f.v[j], _mm512_loadu_ps(x + i * cols + k + 16 * j), part[i][j % kAcc]);
      }
      const __m512 scale = _mm512_set1_ps(p.scale[g]);
#pragma GCC unroll 8
      for (int i = 0; i < M; ++i) {
        __m512 s = part[i][0];
        for (int a = 1; a < kAcc; ++a) s = _mm512_add_ps(s, part[i][a]);
        acc[i] = _mm512_fmadd_ps(s, scale, acc[i]);
      }
    }
    for (int i = 0; i < M; ++i) y[i * ldy + r] = _mm512_reduce_add_ps(acc[i]);
  }
}

}  // namespace

bool gemv_fp8(const QWeight& w, std::size_t r0, std::size_t r1, const QInput& in, float* y, std::size_t ldy) {
  const bool e4m3 = w.format == QWeightFormat::kE4m3fn;
  if ((!e4m3 && w.format != QWeightFormat::kE5m2) || in.x_fp8 == nullptr || w.group_size % 64 != 0) return false;
  static const Tables e4m3_tables = make_tables(Fp8Format::kE4M3FN), e5m2_tables = make_tables(Fp8Format::kE5M2);
  const Tables& t = e4m3 ? e4m3_tables : e5m2_tables;
  const float* x = in.x_fp8;
  switch (in.m) {
    case 1: gemv<1>(w, r0, r1, x, y, ldy, t); break;
    case 2: gemv<2>(w, r0, r1, x, y, ldy, t); break;
    case 3: gemv<3>(w, r0, r1, x, y, ldy, t); break;
    case 4: gemv<4>(w, r0, r1, x, y, ldy, t); break;
    case 5: gemv<5>(w, r0, r1, x, y, ldy, t); break;
    case 6: gemv<6>(w, r0, r1, x, y, ldy, t); break;
    case 7: gemv<7>(w, r0, r1, x, y, ldy, t); break;
    case 8: gemv<8>(w, r0, r1, x, y, ldy, t); break;
    default: return false;
  }
  return true;
}

}  // namespace quantcore::avx512vbmi
