// Indexing ops: Gather*, Scatter*, TensorScatter, NonZero, TopK, ArgMax/ArgMin,
// CumSum/CumProd, Compress, Unique. Data moves as raw element bytes (strings
// and sub-byte types through their own paths); arithmetic dispatches on dtype.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "duet/ops/kernel_util.h"
#include "families.h"

namespace duet::ops {

namespace {

// Copies len elements src[so..] -> dst[dof..] for any dtype.
void copy_elements(const Tensor& src, int64_t so, Tensor& dst, int64_t dof, int64_t len) {
  const DType dt = src.dtype();
  if (len <= 0) return;
  if (dt == DType::String) {
    for (int64_t k = 0; k < len; ++k) dst.strings()[dof + k] = src.strings()[so + k];
  } else if (dtype_is_subbyte(dt)) {
    for (int64_t k = 0; k < len; ++k) subbyte_set(dst, dof + k, subbyte_get(src, so + k));
  } else {
    const size_t es = dtype_bits(dt) / 8;
    std::memcpy(static_cast<uint8_t*>(dst.raw()) + dof * es, static_cast<const uint8_t*>(src.raw()) + so * es,
                len * es);
  }
}

// Comparable value of an element (small float types compare as float).
template <typename T>
auto key(T v) {
  if constexpr (std::is_arithmetic_v<T>) return v;
  else return static_cast<float>(v);
}

template <typename T>
bool is_nan(T v) {
  if constexpr (std::is_integral_v<T>) return false;
  else return std::isnan(static_cast<double>(key(v)));
}

int64_t prod(const Dims& d, size_t b, size_t e) {
  int64_t p = 1;
  for (size_t i = b; i < e; ++i) p *= d[i];
  return p;
}

int64_t checked_index(int64_t idx, int64_t dim, const ir::Node& node) {
  const int64_t i = idx < 0 ? idx + dim : idx;
  DUET_CHECK(i >= 0 && i < dim, node.label(), ": index ", idx, " is out of range for axis of size ", dim);
  return i;
}

Cost move_cost(const CostContext& c) {
  Cost k = default_cost(c);
  k.flops = 0;
  return k;
}

std::vector<ir::ValueType> one(DType dt, Shape s) { return {tensor_type(dt, std::move(s))}; }

Shape fresh_shape(InferContext& ctx, size_t rank) {
  std::vector<Dim> d;
  for (size_t i = 0; i < rank; ++i) d.push_back(ctx.fresh_dim());
  return Shape(d);
}

// ---------------------------------------------------------------------------
// Gather

void gather_kernel(KernelContext& ctx) {
  const Tensor& data = ctx.input(0);
  const Tensor& indices = ctx.input(1);
  const int64_t rank = static_cast<int64_t>(data.rank());
  DUET_CHECK(rank >= 1, ctx.node.label(), ": data must have rank >= 1");
  const int64_t axis = normalize_axis(ctx.node.attr_int("axis", 0), rank, ctx.node);
  Dims od(data.dims().begin(), data.dims().begin() + axis);
  od.insert(od.end(), indices.dims().begin(), indices.dims().end());
  od.insert(od.end(), data.dims().begin() + axis + 1, data.dims().end());
  const int64_t outer = prod(data.dims(), 0, axis), inner = prod(data.dims(), axis + 1, rank);
  const int64_t n = data.dims()[axis], nidx = indices.numel();
  std::vector<int64_t> idx(nidx);
  for (int64_t j = 0; j < nidx; ++j) idx[j] = checked_index(indices.get_int(j), n, ctx.node);
  Tensor& out = ctx.allocate_output(0, data.dtype(), od);
  auto body = [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const int64_t o = r / std::max<int64_t>(nidx, 1), j = r % std::max<int64_t>(nidx, 1);
      copy_elements(data, (o * n + idx[j]) * inner, out, r * inner, inner);
    }
  };
  if (dtype_is_subbyte(data.dtype())) body(0, outer * nidx);
  else ctx.parallel_for(outer * nidx, body);
}

// GatherGrad (com.duet, written by train::add_gradients): inputs dY, the
// indices and the data's shape (int64); with Gather's axis, dData is zero
// except the gathered slices, where dY is added (repeated indices add up, in
// index order).
void gather_grad_kernel(KernelContext& ctx) {
  const Tensor& dy = ctx.input(0);
  const Tensor& indices = ctx.input(1);
  const Dims dd = ctx.input(2).to_int_vector();
  const int64_t rank = static_cast<int64_t>(dd.size());
  DUET_CHECK(rank >= 1, ctx.node.label(), ": data must have rank >= 1");
  const int64_t axis = normalize_axis(ctx.node.attr_int("axis", 0), rank, ctx.node);
  const int64_t outer = prod(dd, 0, axis), inner = prod(dd, axis + 1, rank), n = dd[axis], nidx = indices.numel();
  DUET_CHECK(dy.numel() == outer * nidx * inner, ctx.node.label(), ": gradient ", dy.describe(), " does not match ",
             nidx, " gathered slices of ", dims_str(dd));
  if (dy.dtype() != DType::Float32 && dy.dtype() != DType::Float64)
    unsupported(ctx.node.label(), ": gradients are float32 or float64, got ", dy.describe());
  Tensor& out = ctx.allocate_output(0, dy.dtype(), dd);
  std::memset(out.raw(), 0, out.nbytes());
  std::vector<int64_t> idx(static_cast<size_t>(nidx));
  for (int64_t j = 0; j < nidx; ++j) idx[j] = checked_index(indices.get_int(j), n, ctx.node);
  dispatch_float(dy.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
      const T* g = dy.data<T>();
      T* d = out.data<T>();
      ctx.parallel_for(outer, [&](int64_t b, int64_t e) {  // each outer slice is written by one task
        for (int64_t o = b; o < e; ++o)
          for (int64_t j = 0; j < nidx; ++j) {
            T* dst = d + (o * n + idx[j]) * inner;
            const T* src = g + (o * nidx + j) * inner;
            for (int64_t k = 0; k < inner; ++k) dst[k] += src[k];
          }
      });
    }
  });
}

