// Linear algebra ops: Det.
#include <cmath>
#include <type_traits>
#include <utility>

#include "duet/ops/kernel_util.h"
#include "families.h"

namespace duet::ops {

namespace {

// Determinant of an n x n row-major matrix by LU decomposition with partial
// pivoting (the matrix is overwritten).
template <typename A>
A lu_determinant(std::vector<A>& m, int64_t n) {
  A det = 1;
  for (int64_t col = 0; col < n; ++col) {
    int64_t pivot = col;
    for (int64_t row = col + 1; row < n; ++row)
      if (std::abs(m[row * n + col]) > std::abs(m[pivot * n + col])) pivot = row;
    if (m[pivot * n + col] == A(0)) return A(0);  // singular
    if (pivot != col) {
      for (int64_t k = 0; k < n; ++k) std::swap(m[col * n + k], m[pivot * n + k]);
      det = -det;
    }
    const A diag = m[col * n + col];
    det *= diag;
    for (int64_t row = col + 1; row < n; ++row) {
      const A factor = m[row * n + col] / diag;
      if (factor == A(0)) continue;
      for (int64_t k = col + 1; k < n; ++k) m[row * n + k] -= factor * m[col * n + k];
    }
  }
  return det;
}

void det_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  if (x.rank() < 2 || x.dim(-1) != x.dim(-2))
    fail(ctx.node.label(), ": input must be [..., M, M], got ", dims_str(x.dims()));
  const int64_t n = x.dim(-1);
  const Dims out_dims(x.dims().begin(), x.dims().end() - 2);
  const int64_t batch = numel(out_dims);
  dispatch_float(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
    const T* in = x.data<T>();
    T* out = ctx.allocate_output(0, x.dtype(), out_dims).template data<T>();
    ctx.parallel_for(batch, [&](int64_t begin, int64_t end) {
      std::vector<A> m(n * n);
      for (int64_t b = begin; b < end; ++b) {
        for (int64_t i = 0; i < n * n; ++i) {
          if constexpr (std::is_same_v<T, double>) m[i] = in[b * n * n + i];
          else m[i] = static_cast<float>(in[b * n * n + i]);
        }
        out[b] = static_cast<T>(lu_determinant(m, n));
      }
    });
  });
}

std::vector<ir::ValueType> det_infer(InferContext& ctx) {
  const Shape& s = ctx.inputs[0].shape;
  if (!s.rank_known) return {tensor_type(ctx.inputs[0].dtype, Shape::unknown_rank())};
  if (s.rank() < 2) fail(ctx.node.label(), ": input must have rank >= 2");
  return {tensor_type(ctx.inputs[0].dtype, Shape(std::vector<Dim>(s.dims.begin(), s.dims.end() - 2)))};
}

// LU: about 2/3 n^3 FLOPs per matrix.
Cost det_cost(const CostContext& ctx) {
  Cost c = default_cost(ctx);
  const auto& s = ctx.inputs[0].shape;
  if (s.fully_known() && s.rank() >= 2) {
    const Dims d = s.concrete();
    const double n = static_cast<double>(d.back());
    c.flops = static_cast<double>(numel(d)) / (n * n > 0 ? n * n : 1) * (2.0 / 3.0) * n * n * n;
  }
  return c;
}

}  // namespace

void register_linalg(Registry& r) {
  r.add({.name = "Det", .kernel = det_kernel, .infer = det_infer, .cost = det_cost});
}

}  // namespace duet::ops
