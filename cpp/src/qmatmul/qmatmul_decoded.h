// The decode-then-multiply GEMV and GEMM shared by the AVX2 and NEON files: rows decoded by
// scalar::decode_rows (bit-identical to dequantize), then the file's own float kernels. Defines
// decoded::gemv_rows and the table's gemm_rows; each file includes this in its ISA namespace
// (outside its anonymous namespace), after defining
//   float dot(const float* a, const float* b, std::size_t n);
//   template <int R> void micro_tile(const float* wr, std::size_t cols, const float* panel, float* tile);
//       tile[r * kPanel + j] = sum_k wr[r * cols + k] * panel[k * kPanel + j] (r < R, j < kPanel)
//   constexpr int kMicroRows;          the most rows micro_tile takes
//   constexpr std::size_t kGemvRows;   rows decoded at a time by the GEMV
namespace decoded {

// micro_tile<nr> for 1 <= nr <= R
template <int R>
void tile_of(std::size_t nr, const float* wr, std::size_t cols, const float* panel, float* tile) {
  if constexpr (R > 1)
    if (nr < static_cast<std::size_t>(R)) return tile_of<R - 1>(nr, wr, cols, panel, tile);
  micro_tile<R>(wr, cols, panel, tile);
}

inline void gemv_rows(const QWeight& w, std::size_t r0, std::size_t r1, const QInput& in, float* y,
                      std::size_t ldy) {
  std::vector<float> rows(kGemvRows * w.cols);
  for (std::size_t r = r0; r < r1; r += kGemvRows) {
    const std::size_t n = std::min(kGemvRows, r1 - r);
    scalar::decode_rows(w, r, n, rows.data());
    for (std::size_t j = 0; j < n; ++j)
      for (std::size_t i = 0; i < in.m; ++i) y[i * ldy + r + j] = dot(in.x + i * w.cols, &rows[j * w.cols], w.cols);
  }
}

}  // namespace decoded

void gemm_rows(const QWeight& w, std::size_t r0, std::size_t r1, const QInput& in, float* buf, float* y,
               std::size_t ldy) {
  const std::size_t cols = w.cols, n = r1 - r0;
  scalar::decode_rows(w, r0, n, buf);
  alignas(64) float tile[kMicroRows * kPanel];
  for (std::size_t rb = 0; rb < n; rb += kMicroRows) {
    const std::size_t nr = std::min<std::size_t>(kMicroRows, n - rb);
    for (std::size_t p = 0; p * kPanel < in.m; ++p) {
      decoded::tile_of<kMicroRows>(nr, buf + rb * cols, cols, in.x_panels + p * cols * kPanel, tile);
      const std::size_t valid = std::min(kPanel, in.m - p * kPanel);
      for (std::size_t j = 0; j < valid; ++j) {  // row by row of y: the nr values are adjacent there
        float* yj = y + (p * kPanel + j) * ldy + r0 + rb;
        for (std::size_t r = 0; r < nr; ++r) yj[r] = tile[r * kPanel + j];
      }
    }
  }
}