std::vector<ir::ValueType> gather_infer(InferContext& ctx) {
  const auto& d = ctx.inputs[0];
  const auto& i = ctx.inputs[1];
  if (!d.shape.rank_known || !i.shape.rank_known) return one(d.dtype, Shape::unknown_rank());
  const int64_t axis = normalize_axis(ctx.node.attr_int("axis", 0), d.shape.rank(), ctx.node);
  std::vector<Dim> out(d.shape.dims.begin(), d.shape.dims.begin() + axis);
  out.insert(out.end(), i.shape.dims.begin(), i.shape.dims.end());
  out.insert(out.end(), d.shape.dims.begin() + axis + 1, d.shape.dims.end());
  return one(d.dtype, Shape(out));
}

// ---------------------------------------------------------------------------
// GatherElements

void gather_elements_kernel(KernelContext& ctx) {
  const Tensor& data = ctx.input(0);
  const Tensor& indices = ctx.input(1);
  const int64_t rank = static_cast<int64_t>(data.rank());
  DUET_CHECK(indices.rank() == data.rank(), ctx.node.label(), ": indices rank differs from data rank");
  const int64_t axis = normalize_axis(ctx.node.attr_int("axis", 0), rank, ctx.node);
  Tensor& out = ctx.allocate_output(0, data.dtype(), indices.dims());
  const auto ds = strides_of(data.dims());
  const Dims& id = indices.dims();
  std::vector<int64_t> pos(rank, 0);
  for (int64_t e = 0; e < indices.numel(); ++e) {
    int64_t off = 0;
    for (int64_t d = 0; d < rank; ++d) {
      const int64_t c = d == axis ? checked_index(indices.get_int(e), data.dims()[d], ctx.node) : pos[d];
      DUET_CHECK(c < data.dims()[d], ctx.node.label(), ": indices shape exceeds data shape");
      off += c * ds[d];
    }
    copy_elements(data, off, out, e, 1);
    for (int64_t d = rank - 1; d >= 0; --d) {
      if (++pos[d] < id[d]) break;
      pos[d] = 0;
    }
  }
}

std::vector<ir::ValueType> indices_shape_infer(InferContext& ctx) {
  return one(ctx.inputs[0].dtype, ctx.inputs[1].shape);
}

// ---------------------------------------------------------------------------
// GatherND

struct NDPlan {
  int64_t batch = 1, tuples_per_batch = 1, k = 0, slice = 1, batch_stride = 1;
  std::vector<int64_t> strides;  // element strides of the k indexed data dims
};

