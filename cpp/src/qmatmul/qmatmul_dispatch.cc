// The quantized-matmul kernel tables, and the driver that prepares x once per call and splits
// the output features over the thread pool.
#include <algorithm>
#include <atomic>
#include <vector>

#include "quantcore/aligned.h"
#include "quantcore/dispatch.h"
#include "quantcore/parallel.h"
#include "quantcore/qmatmul.h"

namespace quantcore {
namespace {

#define QUANTCORE_TABLE_ENTRY(ret, name, args) name,
#define QUANTCORE_QMATMUL_TABLE(isa)                                                     \
  []() -> const QmatmulKernels& {                                                        \
    using namespace isa;                                                                 \
    static const QmatmulKernels table{QUANTCORE_QMATMUL_KERNELS(QUANTCORE_TABLE_ENTRY)}; \
    return table;                                                                        \
  }()

// Weights per block of rows handed out (GEMV, int8 path): 1 Mi, a few hundred rows. Measured
// on the 4096 x 11008 int4 GEMV with int8 activations (2 threads, weights from DRAM): 1.2 ms
// with blocks of 64 Ki weights, 0.9 ms with 256 Ki, 0.75-0.9 ms with 1 Mi: long runs of
// consecutive rows keep each core's hardware prefetcher streaming.
constexpr std::size_t kGemvGrain = 1 << 20;

// Each block of 32 as its 16 even then its 16 odd positions: the order in which a 4-bit row's
// bytes hold codes (low nibble = even code, high nibble = odd code), so SIMD code needs no
// shuffle of the codes.
template <class T>
void to_pairs(const T* src, std::size_t cols, T* dst) {
  for (std::size_t b = 0; b < cols; b += 32)
    for (std::size_t j = 0; j < 16; ++j) {
      dst[b + j] = src[b + 2 * j];
      dst[b + 16 + j] = src[b + 2 * j + 1];
    }
}

// Each block of 128 as its 64 even then its 64 odd positions (a last block of 64: 32 and 32).
void to_nibbles(const int8_t* src, std::size_t cols, int8_t* dst) {
  for (std::size_t b = 0; b < cols; b += 128) {
    const std::size_t half = std::min<std::size_t>(128, cols - b) / 2;
    for (std::size_t j = 0; j < half; ++j) {
      dst[b + j] = src[b + 2 * j];
      dst[b + half + j] = src[b + 2 * j + 1];
    }
  }
}

// Each block of 64 as 8 vectors of 8: vector t holds positions 8j + t (the 4-bit codes that a
// 32-bit word j of the block's bytes shifted right by 4t puts in its low bits).
void to_wide(const float* src, std::size_t cols, float* dst) {
  for (std::size_t b = 0; b < cols; b += 64)
    for (std::size_t t = 0; t < 8; ++t)
      for (std::size_t j = 0; j < 8; ++j) dst[b + 8 * t + j] = src[b + 8 * j + t];
}

// Each block of 64 in the order of avx512vbmi::gemv_fp8 (see QInput::x_fp8).
void to_fp8_order(const float* src, std::size_t cols, float* dst) {
  for (std::size_t b = 0; b < cols; b += 64)
    for (std::size_t k = 0; k < 4; ++k)
      for (std::size_t lane = 0; lane < 4; ++lane)
        for (std::size_t d = 0; d < 4; ++d) dst[b + 16 * k + 4 * lane + d] = src[b + 16 * lane + 8 * (k / 2) + 2 * d + k % 2];
}

constexpr std::size_t kGemmBatch = 512;  // rows of x per GEMM pass (see qmatmul)

// Below this much work (weights x batch rows) a GEMV runs on the calling thread: measured on 2
// cores, a 192 x 576 int4 GEMV gained nothing from the second core; 576 x 576 did (32 -> 19 us)
// once the pool's workers spin briefly between jobs instead of sleeping.
constexpr std::size_t kMinParallelWork = std::size_t{1} << 18;

// Dynamic split of [0, n) in blocks: each pool task calls task(next), and next(b, e) hands out
// the following block until none is left. On a shared machine a thread that loses its core
// then delays one small block, not a fixed share of the rows. Blocks shrink towards the end
// (to a share of what is left, down to block / 8), so the threads finish close together: with
// whole blocks to the end, one thread often ran a block alone (fp8 GEMV 4096 -> 11008: the two
// threads ended 100-180 us apart in a 2-3 ms call). Work below kMinParallelWork runs as one
// task on the calling thread.
template <class Task>
void for_blocks(std::size_t n, std::size_t block, const Task& task, std::size_t work) {
  const std::size_t n_blocks = (n + block - 1) / block;
  const std::size_t tasks =
      work < kMinParallelWork ? 1 : std::min<std::size_t>(n_blocks, static_cast<std::size_t>(get_num_threads()));
  const std::size_t smallest = std::max<std::size_t>(1, block / 8);
  std::atomic<std::size_t> cursor{0};
  auto next = [&](std::size_t& b, std::size_t& e) {
    b = cursor.load(std::memory_order_relaxed);
    std::size_t size;
    do {
      if (b >= n) return false;
      size = std::min(block, std::max(smallest, (n - b) / (2 * tasks)));
    } while (!cursor.compare_exchange_weak(b, b + size, std::memory_order_relaxed));
    e = std::min(n, b + size);
    return true;
  };
  parallel_for(tasks, 1, [&](std::size_t t0, std::size_t t1) {
    for (std::size_t t = t0; t < t1; ++t) task(next);
  });
}

}  // namespace

const QmatmulKernels& qmatmul_kernels() {
  static const QmatmulKernels& scalar_table = QUANTCORE_QMATMUL_TABLE(scalar);
#if defined(__x86_64__) || defined(_M_X64)
  static const QmatmulKernels& avx2_table = QUANTCORE_QMATMUL_TABLE(avx2);
  static const QmatmulKernels& avx512_table = QUANTCORE_QMATMUL_TABLE(avx512);
  return select_kernels(scalar_table, avx2_table, avx512_table, scalar_table);
#elif defined(__aarch64__)
  static const QmatmulKernels& neon_table = QUANTCORE_QMATMUL_TABLE(neon);
  return select_kernels(scalar_table, scalar_table, scalar_table, neon_table);
#else
  return scalar_table;
#endif
}

void qmatmul(const QWeight& w, const float* x, std::size_t m, const float* bias, bool int8_activations,
             std::size_t block, float* y) {
  const QmatmulKernels& kernels = qmatmul_kernels();
  const std::size_t rows = w.rows, cols = w.cols;
  const bool pairs = w.scheme.bits == 4 && cols % 32 == 0 &&
                     (w.format == QWeightFormat::kIntq || w.format == QWeightFormat::kQ4_1);
  // kGemvGrain weights per block, but at least 4 blocks per thread when the weight is smaller
  const std::size_t threads = static_cast<std::size_t>(get_num_threads());
  const std::size_t row_grain =
      std::max<std::size_t>(1, std::min(kGemvGrain / cols, (rows + 4 * threads - 1) / (4 * threads)));
  if (int8_activations) {
    const std::size_t n_blocks = (cols + block - 1) / block;
    const bool nib = pairs && cols % 64 == 0 && m <= 8;
    LineVector<int8_t> q(m * cols), q_pairs(pairs ? m * cols : 0), q_nib(nib ? m * cols : 0);
    std::vector<float> sx(m * n_blocks);
    std::vector<int32_t> qsum(m * n_blocks);
    parallel_for(m, std::max<std::size_t>(1, kGemvGrain / cols), [&](std::size_t i0, std::size_t i1) {
      for (std::size_t i = i0; i < i1; ++i) {
        kernels.quantize_int8(x + i * cols, cols, block, &q[i * cols], &sx[i * n_blocks], &qsum[i * n_blocks]);
        if (pairs) to_pairs(&q[i * cols], cols, &q_pairs[i * cols]);
        if (nib) to_nibbles(&q[i * cols], cols, &q_nib[i * cols]);
      }
    });
    const QInputInt8 in{q.data(),   pairs ? q_pairs.data() : nullptr, sx.data(), qsum.data(), m, block, n_blocks,
                        nib ? q_nib.data() : nullptr};
    for_blocks(rows, row_grain, [&](auto& next) {
      LineVector<uint8_t> buf(cols);
      for (std::size_t r0, r1; next(r0, r1);) kernels.qdot_rows_int8(w, r0, r1, in, buf.data(), y, rows);
    }, m <= 8 ? rows * cols * m : kMinParallelWork);
  } else if (m <= 8) {
    const bool wide = pairs && cols % 64 == 0;
    const bool fp8 = (w.format == QWeightFormat::kE4m3fn || w.format == QWeightFormat::kE5m2) && cols % 64 == 0;
    LineVector<float> x_pairs(pairs ? m * cols : 0), x_wide(wide ? m * cols : 0), x_fp8(fp8 ? m * cols : 0);
    for (std::size_t i = 0; pairs && i < m; ++i) to_pairs(x + i * cols, cols, &x_pairs[i * cols]);
    for (std::size_t i = 0; wide && i < m; ++i) to_wide(x + i * cols, cols, &x_wide[i * cols]);
    for (std::size_t i = 0; fp8 && i < m; ++i) to_fp8_order(x + i * cols, cols, &x_fp8[i * cols]);
    const QInput in{x, pairs ? x_pairs.data() : nullptr, wide ? x_wide.data() : nullptr, nullptr, m,
                    fp8 ? x_fp8.data() : nullptr};
    for_blocks(rows, row_grain, [&](auto& next) {
      for (std::size_t r0, r1; next(r0, r1);) kernels.gemv_rows(w, r0, r1, in, y, rows);
    }, rows * cols * m);
  } else {
    // Batches of at most kGemmBatch rows of x, one after another: a 12-row block of W runs
    // against every panel of the batch for each chunk of 256 columns, so that slice of the
    // panels (kGemmBatch x 256 floats, 512 KiB) stays in L2; with all of a 16384-row x the
    // panels streamed from DRAM for every 12 rows of W (measured: 83 GFLOP/s instead of ~170).
    for (std::size_t i0 = 0; i0 < m; i0 += kGemmBatch) {
      const std::size_t mc = std::min(kGemmBatch, m - i0);
      const float* xc = x + i0 * cols;
      float* yc = y + i0 * rows;
      const std::size_t n_panels = (mc + kPanel - 1) / kPanel;
      LineVector<float> panels(n_panels * cols * kPanel);
      parallel_for(n_panels, 1, [&](std::size_t p0, std::size_t p1) {
        for (std::size_t p = p0; p < p1; ++p) {
          float* dst = &panels[p * cols * kPanel];
          for (std::size_t k = 0; k < cols; ++k)
            for (std::size_t j = 0; j < kPanel; ++j) {
              const std::size_t i = p * kPanel + j;
              dst[k * kPanel + j] = i < mc ? xc[i * cols + k] : 0.0f;
            }
        }
      });
      const QInput in{xc, nullptr, nullptr, panels.data(), mc};
      const std::size_t n_tiles = (rows + kGemmRows - 1) / kGemmRows;
      for_blocks(n_tiles, 1, [&](auto& next) {
        LineVector<float> buf(kGemmRows * cols);
        for (std::size_t t0, t1; next(t0, t1);)
          kernels.gemm_rows(w, t0 * kGemmRows, std::min(rows, t1 * kGemmRows), in, buf.data(), yc, rows);
      }, kMinParallelWork);
    }
  }
  if (bias != nullptr)
    for (std::size_t i = 0; i < m; ++i)
      for (std::size_t r = 0; r < rows; ++r) y[i * rows + r] += bias[r];
}

#undef QUANTCORE_QMATMUL_TABLE
#undef QUANTCORE_TABLE_ENTRY

}  // namespace quantcore
