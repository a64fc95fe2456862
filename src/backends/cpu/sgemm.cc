// Duet's float32 GEMM (see duet/backends/cpu/sgemm.h).
//
// Work items are (a block of up to kBlockRows rows of A, a chunk of B's
// 16-column panels). An item walks the k slices in order: packs its rows of
// A for the slice (6-row panels, [depth][6]), then multiplies every panel of
// its chunk into C, which it loads back for the slices after the first and
// finishes (bias, ReLU) at the last. Items write disjoint parts of C, so the
// result does not depend on the thread count or on which thread ran what.
#include "duet/backends/cpu/sgemm.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "duet/runtime/peaks.h"
#include "omp_team.h"

namespace duet::backends::cpu {
namespace {

constexpr int64_t kRows = 6;          // rows of the register tile
constexpr int64_t kCols = 16;         // columns of the register tile (two ymm)
constexpr int64_t kSlice = 256;       // depth of a k slice
constexpr int64_t kBlockRows = 192;   // rows of A packed per item and slice
constexpr int64_t kMaxChunk = 16;     // B panels per item when rows alone do not spread the work

#define DUET_AVX2_FMA __attribute__((target("avx2,fma")))

struct Finish {
  const float* bias;  // null before the last slice
  bool relu;
};

// C[R x cols] (+)= A_panel[depth][6] B_panel[depth][16]; `first` overwrites
// C (the first slice, unless C holds a residual), the last slice adds the
// bias and applies ReLU. Every loop over the
// tile is unrolled by pragma (at -O2 GCC would keep the accumulators in memory).
template <int R>
DUET_AVX2_FMA void tile(const float* a, const float* b, int64_t depth, float* c, int64_t ldc, int64_t cols, bool first,
                        Finish finish) {
  __m256 acc[R][2];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  // C is read back after the products (slices after the first); asking for its lines now hides the miss
  // (a block of C outgrows L2 between slices) behind the depth loop.
  if (!first) {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + kCols - 1), _MM_HINT_T0);
    }
  }
#pragma GCC unroll 4
  for (int64_t d = 0; d < depth; ++d) {
    const __m256 b0 = _mm256_loadu_ps(b + d * kCols), b1 = _mm256_loadu_ps(b + d * kCols + 8);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m256 x = _mm256_broadcast_ss(a + d * kRows + r);
      acc[r][0] = _mm256_fmadd_ps(x, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(x, b1, acc[r][1]);
    }
  }
  float partial[kCols] = {};
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    float* row = c + r * ldc;
    float* out = cols == kCols ? row : partial;
    if (!first) {
      if (cols != kCols) std::memcpy(partial, row, static_cast<size_t>(cols) * sizeof(float));
      acc[r][0] = _mm256_add_ps(acc[r][0], _mm256_loadu_ps(out));
      acc[r][1] = _mm256_add_ps(acc[r][1], _mm256_loadu_ps(out + 8));
    }
    if (finish.bias) {
      acc[r][0] = _mm256_add_ps(acc[r][0], _mm256_loadu_ps(finish.bias));
      acc[r][1] = _mm256_add_ps(acc[r][1], _mm256_loadu_ps(finish.bias + 8));
      if (finish.relu) {
        acc[r][0] = _mm256_max_ps(acc[r][0], _mm256_setzero_ps());
        acc[r][1] = _mm256_max_ps(acc[r][1], _mm256_setzero_ps());
      }
    }
    _mm256_storeu_ps(out, acc[r][0]);
    _mm256_storeu_ps(out + 8, acc[r][1]);
    if (cols != kCols) std::memcpy(row, partial, static_cast<size_t>(cols) * sizeof(float));
  }
}

using TileFn = void (*)(const float*, const float*, int64_t, float*, int64_t, int64_t, bool, Finish);
constexpr TileFn kTile[kRows + 1] = {nullptr, tile<1>, tile<2>, tile<3>, tile<4>, tile<5>, tile<6>};

// Rows [0, rows) of A, columns [k0, k0 + depth), into 6-row panels [depth][6]
// (rows past the end of A are zeros). Reads rows in order, writes with a
// stride of 6 into the thread's (cache-resident) buffer.
void pack_a(const float* a, int64_t lda, int64_t rows, int64_t k0, int64_t depth, float* out) {
  for (int64_t p = 0; p < rows; p += kRows) {
    const int64_t r_count = std::min(kRows, rows - p);
    float* panel = out + p * depth;
    for (int64_t r = 0; r < kRows; ++r) {
      if (r >= r_count) {
        for (int64_t d = 0; d < depth; ++d) panel[d * kRows + r] = 0.0f;
        continue;
      }
      const float* row = a + (p + r) * lda + k0;
      for (int64_t d = 0; d < depth; ++d) panel[d * kRows + r] = row[d];
    }
  }
}

}  // namespace