NDPlan nd_plan(const ir::Node& node, const Dims& data, const Dims& indices, int64_t b) {
  DUET_CHECK(!indices.empty(), node.label(), ": indices must have rank >= 1");
  NDPlan p;
  p.k = indices.back();
  const int64_t r = static_cast<int64_t>(data.size()), q = static_cast<int64_t>(indices.size());
  DUET_CHECK(b >= 0 && b < std::min(r, q), node.label(), ": batch_dims ", b, " out of range");
  DUET_CHECK(p.k >= 1 && b + p.k <= r, node.label(), ": index tuples of length ", p.k, " do not fit data rank ", r);
  for (int64_t i = 0; i < b; ++i)
    DUET_CHECK(data[i] == indices[i], node.label(), ": batch dimension ", i, " differs between data and indices");
  p.batch = prod(data, 0, b);
  p.tuples_per_batch = prod(indices, b, q - 1);
  p.slice = prod(data, b + p.k, r);
  p.batch_stride = prod(data, b, r);
  const auto s = strides_of(data);
  p.strides.assign(s.begin() + b, s.begin() + b + p.k);
  return p;
}

void gather_nd_kernel(KernelContext& ctx) {
  const Tensor& data = ctx.input(0);
  const Tensor& indices = ctx.input(1);
  const int64_t b = ctx.node.attr_int("batch_dims", 0);
  const NDPlan p = nd_plan(ctx.node, data.dims(), indices.dims(), b);
  Dims od(indices.dims().begin(), indices.dims().end() - 1);
  od.insert(od.end(), data.dims().begin() + b + p.k, data.dims().end());
  Tensor& out = ctx.allocate_output(0, data.dtype(), od);
  for (int64_t bi = 0; bi < p.batch; ++bi)
    for (int64_t t = 0; t < p.tuples_per_batch; ++t) {
      const int64_t tuple = bi * p.tuples_per_batch + t;
      int64_t off = bi * p.batch_stride;
      for (int64_t m = 0; m < p.k; ++m)
        off += checked_index(indices.get_int(tuple * p.k + m), data.dims()[b + m], ctx.node) * p.strides[m];
      copy_elements(data, off, out, tuple * p.slice, p.slice);
    }
}

std::vector<ir::ValueType> gather_nd_infer(InferContext& ctx) {
  const auto& d = ctx.inputs[0];
  const auto& i = ctx.inputs[1];
  if (!d.shape.rank_known || !i.shape.rank_known || i.shape.rank() == 0 || !i.shape.dims.back().known())
    return one(d.dtype, Shape::unknown_rank());
  const int64_t b = ctx.node.attr_int("batch_dims", 0);
  const int64_t k = i.shape.dims.back().value;
  std::vector<Dim> out(i.shape.dims.begin(), i.shape.dims.end() - 1);
  if (b + k <= static_cast<int64_t>(d.shape.rank())) out.insert(out.end(), d.shape.dims.begin() + b + k, d.shape.dims.end());
  return one(d.dtype, Shape(out));
}

// ---------------------------------------------------------------------------
// Scatter reductions

enum class Reduction { None, Add, Mul, Max, Min };

Reduction parse_reduction(const ir::Node& node) {
  const std::string r = node.attr_string("reduction", "none");
  if (r == "none") return Reduction::None;
  if (r == "add") return Reduction::Add;
  if (r == "mul") return Reduction::Mul;
  if (r == "max") return Reduction::Max;
  if (r == "min") return Reduction::Min;
  unsupported("reduction '", r, "' is not supported");
}

// Returns fn(dst_index, src_index) applying the reduction for dst's dtype.
std::function<void(int64_t, int64_t)> scatter_apply(Tensor& dst, const Tensor& src, Reduction red) {
  if (red == Reduction::None) return [&dst, &src](int64_t d, int64_t s) { copy_elements(src, s, dst, d, 1); };
  return dispatch_numeric(dst.dtype(), [&](auto tag) -> std::function<void(int64_t, int64_t)> {
    using T = typename decltype(tag)::type;
    T* y = dst.data<T>();
    const T* u = src.data<T>();
    return [y, u, red](int64_t d, int64_t s) {
      if constexpr (std::is_same_v<T, bool>) {
        switch (red) {
          case Reduction::Add: case Reduction::Max: y[d] = y[d] || u[s]; break;
          default: y[d] = y[d] && u[s]; break;
        }
      } else {
        using K = decltype(key(y[d]));
        const K a = key(y[d]), b = key(u[s]);
        switch (red) {
          case Reduction::Add: y[d] = static_cast<T>(a + b); break;
          case Reduction::Mul: y[d] = static_cast<T>(a * b); break;
          case Reduction::Max: y[d] = static_cast<T>(std::max(a, b)); break;
          case Reduction::Min: y[d] = static_cast<T>(std::min(a, b)); break;
          default: break;
        }
      }
    };
  });
}

// ---------------------------------------------------------------------------
// ScatterElements (and the deprecated Scatter)

