// Compares every kernel of one ISA table with the scalar reference on random and special inputs
// with lengths that exercise the SIMD tails: FP8 byte for byte, quantized matmul within float
// summation-order error (its integer dot products are exact on every ISA). Built and run by
// tests/test_cross_isa.py, e.g. for NEON with an aarch64 cross compiler under qemu-user, where
// the Python extension itself cannot be loaded.
//   usage: isa_check ISA      exit status 0 when every comparison matches
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "quantcore/dispatch.h"
#include "quantcore/fp8.h"
#include "quantcore/qmatmul.h"

namespace qc = quantcore;

namespace {

int g_failures = 0;

template <class T>
void expect_equal(const std::vector<T>& a, const std::vector<T>& b, const std::string& what) {
  if (std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) != 0) {
    for (std::size_t i = 0; i < a.size(); ++i)
      if (std::memcmp(&a[i], &b[i], sizeof(T)) != 0) {
        std::printf("MISMATCH %s at %zu\n", what.c_str(), i);
        break;
      }
    ++g_failures;
  }
}

std::vector<uint32_t> float32_inputs(std::mt19937_64& rng, std::size_t n) {
  std::vector<uint32_t> v(n);
  for (auto& x : v) x = static_cast<uint32_t>(rng());
  const uint32_t specials[] = {0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001,
                               0x7F800001, 0x43E00000, 0x43E80000, 0x43E80001, 0x43F00000, 0x47600000,
                               0x47700000, 0x476FFFFF, 0x3C800000, 0x3A800000, 0x3B400000, 0x00000001};
  for (std::size_t i = 0; i < sizeof(specials) / 4 && i < n; ++i) v[i] = specials[i];
  // a band of values around the FP8 range, where rounding decisions happen
  std::uniform_real_distribution<float> mag(-20.0f, 17.0f);
  for (std::size_t i = n / 2; i < n; ++i) {
    float f = std::ldexp(1.0f + static_cast<float>(rng() % 1024) / 1024.0f, static_cast<int>(mag(rng)));
    if (rng() & 1) f = -f;
    std::memcpy(&v[i], &f, 4);
  }
  return v;
}

void check_fp8(const qc::Fp8Kernels& ref, const qc::Fp8Kernels& simd, std::mt19937_64& rng) {
  const std::size_t lengths[] = {0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 1000, 4099};
  for (std::size_t n : lengths) {
    for (int f = 0; f < 2; ++f) {
      const auto fmt = static_cast<qc::Fp8Format>(f);
      const std::string tag = " fmt=" + std::to_string(f) + " n=" + std::to_string(n);
      std::vector<uint32_t> bits = float32_inputs(rng, n);
      std::vector<float> x32(n);
      std::memcpy(x32.data(), bits.data(), 4 * n);
      std::vector<double> x64(n);
      for (std::size_t i = 0; i < n; ++i) x64[i] = static_cast<double>(x32[i]) * (1.0 + std::ldexp(static_cast<double>(rng() % 4096) - 2048.0, -40));
      std::vector<uint16_t> x16(n);
      for (auto& h : x16) h = static_cast<uint16_t>(rng());
      for (int o = 0; o < 2; ++o) {
        const auto ov = static_cast<qc::Overflow>(o);
        std::vector<uint8_t> a(n), b(n);
        ref.encode_f32(x32.data(), a.data(), n, fmt, ov);
        simd.encode_f32(x32.data(), b.data(), n, fmt, ov);
        expect_equal(a, b, "encode_f32" + tag);
        ref.encode_f64(x64.data(), a.data(), n, fmt, ov);
        simd.encode_f64(x64.data(), b.data(), n, fmt, ov);
        expect_equal(a, b, "encode_f64" + tag);
        ref.encode_f16(x16.data(), a.data(), n, fmt, ov);
        simd.encode_f16(x16.data(), b.data(), n, fmt, ov);
        expect_equal(a, b, "encode_f16" + tag);
        ref.encode_bf16(x16.data(), a.data(), n, fmt, ov);
        simd.encode_bf16(x16.data(), b.data(), n, fmt, ov);
        expect_equal(a, b, "encode_bf16" + tag);
      }
      std::vector<uint8_t> codes(n);
      for (std::size_t i = 0; i < n; ++i) codes[i] = static_cast<uint8_t>(n < 256 ? i * 37 + f : rng());
      std::vector<float> fa(n), fb(n);
      ref.decode_f32(codes.data(), fa.data(), n, fmt);
      simd.decode_f32(codes.data(), fb.data(), n, fmt);
      expect_equal(fa, fb, "decode_f32" + tag);
      std::vector<uint16_t> ha(n), hb(n);
      ref.decode_f16(codes.data(), ha.data(), n, fmt);
      simd.decode_f16(codes.data(), hb.data(), n, fmt);
      expect_equal(ha, hb, "decode_f16" + tag);
      ref.decode_bf16(codes.data(), ha.data(), n, fmt);
      simd.decode_bf16(codes.data(), hb.data(), n, fmt);
      expect_equal(ha, hb, "decode_bf16" + tag);
      std::vector<float> finite(n);
      for (std::size_t i = 0; i < n; ++i) finite[i] = std::isfinite(x32[i]) ? x32[i] : 1.0f;
      std::vector<uint32_t> ma{ref.amax_bits_f32(finite.data(), n)}, mb{simd.amax_bits_f32(finite.data(), n)};
      expect_equal(ma, mb, "amax_bits_f32" + tag);
      std::vector<uint8_t> sa(n), sb(n);
      ref.encode_scaled_f32(finite.data(), sa.data(), n, 0.37f, fmt);
      simd.encode_scaled_f32(finite.data(), sb.data(), n, 0.37f, fmt);
      expect_equal(sa, sb, "encode_scaled_f32" + tag);
    }
  }
}

