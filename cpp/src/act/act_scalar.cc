// The scalar reference of the activation kernels (see act.h).
#include <cmath>

#include "quantcore/act.h"

namespace quantcore::scalar {

void swiglu(const float* gate, const float* up, float* out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    const float x = gate[i];
    const float e = std::exp(-std::fabs(x));
    const float s = (x >= 0.0f ? x : x * e) / (1.0f + e);
    out[i] = up == nullptr ? s : s * up[i];
  }
}

}  // namespace quantcore::scalar