void scatter_elements_kernel(KernelContext& ctx) {
  const Tensor& data = ctx.input(0);
  const Tensor& indices = ctx.input(1);
  const Tensor& updates = ctx.input(2);
  const int64_t rank = static_cast<int64_t>(data.rank());
  DUET_CHECK(indices.rank() == data.rank() && indices.dims() == updates.dims(), ctx.node.label(),
             ": indices ", dims_str(indices.dims()), " and updates ", dims_str(updates.dims()),
             " must match and have the data's rank");
  const int64_t axis = normalize_axis(ctx.node.attr_int("axis", 0), rank, ctx.node);
  Tensor out = data.clone();
  auto apply = scatter_apply(out, updates, parse_reduction(ctx.node));
  const auto ds = strides_of(data.dims());
  const Dims& id = indices.dims();
  std::vector<int64_t> pos(rank, 0);
  for (int64_t e = 0; e < indices.numel(); ++e) {
    int64_t off = 0;
    for (int64_t d = 0; d < rank; ++d) {
      const int64_t c = d == axis ? checked_index(indices.get_int(e), data.dims()[d], ctx.node) : pos[d];
      DUET_CHECK(c < data.dims()[d], ctx.node.label(), ": indices shape exceeds data shape");
      off += c * ds[d];
    }
    apply(off, e);
    for (int64_t d = rank - 1; d >= 0; --d) {
      if (++pos[d] < id[d]) break;
      pos[d] = 0;
    }
  }
  ctx.set_output(0, out);
}

// ---------------------------------------------------------------------------
// ScatterND

void scatter_nd_kernel(KernelContext& ctx) {
  const Tensor& data = ctx.input(0);
  const Tensor& indices = ctx.input(1);
  const Tensor& updates = ctx.input(2);
  const NDPlan p = nd_plan(ctx.node, data.dims(), indices.dims(), 0);
  Dims ud(indices.dims().begin(), indices.dims().end() - 1);
  ud.insert(ud.end(), data.dims().begin() + p.k, data.dims().end());
  DUET_CHECK(updates.dims() == ud, ctx.node.label(), ": updates shape ", dims_str(updates.dims()), " should be ",
             dims_str(ud));
  Tensor out = data.clone();
  const Reduction red = parse_reduction(ctx.node);
  auto apply = scatter_apply(out, updates, red);
  for (int64_t t = 0; t < p.tuples_per_batch; ++t) {
    int64_t off = 0;
    for (int64_t m = 0; m < p.k; ++m)
      off += checked_index(indices.get_int(t * p.k + m), data.dims()[m], ctx.node) * p.strides[m];
    if (red == Reduction::None) copy_elements(updates, t * p.slice, out, off, p.slice);
    else for (int64_t e = 0; e < p.slice; ++e) apply(off + e, t * p.slice + e);
  }
  ctx.set_output(0, out);
}

// ---------------------------------------------------------------------------
// TensorScatter: writes update into a cache along axis at per-batch offsets.

void tensor_scatter_kernel(KernelContext& ctx) {
  const Tensor& cache = ctx.input(0);
  const Tensor& update = ctx.input(1);
  const int64_t rank = static_cast<int64_t>(cache.rank());
  const int64_t axis = normalize_axis(ctx.node.attr_int("axis", -2), rank, ctx.node);
  DUET_CHECK(axis >= 1, ctx.node.label(), ": axis must not be the batch axis");
  const std::string mode = ctx.node.attr_string("mode", "linear");
  DUET_CHECK(mode == "linear" || mode == "circular", ctx.node.label(), ": unknown mode '", mode, "'");
  DUET_CHECK(update.rank() == cache.rank(), ctx.node.label(), ": update rank differs from cache rank");
  for (int64_t d = 0; d < rank; ++d)
    DUET_CHECK(d == axis ? update.dims()[d] <= cache.dims()[d] : update.dims()[d] == cache.dims()[d],
               ctx.node.label(), ": update ", dims_str(update.dims()), " does not fit cache ", dims_str(cache.dims()));
  const int64_t batch = cache.dims()[0];
  std::vector<int64_t> write(batch, 0);
  if (ctx.has_input(2)) {
    write = ctx.input(2).to_int_vector();
    DUET_CHECK(static_cast<int64_t>(write.size()) == batch, ctx.node.label(), ": write_indices length ", write.size(),
               " differs from batch ", batch);
  }
  Tensor out = cache.clone();
  const int64_t prefix = prod(cache.dims(), 0, axis), per_batch = prefix / std::max<int64_t>(batch, 1);
  const int64_t max_len = cache.dims()[axis], len = update.dims()[axis];
  const int64_t inner = prod(cache.dims(), axis + 1, rank);
  for (int64_t pi = 0; pi < prefix; ++pi) {
    const int64_t b = pi / std::max<int64_t>(per_batch, 1);
    for (int64_t s = 0; s < len; ++s) {
      int64_t c = write[b] + s;
      if (mode == "circular") c %= max_len;
      DUET_CHECK(c >= 0 && c < max_len, ctx.node.label(), ": write position ", c, " exceeds the cache length ", max_len);
      copy_elements(update, (pi * len + s) * inner, out, (pi * max_len + c) * inner, inner);
    }
  }
  ctx.set_output(0, out);
}

