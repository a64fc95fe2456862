// Duet's float32 GEMM for a constant right-hand side (a layer's weights):
// C[m x n] = A[m x k] B[k x n] (+ bias[n]) (ReLU), row-major, AVX2 + FMA.
//
// B is packed once into 16-column panels per 256-deep slice of k; at run
// time each thread packs 6-row panels of A for one slice into its buffer and
// walks B's panels with a 6x16 register tile (12 accumulators, two B loads
// and six A broadcasts per 12 FMAs): the GotoBLAS/BLIS structure, with
// slices sized for Zen's caches (a B panel slice 16 KB in L1, an A block of
// up to 192 rows x 256 in L2).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace duet::backends::cpu {

class PackedSgemm {
 public:
  static bool available();  // AVX2 and FMA

  // Packs B (k x n, row stride ldb). bias (may be null): n values added to
  // every row; accumulate: C's values on entry are added (a residual sum);
  // relu: max(0, .) last.
  PackedSgemm(int64_t k, int64_t n, const float* b, int64_t ldb, const float* bias = nullptr, bool accumulate = false,
              bool relu = false);

  // Where the backend uses it instead of oneDNN's matmul. Measured on Zen 3,
  // 2 threads, `duet bench gemm` (both timed alternately), Duet/oneDNN speed:
  // m x n x k 32x3072x768 1.75-1.87, 8x512x512 1.54, 128x768x768 1.12-1.47,
  // 40x360x120 1.1, 64x256x256 0.98-1.13, 512x1024x1024 1.06-1.14,
  // 1024^3 1.01-1.06. A single row (GEMV) stays with oneDNN.
  static bool suits(int64_t m, int64_t k, int64_t n) { return m >= 2 && m <= 512 && k >= 32 && n >= 32; }

  // C = A B (+ bias) (ReLU) for m rows of A (row stride lda) into C (row
  // stride ldc), on up to `threads` of libgomp's threads (0: OpenMP's count);
  // each packs A into its thread_scratch.
  void run(int64_t m, const float* a, int64_t lda, float* c, int64_t ldc, int threads = 0) const;

 private:
  int64_t k_, n_, panels_, slices_;
  bool accumulate_, relu_;
  std::vector<float> b_;     // [slice][panel][depth of slice][16], zero-padded columns
  std::vector<float> bias_;  // [panels * 16], zeros without bias
};

}  // namespace duet::backends::cpu
