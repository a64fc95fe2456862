// The reference GEMM engine of matmul.cc, for other families' kernels
// (convolution gradients). C[b] = A[b] (M x K) * B[b] (K x N), C contiguous
// [batch, M, N], overwritten. Operands are strided views: element (b, i, k)
// of A is a[b * a.batch + i * a.row + k * a.col]. Results are summed in k
// order by one task per element, so they do not depend on the thread count.
#pragma once
#include <cstdint>

#include "duet/ops/registry.h"

namespace duet::ops {

template <typename T>
struct MatrixView {
  const T* data = nullptr;
  int64_t batch = 0;  // elements between consecutive batch matrices (0: shared)
  int64_t row = 0;
  int64_t col = 1;
};

template <typename T>
void strided_gemm(const KernelContext& ctx, int64_t batch, int64_t M, int64_t N, int64_t K, const MatrixView<T>& a,
                  const MatrixView<T>& b, T* c);

}  // namespace duet::ops