// ---------------------------------------------------------------------------
// NonZero

void nonzero_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const int64_t rank = static_cast<int64_t>(x.rank());
  std::vector<int64_t> hits;
  dispatch_numeric(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* p = x.data<T>();
    for (int64_t i = 0; i < x.numel(); ++i) {
      if constexpr (std::is_same_v<T, bool>) { if (p[i]) hits.push_back(i); }
      else if (key(p[i]) != 0) hits.push_back(i);
    }
  });
  const int64_t n = static_cast<int64_t>(hits.size());
  // A scalar input reports as rank 1 with one coordinate per hit? ONNX: shape [rank, n].
  Tensor& out = ctx.allocate_output(0, DType::Int64, {rank, n});
  const auto s = strides_of(x.dims());
  int64_t* y = out.data<int64_t>();
  for (int64_t j = 0; j < n; ++j)
    for (int64_t d = 0; d < rank; ++d) y[d * n + j] = (hits[j] / s[d]) % x.dims()[d];
}

std::vector<ir::ValueType> nonzero_infer(InferContext& ctx) {
  const auto& x = ctx.inputs[0];
  Dim r = x.shape.rank_known ? Dim(static_cast<int64_t>(x.shape.rank())) : ctx.fresh_dim();
  return one(DType::Int64, Shape({r, ctx.fresh_dim()}));
}

// ---------------------------------------------------------------------------
// TopK

void topk_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const int64_t rank = static_cast<int64_t>(x.rank());
  DUET_CHECK(rank >= 1, ctx.node.label(), ": input must have rank >= 1");
  const int64_t axis = normalize_axis(ctx.node.attr_int("axis", -1), rank, ctx.node);
  const int64_t k = ctx.opset >= 10 ? ctx.input(1).get_int(0) : ctx.node.attr_int("k", 0);
  const int64_t n = x.dims()[axis];
  DUET_CHECK(k >= 0 && k <= n, ctx.node.label(), ": k = ", k, " is out of range for axis of size ", n);
  const bool largest = ctx.node.attr_int("largest", 1) != 0;
  Dims od = x.dims();
  od[axis] = k;
  Tensor& values = ctx.allocate_output(0, x.dtype(), od);
  Tensor& indices = ctx.allocate_output(1, DType::Int64, od);
  const int64_t outer = prod(x.dims(), 0, axis), inner = prod(x.dims(), axis + 1, rank);
  dispatch_numeric(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = x.data<T>();
    T* vp = values.data<T>();
    int64_t* ip = indices.data<int64_t>();
    ctx.parallel_for(outer * inner, [&](int64_t b, int64_t e) {
      std::vector<int64_t> order(n);
      for (int64_t r = b; r < e; ++r) {
        const int64_t o = r / inner, i = r % inner;
        const T* base = xp + o * n * inner + i;
        std::iota(order.begin(), order.end(), 0);
        // NaN sorts as the largest value; ties keep the lower index first.
        auto better = [&](int64_t a, int64_t c) {
          const auto va = key(base[a * inner]), vc = key(base[c * inner]);
          const bool na = is_nan(base[a * inner]), nc = is_nan(base[c * inner]);
          if (na || nc) {
            if (na && nc) return a < c;
            return largest ? na : nc;
          }
          if (va != vc) return largest ? va > vc : va < vc;
          return a < c;
        };
        std::partial_sort(order.begin(), order.begin() + k, order.end(), better);
        for (int64_t j = 0; j < k; ++j) {
          vp[(o * k + j) * inner + i] = base[order[j] * inner];
          ip[(o * k + j) * inner + i] = order[j];
        }
      }
    });
  });
}

