// Matrix products: MatMul, Gemm, Einsum, MatMulInteger.
//
// Every op funnels into one cache-blocked, batched GEMM (batched_gemm below).
// It packs B panels and A row slivers into small contiguous buffers and runs a
// register-tiled micro-kernel that the compiler vectorizes over output
// columns. Each output element is produced by exactly one task and summed in
// plain k order (the accumulator is reloaded from C between k blocks), so
// results equal the naive loop bit for bit and do not depend on threading.
#include <algorithm>
#include <cctype>
#include <cstring>
#include <map>
#include <set>
#include <type_traits>

#include "duet/ops/kernel_util.h"
#include "families.h"
#include "gemm.h"

namespace duet::ops {

namespace {

// ---------------------------------------------------------------------------
// The GEMM engine
// ---------------------------------------------------------------------------

constexpr int kMR = 4;           // rows per micro tile
constexpr int kNR = 8;           // columns per micro tile (packed panel width)
constexpr int64_t kKC = 256;     // k block: a packed B block stays in L2
constexpr int64_t kMaxMB = 64;   // rows per task
constexpr int64_t kMaxNB = 256;  // columns per task

// A strided matrix operand of a batched product: element (b, i, k) lives at
// data[offsets[b] + i * row_stride + k * col_stride].
template <typename T>
struct Operand {
  const T* data = nullptr;
  std::vector<int64_t> offsets;
  int64_t row_stride = 0;
  int64_t col_stride = 0;
};

// acc[MR][NR] (+)= ap[kc][MR] * bp[kc][NR]; writes the valid mr x nr corner.
template <typename T, int MR>
inline void micro_kernel(int64_t kc, const T* __restrict ap, const T* __restrict bp, T* __restrict c, int64_t ldc,
                         int mr, int nr, bool accumulate) {
  T acc[MR][kNR];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < kNR; ++j) acc[r][j] = (accumulate && r < mr && j < nr) ? c[r * ldc + j] : T(0);
  for (int64_t k = 0; k < kc; ++k) {
    const T* b = bp + k * kNR;
    for (int r = 0; r < MR; ++r) {
      const T a = ap[k * MR + r];
      for (int j = 0; j < kNR; ++j) acc[r][j] += a * b[j];
    }
  }
  if (mr == MR && nr == kNR) {
    for (int r = 0; r < MR; ++r)
      for (int j = 0; j < kNR; ++j) c[r * ldc + j] = acc[r][j];
  } else {
    for (int r = 0; r < mr; ++r)
      for (int j = 0; j < nr; ++j) c[r * ldc + j] = acc[r][j];
  }
}

// Packs rows [i0, i0+mr) x k [k0, k0+kc) of A into ap[kc][MR] (zero padded).
template <typename T, int MR>
void pack_a(const Operand<T>& A, int64_t base, int64_t i0, int mr, int64_t k0, int64_t kc, T* ap) {
  for (int64_t k = 0; k < kc; ++k) {
    for (int r = 0; r < MR; ++r) {
      ap[k * MR + r] = r < mr ? A.data[base + (i0 + r) * A.row_stride + (k0 + k) * A.col_stride] : T(0);
    }
  }
}

// Packs k [k0, k0+kc) x columns [j0, j0+nb) of B into panels bp[panel][kc][NR].
template <typename T>
void pack_b(const Operand<T>& B, int64_t base, int64_t k0, int64_t kc, int64_t j0, int64_t nb, T* bp) {
  const int64_t panels = (nb + kNR - 1) / kNR;
  for (int64_t p = 0; p < panels; ++p) {
    T* dst = bp + p * kc * kNR;
    const int64_t jp = j0 + p * kNR;
    const int nr = static_cast<int>(std::min<int64_t>(kNR, j0 + nb - jp));
    for (int64_t k = 0; k < kc; ++k) {
      const T* src = B.data + base + (k0 + k) * B.row_stride + jp * B.col_stride;
      if (B.col_stride == 1 && nr == kNR) {
        for (int j = 0; j < kNR; ++j) dst[k * kNR + j] = src[j];
      } else {
        for (int j = 0; j < kNR; ++j) dst[k * kNR + j] = j < nr ? src[j * B.col_stride] : T(0);
      }
    }
  }
}

// C[b] = A[b] (M x K) * B[b] (K x N) for every batch b; C is contiguous
// [batch, M, N]. T is float, double, uint32_t or uint64_t (integer products
// wrap, which is also the two's-complement result for signed types).
template <typename T>
void batched_gemm(const KernelContext& ctx, int64_t batch, int64_t M, int64_t N, int64_t K, const Operand<T>& A,
                  const Operand<T>& B, T* C) {
  if (batch == 0 || M == 0 || N == 0) return;
  if (K == 0) {
    std::fill(C, C + batch * M * N, T(0));
    return;
  }
  // Task grid: batch x row blocks x column blocks. Shrink blocks when the
  // grid is too coarse to keep the threads busy (results do not depend on it).
  const int threads = ctx.parallel ? ctx.parallel->threads() : 1;
  int64_t mb = std::min<int64_t>(kMaxMB, M), nb = std::min<int64_t>(kMaxNB, N);
  auto task_count = [&] { return batch * ((M + mb - 1) / mb) * ((N + nb - 1) / nb); };
  while (task_count() < 4 * threads && nb > 4 * kNR) nb = (nb / 2 + kNR - 1) / kNR * kNR;
  while (task_count() < 4 * threads && mb > 4 * kMR) mb = (mb / 2 + kMR - 1) / kMR * kMR;
  const int64_t row_blocks = (M + mb - 1) / mb, col_blocks = (N + nb - 1) / nb;
  const int64_t kc_max = std::min<int64_t>(kKC, K);
  const int64_t nb_padded = (nb + kNR - 1) / kNR * kNR;

  ctx.parallel_for(batch * row_blocks * col_blocks, [&](int64_t begin, int64_t end) {
    std::vector<T> bp(static_cast<size_t>(kc_max * nb_padded));
    std::vector<T> ap(static_cast<size_t>(kc_max * kMR));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / (row_blocks * col_blocks);
      const int64_t rb = (task / col_blocks) % row_blocks, cb = task % col_blocks;
      const int64_t i0 = rb * mb, i1 = std::min(M, i0 + mb);
      const int64_t j0 = cb * nb, jn = std::min(N, j0 + nb) - j0;
      T* c_batch = C + b * M * N;
      if (i1 - i0 < kMR && B.col_stride == 1) {
        // Too few rows to repay packing (the GEMV case): stream B rows directly.
        for (int64_t i = i0; i < i1; ++i) {
          T* c_row = c_batch + i * N + j0;
          std::fill(c_row, c_row + jn, T(0));
          for (int64_t k = 0; k < K; ++k) {
            const T a = A.data[A.offsets[b] + i * A.row_stride + k * A.col_stride];
            const T* __restrict b_row = B.data + B.offsets[b] + k * B.row_stride + j0;
            for (int64_t j = 0; j < jn; ++j) c_row[j] += a * b_row[j];
          }
        }
        continue;
      }
      for (int64_t k0 = 0; k0 < K; k0 += kKC) {
        const int64_t kc = std::min(kKC, K - k0);
        const bool accumulate = k0 > 0;
        pack_b(B, B.offsets[b], k0, kc, j0, jn, bp.data());
        int64_t i = i0;
        for (; i + kMR <= i1; i += kMR) {
          pack_a<T, kMR>(A, A.offsets[b], i, kMR, k0, kc, ap.data());
          for (int64_t jp = 0; jp < jn; jp += kNR) {
            micro_kernel<T, kMR>(kc, ap.data(), bp.data() + jp * kc, c_batch + i * N + j0 + jp, N, kMR,
                                 static_cast<int>(std::min<int64_t>(kNR, jn - jp)), accumulate);
          }
        }
        for (; i < i1; ++i) {  // leftover rows one at a time (also the GEMV case)
          pack_a<T, 1>(A, A.offsets[b], i, 1, k0, kc, ap.data());
          for (int64_t jp = 0; jp < jn; jp += kNR) {
            micro_kernel<T, 1>(kc, ap.data(), bp.data() + jp * kc, c_batch + i * N + j0 + jp, N, 1,
                               static_cast<int>(std::min<int64_t>(kNR, jn - jp)), accumulate);
          }
        }
      }
    }
  });
}

}  // namespace