bool PackedSgemm::available() { return runtime::cpu_features().avx2_fma; }

PackedSgemm::PackedSgemm(int64_t k, int64_t n, const float* b, int64_t ldb, const float* bias, bool accumulate,
                         bool relu)
    : k_(k),
      n_(n),
      panels_((n + kCols - 1) / kCols),
      slices_((k + kSlice - 1) / kSlice),
      accumulate_(accumulate),
      relu_(relu) {
  b_.assign(static_cast<size_t>(panels_ * kCols * k), 0.0f);
  // Slice s holds panels_ panels of depth(s) x 16, one after another.
  for (int64_t s = 0; s < slices_; ++s) {
    const int64_t k0 = s * kSlice, depth = std::min(kSlice, k - k0);
    float* slice = b_.data() + panels_ * kCols * k0;
    for (int64_t p = 0; p < panels_; ++p)
      for (int64_t d = 0; d < depth; ++d)
        for (int64_t j = 0; j < kCols && p * kCols + j < n; ++j)
          slice[(p * depth + d) * kCols + j] = b[(k0 + d) * ldb + p * kCols + j];
  }
  bias_.assign(static_cast<size_t>(panels_ * kCols), 0.0f);
  if (bias) std::copy(bias, bias + n, bias_.begin());
}

void PackedSgemm::run(int64_t m, const float* a, int64_t lda, float* c, int64_t ldc, int threads) const {
  if (m <= 0 || n_ <= 0) return;
  if (k_ == 0) {  // an empty sum: C = bias (+ C) (ReLU)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n_; ++j) {
        const float v = bias_[j] + (accumulate_ ? c[i * ldc + j] : 0.0f);
        c[i * ldc + j] = relu_ ? std::max(v, 0.0f) : v;
      }
    return;
  }
  threads = std::max(1, threads > 0 ? threads : omp_get_max_threads());
  // Row blocks: at least one per thread where there are rows for it, a
  // multiple of the thread count (even shares), each at most kBlockRows. Each item then takes every panel (A is
  // packed once per block and slice); with fewer row blocks than threads,
  // the panels are split into chunks so that every thread gets several items.
  int64_t row_blocks = std::max((m + kBlockRows - 1) / kBlockRows, std::min<int64_t>(threads, (m + kRows - 1) / kRows));
  if (row_blocks >= threads) row_blocks = (row_blocks + threads - 1) / threads * threads;
  const int64_t block_rows = std::min(kBlockRows, ((m + row_blocks - 1) / row_blocks + kRows - 1) / kRows * kRows);
  row_blocks = (m + block_rows - 1) / block_rows;
  const int64_t chunk =
      row_blocks >= threads ? panels_ : std::clamp<int64_t>(panels_ * row_blocks / (4 * threads), 1, kMaxChunk);
  const int64_t chunks = (panels_ + chunk - 1) / chunk;
  run_items(row_blocks * chunks, threads, [&](int64_t item, int) {
    const int64_t i0 = (item / chunks) * block_rows, rows = std::min(block_rows, m - i0);
    const int64_t p0 = (item % chunks) * chunk, p1 = std::min(panels_, p0 + chunk);
    float* packed = thread_scratch(static_cast<size_t>(kBlockRows * kSlice));
    for (int64_t s = 0; s < slices_; ++s) {
      const int64_t k0 = s * kSlice, depth = std::min(kSlice, k_ - k0);
      pack_a(a + i0 * lda, lda, rows, k0, depth, packed);
      const float* slice = b_.data() + panels_ * kCols * k0;
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t cols = std::min(kCols, n_ - p * kCols);
        const Finish finish{s + 1 == slices_ ? bias_.data() + p * kCols : nullptr, relu_};
        for (int64_t r = 0; r < rows; r += kRows)
          kTile[std::min(kRows, rows - r)](packed + r * depth, slice + p * depth * kCols, depth,
                                           c + (i0 + r) * ldc + p * kCols, ldc, cols, s == 0 && !accumulate_, finish);
      }
    }
  });
}

}  // namespace duet::backends::cpu