// |a - b| <= tol element by element (the float paths may sum in another order).
void expect_close(const std::vector<float>& a, const std::vector<float>& b, const std::vector<double>& tol,
                  const std::string& what) {
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!(std::fabs(static_cast<double>(a[i]) - b[i]) <= tol[i])) {
      std::printf("MISMATCH %s at %zu: %.9g vs %.9g (tol %.3g)\n", what.c_str(), i, a[i], b[i], tol[i]);
      ++g_failures;
      return;
    }
}

struct QCase {
  qc::QWeightFormat format;
  qc::IntqKind kind;
  int bits;
  qc::ScaleType scale_type;
  std::size_t cols, group;
};

// A random weight of a case: any code bytes (fp8 NaN / inf codes excluded), positive scales in
// [1/128, 1/64), zero points in range; q4_1's float16 m of either sign.
struct RandomWeight {
  qc::QWeight w;
  std::vector<uint8_t> codes, zeros8;
  std::vector<uint16_t> halves, m;
  std::vector<float> floats;

  RandomWeight(const QCase& c, std::size_t rows, std::mt19937_64& rng) {
    const std::size_t row_bytes = (c.cols * c.bits + 7) / 8, n_groups = c.cols / c.group;
    codes.resize(rows * row_bytes);
    for (auto& b : codes) {
      b = static_cast<uint8_t>(rng());
      if (c.format == qc::QWeightFormat::kE4m3fn && (b & 0x7F) == 0x7F) b ^= 1;
      if (c.format == qc::QWeightFormat::kE5m2 && (b & 0x7C) == 0x7C) b ^= 0x04;
    }
    const void* scales;
    if (c.scale_type == qc::ScaleType::kFloat32) {
      floats.resize(rows * n_groups);
      for (auto& f : floats) f = std::ldexp(1.0f + static_cast<float>(rng() % 1000) / 1000.0f, -7);
      scales = floats.data();
    } else {
      halves.resize(rows * n_groups);
      const bool bf16 = c.scale_type == qc::ScaleType::kBFloat16;
      for (auto& h : halves) h = static_cast<uint16_t>(bf16 ? 0x3C00 + rng() % 0x80 : 0x2000 + rng() % 0x400);
      scales = halves.data();
    }
    const void* zeros = nullptr;
    if (c.format == qc::QWeightFormat::kQ4_1) {
      m.resize(rows * n_groups);
      for (auto& h : m) h = static_cast<uint16_t>(0x2000 + rng() % 0x400 + (rng() & 1) * 0x8000);
      zeros = m.data();
    } else if (c.kind == qc::IntqKind::kAsymmetric) {
      zeros8.resize(rows * n_groups);
      for (auto& z : zeros8) z = static_cast<uint8_t>(rng() % (1u << c.bits));
      zeros = zeros8.data();
    }
    w = qc::QWeight{c.format, qc::IntqScheme{c.kind, c.bits, c.scale_type}, codes.data(), rows, c.cols, row_bytes,
                    c.group, n_groups, scales, zeros};
  }
};