template <typename T>
void strided_gemm(const KernelContext& ctx, int64_t batch, int64_t M, int64_t N, int64_t K, const MatrixView<T>& a,
                  const MatrixView<T>& b, T* c) {
  Operand<T> A{a.data, {}, a.row, a.col}, B{b.data, {}, b.row, b.col};
  A.offsets.resize(static_cast<size_t>(batch));
  B.offsets.resize(static_cast<size_t>(batch));
  for (int64_t i = 0; i < batch; ++i) {
    A.offsets[i] = i * a.batch;
    B.offsets[i] = i * b.batch;
  }
  batched_gemm<T>(ctx, batch, M, N, K, A, B, c);
}
template void strided_gemm<float>(const KernelContext&, int64_t, int64_t, int64_t, int64_t,
                                  const MatrixView<float>&, const MatrixView<float>&, float*);
template void strided_gemm<double>(const KernelContext&, int64_t, int64_t, int64_t, int64_t,
                                   const MatrixView<double>&, const MatrixView<double>&, double*);

namespace {

// The arithmetic type a tensor element type computes in: floats narrower than
// float32 compute in float; integers wrap in the unsigned type of their width.
template <typename T> struct Compute { using type = T; };
template <> struct Compute<float16> { using type = float; };
template <> struct Compute<bfloat16> { using type = float; };
template <> struct Compute<int32_t> { using type = uint32_t; };
template <> struct Compute<int64_t> { using type = uint64_t; };

template <typename W, typename T>
W to_compute(T v) {
  if constexpr (std::is_integral_v<W> && std::is_integral_v<T>) return static_cast<W>(v);
  else if constexpr (std::is_floating_point_v<T>) return static_cast<W>(v);  // double stays double
  else return static_cast<W>(static_cast<float>(v));
}

// Tensor data as compute type W: a zero-copy view when the layouts agree,
// otherwise a converted copy kept alive in `storage`.
template <typename T, typename W>
const W* compute_view(const Tensor& t, std::vector<W>& storage) {
  if constexpr (sizeof(T) == sizeof(W) && std::is_integral_v<T> == std::is_integral_v<W>) {
    return reinterpret_cast<const W*>(t.data<T>());
  } else {
    storage.resize(static_cast<size_t>(t.numel()));
    const T* src = t.data<T>();
    for (int64_t i = 0; i < t.numel(); ++i) storage[i] = to_compute<W>(src[i]);
    return storage.data();
  }
}

// ---------------------------------------------------------------------------
// MatMul
// ---------------------------------------------------------------------------

// numpy matmul geometry: 1-D operands are promoted and the promoted axis is
// dropped from the output; leading dims broadcast.
struct MatMulShape {
  int64_t M = 1, N = 1, K = 1, batch = 1;
  Dims out;
  std::vector<int64_t> a_offsets, b_offsets;  // per output batch, in elements
};

MatMulShape matmul_shape(const Dims& a, const Dims& b, const ir::Node& node) {
  DUET_CHECK(!a.empty() && !b.empty(), node.label(), ": MatMul inputs must have rank >= 1 (got ", dims_str(a),
             " and ", dims_str(b), ")");
  MatMulShape s;
  const bool a_vec = a.size() == 1, b_vec = b.size() == 1;
  s.M = a_vec ? 1 : a[a.size() - 2];
  s.K = a.back();
  const int64_t kb = b_vec ? b[0] : b[b.size() - 2];
  s.N = b_vec ? 1 : b.back();
  DUET_CHECK(s.K == kb, node.label(), ": inner dimensions differ (", dims_str(a), " x ", dims_str(b), ")");
  const Dims a_batch(a.begin(), a.end() - (a_vec ? 1 : 2));
  const Dims b_batch(b.begin(), b.end() - (b_vec ? 1 : 2));
  const Dims batch = broadcast_dims({a_batch, b_batch}, node);
  s.batch = numel(batch);
  s.out = batch;
  if (!a_vec) s.out.push_back(s.M);
  if (!b_vec) s.out.push_back(s.N);
  const auto a_str = broadcast_strides(a_batch, batch), b_str = broadcast_strides(b_batch, batch);
  s.a_offsets.resize(s.batch);
  s.b_offsets.resize(s.batch);
  std::vector<int64_t> idx(batch.size(), 0);
  for (int64_t i = 0; i < s.batch; ++i) {
    int64_t ao = 0, bo = 0;
    for (size_t d = 0; d < batch.size(); ++d) {
      ao += idx[d] * a_str[d];
      bo += idx[d] * b_str[d];
    }
    s.a_offsets[i] = ao * s.M * s.K;
    s.b_offsets[i] = bo * s.K * s.N;
    for (int64_t d = static_cast<int64_t>(batch.size()) - 1; d >= 0; --d) {
      if (++idx[d] < batch[d]) break;
      idx[d] = 0;
    }
  }
  return s;
}

void matmul_kernel(KernelContext& ctx) {
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  DUET_CHECK(a.dtype() == b.dtype(), ctx.node.label(), ": input types differ (", dtype_name(a.dtype()), " vs ",
             dtype_name(b.dtype()), ")");
  const MatMulShape s = matmul_shape(a.dims(), b.dims(), ctx.node);
  Tensor& out = ctx.allocate_output(0, a.dtype(), s.out);
  auto run = [&](auto tag) {
    using T = typename decltype(tag)::type;
    using W = typename Compute<T>::type;
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, float16> ||
                  std::is_same_v<T, bfloat16> || std::is_same_v<T, int32_t> || std::is_same_v<T, int64_t> ||
                  std::is_same_v<T, uint32_t> || std::is_same_v<T, uint64_t>) {
      std::vector<W> a_store, b_store;
      Operand<W> A{compute_view<T, W>(a, a_store), s.a_offsets, s.K, 1};
      Operand<W> B{compute_view<T, W>(b, b_store), s.b_offsets, s.N, 1};
      if constexpr (sizeof(T) == sizeof(W) && std::is_integral_v<T> == std::is_integral_v<W>) {
        batched_gemm<W>(ctx, s.batch, s.M, s.N, s.K, A, B, reinterpret_cast<W*>(out.data<T>()));
      } else {
        std::vector<W> c(static_cast<size_t>(out.numel()));
        batched_gemm<W>(ctx, s.batch, s.M, s.N, s.K, A, B, c.data());
        T* dst = out.data<T>();
        for (int64_t i = 0; i < out.numel(); ++i) dst[i] = T(c[i]);
      }
    } else {
      unsupported(ctx.node.label(), ": MatMul does not support ", dtype_name(a.dtype()));
    }
  };
  dispatch_numeric(a.dtype(), run);
}