std::vector<ir::ValueType> topk_infer(InferContext& ctx) {
  const auto& x = ctx.inputs[0];
  if (!x.shape.rank_known) return {tensor_type(x.dtype, Shape::unknown_rank()), tensor_type(DType::Int64, Shape::unknown_rank())};
  Shape s = x.shape;
  const int64_t axis = normalize_axis(ctx.node.attr_int("axis", -1), s.rank(), ctx.node);
  Dim k = ctx.fresh_dim();
  if (ctx.opset < 10) k = Dim(ctx.node.attr_int("k", 0));
  else if (const Tensor* v = ctx.value(1)) k = Dim(v->get_int(0));
  s.dims[axis] = k;
  return {tensor_type(x.dtype, s), tensor_type(DType::Int64, s)};
}

// ---------------------------------------------------------------------------
// ArgMax / ArgMin

void arg_extreme_kernel(KernelContext& ctx, bool want_max) {
  const Tensor& x = ctx.input(0);
  const int64_t rank = static_cast<int64_t>(x.rank());
  const int64_t axis = normalize_axis(ctx.node.attr_int("axis", 0), rank, ctx.node);
  const bool keepdims = ctx.node.attr_int("keepdims", 1) != 0;
  const bool last = ctx.node.attr_int("select_last_index", 0) != 0;
  const int64_t n = x.dims()[axis];
  DUET_CHECK(n > 0, ctx.node.label(), ": cannot reduce an empty axis");
  Dims od = x.dims();
  if (keepdims) od[axis] = 1;
  else od.erase(od.begin() + axis);
  Tensor& out = ctx.allocate_output(0, DType::Int64, od);
  const int64_t outer = prod(x.dims(), 0, axis), inner = prod(x.dims(), axis + 1, rank);
  dispatch_numeric(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = x.data<T>();
    int64_t* y = out.data<int64_t>();
    ctx.parallel_for(outer * inner, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const int64_t o = r / inner, i = r % inner;
        const T* base = xp + o * n * inner + i;
        int64_t best = 0;
        auto bv = key(base[0]);
        for (int64_t j = 1; j < n; ++j) {
          const auto v = key(base[j * inner]);
          const bool better = want_max ? (v > bv || (last && v == bv)) : (v < bv || (last && v == bv));
          if (better) { best = j; bv = v; }
        }
        y[r] = best;
      }
    });
  });
}

std::vector<ir::ValueType> arg_extreme_infer(InferContext& ctx) {
  const auto& x = ctx.inputs[0];
  if (!x.shape.rank_known) return one(DType::Int64, Shape::unknown_rank());
  auto dims = x.shape.dims;
  const int64_t axis = normalize_axis(ctx.node.attr_int("axis", 0), dims.size(), ctx.node);
  if (ctx.node.attr_int("keepdims", 1) != 0) dims[axis] = Dim(1);
  else dims.erase(dims.begin() + axis);
  return one(DType::Int64, Shape(dims));
}

// ---------------------------------------------------------------------------
// CumSum / CumProd

void cumulative_kernel(KernelContext& ctx, bool product) {
  const Tensor& x = ctx.input(0);
  const int64_t rank = static_cast<int64_t>(x.rank());
  const int64_t axis = normalize_axis(ctx.input(1).get_int(0), rank, ctx.node);
  const bool exclusive = ctx.node.attr_int("exclusive", 0) != 0;
  const bool reverse = ctx.node.attr_int("reverse", 0) != 0;
  Tensor& out = ctx.allocate_output(0, x.dtype(), x.dims());
  const int64_t n = rank == 0 ? 1 : x.dims()[axis];
  const int64_t outer = rank == 0 ? 1 : prod(x.dims(), 0, axis), inner = rank == 0 ? 1 : prod(x.dims(), axis + 1, rank);
  dispatch_numeric(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, bool>) {
      unsupported("bool input is not supported");
    } else {
      using Acc = decltype(key(T{}));
      const T* xp = x.data<T>();
      T* y = out.data<T>();
      ctx.parallel_for(outer * inner, [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r) {
          const int64_t o = r / inner, i = r % inner;
          Acc acc = product ? Acc(1) : Acc(0);
          for (int64_t s = 0; s < n; ++s) {
            const int64_t j = reverse ? n - 1 - s : s;
            const int64_t at = (o * n + j) * inner + i;
            const Acc v = key(xp[at]);
            if (!exclusive) acc = product ? static_cast<Acc>(acc * v) : static_cast<Acc>(acc + v);
            y[at] = static_cast<T>(acc);
            if (exclusive) acc = product ? static_cast<Acc>(acc * v) : static_cast<Acc>(acc + v);
          }
        }
      });
    }
  });
}

// ---------------------------------------------------------------------------
// Compress

