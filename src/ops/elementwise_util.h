// Helpers shared by the elementwise, activation and cast families: the
// arithmetic type of each element type, and unary/binary/ternary loops with
// numpy broadcasting, run in parallel over independent output chunks.
#pragma once
#include <cmath>
#include <cstring>
#include <type_traits>

#include "duet/ops/kernel_util.h"

namespace duet::ops::ew {

// Reduced-precision floats are stored compactly and computed in float.
template <typename T>
inline constexpr bool is_small_float_v =
    std::is_same_v<T, float16> || std::is_same_v<T, bfloat16> || std::is_same_v<T, float8e4m3fn> ||
    std::is_same_v<T, float8e4m3fnuz> || std::is_same_v<T, float8e5m2> || std::is_same_v<T, float8e5m2fnuz> ||
    std::is_same_v<T, float8e8m0>;

template <typename T>
inline constexpr bool is_float_v = std::is_floating_point_v<T> || is_small_float_v<T>;

// The type arithmetic on T happens in.
template <typename T>
using compute_t = std::conditional_t<is_small_float_v<T>, float, T>;

// Below this many elements a kernel runs on the calling thread: waking the
// thread pool costs more than the work.
inline constexpr int64_t kParallelThreshold = 1 << 15;

// Runs fn over [0, n) in parallel chunks when n is large enough.
template <typename Fn>
void parallel_chunks(const KernelContext& ctx, int64_t n, Fn&& fn) {
  if (n <= 0) return;
  if (n < kParallelThreshold) {
    fn(int64_t{0}, n);
    return;
  }
  ctx.parallel_for(n, [&](int64_t b, int64_t e) { fn(b, e); });
}

// out[i] = fn(in[i]) for contiguous tensors of the same element count.
template <typename TI, typename TO, typename Fn>
void unary_loop(const KernelContext& ctx, const Tensor& in, Tensor& out, Fn&& fn) {
  const TI* x = in.data<TI>();
  TO* y = out.data<TO>();
  parallel_chunks(ctx, in.numel(), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) y[i] = fn(x[i]);
  });
}

// A broadcast iteration space with adjacent dimensions merged wherever every
// operand walks them contiguously (or not at all), so the innermost loop is
// as long as possible. strides[k][d] is operand k's stride along dim d.
template <size_t K>
struct BroadcastPlan {
  Dims dims;
  std::array<std::vector<int64_t>, K> strides;
};

template <size_t K>
BroadcastPlan<K> make_broadcast_plan(const Dims& out, const std::array<const Dims*, K>& ins) {
  BroadcastPlan<K> p;
  std::array<std::vector<int64_t>, K> full;
  for (size_t k = 0; k < K; ++k) full[k] = broadcast_strides(*ins[k], out);
  for (size_t d = 0; d < out.size(); ++d) {
    if (out[d] == 1) continue;  // size-1 dims do not move any operand
    bool merge = !p.dims.empty();
    for (size_t k = 0; k < K && merge; ++k) {
      merge = p.strides[k].back() == full[k][d] * out[d];
    }
    if (merge) {
      p.dims.back() *= out[d];
      for (size_t k = 0; k < K; ++k) p.strides[k].back() = full[k][d];
    } else {
      p.dims.push_back(out[d]);
      for (size_t k = 0; k < K; ++k) p.strides[k].push_back(full[k][d]);
    }
  }
  if (p.dims.empty()) {
    p.dims.push_back(1);
    for (size_t k = 0; k < K; ++k) p.strides[k].push_back(0);
  }
  return p;
}