// Batch dims broadcast, then M (unless A is 1-D) and N (unless B is 1-D).
Shape matmul_out_shape(const Shape& a, const Shape& b, const ir::Node& node) {
  if (!a.rank_known || !b.rank_known) return Shape::unknown_rank();
  DUET_CHECK(a.rank() >= 1 && b.rank() >= 1, node.label(), ": MatMul inputs must have rank >= 1");
  const bool a_vec = a.rank() == 1, b_vec = b.rank() == 1;
  Shape ab(std::vector<Dim>(a.dims.begin(), a.dims.end() - (a_vec ? 1 : 2)));
  Shape bb(std::vector<Dim>(b.dims.begin(), b.dims.end() - (b_vec ? 1 : 2)));
  Shape out = broadcast_shapes({ab, bb}, node);
  if (!a_vec) out.dims.push_back(a.dims[a.rank() - 2]);
  if (!b_vec) out.dims.push_back(b.dims.back());
  return out;
}

std::vector<ir::ValueType> matmul_infer(InferContext& ctx) {
  return {tensor_type(ctx.inputs[0].dtype, matmul_out_shape(ctx.inputs[0].shape, ctx.inputs[1].shape, ctx.node))};
}

// 2*M*N*K per batch: output elements times 2K.
Cost matmul_cost(const CostContext& ctx) {
  Cost c = default_cost(ctx);
  c.flops = 0;
  const auto& a = ctx.inputs[0].shape;
  if (a.fully_known() && a.rank() >= 1 && !ctx.outputs.empty() && ctx.outputs[0].shape.fully_known()) {
    c.flops = 2.0 * static_cast<double>(numel(ctx.outputs[0].shape.concrete())) *
              static_cast<double>(a.concrete().back());
  }
  return c;
}

// ---------------------------------------------------------------------------
// Gemm: Y = alpha * op(A) * op(B) + beta * C
// ---------------------------------------------------------------------------

struct GemmGeometry {
  int64_t M, N, K;
};

GemmGeometry gemm_geometry(const Dims& a, const Dims& b, bool trans_a, bool trans_b, const ir::Node& node) {
  DUET_CHECK(a.size() == 2 && b.size() == 2, node.label(), ": Gemm inputs must be 2-D (got ", dims_str(a), " and ",
             dims_str(b), ")");
  const int64_t M = trans_a ? a[1] : a[0], K = trans_a ? a[0] : a[1];
  const int64_t kb = trans_b ? b[1] : b[0], N = trans_b ? b[0] : b[1];
  DUET_CHECK(K == kb, node.label(), ": inner dimensions differ (", dims_str(a), (trans_a ? "^T" : ""), " x ",
             dims_str(b), (trans_b ? "^T" : ""), ")");
  return {M, N, K};
}

