// Compares every kernel of one ISA table with the scalar reference, byte for byte, on random
// and special inputs with lengths that exercise the SIMD tails. Built and run by
// tests/test_cross_isa.py, e.g. for NEON with an aarch64 cross compiler under qemu-user, where
// the Python extension itself cannot be loaded.
//   usage: isa_check ISA      exit status 0 when every comparison matches
#include <cstdint>
#include <cstdio>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "quantcore/dispatch.h"
#include "quantcore/fp8.h"

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

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: isa_check ISA\n");
    return 2;
  }
  std::mt19937_64 rng(12345);
  qc::force_isa("scalar");
  const qc::Fp8Kernels& ref = qc::fp8_kernels();
  qc::force_isa(argv[1]);
  const qc::Fp8Kernels& simd = qc::fp8_kernels();
  if (&ref == &simd && std::string(argv[1]) != "scalar") {
    std::fprintf(stderr, "isa_check: %s selected the scalar table\n", argv[1]);
    return 1;
  }
  check_fp8(ref, simd, rng);
  std::printf("%s: %s\n", argv[1], g_failures == 0 ? "all kernels match scalar" : "MISMATCHES");
  return g_failures == 0 ? 0 : 1;
}
