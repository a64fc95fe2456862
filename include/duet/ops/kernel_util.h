// Shared helpers for reference kernels and shape inference: axis handling,
// numpy broadcasting, common inference rules.
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <functional>
#include <vector>

#include "duet/ops/registry.h"

namespace duet::ops {

// Normalizes a possibly negative axis into [0, rank); throws naming the node.
int64_t normalize_axis(int64_t axis, int64_t rank, const ir::Node& node);

// Contiguous row-major strides (in elements).
std::vector<int64_t> strides_of(const Dims& dims);

// Multidirectional (numpy) broadcast of several shapes; throws naming the node.
Dims broadcast_dims(const std::vector<Dims>& shapes, const ir::Node& node);
Shape broadcast_shapes(const std::vector<Shape>& shapes, const ir::Node& node);

// Strides of `in` viewed as `out` (0 along broadcast dimensions). in must
// broadcast to out.
std::vector<int64_t> broadcast_strides(const Dims& in, const Dims& out);

// Calls fn(out_index, in_offsets) for every output element, walking the
// innermost dimension in a tight loop. offsets[k] indexes input k.
template <size_t K, typename Fn>
void for_each_broadcast(const Dims& out, const std::array<std::vector<int64_t>, K>& in_strides, Fn&& fn) {
  const int64_t total = numel(out);
  if (total == 0) return;
  const size_t rank = out.size();
  if (rank == 0) {
    std::array<int64_t, K> off{};
    fn(int64_t{0}, off);
    return;
  }
  std::vector<int64_t> idx(rank, 0);
  std::array<int64_t, K> off{};
  const int64_t inner = out[rank - 1];
  int64_t i = 0;
  while (i < total) {
    std::array<int64_t, K> base = off;
    for (int64_t j = 0; j < inner; ++j) {
      fn(i + j, base);
      for (size_t k = 0; k < K; ++k) base[k] += in_strides[k][rank - 1];
    }
    i += inner;
    // advance the outer index
    for (int64_t d = static_cast<int64_t>(rank) - 2; d >= 0; --d) {
      ++idx[d];
      for (size_t k = 0; k < K; ++k) off[k] += in_strides[k][d];
      if (idx[d] < out[d]) break;
      for (size_t k = 0; k < K; ++k) off[k] -= in_strides[k][d] * out[d];
      idx[d] = 0;
    }
  }
}

// --- common inference rules -------------------------------------------------
// Output k has input i's type.
InferFn infer_same_as(size_t input_index = 0);
// One output: broadcast of all present inputs; dtype of input 0 unless given.
InferFn infer_broadcast(DType out_dtype = DType::Undefined);
ir::ValueType tensor_type(DType dtype, Shape shape);

// --- common costs -----------------------------------------------------------
CostFn cost_per_output_element(double flops_per_element);

}  // namespace duet::ops
