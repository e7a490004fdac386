// The fp8 and the 2- / 3-bit GEMVs (float activations) on AVX-512 VBMI, compiled with
// -mavx512vbmi; used by the AVX-512 table when the CPU has VBMI (Ice Lake, Zen 4 and later).
//
// 2- and 3-bit codes (int2 / int3, sym or asym; in_features a multiple of 64, group a multiple
// of 16): 64 codes fill 8b bytes, loaded once; for each 16 of them vpermb gives 32-bit lane i
// the two bytes that hold code i, vpsrlvd moves the code to bit 0, and vpermps, which reads
// index bits 0-3, looks it up in a 16-entry table of the group's exact weights ((c - zero) *
// scale, repeated every 2^b entries so the bits above the code do not matter). x is read in
// order. Without this the codes were decoded to a row buffer by the scalar unpacker.
//
// fp8 (group a multiple of 64):
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
#include <type_traits>
#include <vector>

#include "quantcore/fp8.h"
#include "quantcore/intq.h"
#include "quantcore/pack.h"
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

template <int kBits>
struct LowBit {
  __m512i spread[4], shifts;  // unit k of 16 codes: lane i <- bytes of code 16k + i; its bit offset
  LowBit() {
    alignas(64) uint8_t idx[4][64];
    alignas(64) uint32_t sh[16];
    for (int k = 0; k < 4; ++k)
      for (int i = 0; i < 16; ++i) {
        const int bit = (16 * k + i) * kBits;
        for (int t = 0; t < 4; ++t) idx[k][4 * i + t] = static_cast<uint8_t>(bit / 8 + (t < 2 ? t : 0));
        sh[i] = static_cast<uint32_t>(bit % 8);  // the same for every k: 16 codes fill 2b bytes
      }
    for (int k = 0; k < 4; ++k) spread[k] = _mm512_load_si512(idx[k]);
    shifts = _mm512_load_si512(sh);
  }
};

// (c mod 2^kBits - zero) * scale for c in 0..15: the weights of group g, as dequantize rounds them.
template <int kBits>
__m512 lowbit_table(const ymm::RowGroups& p, std::size_t g) {
  const __m512 codes = _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                                            _mm512_set1_epi32((1 << kBits) - 1)));
  return _mm512_mul_ps(_mm512_sub_ps(codes, _mm512_set1_ps(p.zero[g])), _mm512_set1_ps(p.scale[g]));
}

template <int kBits, int M>
void gemv_lowbit(const QWeight& w, std::size_t r0, std::size_t r1, const float* x, float* y, std::size_t ldy) {
  static_assert(kBits == 2 || kBits == 3, "64 codes must fit 32 bytes");
  const LowBit<kBits> lb;
  const std::size_t cols = w.cols, units_per_group = w.group_size / 16;
  ymm::RowGroups p(cols / w.group_size);
  for (std::size_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.codes + r * w.row_bytes;
    ymm::row_groups(w, r, p);
    __m512 acc[M][2];
    for (int i = 0; i < M; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    std::size_t g = 0, left = units_per_group;
    __m512 table = lowbit_table<kBits>(p, 0);
    for (std::size_t k0 = 0; k0 < cols; k0 += 64) {
      const __m512i raw =
          _mm512_castsi256_si512(_mm256_maskz_loadu_epi8((1u << (8 * kBits)) - 1, row + kBits * k0 / 8));
#pragma GCC unroll 4
      for (int u = 0; u < 4; ++u) {
        if (left == 0) {
          table = lowbit_table<kBits>(p, ++g);
          left = units_per_group;
        }
        --left;
        const __m512i idx = _mm512_srlv_epi32(_mm512_permutexvar_epi8(lb.spread[u], raw), lb.shifts);
        const __m512 v = _mm512_permutexvar_ps(idx, table);
#pragma GCC unroll 8
        for (int i = 0; i < M; ++i)
          acc[i][u & 1] = _mm512_fmadd_ps(v, _mm512_loadu_ps(x + i * cols + k0 + 16 * u), acc[i][u & 1]);
      }
    }
    for (int i = 0; i < M; ++i) y[i * ldy + r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[i][0], acc[i][1]));
  }
}

}  // namespace

bool gemv_lowbit(const QWeight& w, std::size_t r0, std::size_t r1, const QInput& in, float* y, std::size_t ldy) {
  const int bits = w.scheme.bits;
  if (!plain_integer_codes(w) || (bits != 2 && bits != 3) ||
      in.m > 8 || w.cols % 64 != 0 || w.group_size % 16 != 0)
    return false;
  ymm::with_m(in.m, [&](auto c) {
    constexpr int M = decltype(c)::value;
    bits == 3 ? gemv_lowbit<3, M>(w, r0, r1, in.x, y, ldy) : gemv_lowbit<2, M>(w, r0, r1, in.x, y, ldy);
  });
  return true;
}

bool gemv_fp8(const QWeight& w, std::size_t r0, std::size_t r1, const QInput& in, float* y, std::size_t ldy) {
  const bool e4m3 = w.format == QWeightFormat::kE4m3fn;
  if ((!e4m3 && w.format != QWeightFormat::kE5m2) || in.x_fp8 == nullptr || w.group_size % 64 != 0) return false;
  static const Tables e4m3_tables = make_tables(Fp8Format::kE4M3FN), e5m2_tables = make_tables(Fp8Format::kE5M2);
  const Tables& t = e4m3 ? e4m3_tables : e5m2_tables;
  const float* x = in.x_fp8;
  if (in.m > 8) return false;
  ymm::with_m(in.m, [&](auto c) { gemv<decltype(c)::value>(w, r0, r1, x, y, ldy, t); });
  return true;
}

}  // namespace quantcore::avx512vbmi