void gemm_kernel(KernelContext& ctx) {
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  const Tensor* c = ctx.optional_input(2);
  const bool trans_a = ctx.node.attr_int("transA", 0) != 0, trans_b = ctx.node.attr_int("transB", 0) != 0;
  const float alpha = ctx.node.attr_float("alpha", 1.0f), beta = ctx.node.attr_float("beta", 1.0f);
  DUET_CHECK(a.dtype() == b.dtype(), ctx.node.label(), ": input types differ");
  const GemmGeometry g = gemm_geometry(a.dims(), b.dims(), trans_a, trans_b, ctx.node);
  const Dims out_dims{g.M, g.N};
  std::vector<int64_t> c_strides;
  if (c) {
    DUET_CHECK(c->dtype() == a.dtype(), ctx.node.label(), ": C type differs from A");
    // Opset < 7 without broadcast=1 requires the exact shape; broadcasting is a superset.
    DUET_CHECK(c->rank() <= 2, ctx.node.label(), ": C must have rank <= 2 (got ", dims_str(c->dims()), ")");
    for (size_t i = 0; i < c->rank(); ++i) {
      const int64_t want = out_dims[2 - c->rank() + i];
      DUET_CHECK(c->dims()[i] == want || c->dims()[i] == 1, ctx.node.label(), ": C of shape ",
                 dims_str(c->dims()), " does not broadcast to ", dims_str(out_dims));
    }
    c_strides = broadcast_strides(c->dims(), out_dims);
  }
  Tensor& out = ctx.allocate_output(0, a.dtype(), out_dims);
  auto run = [&](auto tag) {
    using T = typename decltype(tag)::type;
    using W = typename Compute<T>::type;
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, float16> ||
                  std::is_same_v<T, bfloat16> || std::is_same_v<T, int32_t> || std::is_same_v<T, int64_t> ||
                  std::is_same_v<T, uint32_t> || std::is_same_v<T, uint64_t>) {
      std::vector<W> a_store, b_store, ab(static_cast<size_t>(g.M * g.N));
      Operand<W> A{compute_view<T, W>(a, a_store), {0}, trans_a ? 1 : g.K, trans_a ? g.M : 1};
      Operand<W> B{compute_view<T, W>(b, b_store), {0}, trans_b ? 1 : g.N, trans_b ? g.K : 1};
      batched_gemm<W>(ctx, 1, g.M, g.N, g.K, A, B, ab.data());
      // Epilogue as the spec writes it: (A*B)*alpha, then + C*beta.
      using E = std::conditional_t<std::is_floating_point_v<W>, W, double>;
      T* y = out.data<T>();
      const T* cd = c ? c->data<T>() : nullptr;
      const bool add_c = c && beta != 0.0f;
      ctx.parallel_for(g.M, [&](int64_t r0, int64_t r1) {
        for (int64_t i = r0; i < r1; ++i) {
          for (int64_t j = 0; j < g.N; ++j) {
            // Integer products wrapped in the unsigned type: reread them as T.
            E v = std::is_integral_v<W> ? static_cast<E>(static_cast<T>(ab[i * g.N + j]))
                                        : static_cast<E>(ab[i * g.N + j]);
            if (alpha != 1.0f) v *= static_cast<E>(alpha);
            if (add_c) {
              const E cv = static_cast<E>(to_compute<W>(cd[i * c_strides[0] + j * c_strides[1]]));
              v += cv * static_cast<E>(beta);
            }
            y[i * g.N + j] = T(v);
          }
        }
      });
    } else {
      unsupported(ctx.node.label(), ": Gemm does not support ", dtype_name(a.dtype()));
    }
  };
  dispatch_numeric(a.dtype(), run);
}

std::vector<ir::ValueType> gemm_infer(InferContext& ctx) {
  const bool trans_a = ctx.node.attr_int("transA", 0) != 0, trans_b = ctx.node.attr_int("transB", 0) != 0;
  const Shape& a = ctx.inputs[0].shape;
  const Shape& b = ctx.inputs[1].shape;
  Dim m = ctx.fresh_dim(), n = ctx.fresh_dim();
  if (a.rank_known && a.rank() == 2) m = a.dims[trans_a ? 1 : 0];
  if (b.rank_known && b.rank() == 2) n = b.dims[trans_b ? 0 : 1];
  return {tensor_type(ctx.inputs[0].dtype, Shape({m, n}))};
}

Cost gemm_cost(const CostContext& ctx) {
  Cost c = default_cost(ctx);
  c.flops = 0;
  const bool trans_a = ctx.node.attr_int("transA", 0) != 0;
  const auto& a = ctx.inputs[0].shape;
  if (a.fully_known() && a.rank() == 2 && ctx.outputs[0].shape.fully_known()) {
    const double mn = static_cast<double>(numel(ctx.outputs[0].shape.concrete()));
    const double k = static_cast<double>(a.concrete()[trans_a ? 0 : 1]);
    const bool has_c = ctx.inputs.size() > 2 && ctx.inputs[2].dtype != DType::Undefined;
    c.flops = 2.0 * mn * k + mn * (has_c ? 3.0 : 1.0);  // alpha scale, beta scale and add
  }
  return c;
}

// ---------------------------------------------------------------------------
// Einsum
// ---------------------------------------------------------------------------
// Labels are ints: letters keep their ASCII code (so implicit output sorts
// alphabetically), ellipsis dims are 256 + position within the broadcast
// ellipsis (right aligned across operands).

constexpr int kEllipsisLabel = 256;