// Calls row(out_offset, offsets, inner_strides, length) for every innermost
// row of the broadcast, rows split across threads.
template <size_t K, typename RowFn>
void for_each_row(const KernelContext& ctx, const BroadcastPlan<K>& p, RowFn&& row) {
  const size_t rank = p.dims.size();
  const int64_t inner = p.dims[rank - 1];
  int64_t rows = 1;
  for (size_t d = 0; d + 1 < rank; ++d) rows *= p.dims[d];
  if (rows * inner == 0) return;
  std::array<int64_t, K> inner_strides;
  for (size_t k = 0; k < K; ++k) inner_strides[k] = p.strides[k][rank - 1];
  auto run = [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      std::array<int64_t, K> off{};
      int64_t rem = r;
      for (int64_t d = static_cast<int64_t>(rank) - 2; d >= 0; --d) {
        const int64_t idx = rem % p.dims[d];
        rem /= p.dims[d];
        for (size_t k = 0; k < K; ++k) off[k] += idx * p.strides[k][d];
      }
      row(r * inner, off, inner_strides, inner);
    }
  };
  if (rows * inner < kParallelThreshold || rows == 1) {
    run(0, rows);
  } else {
    ctx.parallel_for(rows, run);
  }
}

// out = fn(a, b) with numpy broadcasting. out must already have the
// broadcast shape. Same-shape and scalar operands get tight loops.
template <typename TA, typename TB, typename TO, typename Fn>
void binary_loop(const KernelContext& ctx, const Tensor& ta, const Tensor& tb, Tensor& out, Fn&& fn) {
  const TA* a = ta.data<TA>();
  const TB* b = tb.data<TB>();
  TO* y = out.data<TO>();
  const int64_t n = out.numel();
  if (ta.numel() == n && tb.numel() == n) {
    parallel_chunks(ctx, n, [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i) y[i] = fn(a[i], b[i]);
    });
    return;
  }
  if (tb.numel() == 1 && ta.numel() == n) {
    const TB bv = b[0];
    parallel_chunks(ctx, n, [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i) y[i] = fn(a[i], bv);
    });
    return;
  }
  if (ta.numel() == 1 && tb.numel() == n) {
    const TA av = a[0];
    parallel_chunks(ctx, n, [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i) y[i] = fn(av, b[i]);
    });
    return;
  }
  const auto plan = make_broadcast_plan<2>(out.dims(), {&ta.dims(), &tb.dims()});
  for_each_row<2>(ctx, plan, [&](int64_t o, const std::array<int64_t, 2>& off, const std::array<int64_t, 2>& st,
                                 int64_t len) {
    const TA* pa = a + off[0];
    const TB* pb = b + off[1];
    TO* py = y + o;
    if (st[0] == 1 && st[1] == 1) {
      for (int64_t j = 0; j < len; ++j) py[j] = fn(pa[j], pb[j]);
    } else if (st[0] == 1 && st[1] == 0) {
      const TB bv = *pb;
      for (int64_t j = 0; j < len; ++j) py[j] = fn(pa[j], bv);
    } else if (st[0] == 0 && st[1] == 1) {
      const TA av = *pa;
      for (int64_t j = 0; j < len; ++j) py[j] = fn(av, pb[j]);
    } else {
      for (int64_t j = 0; j < len; ++j) py[j] = fn(pa[j * st[0]], pb[j * st[1]]);
    }
  });
}

// Calls fn(out_index, offsets) for every output element, offsets[k] indexing
// operand k (for types not stored in the byte buffer, like strings, and for
// ops with three operands).
template <size_t K, typename Fn>
void broadcast_indices(const KernelContext& ctx, const Dims& out, const std::array<const Dims*, K>& ins, Fn&& fn) {
  const auto plan = make_broadcast_plan<K>(out, ins);
  for_each_row<K>(ctx, plan, [&](int64_t o, const std::array<int64_t, K>& off, const std::array<int64_t, K>& st,
                                 int64_t len) {
    std::array<int64_t, K> cur = off;
    for (int64_t j = 0; j < len; ++j) {
      fn(o + j, cur);
      for (size_t k = 0; k < K; ++k) cur[k] += st[k];
    }
  });
}

}  // namespace duet::ops::ew