void compress_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& cond = ctx.input(1);
  DUET_CHECK(cond.rank() == 1, ctx.node.label(), ": condition must be 1-D");
  std::vector<int64_t> keep;
  const bool has_axis = ctx.node.has_attr("axis");
  const int64_t rank = static_cast<int64_t>(x.rank());
  const int64_t axis = has_axis ? normalize_axis(ctx.node.attr_int("axis", 0), rank, ctx.node) : 0;
  const int64_t n = has_axis ? x.dims()[axis] : x.numel();
  DUET_CHECK(cond.numel() <= n, ctx.node.label(), ": condition has ", cond.numel(), " entries, axis has ", n);
  for (int64_t i = 0; i < cond.numel(); ++i) if (cond.get_double(i) != 0) keep.push_back(i);
  const int64_t m = static_cast<int64_t>(keep.size());
  if (!has_axis) {
    Tensor& out = ctx.allocate_output(0, x.dtype(), {m});
    for (int64_t j = 0; j < m; ++j) copy_elements(x, keep[j], out, j, 1);
    return;
  }
  Dims od = x.dims();
  od[axis] = m;
  Tensor& out = ctx.allocate_output(0, x.dtype(), od);
  const int64_t outer = prod(x.dims(), 0, axis), inner = prod(x.dims(), axis + 1, rank);
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < m; ++j) copy_elements(x, (o * n + keep[j]) * inner, out, (o * m + j) * inner, inner);
}

std::vector<ir::ValueType> compress_infer(InferContext& ctx) {
  const auto& x = ctx.inputs[0];
  if (!ctx.node.has_attr("axis")) return one(x.dtype, Shape({ctx.fresh_dim()}));
  if (!x.shape.rank_known) return one(x.dtype, Shape::unknown_rank());
  auto dims = x.shape.dims;
  dims[normalize_axis(ctx.node.attr_int("axis", 0), dims.size(), ctx.node)] = ctx.fresh_dim();
  return one(x.dtype, Shape(dims));
}

// ---------------------------------------------------------------------------
// Unique

void unique_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const bool sorted = ctx.node.attr_int("sorted", 1) != 0;
  const bool has_axis = ctx.node.has_attr("axis");
  const int64_t rank = static_cast<int64_t>(x.rank());
  const int64_t axis = has_axis ? normalize_axis(ctx.node.attr_int("axis", 0), rank, ctx.node) : 0;
  // View as [outer, n, inner]; slice j is every element with middle index j.
  const int64_t n = has_axis ? x.dims()[axis] : x.numel();
  const int64_t outer = has_axis ? prod(x.dims(), 0, axis) : 1;
  const int64_t inner = has_axis ? prod(x.dims(), axis + 1, rank) : 1;
  // cmp(a, b): <0, 0, >0 comparing slices a and b lexicographically.
  std::function<int(int64_t, int64_t)> cmp;
  if (x.dtype() == DType::String) {
    const auto& s = x.strings();
    cmp = [&, outer, n, inner](int64_t a, int64_t b) {
      for (int64_t o = 0; o < outer; ++o)
        for (int64_t i = 0; i < inner; ++i) {
          const int c = s[(o * n + a) * inner + i].compare(s[(o * n + b) * inner + i]);
          if (c != 0) return c < 0 ? -1 : 1;
        }
      return 0;
    };
  } else {
    cmp = dispatch_numeric(x.dtype(), [&](auto tag) -> std::function<int(int64_t, int64_t)> {
      using T = typename decltype(tag)::type;
      const T* p = x.data<T>();
      return [p, outer, n, inner](int64_t a, int64_t b) {
        for (int64_t o = 0; o < outer; ++o)
          for (int64_t i = 0; i < inner; ++i) {
            const auto va = key(p[(o * n + a) * inner + i]), vb = key(p[(o * n + b) * inner + i]);
            if (va < vb) return -1;
            if (vb < va) return 1;
          }
        return 0;
      };
    });
  }
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return cmp(a, b) < 0; });
  // Group equal slices; the first of each group (stable) is its first occurrence.
  std::vector<int64_t> group_first, group_count, group_of(n);
  for (int64_t s = 0; s < n; ++s) {
    if (s == 0 || cmp(order[s - 1], order[s]) != 0) {
      group_first.push_back(order[s]);
      group_count.push_back(0);
    }
    group_of[order[s]] = static_cast<int64_t>(group_first.size()) - 1;
    ++group_count.back();
  }
  const int64_t u = static_cast<int64_t>(group_first.size());
  // Output order: sorted groups, or by first occurrence.
  std::vector<int64_t> out_order(u);
  std::iota(out_order.begin(), out_order.end(), 0);
  if (!sorted) std::sort(out_order.begin(), out_order.end(), [&](int64_t a, int64_t b) { return group_first[a] < group_first[b]; });
  std::vector<int64_t> rank_of(u);
  for (int64_t i = 0; i < u; ++i) rank_of[out_order[i]] = i;

  Dims yd = has_axis ? x.dims() : Dims{u};
  if (has_axis) yd[axis] = u;
  Tensor& y = ctx.allocate_output(0, x.dtype(), yd);
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < u; ++i)
      copy_elements(x, (o * n + group_first[out_order[i]]) * inner, y, (o * u + i) * inner, inner);
  if (ctx.num_outputs() > 1 && ctx.output_requested(1)) {
    Tensor& t = ctx.allocate_output(1, DType::Int64, {u});
    for (int64_t i = 0; i < u; ++i) t.data<int64_t>()[i] = group_first[out_order[i]];
  }
  if (ctx.num_outputs() > 2 && ctx.output_requested(2)) {
    Tensor& t = ctx.allocate_output(2, DType::Int64, {n});
    for (int64_t j = 0; j < n; ++j) t.data<int64_t>()[j] = rank_of[group_of[j]];
  }
  if (ctx.num_outputs() > 3 && ctx.output_requested(3)) {
    Tensor& t = ctx.allocate_output(3, DType::Int64, {u});
    for (int64_t i = 0; i < u; ++i) t.data<int64_t>()[i] = group_count[out_order[i]];
  }
}