// Each SIMD qmatmul kernel against the scalar one: gemv_rows and gemm_rows within float32
// summation error (2 * cols * eps * sum |x w|), qdot_rows_int8 within the error of its float
// epilogue (its integer sums are exact).
void check_qmatmul(const qc::QmatmulKernels& ref, const qc::QmatmulKernels& simd, std::mt19937_64& rng) {
  using F = qc::QWeightFormat;
  using K = qc::IntqKind;
  using S = qc::ScaleType;
  const QCase cases[] = {
      {F::kIntq, K::kSymmetric, 4, S::kFloat16, 256, 128}, {F::kIntq, K::kAsymmetric, 4, S::kFloat16, 256, 32},
      {F::kIntq, K::kAsymmetric, 4, S::kBFloat16, 96, 96}, {F::kIntq, K::kSymmetric, 4, S::kFloat32, 64, 32},
      {F::kIntq, K::kSymmetric, 8, S::kFloat16, 128, 32},  {F::kIntq, K::kAsymmetric, 8, S::kFloat16, 192, 64},
      {F::kIntq, K::kSymmetric, 3, S::kFloat16, 128, 64},  {F::kIntq, K::kAsymmetric, 2, S::kFloat32, 64, 16},
      {F::kIntq, K::kNf4, 4, S::kFloat16, 128, 64},        {F::kQ4_1, K::kAsymmetric, 4, S::kFloat16, 128, 32},
      {F::kE4m3fn, K::kSymmetric, 8, S::kFloat32, 100, 100}, {F::kE5m2, K::kSymmetric, 8, S::kFloat16, 128, 64},
      {F::kIntq, K::kSymmetric, 4, S::kFloat16, 40, 8},    {F::kE4m3fn, K::kSymmetric, 8, S::kFloat32, 103, 103},
      {F::kIntq, K::kAsymmetric, 4, S::kFloat16, 54, 18},
  };
  const double eps = std::ldexp(1.0, -23);
  for (const QCase& c : cases) {
    const std::size_t rows = 7, cols = c.cols;
    RandomWeight rw(c, rows, rng);
    const qc::QWeight& w = rw.w;
    std::vector<float> wf(rows * cols);
    qc::scalar::decode_rows(w, 0, rows, wf.data());
    const std::string tag = " format=" + std::to_string(static_cast<int>(c.format)) + " bits=" +
                            std::to_string(c.bits) + " kind=" + std::to_string(static_cast<int>(c.kind)) +
                            " cols=" + std::to_string(cols) + " group=" + std::to_string(c.group);
    for (std::size_t m : {std::size_t{1}, std::size_t{3}, std::size_t{37}}) {
      std::vector<float> x(m * cols);
      for (auto& v : x) v = static_cast<float>(static_cast<double>(rng() % 20001) / 10000.0 - 1.0);
      std::vector<double> tol(m * rows);
      for (std::size_t i = 0; i < m; ++i)
        for (std::size_t r = 0; r < rows; ++r) {
          double s = 0;
          for (std::size_t k = 0; k < cols; ++k)
            s += std::fabs(static_cast<double>(x[i * cols + k]) * wf[r * cols + k]);
          tol[i * rows + r] = 2.0 * cols * eps * s;
        }
      std::vector<float> ya(m * rows), yb(m * rows);
      // x_pairs as the driver builds it (qmatmul_dispatch.cc): per block of 32, the 16 even then
      // the 16 odd positions, for 4-bit integer codes
      const bool pairs = c.bits == 4 && cols % 32 == 0 && (c.format == F::kIntq || c.format == F::kQ4_1);
      std::vector<float> x_pairs(pairs ? m * cols : 0);
      for (std::size_t i = 0; pairs && i < m; ++i)
        for (std::size_t b = 0; b < cols; b += 32)
          for (std::size_t j = 0; j < 16; ++j) {
            x_pairs[i * cols + b + j] = x[i * cols + b + 2 * j];
            x_pairs[i * cols + b + 16 + j] = x[i * cols + b + 2 * j + 1];
          }
      if (m <= 8) {
        const qc::QInput in{x.data(), pairs ? x_pairs.data() : nullptr, nullptr, nullptr, m};
        ref.gemv_rows(w, 0, rows, in, ya.data(), rows);
        simd.gemv_rows(w, 0, rows, in, yb.data(), rows);
        expect_close(ya, yb, tol, "gemv_rows m=" + std::to_string(m) + tag);
      } else {
        const std::size_t n_panels = (m + qc::kPanel - 1) / qc::kPanel;
        std::vector<float> panels(n_panels * cols * qc::kPanel, 0.0f), buf(qc::kGemmRows * cols);
        for (std::size_t i = 0; i < m; ++i)
          for (std::size_t k = 0; k < cols; ++k)
            panels[(i / qc::kPanel) * cols * qc::kPanel + k * qc::kPanel + i % qc::kPanel] = x[i * cols + k];
        const qc::QInput in{x.data(), nullptr, nullptr, panels.data(), m};
        ref.gemm_rows(w, 0, rows, in, buf.data(), ya.data(), rows);
        simd.gemm_rows(w, 0, rows, in, buf.data(), yb.data(), rows);
        expect_close(ya, yb, tol, "gemm_rows m=" + std::to_string(m) + tag);
      }
      const bool integer = (c.format == F::kIntq && c.kind != K::kNf4) || c.format == F::kQ4_1;
      if (!integer || m > 8) continue;
      for (std::size_t block : {std::size_t{32}, std::min<std::size_t>(c.group, 256)}) {
        const std::size_t n_blocks = (cols + block - 1) / block;
        std::vector<int8_t> q(m * cols), q_pairs(m * cols);
        std::vector<float> sx(m * n_blocks);
        std::vector<int32_t> qsum(m * n_blocks);
        for (std::size_t i = 0; i < m; ++i)
          ref.quantize_int8(&x[i * cols], cols, block, &q[i * cols], &sx[i * n_blocks], &qsum[i * n_blocks]);
        for (std::size_t i = 0; pairs && i < m; ++i)
          for (std::size_t b = 0; b < cols; b += 32)
            for (std::size_t j = 0; j < 16; ++j) {
              q_pairs[i * cols + b + j] = q[i * cols + b + 2 * j];
              q_pairs[i * cols + b + 16 + j] = q[i * cols + b + 2 * j + 1];
            }
        const qc::QInputInt8 in{q.data(), pairs ? q_pairs.data() : nullptr, sx.data(), qsum.data(), m, block, n_blocks};
        // the epilogue's error bound: sum over blocks of |sx| (|scale| |idot - zero qsum| + |offset qsum|)
        std::vector<uint8_t> buf(cols);
        std::vector<double> itol(m * rows);
        for (std::size_t r = 0; r < rows; ++r) {
          qc::scalar::unpack_row(w, r, buf.data());
          for (std::size_t i = 0; i < m; ++i) {
            double bound = 0;
            for (std::size_t b = 0; b < n_blocks; ++b) {
              const std::size_t k0 = b * block, k1 = std::min(cols, k0 + block);
              int64_t idot = 0;
              for (std::size_t k = k0; k < k1; ++k) idot += static_cast<int64_t>(buf[k]) * q[i * cols + k];
              const qc::scalar::IntGroup g = qc::scalar::int_group(w, r, k0 / c.group);
              const double qs = qsum[i * n_blocks + b];
              bound += std::fabs(sx[i * n_blocks + b]) *
                       (std::fabs(g.scale * (static_cast<double>(idot) - g.zero * qs)) + std::fabs(g.offset * qs));
            }
            itol[i * rows + r] = 4.0 * (n_blocks + 4) * eps * bound;
          }
        }
        std::vector<uint8_t> scratch(cols);
        ref.qdot_rows_int8(w, 0, rows, in, scratch.data(), ya.data(), rows);
        simd.qdot_rows_int8(w, 0, rows, in, scratch.data(), yb.data(), rows);
        expect_close(ya, yb, itol, "qdot_rows_int8 m=" + std::to_string(m) + " block=" + std::to_string(block) + tag);
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: isa_check ISA\n");
    return 2;
  }
  std::mt19937_64 rng(12345);
  // each family's scalar table and the ISA's, which must not be the scalar one
  auto tables = [&](auto& get, const char* family) {
    qc::force_isa("scalar");
    const auto* ref = &get();
    qc::force_isa(argv[1]);
    const auto* simd = &get();
    if (ref == simd && std::string(argv[1]) != "scalar") {
      std::fprintf(stderr, "isa_check: %s selected the scalar %s table\n", argv[1], family);
      std::exit(1);
    }
    return std::pair{ref, simd};
  };
  const auto [ref, simd] = tables(qc::fp8_kernels, "fp8");
  check_fp8(*ref, *simd, rng);
  const auto [qref, qsimd] = tables(qc::qmatmul_kernels, "qmatmul");
  check_qmatmul(*qref, *qsimd, rng);
  std::printf("%s: %s\n", argv[1], g_failures == 0 ? "all kernels match scalar" : "MISMATCHES");
  return g_failures == 0 ? 0 : 1;
}