struct EinsumSpec {
  std::vector<std::vector<int>> inputs;  // labels per operand (ellipsis expanded)
  std::vector<int> output;
};

// Splits one term into letters, with -1 standing for "...".
std::vector<int> parse_term(const std::string& term, const ir::Node& node) {
  std::vector<int> labels;
  for (size_t i = 0; i < term.size(); ++i) {
    const char ch = term[i];
    if (ch == '.') {
      DUET_CHECK(term.compare(i, 3, "...") == 0, node.label(), ": malformed ellipsis in einsum term '", term, "'");
      DUET_CHECK(std::find(labels.begin(), labels.end(), -1) == labels.end(), node.label(),
                 ": more than one ellipsis in einsum term '", term, "'");
      labels.push_back(-1);
      i += 2;
    } else {
      DUET_CHECK(std::isalpha(static_cast<unsigned char>(ch)), node.label(), ": invalid character '", ch,
                 "' in einsum equation");
      labels.push_back(static_cast<unsigned char>(ch));
    }
  }
  return labels;
}

// Expands "..." using operand ranks; ranks[i] < 0 means unknown (only allowed
// when the term has no ellipsis).
EinsumSpec parse_einsum(const std::string& equation, const std::vector<int64_t>& ranks, const ir::Node& node) {
  std::string eq;
  for (char ch : equation) if (!std::isspace(static_cast<unsigned char>(ch))) eq += ch;
  const size_t arrow = eq.find("->");
  const std::string lhs = eq.substr(0, arrow);
  std::vector<std::string> terms;
  for (size_t start = 0;;) {
    const size_t comma = lhs.find(',', start);
    terms.push_back(lhs.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  DUET_CHECK(terms.size() == ranks.size(), node.label(), ": einsum equation '", equation, "' has ", terms.size(),
             " terms but the node has ", ranks.size(), " inputs");
  EinsumSpec spec;
  int64_t ellipsis_rank = 0;
  std::vector<std::vector<int>> raw;
  for (size_t t = 0; t < terms.size(); ++t) {
    raw.push_back(parse_term(terms[t], node));
    const bool has_ellipsis = std::find(raw[t].begin(), raw[t].end(), -1) != raw[t].end();
    const int64_t letters = static_cast<int64_t>(raw[t].size()) - (has_ellipsis ? 1 : 0);
    if (ranks[t] < 0) {
      DUET_CHECK(!has_ellipsis, node.label(), ": einsum ellipsis needs a known input rank");
      continue;
    }
    DUET_CHECK(has_ellipsis ? ranks[t] >= letters : ranks[t] == letters, node.label(), ": einsum term '", terms[t],
               "' does not match input ", t, " of rank ", ranks[t]);
    if (has_ellipsis) ellipsis_rank = std::max(ellipsis_rank, ranks[t] - letters);
  }
  for (size_t t = 0; t < raw.size(); ++t) {
    std::vector<int> labels;
    const int64_t letters = static_cast<int64_t>(raw[t].size()) - 1;
    for (int l : raw[t]) {
      if (l != -1) { labels.push_back(l); continue; }
      const int64_t e = ranks[t] - letters;
      for (int64_t i = 0; i < e; ++i) labels.push_back(kEllipsisLabel + static_cast<int>(ellipsis_rank - e + i));
    }
    spec.inputs.push_back(labels);
  }
  if (arrow != std::string::npos) {
    for (int l : parse_term(eq.substr(arrow + 2), node)) {
      if (l == -1) {
        for (int64_t i = 0; i < ellipsis_rank; ++i) spec.output.push_back(kEllipsisLabel + static_cast<int>(i));
      } else {
        DUET_CHECK(std::find(spec.output.begin(), spec.output.end(), l) == spec.output.end(), node.label(),
                   ": einsum output repeats label '", static_cast<char>(l), "'");
        bool found = false;
        for (auto& in : spec.inputs) found = found || std::find(in.begin(), in.end(), l) != in.end();
        DUET_CHECK(found, node.label(), ": einsum output label '", static_cast<char>(l), "' is not in any input");
        spec.output.push_back(l);
      }
    }
  } else {
    // Implicit output: the ellipsis dims, then letters used exactly once, sorted.
    for (int64_t i = 0; i < ellipsis_rank; ++i) spec.output.push_back(kEllipsisLabel + static_cast<int>(i));
    std::map<int, int> count;
    for (auto& in : spec.inputs) for (int l : in) if (l < kEllipsisLabel) ++count[l];
    for (auto& [l, n] : count) if (n == 1) spec.output.push_back(l);
  }
  return spec;
}

// A dense array whose axes carry einsum labels.
template <typename W>
struct Labeled {
  std::vector<int> labels;
  Dims dims;
  std::vector<W> data;
};

// Copies `src` into a contiguous array with axes `labels` of sizes `dims`.
// Source axes of size 1 broadcast; labels absent from the source broadcast;
// a label repeated in the source walks its diagonal.
template <typename W>
Labeled<W> relayout(const Labeled<W>& src, const std::vector<int>& labels, const Dims& dims) {
  Labeled<W> out{labels, dims, std::vector<W>(static_cast<size_t>(numel(dims)))};
  const auto src_strides = strides_of(src.dims);
  std::vector<int64_t> stride(labels.size(), 0);
  for (size_t a = 0; a < src.labels.size(); ++a) {
    if (src.dims[a] == 1) continue;
    const size_t d = std::find(labels.begin(), labels.end(), src.labels[a]) - labels.begin();
    DUET_CHECK(d < labels.size(), "einsum: internal error, label ", src.labels[a], " lost");
    stride[d] += src_strides[a];
  }
  std::vector<int64_t> idx(dims.size(), 0);
  int64_t off = 0;
  for (size_t i = 0; i < out.data.size(); ++i) {
    out.data[i] = src.data[off];
    for (int64_t d = static_cast<int64_t>(dims.size()) - 1; d >= 0; --d) {
      off += stride[d];
      if (++idx[d] < dims[d]) break;
      off -= stride[d] * dims[d];
      idx[d] = 0;
    }
  }
  return out;
}

// Sums away every axis whose label is not in `keep` (keeping axis order).
template <typename W>
Labeled<W> sum_except(const Labeled<W>& src, const std::vector<int>& keep) {
  std::vector<int> kept_labels;
  Dims kept_dims;
  for (size_t a = 0; a < src.labels.size(); ++a) {
    if (std::find(keep.begin(), keep.end(), src.labels[a]) != keep.end()) {
      kept_labels.push_back(src.labels[a]);
      kept_dims.push_back(src.dims[a]);
    }
  }
  if (kept_labels.size() == src.labels.size()) return src;
  Labeled<W> out{kept_labels, kept_dims, std::vector<W>(static_cast<size_t>(numel(kept_dims)), W(0))};
  const auto out_strides = strides_of(kept_dims);
  std::vector<int64_t> stride(src.labels.size(), 0);
  for (size_t a = 0, k = 0; a < src.labels.size(); ++a) {
    if (k < kept_labels.size() && src.labels[a] == kept_labels[k]) stride[a] = out_strides[k++];
  }
  std::vector<int64_t> idx(src.dims.size(), 0);
  int64_t off = 0;
  for (size_t i = 0; i < src.data.size(); ++i) {
    out.data[off] += src.data[i];
    for (int64_t d = static_cast<int64_t>(src.dims.size()) - 1; d >= 0; --d) {
      off += stride[d];
      if (++idx[d] < src.dims[d]) break;
      off -= stride[d] * src.dims[d];
      idx[d] = 0;
    }
  }
  return out;
}

// Repeated labels within one operand select its diagonal.
template <typename W>
Labeled<W> take_diagonals(const Labeled<W>& src, const ir::Node& node) {
  std::vector<int> labels;
  Dims dims;
  for (size_t a = 0; a < src.labels.size(); ++a) {
    auto it = std::find(labels.begin(), labels.end(), src.labels[a]);
    if (it == labels.end()) {
      labels.push_back(src.labels[a]);
      dims.push_back(src.dims[a]);
    } else {
      DUET_CHECK(dims[it - labels.begin()] == src.dims[a], node.label(), ": einsum diagonal over unequal dims");
    }
  }
  if (labels.size() == src.labels.size()) return src;
  // relayout walks diagonals but broadcasts size-1 axes; a size-1 diagonal is trivially fine.
  return relayout(src, labels, dims);
}

bool has_label(const std::vector<int>& labels, int l) {
  return std::find(labels.begin(), labels.end(), l) != labels.end();
}

// Contracts two operands into one whose labels are those of x and y that
// appear in `keep`, as a batched GEMM [batch, x-only, shared] x [batch, shared, y-only].
template <typename W>
Labeled<W> contract(const KernelContext& ctx, const Labeled<W>& x_in, const Labeled<W>& y_in,
                    const std::vector<int>& keep) {
  // Labels only one side has and nobody needs are summed first.
  std::vector<int> x_keep = keep, y_keep = keep;
  x_keep.insert(x_keep.end(), y_in.labels.begin(), y_in.labels.end());
  y_keep.insert(y_keep.end(), x_in.labels.begin(), x_in.labels.end());
  const Labeled<W> x = sum_except(x_in, x_keep), y = sum_except(y_in, y_keep);
  std::map<int, int64_t> size;
  auto note = [&](const Labeled<W>& t) {
    for (size_t a = 0; a < t.labels.size(); ++a) {
      int64_t& s = size.emplace(t.labels[a], t.dims[a]).first->second;
      DUET_CHECK(s == t.dims[a] || s == 1 || t.dims[a] == 1, ctx.node.label(), ": einsum dimension mismatch");
      s = std::max(s, t.dims[a]);
      if (t.dims[a] == 0) s = 0;
    }
  };
  note(x);
  note(y);
  std::vector<int> batch, x_only, y_only, shared;
  for (int l : x.labels) {
    if (has_label(y.labels, l)) (has_label(keep, l) ? batch : shared).push_back(l);
    else x_only.push_back(l);
  }
  for (int l : y.labels) if (!has_label(x.labels, l)) y_only.push_back(l);
  auto dims_of = [&](const std::vector<std::vector<int>*>& groups, std::vector<int>& labels) {
    Dims d;
    for (auto* g : groups) for (int l : *g) { labels.push_back(l); d.push_back(size[l]); }
    return d;
  };
  std::vector<int> xl, yl, zl;
  const Dims xd = dims_of({&batch, &x_only, &shared}, xl);
  const Dims yd = dims_of({&batch, &shared, &y_only}, yl);
  const Dims zd = dims_of({&batch, &x_only, &y_only}, zl);
  auto prod = [&](const std::vector<int>& g) { int64_t p = 1; for (int l : g) p *= size[l]; return p; };
  const int64_t nb = prod(batch), M = prod(x_only), K = prod(shared), N = prod(y_only);
  const Labeled<W> xa = relayout(x, xl, xd), ya = relayout(y, yl, yd);
  Labeled<W> z{zl, zd, std::vector<W>(static_cast<size_t>(numel(zd)))};
  Operand<W> A{xa.data.data(), {}, K, 1}, B{ya.data.data(), {}, N, 1};
  for (int64_t b = 0; b < nb; ++b) {
    A.offsets.push_back(b * M * K);
    B.offsets.push_back(b * K * N);
  }
  batched_gemm<W>(ctx, nb, M, N, K, A, B, z.data.data());
  return z;
}

template <typename W>
Labeled<W> einsum_compute(const KernelContext& ctx, const EinsumSpec& spec) {
  std::vector<Labeled<W>> ops;
  for (size_t i = 0; i < spec.inputs.size(); ++i) {
    const Tensor& t = ctx.input(i);
    Labeled<W> l{spec.inputs[i], t.dims(), std::vector<W>(static_cast<size_t>(t.numel()))};
    dispatch_numeric(t.dtype(), [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* src = t.data<T>();
      for (int64_t e = 0; e < t.numel(); ++e) l.data[e] = to_compute<W>(src[e]);
    });
    ops.push_back(take_diagonals(l, ctx.node));
  }
  auto needed_after = [&](size_t i) {
    std::vector<int> keep = spec.output;
    for (size_t j = i + 1; j < ops.size(); ++j) keep.insert(keep.end(), ops[j].labels.begin(), ops[j].labels.end());
    return keep;
  };
  Labeled<W> cur = sum_except(ops[0], needed_after(0));
  for (size_t i = 1; i < ops.size(); ++i) cur = contract(ctx, cur, ops[i], needed_after(i));
  cur = sum_except(cur, spec.output);
  Dims out_dims;
  for (int l : spec.output) {
    const size_t a = std::find(cur.labels.begin(), cur.labels.end(), l) - cur.labels.begin();
    out_dims.push_back(a < cur.labels.size() ? cur.dims[a] : 1);
  }
  return relayout(cur, spec.output, out_dims);
}

void einsum_kernel(KernelContext& ctx) {
  DUET_CHECK(ctx.num_inputs() >= 1, ctx.node.label(), ": Einsum needs at least one input");
  std::vector<int64_t> ranks;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    ranks.push_back(static_cast<int64_t>(ctx.input(i).rank()));
    DUET_CHECK(ctx.input(i).dtype() == ctx.input(0).dtype(), ctx.node.label(), ": Einsum input types differ");
  }
  const EinsumSpec spec = parse_einsum(ctx.node.attr_string("equation", ""), ranks, ctx.node);
  const DType dt = ctx.input(0).dtype();
  auto finish = [&](auto result) {
    Tensor& out = ctx.allocate_output(0, dt, result.dims);
    dispatch_numeric(dt, [&](auto tag) {
      using T = typename decltype(tag)::type;
      T* dst = out.data<T>();
      for (size_t i = 0; i < result.data.size(); ++i) dst[i] = static_cast<T>(result.data[i]);
    });
  };
  if (dt == DType::Float64) finish(einsum_compute<double>(ctx, spec));
  else if (dtype_is_float(dt)) {
    finish(einsum_compute<float>(ctx, spec));  // narrow floats round once at the end
  } else if (dtype_is_integer(dt) && !dtype_is_subbyte(dt)) finish(einsum_compute<uint64_t>(ctx, spec));
  else unsupported(ctx.node.label(), ": Einsum does not support ", dtype_name(dt));
}

std::vector<ir::ValueType> einsum_infer(InferContext& ctx) {
  std::vector<int64_t> ranks;
  for (auto& in : ctx.inputs) ranks.push_back(in.shape.rank_known ? static_cast<int64_t>(in.shape.rank()) : -1);
  const DType dt = ctx.inputs.empty() ? DType::Undefined : ctx.inputs[0].dtype;
  for (int64_t r : ranks) {
    if (r < 0) {
      const std::string eq = ctx.node.attr_string("equation", "");
      if (eq.find("...") != std::string::npos) return {tensor_type(dt, Shape::unknown_rank())};
    }
  }
  const EinsumSpec spec = parse_einsum(ctx.node.attr_string("equation", ""), ranks, ctx.node);
  std::vector<Dim> out;
  for (int l : spec.output) {
    Dim d = ctx.fresh_dim();
    bool set = false;
    for (size_t i = 0; i < spec.inputs.size(); ++i) {
      if (!ctx.inputs[i].shape.rank_known) continue;
      for (size_t a = 0; a < spec.inputs[i].size(); ++a) {
        if (spec.inputs[i][a] != l) continue;
        const Dim& cand = ctx.inputs[i].shape.dims[a];
        if (!set || (d.known() && d.value == 1) || (!d.known() && cand.known() && cand.value != 1)) {
          d = cand;
          set = true;
        }
      }
    }
    out.push_back(d);
  }
  return {tensor_type(dt, Shape(out))};
}

// Two FLOPs per point of the full label space (exact for two operands).
Cost einsum_cost(const CostContext& ctx) {
  Cost c = default_cost(ctx);
  std::vector<int64_t> ranks;
  for (auto& in : ctx.inputs) {
    if (!in.shape.fully_known()) return c;
    ranks.push_back(static_cast<int64_t>(in.shape.rank()));
  }
  try {
    const EinsumSpec spec = parse_einsum(ctx.node.attr_string("equation", ""), ranks, ctx.node);
    std::map<int, int64_t> size;
    for (size_t i = 0; i < spec.inputs.size(); ++i) {
      const Dims d = ctx.inputs[i].shape.concrete();
      for (size_t a = 0; a < d.size(); ++a) size[spec.inputs[i][a]] = std::max(size[spec.inputs[i][a]], d[a]);
    }
    double points = 1;
    for (auto& [l, s] : size) points *= static_cast<double>(s);
    c.flops = 2.0 * points * std::max<double>(1, static_cast<double>(spec.inputs.size()) - 1);
  } catch (const Error&) {
  }
  return c;
}

// ---------------------------------------------------------------------------
// MatMulInteger: int32 (A - a_zero_point) x (B - b_zero_point)
// ---------------------------------------------------------------------------

// Integer tensor as int32 minus its zero point, which is per tensor (one
// element) or per `per_axis_dim` slice: per row of A (axis -2) or per column of B (axis -1).
std::vector<int32_t> centered_int32(const Tensor& t, const Tensor* zp, int per_axis, const ir::Node& node,
                                    const char* what) {
  DUET_CHECK(t.dtype() == DType::UInt8 || t.dtype() == DType::Int8, node.label(), ": ", what,
             " must be uint8 or int8 (got ", dtype_name(t.dtype()), ")");
  std::vector<int32_t> v(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) v[i] = static_cast<int32_t>(t.get_int(i));
  if (!zp) return v;
  DUET_CHECK(zp->dtype() == t.dtype(), node.label(), ": ", what, " zero point type differs from its input");
  if (zp->numel() == 1) {
    const int32_t z = static_cast<int32_t>(zp->get_int(0));
    for (auto& x : v) x -= z;
    return v;
  }
  const Dims& d = t.dims();
  const bool vec = d.size() == 1;
  // A 1-D A is one row of K; a 1-D B is one column of K.
  const int64_t rows = vec ? (per_axis == 0 ? 1 : d[0]) : d[d.size() - 2];
  const int64_t cols = vec ? (per_axis == 0 ? d[0] : 1) : d.back();
  const int64_t count = per_axis == 0 ? rows : cols;
  const int64_t matrices = vec ? 1 : t.numel() / std::max<int64_t>(1, rows * cols);
  DUET_CHECK(zp->numel() == count || (zp->numel() % count == 0 && zp->numel() == matrices * count), node.label(),
             ": ", what, " zero point of shape ", dims_str(zp->dims()), " matches neither per-tensor nor per-",
             per_axis == 0 ? "row" : "column", " quantization of ", dims_str(d));
  for (int64_t m = 0; m < matrices; ++m) {
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        const int64_t slice = per_axis == 0 ? r : c;
        const int64_t zi = zp->numel() == count ? slice : m * count + slice;
        v[(m * rows + r) * cols + c] -= static_cast<int32_t>(zp->get_int(zi));
      }
    }
  }
  return v;
}