std::vector<ir::ValueType> unique_infer(InferContext& ctx) {
  const auto& x = ctx.inputs[0];
  Dim u = ctx.fresh_dim();
  std::vector<ir::ValueType> out;
  if (!ctx.node.has_attr("axis")) out.push_back(tensor_type(x.dtype, Shape({u})));
  else if (!x.shape.rank_known) out.push_back(tensor_type(x.dtype, Shape::unknown_rank()));
  else {
    auto dims = x.shape.dims;
    dims[normalize_axis(ctx.node.attr_int("axis", 0), dims.size(), ctx.node)] = u;
    out.push_back(tensor_type(x.dtype, Shape(dims)));
  }
  out.push_back(tensor_type(DType::Int64, Shape({u})));
  out.push_back(tensor_type(DType::Int64, Shape({ctx.fresh_dim()})));
  out.push_back(tensor_type(DType::Int64, Shape({u})));
  out.resize(ctx.num_outputs);
  return out;
}

}  // namespace

void register_indexing(Registry& r) {
  auto add = [&](const char* name, KernelFn k, InferFn inf, CostFn cost = move_cost) {
    r.add({.name = name, .kernel = std::move(k), .infer = std::move(inf), .cost = std::move(cost)});
  };
  add("Gather", gather_kernel, gather_infer);
  r.add({.domain = "com.duet", .name = "GatherGrad", .kernel = gather_grad_kernel,
         .infer = [](InferContext& c) {
           Shape s = Shape::unknown_rank();
           if (const Tensor* t = c.value(2)) s = Shape::from(t->to_int_vector());
           return std::vector<ir::ValueType>{tensor_type(c.inputs.at(0).dtype, s)};
         }});
  add("GatherElements", gather_elements_kernel, indices_shape_infer);
  add("GatherND", gather_nd_kernel, gather_nd_infer);
  add("Scatter", scatter_elements_kernel, infer_same_as(0));
  add("ScatterElements", scatter_elements_kernel, infer_same_as(0));
  add("ScatterND", scatter_nd_kernel, infer_same_as(0));
  add("TensorScatter", tensor_scatter_kernel, infer_same_as(0));
  add("NonZero", nonzero_kernel, nonzero_infer, cost_per_output_element(1));
  add("TopK", topk_kernel, topk_infer, cost_per_output_element(1));
  add("ArgMax", [](KernelContext& c) { arg_extreme_kernel(c, true); }, arg_extreme_infer, default_cost);
  add("ArgMin", [](KernelContext& c) { arg_extreme_kernel(c, false); }, arg_extreme_infer, default_cost);
  add("CumSum", [](KernelContext& c) { cumulative_kernel(c, false); }, infer_same_as(0), default_cost);
  add("CumProd", [](KernelContext& c) { cumulative_kernel(c, true); }, infer_same_as(0), default_cost);
  add("Compress", compress_kernel, compress_infer);
  add("Unique", unique_kernel, unique_infer, default_cost);
}

}  // namespace duet::ops
