// Elementwise activations of the model's forward pass.
//
// swiglu: out[i] = silu(gate[i]) * up[i] (up null: silu(gate[i]) alone), where
// silu(x) = x * sigmoid(x) is evaluated as x * m / (1 + e), e = exp(-|x|) (which never
// overflows) and m = 1 for x >= 0, e for x < 0. The scalar reference uses std::exp; the SIMD
// kernels a degree-7 polynomial on the reduced argument r = y - n ln 2 (|r| <= ln 2 / 2, two-part
// ln 2), scaled by 2^n with gradual underflow, so results stay within a few float32 ulps of the
// exact function for every finite x (tests/test_act.py checks each ISA against float64). NaN
// propagates; x = -inf gives NaN (-inf * 0), as x * sigmoid(x) does in float arithmetic.
#pragma once

#include <cstddef>

namespace quantcore {

#define QUANTCORE_ACT_KERNELS(X) \
  X(void, swiglu, (const float* gate, const float* up, float* out, std::size_t n))

#define QUANTCORE_DECLARE_KERNEL(ret, name, args) ret name args;
namespace scalar { QUANTCORE_ACT_KERNELS(QUANTCORE_DECLARE_KERNEL) }
namespace avx2 { QUANTCORE_ACT_KERNELS(QUANTCORE_DECLARE_KERNEL) }
namespace avx512 { QUANTCORE_ACT_KERNELS(QUANTCORE_DECLARE_KERNEL) }
#undef QUANTCORE_DECLARE_KERNEL

#define QUANTCORE_KERNEL_POINTER(ret, name, args) ret(*name) args;
struct ActKernels {
  QUANTCORE_ACT_KERNELS(QUANTCORE_KERNEL_POINTER)
};
#undef QUANTCORE_KERNEL_POINTER

// The table for the ISA currently selected (see dispatch.h).
const ActKernels& act_kernels();

// Coefficients shared by the SIMD kernels: exp(r) ~ sum_k r^k / k!, k <= 7 (Taylor; on
// |r| <= ln 2 / 2 the truncation error is below 8e-9 relative, about a sixteenth of a float32
// ulp), and ln 2 split so that n * kLn2Hi is exact for the |n| <= 151 used.
namespace act {
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693145751953125f;
constexpr float kLn2Lo = 1.42860682030941723212e-6f;
constexpr float kExpMin = -104.0f;  // exp below this is 0 in float32 (the smallest subnormal is 2^-149)
constexpr float kTaylor[8] = {1.0f, 1.0f, 0.5f, 1.0f / 6, 1.0f / 24, 1.0f / 120, 1.0f / 720, 1.0f / 5040};
}  // namespace act

}  // namespace quantcore