void matmul_integer_kernel(KernelContext& ctx) {
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  const MatMulShape s = matmul_shape(a.dims(), b.dims(), ctx.node);
  const std::vector<int32_t> av = centered_int32(a, ctx.optional_input(2), 0, ctx.node, "A");
  const std::vector<int32_t> bv = centered_int32(b, ctx.optional_input(3), 1, ctx.node, "B");
  Tensor& out = ctx.allocate_output(0, DType::Int32, s.out);
  Operand<uint32_t> A{reinterpret_cast<const uint32_t*>(av.data()), s.a_offsets, s.K, 1};
  Operand<uint32_t> B{reinterpret_cast<const uint32_t*>(bv.data()), s.b_offsets, s.N, 1};
  batched_gemm<uint32_t>(ctx, s.batch, s.M, s.N, s.K, A, B, reinterpret_cast<uint32_t*>(out.data<int32_t>()));
}

std::vector<ir::ValueType> matmul_integer_infer(InferContext& ctx) {
  return {tensor_type(DType::Int32, matmul_out_shape(ctx.inputs[0].shape, ctx.inputs[1].shape, ctx.node))};
}

int64_t leading_product(const Dims& d, size_t count) {
  int64_t p = 1;
  for (size_t i = 0; i < count && i < d.size(); ++i) p *= d[i];
  return p;
}

}  // namespace

// Weights [..., K, N]: output channels along the last axis, K the one before.
MatrixTraits matmul_traits() {
  return {.weight_input = 1,
          .weight_axes = [](const ir::Node&, int64_t rank) { return rank >= 2 ? WeightAxes{rank - 1, rank - 2} : WeightAxes{}; },
          .lower = [](const ir::Node& n) -> std::optional<GemmLowering> {
            Dims a = known_dims(n.inputs[0]), b = known_dims(n.inputs.size() > 1 ? n.inputs[1] : nullptr);
            if (a.empty() || b.empty()) return std::nullopt;
            if (a.size() == 1) a.insert(a.begin(), 1);
            if (b.size() == 1) b.push_back(1);
            const int64_t M = a[a.size() - 2], K = a.back(), N = b.back();
            // Shared 2-D weights: the leading dims fold into M; otherwise one product per batch entry.
            if (b.size() == 2) return GemmLowering{leading_product(a, a.size() - 2) * M, N, K, 1};
            const Dims y = known_dims(n.outputs[0]);
            return GemmLowering{M, N, K, y.size() >= 2 ? leading_product(y, y.size() - 2) : 1};
          }};
}

// Weights [K, N], or [N, K] with transB.
MatrixTraits gemm_traits() {
  return {.weight_input = 1,
          .weight_axes = [](const ir::Node& n, int64_t rank) {
            if (rank != 2) return WeightAxes{};
            return n.attr_int("transB", 0) ? WeightAxes{0, 1} : WeightAxes{1, 0};
          },
          .lower = [](const ir::Node& n) -> std::optional<GemmLowering> {
            const Dims a = known_dims(n.inputs[0]), b = known_dims(n.inputs.size() > 1 ? n.inputs[1] : nullptr);
            if (a.size() != 2 || b.size() != 2) return std::nullopt;
            const bool ta = n.attr_int("transA", 0) != 0, tb = n.attr_int("transB", 0) != 0;
            return GemmLowering{ta ? a[1] : a[0], tb ? b[0] : b[1], ta ? a[0] : a[1], 1};
          }};
}

void register_matmul(Registry& r) {
  r.add({.name = "MatMul", .kernel = matmul_kernel, .infer = matmul_infer, .cost = matmul_cost,
         .matrix = matmul_traits()});
  r.add({.name = "Gemm", .kernel = gemm_kernel, .infer = gemm_infer, .cost = gemm_cost, .matrix = gemm_traits()});
  r.add({.name = "Einsum", .kernel = einsum_kernel, .infer = einsum_infer, .cost = einsum_cost});
  r.add({.name = "MatMulInteger", .kernel = matmul_integer_kernel, .infer = matmul_integer_infer,
         .cost = matmul_cost});
}

}  // namespace duet::ops
